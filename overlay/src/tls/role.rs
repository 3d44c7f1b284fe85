//! What a certificate of the cluster CA says: its holder's name (the subject's common name),
//! its role (the subject's organization, `shibafu:<role>`, as Kubernetes puts groups in O) and
//! when it expires.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Prefix of the organization values that name a role.
pub const ROLE_PREFIX: &str = "shibafu:";

/// What a certificate's holder may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// A user who changes the cluster (the CLI's default).
    Admin,
    /// A user or monitoring client that reads only.
    ReadOnly,
    /// A node's agent: an etcd client; reads the coordinator API.
    Agent,
    /// A coordinator: serves the API, an etcd client; reads other coordinators.
    Coordinator,
    /// An etcd member: serves etcd and talks to its peers.
    Etcd,
}

impl Role {
    /// Every role, in the order `--help` lists them.
    pub const ALL: [Role; 5] = [
        Role::Admin,
        Role::ReadOnly,
        Role::Agent,
        Role::Coordinator,
        Role::Etcd,
    ];

    /// The role's name (`admin`, `read-only`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::ReadOnly => "read-only",
            Role::Agent => "agent",
            Role::Coordinator => "coordinator",
            Role::Etcd => "etcd",
        }
    }

    /// The organization value that carries the role (`shibafu:admin`).
    pub fn organization(self) -> String {
        format!("{ROLE_PREFIX}{}", self.name())
    }

    /// True if the holder may read the coordinator API.
    pub fn may_read(self) -> bool {
        self != Role::Etcd
    }

    /// True if the holder may change the cluster through the coordinator API.
    pub fn may_write(self) -> bool {
        self == Role::Admin
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Role, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Role::ALL.iter().map(|r| r.name()).collect();
                format!("unknown role {s:?}: one of {}", names.join(", "))
            })
    }
}

/// The facts of one certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertInfo {
    /// The subject's common name.
    pub name: String,
    /// The role its organization names, if one does (exactly one `shibafu:` value).
    pub role: Option<Role>,
    /// The end of its validity, seconds since the Unix epoch.
    pub not_after: i64,
    /// The same, as `2027-12-02T15:45:50Z`.
    pub expires: String,
}

impl CertInfo {
    /// Reads a DER certificate; an error says why it cannot be read.
    pub fn from_der(der: &[u8]) -> Result<CertInfo, String> {
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| format!("not an X.509 certificate: {e}"))?;
        let subject = cert.subject();
        let name = subject
            .iter_common_name()
            .next()
            .and_then(|a| a.as_str().ok())
            .unwrap_or_default()
            .to_string();
        let roles: Vec<&str> = subject
            .iter_organization()
            .filter_map(|a| a.as_str().ok())
            .filter_map(|o| o.strip_prefix(ROLE_PREFIX))
            .collect();
        let role = match roles.as_slice() {
            [one] => one.parse().ok(),
            _ => None,
        };
        let end = cert.validity().not_after.to_datetime();
        let expires = format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            end.year(),
            end.month() as u8,
            end.day(),
            end.hour(),
            end.minute(),
            end.second()
        );
        Ok(CertInfo {
            name,
            role,
            not_after: end.unix_timestamp(),
            expires,
        })
    }

    /// Whole days left at `now` (seconds since the epoch); negative once expired.
    pub fn days_left(&self, now: i64) -> i64 {
        (self.not_after - now).div_euclid(86_400)
    }
}
