//! What the lab's underlay carries, as a capture on its switch shows it: every packet is judged,
//! so clear overlay traffic between nodes that must encrypt is found whatever its protocol
//! (VXLAN, TCP, ICMP), not only the lines tcpdump prints as UDP.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use shibafu_tests::{text, unique_name, Lab};

/// The WireGuard port the agents use unless told otherwise.
pub const WG_PORT: u16 = 51820;

/// A capture on the lab's switch (its underlay), killed on drop.
pub struct Capture {
    child: Child,
    file: std::path::PathBuf,
}

impl Capture {
    /// Starts capturing every packet on every port of the switch.
    pub fn start(lab: &Lab) -> Capture {
        let file = std::env::temp_dir().join(format!("{}.pcap", unique_name("sfwg")));
        let child = Command::new("ip")
            .args(["netns", "exec", &format!("sf-{}-sw", lab.name())])
            .args(["tcpdump", "-i", "any", "-nn", "-U", "--immediate-mode"])
            .args(["-s", "0", "-c", "20000"])
            .arg("-w")
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tcpdump");
        std::thread::sleep(Duration::from_millis(800));
        Capture { child, file }
    }

    /// Stops the capture; (every packet's summary line, the payloads as text).
    pub fn finish(mut self) -> (Vec<String>, String) {
        std::thread::sleep(Duration::from_millis(300));
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        let read = |extra: &[&str]| {
            let out = Command::new("tcpdump")
                .args(["-nn", "-r"])
                .arg(&self.file)
                .args(extra)
                .output()
                .expect("tcpdump -r");
            text(&out.stdout)
        };
        let lines = read(&[]).lines().map(str::to_string).collect();
        (lines, read(&["-A"]))
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.file);
    }
}

/// The lab's hosts on the underlay: each node's address, and the control plane's (etcd,
/// coordinators, the upstream DNS).
pub struct Hosts {
    nodes: BTreeMap<String, IpAddr>,
    control: Vec<IpAddr>,
}

/// One packet's verdict.
#[derive(Debug, PartialEq)]
enum Verdict {
    /// WireGuard's UDP (the port on both ends) between two nodes.
    WireGuard(IpAddr, IpAddr),
    /// Anything else between two nodes.
    BetweenNodes(IpAddr, IpAddr),
    /// ARP, IPv6 link-local ICMP6 (neighbour discovery, MLD) or traffic with the control plane:
    /// none carries a network's packets.
    Control,
    /// Anything else.
    Unknown,
}

impl Hosts {
    /// The hosts of `lab`, from `shibafu-lab status`.
    pub fn of(lab: &Lab) -> Hosts {
        let status = lab.status();
        let names = lab.node_names();
        let mut hosts = Hosts {
            nodes: BTreeMap::new(),
            control: Vec::new(),
        };
        for c in status["components"].as_array().expect("components") {
            let name = c["name"].as_str().expect("name");
            let addr: IpAddr = c["addr"]
                .as_str()
                .and_then(|a| a.parse().ok())
                .expect("addr");
            if names.iter().any(|n| n == name) {
                hosts.nodes.insert(name.to_string(), addr);
            } else {
                hosts.control.push(addr);
            }
        }
        hosts
    }

    fn node(&self, name: &str) -> IpAddr {
        *self
            .nodes
            .get(name)
            .unwrap_or_else(|| panic!("no node {name}"))
    }

    /// The lines of a capture that may carry a network's traffic in clear: between two nodes of
    /// which one is in `encrypted`, every packet that is not WireGuard; and every packet that is
    /// neither between nodes nor control traffic.
    pub fn leaks<'l>(&self, lines: &'l [String], encrypted: &[&str]) -> Vec<&'l str> {
        let must: Vec<IpAddr> = encrypted.iter().map(|n| self.node(n)).collect();
        lines
            .iter()
            .filter(|l| match self.judge(l) {
                Verdict::WireGuard(..) | Verdict::Control => false,
                Verdict::BetweenNodes(a, b) => must.contains(&a) || must.contains(&b),
                Verdict::Unknown => true,
            })
            .map(String::as_str)
            .collect()
    }

    /// How many packets of a capture are WireGuard between nodes `a` and `b`.
    pub fn wireguard_between(&self, lines: &[String], (a, b): (&str, &str)) -> usize {
        let pair = [self.node(a), self.node(b)];
        lines
            .iter()
            .filter(|l| match self.judge(l) {
                Verdict::WireGuard(x, y) => pair.contains(&x) && pair.contains(&y) && x != y,
                _ => false,
            })
            .count()
    }

    /// Judges one line of `tcpdump -nn` (with `-i any`: interface and direction first).
    fn judge(&self, line: &str) -> Verdict {
        if line.contains(" ARP, ") {
            return Verdict::Control;
        }
        if let Some(rest) = line.split_once(" IP6 ").map(|(_, r)| r) {
            let link_local = rest.starts_with("fe80:") || rest.starts_with(":: ");
            return if link_local && rest.contains("ICMP6") {
                Verdict::Control
            } else {
                Verdict::Unknown
            };
        }
        let Some((src, dst, what)) = ipv4_ends(line) else {
            return Verdict::Unknown;
        };
        if self.control.contains(&src.0) || self.control.contains(&dst.0) {
            return Verdict::Control;
        }
        let is_node = |a: &IpAddr| self.nodes.values().any(|n| n == a);
        if !is_node(&src.0) || !is_node(&dst.0) {
            return Verdict::Unknown;
        }
        let wg = Some(WG_PORT);
        if src.1 == wg && dst.1 == wg && what.starts_with("UDP") {
            Verdict::WireGuard(src.0, dst.0)
        } else {
            Verdict::BetweenNodes(src.0, dst.0)
        }
    }
}

/// One end of a packet: address, and port if it has one.
type End = (IpAddr, Option<u16>);

/// An IPv4 line's source and destination, and what follows them.
fn ipv4_ends(line: &str) -> Option<(End, End, &str)> {
    let (_, rest) = line.split_once(" IP ")?;
    let (src, rest) = rest.split_once(" > ")?;
    let (dst, what) = rest.split_once(": ")?;
    Some((end(src)?, end(dst)?, what))
}

/// `a.b.c.d` or `a.b.c.d.port`.
fn end(s: &str) -> Option<End> {
    if let Ok(a) = s.parse() {
        return Some((a, None));
    }
    let (addr, port) = s.rsplit_once('.')?;
    Some((addr.parse().ok()?, Some(port.parse().ok()?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts() -> Hosts {
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        Hosts {
            nodes: [
                ("node1", "10.9.0.11"),
                ("node2", "10.9.0.12"),
                ("node3", "10.9.0.13"),
            ]
            .into_iter()
            .map(|(n, a)| (n.to_string(), ip(a)))
            .collect(),
            control: vec![ip("10.9.0.2"), ip("10.9.0.3")],
        }
    }

    fn lines(ls: &[&str]) -> Vec<String> {
        ls.iter().map(|l| l.to_string()).collect()
    }

    const WG: &str = "12:00:00.1 ifb1  P   IP 10.9.0.11.51820 > 10.9.0.12.51820: UDP, length 148";

    #[test]
    fn wireguard_arp_link_local_icmp6_and_control_traffic_pass() {
        let h = hosts();
        let ok = lines(&[
            WG,
            "12:00:00.2 ifb0  M   ARP, Request who-has 10.9.0.12 tell 10.9.0.11, length 28",
            "12:00:00.3 ifb1  Out IP6 fe80::7899:bff:fe30:f86a > ff02::2: ICMP6, router solicitation, length 16",
            "12:00:00.4 ifb1  P   IP 10.9.0.11.40112 > 10.9.0.2.2379: Flags [P.], seq 1:50, length 49",
            "12:00:00.5 ifb1  P   IP 10.9.0.3.7480 > 10.9.0.12.50000: Flags [.], ack 1, length 0",
        ]);
        assert!(h.leaks(&ok, &["node1", "node2", "node3"]).is_empty());
        assert_eq!(h.wireguard_between(&ok, ("node2", "node1")), 1);
        assert_eq!(h.wireguard_between(&ok, ("node1", "node3")), 0);
    }

    #[test]
    fn clear_overlay_traffic_between_nodes_is_a_leak_whatever_its_protocol() {
        let h = hosts();
        let bad = lines(&[
            "12:00:00.1 ifb1  P   IP 10.9.0.11.39164 > 10.9.0.12.4789: VXLAN, flags [I] (0x08), vni 4097",
            "12:00:00.2 ifb1  P   IP 10.9.0.11.7000 > 10.9.0.12.41000: Flags [P.], seq 1:21, length 20",
            "12:00:00.3 ifb1  P   IP 10.9.0.11 > 10.9.0.12: ICMP echo request, id 1, seq 1, length 64",
            "12:00:00.4 ifb1  P   IP 10.9.0.11.51820 > 10.9.0.12.4789: UDP, length 148",
            "12:00:00.5 ifb1  P   IP 10.9.0.11.51820 > 10.9.0.12.51820: Flags [S], seq 1, length 0",
            "12:00:00.6 ifb1  P   IP 192.0.2.1.53 > 10.9.0.12.53: UDP, length 40",
            "12:00:00.7 ifb1  P   IP6 2001:db8::1 > 2001:db8::2: ICMP6, echo request, length 64",
            "12:00:00.8 ifb1  P   LLDP, length 40",
        ]);
        assert_eq!(h.leaks(&bad, &["node1", "node2", "node3"]).len(), bad.len());
        assert_eq!(h.wireguard_between(&bad, ("node1", "node2")), 0);
    }

    #[test]
    fn clear_traffic_between_nodes_that_do_not_encrypt_is_theirs() {
        let h = hosts();
        let vxlan = |a: &str, b: &str| {
            format!("12:00:00.1 ifb1  P   IP {a}.39164 > {b}.4789: VXLAN, flags [I] (0x08), vni 9")
        };
        let seen = vec![
            vxlan("10.9.0.11", "10.9.0.12"),
            vxlan("10.9.0.13", "10.9.0.11"),
        ];
        assert_eq!(h.leaks(&seen, &["node3"]), [seen[1].as_str()]);
        assert_eq!(h.leaks(&seen, &["node1"]).len(), 2);
    }
}
