//! `shibafu cert`: the cluster CA and the certificates of a TLS control plane, without an
//! outside PKI. `init` makes the CA, `issue` a certificate for an agent, a coordinator, a user
//! of the CLI or an etcd member (its role in the subject's organization), `show` what a
//! certificate says and when it expires. Keys are written 0600.

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};
use shibafu_overlay::tls::issue::{self, Request};
use shibafu_overlay::tls::{certs, CertInfo, Role};

/// Where `init` writes the CA and `issue` looks for it, unless --dir says otherwise.
pub const DEFAULT_DIR: &str = "/etc/shibafu/pki";

/// `shibafu cert ...`
#[derive(Debug, Subcommand)]
pub enum CertCmd {
    /// Make the cluster CA: DIR/ca.pem and DIR/ca-key.pem (keep the key safe and offline).
    Init(InitArgs),
    /// Issue a certificate signed by the cluster CA: OUT/NAME.pem and OUT/NAME-key.pem.
    Issue(IssueArgs),
    /// Show what certificates say: name, role, expiry.
    Show {
        /// Certificate files (PEM).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

/// Flags of `cert init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Directory of the CA files.
    #[arg(long, env = "SHIBAFU_PKI_DIR", default_value = DEFAULT_DIR)]
    pub dir: PathBuf,
    /// The CA's common name.
    #[arg(long, default_value = "shibafu-ca")]
    pub name: String,
    /// Days the CA is valid.
    #[arg(long, default_value_t = 3650, value_parser = clap::value_parser!(u32).range(1..=36500))]
    pub days: u32,
    /// Replace an existing CA (every certificate it issued stops being trusted).
    #[arg(long)]
    pub force: bool,
}

/// Who a certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Holder {
    /// A node's agent (etcd client).
    Agent,
    /// A coordinator (serves the API; etcd client).
    Coordinator,
    /// A user of the CLI (admin, or read-only with --read-only).
    Cli,
    /// An etcd member (serves clients and peers).
    Etcd,
}

/// Flags of `cert issue`.
#[derive(Debug, Args)]
pub struct IssueArgs {
    /// Who the certificate is for.
    #[arg(long = "for", value_enum)]
    pub holder: Holder,
    /// The holder's name: the node, coordinator, user or etcd member.
    pub name: String,
    /// Directory of the CA files.
    #[arg(long, env = "SHIBAFU_PKI_DIR", default_value = DEFAULT_DIR)]
    pub dir: PathBuf,
    /// Directory to write the certificate and key to [default: --dir].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// An address clients use to reach this server (coordinator, etcd; repeatable); NAME
    /// itself is always one of its DNS names.
    #[arg(long)]
    pub ip: Vec<IpAddr>,
    /// A DNS name clients use to reach this server (coordinator, etcd; repeatable).
    #[arg(long)]
    pub dns: Vec<String>,
    /// Days the certificate is valid.
    #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub days: u32,
    /// For --for cli: a user who may read but not change the cluster.
    #[arg(long)]
    pub read_only: bool,
    /// Replace an existing certificate of that name.
    #[arg(long)]
    pub force: bool,
}

/// Runs a `cert` subcommand.
pub fn run(cmd: CertCmd, out: &mut dyn Write) -> anyhow::Result<()> {
    match cmd {
        CertCmd::Init(a) => init(&a, out),
        CertCmd::Issue(a) => issue_one(&a, out),
        CertCmd::Show { files } => show(&files, out),
    }
}

fn init(a: &InitArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let ca = issue::new_ca(&a.name, a.days)?;
    let (cert, key) = issue::write(&a.dir, "ca", &ca, a.force)?;
    writeln!(out, "CA certificate: {}", cert.display())?;
    writeln!(
        out,
        "CA key:         {} (0600: keep it off the hosts)",
        key.display()
    )?;
    describe(&cert, out)
}

/// The role a holder's certificate carries.
fn role_of(a: &IssueArgs) -> anyhow::Result<Role> {
    match (a.holder, a.read_only) {
        (Holder::Cli, true) => Ok(Role::ReadOnly),
        (Holder::Cli, false) => Ok(Role::Admin),
        (_, true) => anyhow::bail!("--read-only is for --for cli"),
        (Holder::Agent, false) => Ok(Role::Agent),
        (Holder::Coordinator, false) => Ok(Role::Coordinator),
        (Holder::Etcd, false) => Ok(Role::Etcd),
    }
}

fn issue_one(a: &IssueArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    shibafu_overlay::model::validate_name(&a.name).with_context(|| format!("name {:?}", a.name))?;
    let role = role_of(a)?;
    let server = matches!(a.holder, Holder::Coordinator | Holder::Etcd);
    let named = !a.ip.is_empty() || !a.dns.is_empty();
    if named && !server {
        anyhow::bail!("--ip and --dns are for servers (--for coordinator or etcd)");
    }
    // A server is reachable by its name (a DNS label) and whatever --ip and --dns add.
    let own = server.then(|| a.name.clone());
    let sans: Vec<String> = own
        .into_iter()
        .chain(a.ip.iter().map(ToString::to_string))
        .chain(a.dns.iter().cloned())
        .collect();
    let read = |p: &Path| {
        std::fs::read_to_string(p).with_context(|| {
            format!(
                "cannot read {} (make the CA with `shibafu cert init --dir {}`)",
                p.display(),
                a.dir.display()
            )
        })
    };
    let ca_cert = read(&a.dir.join("ca.pem"))?;
    let ca_key = read(&a.dir.join("ca-key.pem"))?;
    let req = Request {
        name: a.name.clone(),
        role,
        sans,
        days: a.days,
    };
    let issued = issue::issue(&ca_cert, &ca_key, &req)?;
    let dir = a.out.as_deref().unwrap_or(&a.dir);
    let (cert, key) = issue::write(dir, &a.name, &issued, a.force)?;
    writeln!(out, "certificate: {}", cert.display())?;
    writeln!(out, "key:         {} (0600)", key.display())?;
    describe(&cert, out)
}

fn show(files: &[PathBuf], out: &mut dyn Write) -> anyhow::Result<()> {
    for f in files {
        describe(f, out)?;
    }
    Ok(())
}

/// One line about the certificate in `path`: name, role and expiry.
fn describe(path: &Path, out: &mut dyn Write) -> anyhow::Result<()> {
    let der = certs(path)?.remove(0);
    let info = CertInfo::from_der(&der).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    writeln!(out, "{}: {}", path.display(), summary(&info, now()))?;
    Ok(())
}

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// `alice (admin), expires 2027-12-02T15:45:50Z (in 364 days)`, with a warning when it is
/// near its end or past it.
pub fn summary(info: &CertInfo, now: i64) -> String {
    let role = info.role.map_or("no role", Role::name);
    let days = info.days_left(now);
    let when = if info.not_after <= now {
        "EXPIRED: issue a new one with `shibafu cert issue`".to_string()
    } else if days < 30 {
        format!("in {days} days: renew it soon with `shibafu cert issue --force`")
    } else {
        format!("in {days} days")
    };
    format!("{} ({role}), expires {} ({when})", info.name, info.expires)
}

#[cfg(test)]
#[path = "cert_tests.rs"]
mod tests;
