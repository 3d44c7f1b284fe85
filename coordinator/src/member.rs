//! This coordinator as the cluster sees it: its record (`/shibafu/v1/coordinators/<name>`:
//! name, API URL, DNS address), built from the flags and held under a lease of its own.

use std::net::{IpAddr, SocketAddr};

use anyhow::{bail, Context};
use shibafu_overlay::api::Target;
use shibafu_overlay::model::{is_valid_label, CoordinatorRecord, Object, SCHEMA_VERSION};
use shibafu_overlay::store::lease::Owned;

/// Where the host name is read from.
const HOSTNAME_FILE: &str = "/proc/sys/kernel/hostname";

/// The default name: this host's name up to its first dot, lowercased.
pub fn default_name() -> anyhow::Result<String> {
    let host = std::fs::read_to_string(HOSTNAME_FILE)
        .with_context(|| format!("cannot read the host name from {HOSTNAME_FILE}: give --name"))?;
    let first = host.trim().split('.').next().unwrap_or_default();
    Ok(first.to_ascii_lowercase())
}

/// Checks that `name` can name this coordinator in DNS (`<name>.ns.<zone>`).
pub fn check_name(name: &str) -> anyhow::Result<()> {
    if !is_valid_label(name) {
        bail!("invalid coordinator name {name:?}: use a DNS label (1-63 lowercase letters, digits or '-', not starting or ending with '-'); set it with --name");
    }
    Ok(())
}

/// The API URL others should use: `advertise`, else `http(s)://<listen>` when that is an address
/// clients can reach.
pub fn api_url(listen: SocketAddr, advertise: Option<&str>, tls: bool) -> anyhow::Result<String> {
    let scheme = if tls { "https" } else { "http" };
    match advertise {
        Some(url) => {
            match url.parse::<Target>() {
                Ok(Target::Http(_)) if !tls => {}
                Ok(Target::Https(_)) if tls => {}
                Ok(_) => bail!("--advertise {url:?}: use {scheme}://HOST:PORT"),
                Err(e) => bail!("--advertise: {e}"),
            }
            Ok(url.trim_end_matches('/').to_string())
        }
        None if listen.ip().is_unspecified() => bail!(
            "--listen {listen} is no address clients can use: give --advertise {scheme}://HOST:{}",
            listen.port()
        ),
        None => Ok(format!("{scheme}://{listen}")),
    }
}

/// The DNS address others should use: `dns_listen`, its address taken from the host of `api`
/// when it listens on every address (`0.0.0.0`, `::`).
pub fn dns_addr(dns_listen: SocketAddr, api: &str) -> anyhow::Result<SocketAddr> {
    if !dns_listen.ip().is_unspecified() {
        return Ok(dns_listen);
    }
    let target = api.parse::<Target>().ok();
    let host = target.as_ref().and_then(Target::host);
    match host.and_then(|h| h.parse::<IpAddr>().ok()) {
        Some(ip) => Ok(SocketAddr::new(ip, dns_listen.port())),
        None => bail!(
            "--dns-listen {dns_listen} is no address name servers can be given as: listen on a specific address, or --advertise an IP address"
        ),
    }
}

/// The record of coordinator `name`.
pub fn record(name: &str, api: String, dns: Option<SocketAddr>) -> CoordinatorRecord {
    CoordinatorRecord {
        schema: SCHEMA_VERSION,
        name: name.to_string(),
        api,
        dns,
    }
}

/// The record as the one key this coordinator holds under its lease.
pub fn owned(record: &CoordinatorRecord) -> anyhow::Result<Owned> {
    let value = serde_json::to_vec(record).context("cannot encode the coordinator record")?;
    Ok([(record.key().to_string(), value)].into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("addr")
    }

    #[test]
    fn names_must_be_labels() {
        assert!(check_name("coordinator1").is_ok());
        for bad in ["", "Coord", "a.b", "-a", &"x".repeat(64)] {
            let e = check_name(bad).expect_err(bad).to_string();
            assert!(e.contains("--name"), "{e}");
        }
        let host = default_name().expect("host name");
        assert!(
            !host.contains('.') && host == host.to_ascii_lowercase(),
            "{host}"
        );
    }

    #[test]
    fn api_url_from_listen_or_advertise() {
        let api = |l: &str, a: Option<&str>| api_url(addr(l), a, false);
        assert_eq!(
            api("10.0.0.2:7480", None).expect("url"),
            "http://10.0.0.2:7480"
        );
        assert_eq!(
            api("0.0.0.0:7480", Some("http://c1.example:7480/")).expect("url"),
            "http://c1.example:7480"
        );
        let e = api("0.0.0.0:7480", None)
            .expect_err("unspecified")
            .to_string();
        assert!(e.contains("--advertise http://HOST:7480"), "{e}");
        assert!(api("0.0.0.0:7480", Some("unix:/x.sock")).is_err());
        assert!(api("0.0.0.0:7480", Some("10.0.0.2:7480")).is_err());
        let tls = |l: &str, a: Option<&str>| api_url(addr(l), a, true);
        assert_eq!(
            tls("10.0.0.2:7480", None).expect("url"),
            "https://10.0.0.2:7480"
        );
        let e = tls("0.0.0.0:7480", Some("http://c1:7480"))
            .expect_err("plain advertised with TLS")
            .to_string();
        assert!(e.contains("use https://HOST:PORT"), "{e}");
        assert!(api("0.0.0.0:7480", Some("https://c1:7480")).is_err());
    }

    #[test]
    fn dns_addr_from_listen_or_the_api_host() {
        let api = "http://10.0.0.2:7480";
        assert_eq!(
            dns_addr(addr("10.0.0.3:53"), api).expect("dns"),
            addr("10.0.0.3:53")
        );
        assert_eq!(
            dns_addr(addr("0.0.0.0:53"), api).expect("dns"),
            addr("10.0.0.2:53")
        );
        assert_eq!(
            dns_addr(addr("[::]:5353"), "http://[fd00::2]:7480").expect("dns"),
            addr("[fd00::2]:5353")
        );
        assert!(dns_addr(addr("0.0.0.0:53"), "http://c1.example:7480").is_err());
        assert_eq!(
            dns_addr(addr("0.0.0.0:53"), "https://10.0.0.4:7480").expect("dns"),
            addr("10.0.0.4:53")
        );
    }

    #[test]
    fn the_record_is_its_own_key() {
        let r = record(
            "c1",
            "http://10.0.0.2:7480".into(),
            Some(addr("10.0.0.2:53")),
        );
        let owned = owned(&r).expect("owned");
        let (key, value) = owned.iter().next().expect("one key");
        assert_eq!(key, "/shibafu/v1/coordinators/c1");
        let back: CoordinatorRecord = shibafu_overlay::model::decode(key, value).expect("decodes");
        assert_eq!(back, r);
    }
}
