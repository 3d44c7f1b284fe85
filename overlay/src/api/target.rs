//! Where a shibafu server listens: `http://host:port` (TCP), `https://host:port` (TCP with TLS)
//! or `unix:/path` (a unix socket).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use super::client::ClientError;

/// Where a server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `http://host:port`: TCP, the authority as given (`host:port`).
    Http(String),
    /// `https://host:port`: TCP with TLS, the authority as given (`host:port`).
    Https(String),
    /// `unix:/path`: a unix stream socket.
    Unix(PathBuf),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Http(authority) => write!(f, "http://{authority}"),
            Target::Https(authority) => write!(f, "https://{authority}"),
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
            Ok(Target::Http(
                authority(rest, 80).map_err(|r| bad(&format!("use http://{r}")))?,
            ))
        } else if let Some(rest) = s.strip_prefix("https://") {
            Ok(Target::Https(
                authority(rest, 443).map_err(|r| bad(&format!("use https://{r}")))?,
            ))
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
            Err(bad(
                "use http://HOST:PORT, https://HOST:PORT or unix:/PATH/TO/SOCKET",
            ))
        }
    }
}

/// `host[:port][/]` checked, with `default_port` added when none is given; the error is the
/// form to use.
fn authority(rest: &str, default_port: u16) -> Result<String, &'static str> {
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.is_empty()
        || authority.starts_with(':')
        || authority.contains(['/', '?', '#', '@', ' '])
    {
        return Err("HOST:PORT, without a path");
    }
    let has_port = match authority.rsplit_once(':') {
        Some((host, port)) => !port.contains(']') && !host.is_empty(),
        None => false,
    };
    if has_port {
        Ok(authority.to_string())
    } else {
        Ok(format!("{authority}:{default_port}"))
    }
}

impl Target {
    /// The host of a TCP target, without port or IPv6 brackets (`None` for a unix socket).
    pub fn host(&self) -> Option<&str> {
        let authority = match self {
            Target::Http(a) | Target::Https(a) => a.as_str(),
            Target::Unix(_) => return None,
        };
        let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
        Some(host.trim_start_matches('[').trim_end_matches(']'))
    }

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
