//! Tests of the DNS projection, on answer bytes.

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::RecordType;

use super::*;
use crate::dns::answer::{respond, AnswerConfig, Outcome, Transport};
use crate::store::keys::Key;
use crate::store::{ClusterChange, KeyValue};

fn network(name: &str, subnet: &str) -> Network {
    let subnet: ipnet::Ipv4Net = subnet.parse().expect("subnet");
    // A VNI of its own, from the subnet's second and third octets.
    let [_, b, c, _] = subnet.network().octets();
    Network::new(name, subnet, 4096 + u32::from(b) * 256 + u32::from(c))
}

fn endpoint(net: &str, name: &str, ip: &str, service: Option<&str>) -> Endpoint {
    Endpoint {
        aliases: vec![format!("{name}-alias")],
        service: service.map(str::to_string),
        port: service.map(|_| 8080),
        ..Endpoint::new(net, name, "node1", ip.parse().expect("ip"))
    }
}

fn state_of(nets: &[Network], eps: &[Endpoint]) -> ClusterState {
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
    for n in nets {
        push(
            Key::Network(n.name.clone()),
            serde_json::to_vec(n).expect("json"),
        );
    }
    for e in eps {
        push(
            Key::Endpoint {
                network: e.network.clone(),
                id: e.id.clone(),
            },
            serde_json::to_vec(e).expect("json"),
        );
    }
    let mut st = ClusterState::new();
    let revision = kvs.len() as i64 + 1;
    st.apply(&ClusterChange::Snapshot { kvs, revision });
    st
}

fn nets() -> Vec<Network> {
    vec![
        network("backend", "172.22.0.0/24"),
        network("frontend", "172.21.0.0/24"),
    ]
}

fn eps() -> Vec<Endpoint> {
    vec![
        endpoint("backend", "postgres", "172.22.0.5", None),
        endpoint("backend", "api", "172.22.0.6", None),
        endpoint("frontend", "api", "172.21.0.6", None),
        endpoint("frontend", "web1", "172.21.0.11", Some("web")),
        endpoint("frontend", "web2", "172.21.0.12", Some("web")),
        endpoint("frontend", "client", "172.21.0.20", None),
    ]
}

fn from_state(state: &ClusterState) -> Vec<NetworkZones> {
    state
        .networks()
        .values()
        .map(|n| {
            let eps: Vec<&Endpoint> = state.endpoints_of(&n.name).collect();
            project_network(n, &eps, &Balancing::default())
        })
        .collect()
}

fn snapshot(view: View) -> Snapshot {
    let state = state_of(&nets(), &eps());
    assemble(&from_state(&state), view).expect("build")
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

#[test]
fn members_see_only_their_networks() {
    let snap = snapshot(View::Members);
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
fn the_cluster_view_shows_every_zone_to_everyone() {
    let snap = snapshot(View::Cluster);
    let m = ask(
        &snap,
        "172.21.0.20",
        "postgres.backend.local.",
        RecordType::A,
    );
    assert_eq!(addrs(&m), ["172.22.0.5"]);
    let m = ask(&snap, "10.9.9.9", "web1.frontend.local.", RecordType::A);
    assert_eq!(addrs(&m), ["172.21.0.11"]);
}

#[test]
fn ptr_and_services() {
    let snap = snapshot(View::Members);
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
fn balancing_decides_instances_and_their_order() {
    let state = state_of(&nets(), &eps());
    let healthy = |e: &Endpoint| e.name != "web2";
    let order = |_: &Network, _: &str| AnswerOrder::Fixed;
    let balancing = Balancing {
        healthy: &healthy,
        order: &order,
    };
    let mut p = Projection::new();
    p.update(
        &state,
        None,
        &|n| state.endpoints_of(&n.name).collect(),
        &balancing,
    );
    let snap = p.snapshot(View::Members).expect("build");
    for _ in 0..3 {
        let m = ask(&snap, "172.21.0.20", "web.frontend.local.", RecordType::A);
        assert_eq!(addrs(&m), ["172.21.0.11"], "unhealthy web2 is left out");
    }
    let m = ask(&snap, "172.21.0.20", "web2.frontend.local.", RecordType::A);
    assert_eq!(addrs(&m), ["172.21.0.12"], "its own name still answers");
}

#[test]
fn an_update_re_projects_only_the_networks_it_names() {
    let state = state_of(&nets(), &eps());
    let mut p = Projection::new();
    p.update(
        &state,
        None,
        &|n| state.endpoints_of(&n.name).collect(),
        &Balancing::default(),
    );
    let mut more = eps();
    more.push(endpoint("backend", "cache", "172.22.0.7", None));
    more.push(endpoint("frontend", "web3", "172.21.0.13", None));
    let next = state_of(&nets(), &more);
    let touched = BTreeSet::from(["frontend".to_string()]);
    p.update(
        &next,
        Some(&touched),
        &|n| next.endpoints_of(&n.name).collect(),
        &Balancing::default(),
    );
    let snap = p.snapshot(View::Cluster).expect("build");
    let m = ask(&snap, "10.0.0.1", "web3.frontend.local.", RecordType::A);
    assert_eq!(addrs(&m), ["172.21.0.13"]);
    let m = ask(&snap, "10.0.0.1", "cache.backend.local.", RecordType::A);
    assert_eq!(
        m.metadata.response_code,
        ResponseCode::NXDomain,
        "backend was not named, so it was not re-projected"
    );
    let gone = state_of(&nets()[1..], &more);
    p.update(
        &gone,
        Some(&BTreeSet::new()),
        &|n| gone.endpoints_of(&n.name).collect(),
        &Balancing::default(),
    );
    let snap = p.snapshot(View::Cluster).expect("build");
    assert_eq!(
        snap.zones().filter(|z| z.contains("backend")).count(),
        0,
        "removed networks go"
    );
}

#[test]
fn networks_the_model_does_not_admit_are_left_out_and_break_nothing() {
    let mut bad_zone = network("zbad", "172.29.0.0/24");
    bad_zone.zone = "bad..zone".into();
    let inside = network("zlap", "172.21.0.128/25");
    let mut all = nets();
    all.extend([bad_zone, inside]);
    let mut more = eps();
    more.push(endpoint("zlap", "ghost", "172.21.0.130", None));
    let state = state_of(&all, &more);
    let mut p = Projection::new();
    p.update(
        &state,
        None,
        &|n| state.endpoints_of(&n.name).collect(),
        &Balancing::default(),
    );
    let snap = p
        .snapshot(View::Members)
        .expect("the good networks still build");
    let m = ask(&snap, "172.21.0.20", "web1.frontend.local.", RecordType::A);
    assert_eq!(addrs(&m), ["172.21.0.11"]);
    assert!(
        snap.zones().all(|z| z != "zlap.local"),
        "a clashing network is served"
    );
}
