//! Where a shibafu server listens: `http://host:port` (TCP) or `unix:/path` (a unix socket).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use super::client::ClientError;

/// Where a server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `http://host:port`: TCP, the authority as given (`host:port`).
    Http(String),
    /// `unix:/path`: a unix stream socket.
    Unix(PathBuf),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Http(authority) => write!(f, "http://{authority}"),
            Target::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

impl FromStr for Target {
    type Err = ClientError;

    /// Parses `http://host[:port][/]`, `unix:/path` or a bare absolute path (a unix socket).
    fn from_str(s: &str) -> Result<Target, ClientError> {
        let bad = |reason: &str| ClientError::BadAddress {
            given: s.to_string(),
            reason: reason.to_string(),
        };
        if let Some(rest) = s.strip_prefix("http://") {
            let authority = rest.strip_suffix('/').unwrap_or(rest);
            if authority.is_empty()
                || authority.starts_with(':')
                || authority.contains(['/', '?', '#', '@', ' '])
            {
                return Err(bad("use http://HOST:PORT, without a path"));
            }
            let has_port = match authority.rsplit_once(':') {
                Some((host, port)) => !port.contains(']') && !host.is_empty(),
                None => false,
            };
            if has_port {
                Ok(Target::Http(authority.to_string()))
            } else {
                Ok(Target::Http(format!("{authority}:80")))
            }
        } else if s.starts_with("https://") {
            Err(bad("https is not supported yet: use http://HOST:PORT"))
        } else if let Some(path) = s.strip_prefix("unix:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.starts_with('/') {
                Ok(Target::Unix(PathBuf::from(path)))
            } else {
                Err(bad("use unix:/ABSOLUTE/PATH"))
            }
        } else if s.starts_with('/') {
            Ok(Target::Unix(PathBuf::from(s)))
        } else {
            Err(bad("use http://HOST:PORT or unix:/PATH/TO/SOCKET"))
        }
    }
}

impl Target {
    /// Parses a comma-separated list of addresses (`http://a:7480,http://b:7480`), in order;
    /// spaces around each are ignored, an empty entry is refused.
    pub fn parse_list(s: &str) -> Result<Vec<Target>, ClientError> {
        s.split(',')
            .map(|one| match one.trim() {
                "" => Err(ClientError::BadAddress {
                    given: s.to_string(),
                    reason: "an empty entry in the list: separate addresses with single commas"
                        .to_string(),
                }),
                one => one.parse(),
            })
            .collect()
    }
}
