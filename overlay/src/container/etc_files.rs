//! Renders the files a container sees as /etc/resolv.conf, /etc/hosts and /etc/hostname.

use std::fmt::Write;
use std::net::IpAddr;

/// One network attachment of a container, as seen from inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// DNS zone of the network.
    pub zone: String,
    /// The network's gateway (also its DNS server).
    pub gateway: IpAddr,
    /// The container's addresses on that network.
    pub addrs: Vec<IpAddr>,
}

/// resolv.conf: the gateways of the container's networks (first network first, at most three,
/// the resolver's limit) and their zones as the search list.
pub fn resolv_conf(attachments: &[Attachment]) -> String {
    let mut out = String::from("# written by shibafu\n");
    for a in attachments.iter().take(3) {
        let _ = writeln!(out, "nameserver {}", a.gateway);
    }
    let zones: Vec<&str> = attachments.iter().map(|a| a.zone.as_str()).collect();
    if !zones.is_empty() {
        let _ = writeln!(out, "search {}", zones.join(" "));
    }
    out.push_str("options ndots:1 timeout:2 attempts:2\n");
    out
}

/// /etc/hosts: loopback names plus the container's own addresses under its names.
pub fn hosts(name: &str, attachments: &[Attachment]) -> String {
    let mut out = String::from(
        "# written by shibafu\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
    );
    for a in attachments {
        for ip in &a.addrs {
            let _ = writeln!(out, "{ip}\t{name}.{} {name}", a.zone);
        }
    }
    out
}

/// /etc/hostname.
pub fn hostname(name: &str) -> String {
    format!("{name}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn att(zone: &str, gw: &str, ip: &str) -> Attachment {
        Attachment {
            zone: zone.into(),
            gateway: gw.parse().expect("gw"),
            addrs: vec![ip.parse().expect("ip")],
        }
    }

    #[test]
    fn resolv_conf_lists_gateways_and_zones_in_order() {
        let r = resolv_conf(&[
            att("backend.local", "172.22.0.1", "172.22.0.5"),
            att("frontend.local", "172.21.0.1", "172.21.0.7"),
        ]);
        assert!(r.contains("nameserver 172.22.0.1\nnameserver 172.21.0.1\n"));
        assert!(r.contains("search backend.local frontend.local\n"));
    }

    #[test]
    fn resolv_conf_caps_nameservers_at_three() {
        let atts: Vec<_> = (1..=4)
            .map(|i| att(&format!("n{i}.local"), &format!("10.{i}.0.1"), "10.0.0.2"))
            .collect();
        assert_eq!(resolv_conf(&atts).matches("nameserver").count(), 3);
    }

    #[test]
    fn hosts_has_own_names() {
        let h = hosts("api", &[att("backend.local", "172.22.0.1", "172.22.0.5")]);
        assert!(h.contains("127.0.0.1\tlocalhost"));
        assert!(h.contains("172.22.0.5\tapi.backend.local api\n"));
        assert_eq!(hostname("api"), "api\n");
    }
}
