//! The `--health-*` flags shared by `service create|update` and `run`, and the parsing of their
//! values (ports, PORT/PATH, durations with ms/s/m).

use clap::Args;
use shibafu_overlay::model::{HealthSpec, Probe};

/// Flags describing a health check; all optional.
#[derive(Debug, Clone, Default, Args)]
pub struct HealthArgs {
    /// Health check: a TCP connect to PORT of the instance.
    #[arg(long, value_name = "PORT", value_parser = parse_port, group = "probe")]
    pub health_tcp: Option<u16>,
    /// Health check: HTTP GET of PORT/PATH on the instance; 2xx and 3xx are healthy.
    #[arg(long, value_name = "PORT/PATH", value_parser = parse_http, group = "probe")]
    pub health_http: Option<(u16, String)>,
    /// Health check: a command run inside the container (split on blanks); exit 0 is healthy.
    #[arg(long, value_name = "CMD ARGS", group = "probe")]
    pub health_cmd: Option<String>,
    /// Time between checks [default: 1s; 100ms at least].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub health_interval: Option<u64>,
    /// Time a check may take [default: 500ms, at most the interval].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub health_timeout: Option<u64>,
    /// Consecutive successes that make an instance healthy [default: 2].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub health_rise: Option<u32>,
    /// Consecutive failures that make it unhealthy [default: 2].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub health_fall: Option<u32>,
    /// Time after the start during which failures do not count [default: 0s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub health_start_period: Option<u64>,
}

impl HealthArgs {
    /// The check these flags describe (empty when none is given).
    pub fn spec(&self) -> HealthSpec {
        let probe = if let Some(port) = self.health_tcp {
            Some(Probe::Tcp { port })
        } else if let Some((port, path)) = &self.health_http {
            Some(Probe::Http {
                port: *port,
                path: path.clone(),
            })
        } else {
            self.health_cmd.as_ref().map(|c| Probe::Cmd {
                argv: c.split_whitespace().map(str::to_string).collect(),
            })
        };
        HealthSpec {
            probe,
            interval_ms: self.health_interval,
            timeout_ms: self.health_timeout,
            rise: self.health_rise,
            fall: self.health_fall,
            start_period_ms: self.health_start_period,
        }
    }
}

/// A port, 1-65535.
pub fn parse_port(s: &str) -> Result<u16, String> {
    match s.parse::<u32>() {
        Ok(p @ 1..=65535) => Ok(p as u16),
        Ok(p) => Err(format!("port {p} is out of range: use 1-65535")),
        Err(_) => Err(format!("{s:?} is not a port number (1-65535)")),
    }
}

/// `PORT/PATH` of an HTTP check; the path keeps its leading `/`.
pub fn parse_http(s: &str) -> Result<(u16, String), String> {
    let Some((port, path)) = s.split_once('/') else {
        return Err(format!(
            "{s:?}: give PORT/PATH, such as 80/healthz (the path starts after the first '/')"
        ));
    };
    Ok((parse_port(port)?, format!("/{path}")))
}

/// A duration such as `500ms`, `1s` or `2m`, in milliseconds.
pub fn parse_duration(s: &str) -> Result<u64, String> {
    let bad = || format!("invalid duration {s:?}: use a number with ms, s or m (500ms, 1s, 2m)");
    let (number, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1000)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60_000)
    } else {
        return Err(bad());
    };
    let n: u64 = number.parse().map_err(|_| bad())?;
    n.checked_mul(scale).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_parse_or_say_what_is_wrong() {
        assert_eq!(parse_duration("500ms"), Ok(500));
        assert_eq!(parse_duration("1s"), Ok(1000));
        assert_eq!(parse_duration("2m"), Ok(120_000));
        for bad in ["1", "1h", "s", "-1s", "1.5s"] {
            assert!(
                parse_duration(bad).expect_err(bad).contains("ms, s or m"),
                "{bad}"
            );
        }
        assert_eq!(parse_port("80"), Ok(80));
        assert!(parse_port("0").expect_err("0").contains("1-65535"));
        assert!(parse_port("70000").expect_err("big").contains("1-65535"));
        assert_eq!(parse_http("80/healthz"), Ok((80, "/healthz".into())));
        assert_eq!(parse_http("8080/"), Ok((8080, "/".into())));
        assert!(parse_http("80").expect_err("no path").contains("PORT/PATH"));
    }
}
