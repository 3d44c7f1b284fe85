//! Helpers of the firewall host tests: networks, containers attached by the real dataplane in a
//! "host" namespace, ping and nft inside namespaces.

use std::collections::BTreeSet;

use shibafu_overlay::firewall::{planned_ports, FirewallSpec};
use shibafu_overlay::model::{Endpoint, Link, MacAddr, Network};
use shibafu_overlay::netlink::{reconcile, NetlinkDataplane, Scope};
use shibafu_overlay::plan::{DesiredHost, HostInputs, LocalContainer, LocalInterface};

use crate::{exec_ok, exec_out, NetnsGuard};

/// A network without IPv6 named `name` (zone `<name>.local`).
pub fn net(name: &str, subnet: &str, vni: u32, internal: bool) -> Network {
    Network {
        internal,
        ..Network::new(name, subnet.parse().expect("subnet"), vni)
    }
}

/// One container per (network, address); returns the endpoint records and attachments. An
/// address `"V4,V6"` gives the container both.
pub fn containers(members: &[(&NetnsGuard, &str, &str)]) -> (Vec<Endpoint>, Vec<LocalContainer>) {
    let mut eps = Vec::new();
    let mut cs = Vec::new();
    for (i, (ns, network, ip)) in members.iter().enumerate() {
        let id = format!("c{i}");
        let (v4, v6) = match ip.split_once(',') {
            Some((v4, v6)) => (v4, Some(v6.parse().expect("ipv6"))),
            None => (*ip, None),
        };
        eps.push(Endpoint {
            ipv6: v6,
            mac: MacAddr([2, 0, 0, 0, 0, i as u8 + 2]),
            ..Endpoint::new(network, &id, "h", v4.parse().expect("ip"))
        });
        cs.push(LocalContainer {
            netns: ns.path(),
            interfaces: vec![LocalInterface {
                network: (*network).into(),
                endpoint_id: id,
                ifname: "eth0".into(),
            }],
        });
    }
    (eps, cs)
}

/// The desired state of single host "h" with `members` attached and the networks named in
/// `policed` governed by policies (their bridges call the inet hooks).
pub fn desired(
    networks: &[Network],
    members: &[(&NetnsGuard, &str, &str)],
    policed: &[&str],
) -> DesiredHost {
    let (endpoints, containers) = containers(members);
    let policed: BTreeSet<String> = policed.iter().map(|n| n.to_string()).collect();
    // As on a host that uses every network (its tests link and police them all).
    let in_use: BTreeSet<String> = networks.iter().map(|n| n.name.clone()).collect();
    DesiredHost::build(&HostInputs {
        node: "h",
        underlay: None,
        underlay_mtu: 1500,
        networks,
        nodes: &[],
        endpoints: &endpoints,
        containers: &containers,
        policed: &policed,
        in_use: &in_use,
        tunnel: None,
        encrypt_all: false,
    })
    .expect("desired")
}

/// The firewall of a host with `networks`, `links` and the containers `members` (their ports
/// in the source guard as [`build`] makes them: it drops container ports it does not list),
/// masquerading out of `uplink` when given.
pub fn spec(
    networks: &[Network],
    links: &[Link],
    uplink: Option<&str>,
    members: &[(&NetnsGuard, &str, &str)],
) -> FirewallSpec {
    FirewallSpec {
        ports: planned_ports(&desired(networks, members, &[])),
        ..FirewallSpec::from_model(networks, links, uplink).expect("spec")
    }
}

/// Builds the networks and containers in `host` with the dataplane.
pub async fn build(host: &NetnsGuard, networks: &[Network], members: &[(&NetnsGuard, &str, &str)]) {
    build_policed(host, networks, members, &[]).await;
}

/// [`build`], the networks named in `policed` governed by policies.
pub async fn build_policed(
    host: &NetnsGuard,
    networks: &[Network],
    members: &[(&NetnsGuard, &str, &str)],
    policed: &[&str],
) {
    let d = desired(networks, members, policed);
    let (_, report) = reconcile(&NetlinkDataplane::in_netns(host.path()), &d, &Scope::All)
        .await
        .expect("reconcile");
    assert!(report.is_ok(), "{:#?}", report.errors);
}

/// One ping with a 1 s timeout.
pub fn ping(from: &NetnsGuard, to: &str) -> bool {
    exec_out(from.cmd("ping").args(["-c", "1", "-W", "1", "-q", to]))
        .status
        .success()
}

/// Runs `nft ARGS` in `host`; panics with its output on failure.
pub fn nft(host: &NetnsGuard, args: &[&str]) -> String {
    exec_ok(host.cmd("nft").args(args))
}

/// The host's uplink to an "outside" namespace: `up0` 203.0.113.1/24 in `host`, `eth0`
/// 203.0.113.2/24 in `outside`.
pub fn uplink(host: &NetnsGuard, outside: &NetnsGuard) {
    host.ip(&[
        "link",
        "add",
        "up0",
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        outside.name(),
    ]);
    host.ip(&["addr", "add", "203.0.113.1/24", "dev", "up0"]);
    host.ip(&["link", "set", "up0", "up"]);
    outside.ip(&["addr", "add", "203.0.113.2/24", "dev", "eth0"]);
    outside.ip(&["link", "set", "eth0", "up"]);
}
