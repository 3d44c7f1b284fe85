//! Reachability probes for the policy tests: what `shibafu-probe check` is asked, and the
//! oracle's answer for the same connection, so a test compares the two for every pair.

use std::collections::BTreeMap;
use std::net::IpAddr;

use shibafu_overlay::model::Endpoint;
use shibafu_overlay::policy::{verdict, Flow, FlowProto, PolicyView, Verdict};

/// The ports every probe server listens on: TCP 80 and 5432, UDP 5353.
pub const SERVE_ARGS: [&str; 7] = ["serve", "--tcp", "80", "--tcp", "5432", "--udp", "5353"];

/// The connections probed towards one address: TCP 80 and 5432, UDP 5353, ICMP echo.
pub const FLOWS: [Flow; 4] = [
    Flow {
        proto: FlowProto::Tcp,
        port: 80,
    },
    Flow {
        proto: FlowProto::Tcp,
        port: 5432,
    },
    Flow {
        proto: FlowProto::Udp,
        port: 5353,
    },
    Flow {
        proto: FlowProto::Icmp,
        port: 0,
    },
];

/// One probe: a connection to `dst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Probe {
    /// Destination address.
    pub dst: IpAddr,
    /// What is opened.
    pub flow: Flow,
}

impl Probe {
    /// The probe's SPEC for `shibafu-probe check`.
    pub fn spec(&self) -> String {
        let host = match self.dst {
            IpAddr::V4(a) => a.to_string(),
            IpAddr::V6(a) => format!("[{a}]"),
        };
        match self.flow.proto {
            FlowProto::Tcp => format!("tcp:{host}:{}", self.flow.port),
            FlowProto::Udp => format!("udp:{host}:{}", self.flow.port),
            FlowProto::Icmp => format!("icmp:{host}"),
        }
    }
}

/// Every probe from `src` to the other endpoints: their IPv4 addresses, and their IPv6 ones
/// when `src` has IPv6 too.
pub fn probes_from(src: &Endpoint, all: &[Endpoint]) -> Vec<Probe> {
    let mut out = Vec::new();
    for d in all.iter().filter(|d| d.name != src.name) {
        let mut addrs = vec![IpAddr::V4(d.ipv4)];
        if let (Some(_), Some(v6)) = (src.ipv6, d.ipv6) {
            addrs.push(IpAddr::V6(v6));
        }
        for dst in addrs {
            out.extend(FLOWS.iter().map(|&flow| Probe { dst, flow }));
        }
    }
    out
}

/// Arguments of `shibafu-probe check` for `probes`.
pub fn check_args(probes: &[Probe]) -> Vec<String> {
    let mut args = vec!["check".to_string(), "--timeout-ms".into(), "900".into()];
    args.extend(probes.iter().map(Probe::spec));
    args
}

/// Reads `shibafu-probe check` output: SPEC -> passed.
pub fn results(stdout: &str) -> BTreeMap<String, bool> {
    stdout
        .lines()
        .filter_map(|l| {
            let (spec, r) = l.rsplit_once(' ')?;
            Some((spec.to_string(), r == "ok"))
        })
        .collect()
}

/// The probes whose observed result differs from the oracle's, as readable lines.
pub fn mismatches(
    view: &PolicyView<'_>,
    src: &Endpoint,
    probes: &[Probe],
    observed: &BTreeMap<String, bool>,
) -> Vec<String> {
    let mut out = Vec::new();
    for p in probes {
        let from = match p.dst {
            IpAddr::V4(_) => IpAddr::V4(src.ipv4),
            IpAddr::V6(_) => src.ipv6.map(IpAddr::V6).unwrap_or(IpAddr::V4(src.ipv4)),
        };
        let want = verdict(view, from, p.dst, p.flow) == Verdict::Allow;
        let spec = p.spec();
        match observed.get(&spec) {
            Some(&got) if got == want => {}
            got => out.push(format!(
                "{} ({from}) -> {spec}: oracle {}, observed {}",
                src.name,
                if want { "passes" } else { "blocked" },
                match got {
                    Some(true) => "passes",
                    Some(false) => "blocked",
                    None => "no answer",
                }
            )),
        }
    }
    out
}
