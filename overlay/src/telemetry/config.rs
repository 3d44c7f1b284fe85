//! Where and how spans are exported, read from the OpenTelemetry environment variables
//! (`OTEL_EXPORTER_OTLP_*`, `OTEL_SDK_DISABLED`). Pure: the environment is a lookup function.

use std::fmt;
use std::time::Duration;

/// Longest a single export may take when `OTEL_EXPORTER_OTLP_TIMEOUT` does not say: short, so an
/// unreachable collector costs a daemon's export thread little and a CLI's exit at most this.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// The OTLP encoding of an export request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `http/protobuf`: binary protobuf, the default.
    HttpProtobuf,
    /// `http/json`: the protobuf JSON mapping.
    HttpJson,
}

impl Protocol {
    /// The `Content-Type` of a request in this encoding.
    pub fn content_type(self) -> &'static str {
        match self {
            Protocol::HttpProtobuf => "application/x-protobuf",
            Protocol::HttpJson => "application/json",
        }
    }
}

/// An `http://` URL split into what a request needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpTarget {
    /// Host name or address (IPv6 without brackets).
    pub host: String,
    /// TCP port (80 when the URL gives none).
    pub port: u16,
    /// Path with query, starting with `/`.
    pub path: String,
}

impl HttpTarget {
    /// The `Host` header value.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for HttpTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}{}", self.authority(), self.path)
    }
}

/// Everything the exporter needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtlpConfig {
    /// Where spans are posted.
    pub target: HttpTarget,
    /// Their encoding.
    pub protocol: Protocol,
    /// Extra request headers (`OTEL_EXPORTER_OTLP_HEADERS`).
    pub headers: Vec<(String, String)>,
    /// Bound on connecting, sending and reading the answer, each.
    pub timeout: Duration,
}

/// Why the OTLP variables cannot be used (tracing stays off, the command runs on).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A URL that is not `http://host[:port][/path]`.
    #[error("{var}={value:?}: give an http:// URL such as http://10.0.0.1:4318 (https and gRPC are not supported)")]
    Url {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
    },
    /// A protocol other than `http/protobuf` or `http/json`.
    #[error("{var}={value:?}: use http/protobuf or http/json (grpc is not supported)")]
    Protocol {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
    },
}

/// The exporter configuration the environment asks for: `Ok(None)` when no endpoint is set or
/// `OTEL_SDK_DISABLED=true`.
pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Option<OtlpConfig>, ConfigError> {
    let set = |var: &str| get(var).filter(|v| !v.trim().is_empty());
    if set("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
        return Ok(None);
    }
    let target = if let Some(url) = set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
        parse_url("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &url, None)?
    } else if let Some(url) = set("OTEL_EXPORTER_OTLP_ENDPOINT") {
        parse_url("OTEL_EXPORTER_OTLP_ENDPOINT", &url, Some("v1/traces"))?
    } else {
        return Ok(None);
    };
    let protocol = match [
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ]
    .into_iter()
    .find_map(|var| set(var).map(|v| (var, v)))
    {
        None => Protocol::HttpProtobuf,
        Some((_, v)) if v.trim() == "http/protobuf" => Protocol::HttpProtobuf,
        Some((_, v)) if v.trim() == "http/json" => Protocol::HttpJson,
        Some((var, value)) => return Err(ConfigError::Protocol { var, value }),
    };
    let headers = [
        "OTEL_EXPORTER_OTLP_HEADERS",
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
    ]
    .into_iter()
    .filter_map(&set)
    .flat_map(|v| parse_headers(&v))
    .collect();
    let timeout = [
        "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
        "OTEL_EXPORTER_OTLP_TIMEOUT",
    ]
    .into_iter()
    .find_map(|var| set(var)?.trim().parse::<u64>().ok())
    .map_or(DEFAULT_TIMEOUT, Duration::from_millis);
    Ok(Some(OtlpConfig {
        target,
        protocol,
        headers,
        timeout,
    }))
}

/// Splits `http://host[:port][/path]`; `append` is added to the path (the signal path of the
/// generic endpoint).
fn parse_url(
    var: &'static str,
    url: &str,
    append: Option<&str>,
) -> Result<HttpTarget, ConfigError> {
    let bad = || ConfigError::Url {
        var,
        value: url.to_string(),
    };
    let rest = url.trim().strip_prefix("http://").ok_or_else(bad)?;
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or_else(bad)?;
        (host, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() || host.contains(['@', ' ']) {
        return Err(bad());
    }
    let port = match port {
        Some(p) => p.parse().map_err(|_| bad())?,
        None => 80,
    };
    let path = match append {
        Some(tail) => format!("{}/{tail}", path.trim_end_matches('/')),
        None if path.is_empty() => "/".to_string(),
        None => path.to_string(),
    };
    Ok(HttpTarget {
        host: host.to_string(),
        port,
        path,
    })
}

/// `key=value,key2=value2`, as `OTEL_EXPORTER_OTLP_HEADERS` spells it; malformed pairs are left
/// out.
fn parse_headers(text: &str) -> Vec<(String, String)> {
    text.split(',')
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            let (k, v) = (k.trim(), v.trim());
            let clean = |s: &str| !s.is_empty() && !s.contains(['\r', '\n']);
            (clean(k) && !v.contains(['\r', '\n'])).then(|| (k.to_string(), v.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn nothing_is_exported_without_an_endpoint_or_when_disabled() {
        assert_eq!(from_env(env(&[])), Ok(None));
        assert_eq!(
            from_env(env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")])),
            Ok(None)
        );
        let disabled = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://10.0.0.1:4318"),
            ("OTEL_SDK_DISABLED", "true"),
        ];
        assert_eq!(from_env(env(&disabled)), Ok(None));
    }

    #[test]
    fn the_generic_endpoint_gets_the_traces_path_and_the_traces_endpoint_is_used_as_is() {
        let c = from_env(env(&[(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "http://10.0.0.1:4318",
        )]))
        .expect("ok")
        .expect("some");
        assert_eq!(c.target.to_string(), "http://10.0.0.1:4318/v1/traces");
        assert_eq!(c.protocol, Protocol::HttpProtobuf);
        assert_eq!(c.timeout, DEFAULT_TIMEOUT);
        let c = from_env(env(&[(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "http://collector/otlp/",
        )]))
        .expect("ok")
        .expect("some");
        assert_eq!(c.target.to_string(), "http://collector:80/otlp/v1/traces");
        let both = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://10.0.0.1:4318"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://[fd00::1]:9000/x",
            ),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "a=1, b = two ,bad"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "500"),
        ];
        let c = from_env(env(&both)).expect("ok").expect("some");
        assert_eq!(c.target.host, "fd00::1");
        assert_eq!(c.target.to_string(), "http://[fd00::1]:9000/x");
        assert_eq!(c.protocol, Protocol::HttpJson);
        assert_eq!(
            c.headers,
            vec![("a".into(), "1".into()), ("b".into(), "two".into())]
        );
        assert_eq!(c.timeout, Duration::from_millis(500));
    }

    #[test]
    fn unsupported_urls_and_protocols_are_refused_by_name() {
        let https = [("OTEL_EXPORTER_OTLP_ENDPOINT", "https://c:4318")];
        assert!(matches!(
            from_env(env(&https)),
            Err(ConfigError::Url {
                var: "OTEL_EXPORTER_OTLP_ENDPOINT",
                ..
            })
        ));
        let port = [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:99999")];
        assert!(from_env(env(&port)).is_err());
        let grpc = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ];
        let e = from_env(env(&grpc)).expect_err("grpc");
        assert!(
            e.to_string()
                .contains("OTEL_EXPORTER_OTLP_PROTOCOL=\"grpc\""),
            "{e}"
        );
    }
}
