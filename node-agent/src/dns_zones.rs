//! The cluster's DNS data as one snapshot (pure): a zone per network with its containers,
//! aliases and services, reverse zones with PTR records, and per-requester views so a container
//! sees only the zones of the networks it is attached to.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use hickory_proto::rr::rdata::{A, AAAA, PTR, SRV};
use hickory_proto::rr::{Name, RData};
use ipnet::{Ipv4Net, Ipv6Net};
use shibafu_overlay::dns::{reverse_name, AnswerOrder, DnsError, Snapshot, SnapshotBuilder};
use shibafu_overlay::model::{Endpoint, Network};
use shibafu_overlay::state::ClusterState;

/// TTL of container and service records: short, since containers come and go.
pub const RECORD_TTL: u32 = 5;

/// The reverse zone holding the PTR records of an IPv4 subnet (enclosing octet boundary).
pub fn reverse_zone_v4(net: &Ipv4Net) -> String {
    let octets = usize::from(net.prefix_len() / 8);
    let o = net.network().octets();
    let mut labels: Vec<String> = o[..octets].iter().rev().map(u8::to_string).collect();
    labels.push("in-addr.arpa".into());
    labels.join(".")
}

/// The reverse zone of an IPv6 subnet (enclosing nibble boundary).
pub fn reverse_zone_v6(net: &Ipv6Net) -> String {
    let nibbles = usize::from(net.prefix_len() / 4);
    let o = net.network().octets();
    let all: Vec<u8> = o.iter().flat_map(|b| [b >> 4, b & 0x0f]).collect();
    let mut labels: Vec<String> = all[..nibbles]
        .iter()
        .rev()
        .map(|n| format!("{n:x}"))
        .collect();
    labels.push("ip6.arpa".into());
    labels.join(".")
}

fn name(s: &str) -> Option<Name> {
    Name::from_ascii(s).ok()
}

fn fqdn(label: &str, zone: &str) -> String {
    format!("{label}.{zone}.")
}

/// The zones (forward and reverse) of one network.
fn zones_of(n: &Network) -> Vec<String> {
    let mut z = vec![n.zone.clone(), reverse_zone_v4(&n.subnet)];
    z.extend(n.subnet6.as_ref().map(reverse_zone_v6));
    z
}

fn add_endpoint(b: &mut SnapshotBuilder, n: &Network, e: &Endpoint) {
    let owner = fqdn(&e.name, &n.zone);
    let Some(target) = name(&owner) else { return };
    for label in std::iter::once(&e.name).chain(&e.aliases) {
        let at = fqdn(label, &n.zone);
        b.record(&at, RECORD_TTL, RData::A(A(e.ipv4)));
        if let Some(v6) = e.ipv6 {
            b.record(&at, RECORD_TTL, RData::AAAA(AAAA(v6)));
        }
    }
    b.record(
        &reverse_name(IpAddr::V4(e.ipv4)),
        RECORD_TTL,
        RData::PTR(PTR(target.clone())),
    );
    if let Some(v6) = e.ipv6 {
        b.record(
            &reverse_name(IpAddr::V6(v6)),
            RECORD_TTL,
            RData::PTR(PTR(target)),
        );
    }
}

fn add_service(b: &mut SnapshotBuilder, n: &Network, service: &str, members: &[&Endpoint]) {
    let at = fqdn(service, &n.zone);
    for e in members {
        b.record(&at, RECORD_TTL, RData::A(A(e.ipv4)));
        if let Some(v6) = e.ipv6 {
            b.record(&at, RECORD_TTL, RData::AAAA(AAAA(v6)));
        }
        if let (Some(port), Some(target)) = (e.port, name(&fqdn(&e.name, &n.zone))) {
            let weight = u16::try_from(e.weight).unwrap_or(u16::MAX);
            for proto in ["_tcp", "_udp"] {
                let srv = format!("_{service}.{proto}.{}.", n.zone);
                b.record(
                    &srv,
                    RECORD_TTL,
                    RData::SRV(SRV::new(0, weight, port, target.clone())),
                );
            }
        }
    }
    b.order(&at, AnswerOrder::RoundRobin);
}

/// Builds the snapshot of every network in `state`, with this node's (`node`) own endpoints taken
/// from `local` (its book) rather than from the cluster, so they answer before etcd echoes them.
/// Without `local` (the book not known yet, at agent start) every endpoint comes from the cluster.
pub fn build_snapshot(
    state: &ClusterState,
    node: &str,
    local: Option<&[Endpoint]>,
) -> Result<Snapshot, DnsError> {
    let mut b = SnapshotBuilder::new();
    for n in state.networks().values() {
        for z in zones_of(n) {
            b.zone(&z);
        }
    }
    // This node's own endpoints come from its book (`local`), the others' from the cluster.
    let mut by_net: BTreeMap<&str, Vec<&Endpoint>> = BTreeMap::new();
    for n in state.networks().values() {
        let eps = state
            .endpoints_of(&n.name)
            .filter(|e| local.is_none() || e.node != node)
            .chain(
                local
                    .unwrap_or_default()
                    .iter()
                    .filter(|e| e.network == n.name),
            );
        by_net.insert(n.name.as_str(), eps.collect());
    }
    let mut containers: BTreeMap<(&str, &str), BTreeSet<&str>> = BTreeMap::new();
    for n in state.networks().values() {
        let mut services: BTreeMap<&str, Vec<&Endpoint>> = BTreeMap::new();
        for e in &by_net[n.name.as_str()] {
            add_endpoint(&mut b, n, e);
            if let Some(s) = e.service.as_deref() {
                services.entry(s).or_default().push(e);
            }
            containers
                .entry((e.node.as_str(), e.name.as_str()))
                .or_default()
                .insert(n.name.as_str());
        }
        for (s, members) in services {
            add_service(&mut b, n, s, &members);
        }
    }
    // A container sees the zones of every network it is on, asking from any of its addresses.
    for eps in by_net.values() {
        for e in eps {
            let Some(nets) = containers.get(&(e.node.as_str(), e.name.as_str())) else {
                continue;
            };
            let zones: Vec<String> = nets
                .iter()
                .filter_map(|m| state.networks().get(*m))
                .flat_map(zones_of)
                .collect();
            b.view(IpAddr::V4(e.ipv4), &zones);
            if let Some(v6) = e.ipv6 {
                b.view(IpAddr::V6(v6), &zones);
            }
        }
    }
    b.build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reverse_zones_round_to_label_boundaries() {
        assert_eq!(
            reverse_zone_v4(&"172.22.0.0/24".parse().expect("net")),
            "0.22.172.in-addr.arpa"
        );
        assert_eq!(
            reverse_zone_v4(&"10.1.0.0/20".parse().expect("net")),
            "1.10.in-addr.arpa"
        );
        assert_eq!(
            reverse_zone_v6(&"fd00:22::/64".parse().expect("net")),
            "0.0.0.0.0.0.0.0.2.2.0.0.0.0.d.f.ip6.arpa"
        );
    }
}

#[cfg(test)]
mod snapshot_tests {
    use hickory_proto::op::{Message, Query, ResponseCode};
    use hickory_proto::rr::RecordType;
    use shibafu_overlay::dns::answer::{respond, AnswerConfig, Outcome, Transport};
    use shibafu_overlay::store::keys::Key;
    use shibafu_overlay::store::{ClusterChange, KeyValue};

    use super::*;

    fn network(name: &str, subnet: &str) -> Network {
        Network::new(name, subnet.parse().expect("subnet"), 4096)
    }

    fn endpoint(net: &str, name: &str, ip: &str, service: Option<&str>) -> Endpoint {
        Endpoint {
            aliases: vec![format!("{name}-alias")],
            service: service.map(str::to_string),
            port: service.map(|_| 8080),
            ..Endpoint::new(net, name, "node1", ip.parse().expect("ip"))
        }
    }

    fn state() -> ClusterState {
        let mut kvs = Vec::new();
        let mut push = |k: Key, v: Vec<u8>| {
            let rev = kvs.len() as i64 + 2;
            kvs.push(KeyValue {
                key: k.to_string(),
                value: v,
                create_revision: rev,
                mod_revision: rev,
                lease: 0,
            });
        };
        for n in [
            network("backend", "172.22.0.0/24"),
            network("frontend", "172.21.0.0/24"),
        ] {
            push(
                Key::Network(n.name.clone()),
                serde_json::to_vec(&n).expect("json"),
            );
        }
        for e in [
            endpoint("backend", "postgres", "172.22.0.5", None),
            endpoint("backend", "api", "172.22.0.6", None),
            endpoint("frontend", "api", "172.21.0.6", None),
            endpoint("frontend", "web1", "172.21.0.11", Some("web")),
            endpoint("frontend", "web2", "172.21.0.12", Some("web")),
            endpoint("frontend", "client", "172.21.0.20", None),
        ] {
            push(
                Key::Endpoint {
                    network: e.network.clone(),
                    id: e.id.clone(),
                },
                serde_json::to_vec(&e).expect("json"),
            );
        }
        let mut st = ClusterState::new();
        let revision = kvs.len() as i64 + 1;
        st.apply(&ClusterChange::Snapshot { kvs, revision });
        st
    }

    fn ask(snap: &Snapshot, client: &str, qname: &str, qtype: RecordType) -> Message {
        let mut q = Message::query();
        q.add_query(Query::query(Name::from_ascii(qname).expect("name"), qtype));
        let bytes = q.to_vec().expect("encode");
        let mut out = Vec::new();
        let client: IpAddr = client.parse().expect("client");
        match respond(
            snap,
            &bytes,
            client,
            Transport::Udp,
            &AnswerConfig::default(),
            &mut out,
        ) {
            Outcome::Reply(_) => Message::from_vec(&out).expect("parse answer"),
            other => panic!("no reply: {other:?}"),
        }
    }

    fn addrs(m: &Message) -> Vec<String> {
        m.answers.iter().map(|r| r.data.to_string()).collect()
    }

    #[test]
    fn containers_see_only_their_networks() {
        let snap = build_snapshot(&state(), "node2", None).expect("build");
        // api is on both networks: it resolves postgres on backend.
        let m = ask(
            &snap,
            "172.21.0.6",
            "postgres.backend.local.",
            RecordType::A,
        );
        assert_eq!(addrs(&m), ["172.22.0.5"]);
        // client is only on frontend: backend names do not exist for it.
        let m = ask(
            &snap,
            "172.21.0.20",
            "postgres.backend.local.",
            RecordType::A,
        );
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        let m = ask(&snap, "172.21.0.20", "api.frontend.local.", RecordType::A);
        assert_eq!(addrs(&m), ["172.21.0.6"]);
        let m = ask(
            &snap,
            "172.22.0.5",
            "postgres-alias.backend.local.",
            RecordType::A,
        );
        assert_eq!(addrs(&m), ["172.22.0.5"]);
    }

    #[test]
    fn ptr_and_services() {
        let snap = build_snapshot(&state(), "node2", None).expect("build");
        let m = ask(
            &snap,
            "172.22.0.6",
            "5.0.22.172.in-addr.arpa.",
            RecordType::PTR,
        );
        assert_eq!(addrs(&m), ["postgres.backend.local."]);
        let first = addrs(&ask(
            &snap,
            "172.21.0.20",
            "web.frontend.local.",
            RecordType::A,
        ));
        let second = addrs(&ask(
            &snap,
            "172.21.0.20",
            "web.frontend.local.",
            RecordType::A,
        ));
        assert_eq!(first.len(), 2);
        assert_ne!(first[0], second[0], "service answers do not rotate");
        let m = ask(
            &snap,
            "172.21.0.20",
            "_web._tcp.frontend.local.",
            RecordType::SRV,
        );
        assert_eq!(m.answers.len(), 2);
        assert!(
            addrs(&m).iter().all(|s| s.contains("8080")),
            "{:?}",
            addrs(&m)
        );
    }

    #[test]
    fn own_endpoints_come_from_the_book_not_the_cluster() {
        // The cluster still has node1's old api records; node1's book has a new one and no
        // postgres: the book wins for node1's names, before and after etcd catches up.
        let fresh = endpoint("frontend", "fresh", "172.21.0.30", None);
        let snap =
            build_snapshot(&state(), "node1", Some(std::slice::from_ref(&fresh))).expect("build");
        let m = ask(&snap, "172.21.0.30", "fresh.frontend.local.", RecordType::A);
        assert_eq!(addrs(&m), ["172.21.0.30"]);
        let m = ask(&snap, "172.21.0.30", "api.frontend.local.", RecordType::A);
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        // Another node's view of the same cluster keeps node1's records from etcd.
        let snap = build_snapshot(&state(), "node2", Some(&[])).expect("build");
        let m = ask(&snap, "172.21.0.20", "api.frontend.local.", RecordType::A);
        assert_eq!(addrs(&m), ["172.21.0.6"]);
        // Before its book is known (agent start), node1 answers its own names from etcd too.
        let snap = build_snapshot(&state(), "node1", None).expect("build");
        let m = ask(&snap, "172.21.0.20", "api.frontend.local.", RecordType::A);
        assert_eq!(addrs(&m), ["172.21.0.6"]);
    }
}
