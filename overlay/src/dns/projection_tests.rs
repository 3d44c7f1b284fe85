//! Tests of the DNS projection, on answer bytes.

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::RecordType;

use super::*;
use crate::dns::answer::{respond, AnswerConfig, Outcome, Transport};
use crate::dns::authority::Authority;
use crate::dns::Snapshot;
use crate::model::{AllUnhealthy, Health, HealthCheck, HealthState, LbPolicy, Probe};
use crate::store::keys::Key;
use crate::store::{ClusterChange, KeyValue};

pub(super) fn network(name: &str, subnet: &str) -> Network {
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

pub(super) fn state_of(nets: &[Network], eps: &[Endpoint]) -> ClusterState {
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
            project_network(n, &eps, state)
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
    let mut seen = BTreeSet::new();
    for _ in 0..4 {
        let got = addrs(&ask(
            &snap,
            "172.21.0.20",
            "web.frontend.local.",
            RecordType::A,
        ));
        assert_eq!(got.len(), 1, "one address per answer: {got:?}");
        seen.extend(got);
    }
    assert_eq!(
        seen.len(),
        2,
        "answers do not go round the instances: {seen:?}"
    );
    // A service named only by its instances gets the defaults: its port named port<N>.
    let m = ask(
        &snap,
        "172.21.0.20",
        "_port8080._tcp.web.frontend.local.",
        RecordType::SRV,
    );
    assert_eq!(m.answers.len(), 2);
    assert!(
        addrs(&m).iter().all(|s| s.starts_with("10 1 8080 web")),
        "{:?}",
        addrs(&m)
    );
    assert_eq!(
        m.additionals.len(),
        2,
        "SRV targets come with their addresses"
    );
}

/// `state` with these objects stored too.
fn with<T: crate::model::Object>(state: &ClusterState, objects: &[T]) -> ClusterState {
    let mut st = state.clone();
    let events = objects
        .iter()
        .map(|o| {
            crate::store::WatchEvent::Put(KeyValue {
                key: o.key().to_string(),
                value: serde_json::to_vec(o).expect("json"),
                create_revision: 99,
                mod_revision: 99,
                lease: 0,
            })
        })
        .collect();
    st.apply(&ClusterChange::Events(events));
    st
}

fn web_service(lb: LbPolicy, all_unhealthy: AllUnhealthy) -> Service {
    Service {
        lb,
        port: Some(80),
        port_name: Some("http".into()),
        all_unhealthy,
        health: Some(HealthCheck::new(Probe::Tcp { port: 80 })),
        ..Service::new("frontend", "web")
    }
}

fn health(name: &str, state: HealthState, connections: u32) -> Health {
    Health {
        schema: crate::model::SCHEMA_VERSION,
        network: "frontend".into(),
        endpoint: name.into(),
        node: "node1".into(),
        state,
        since_ms: 1,
        checked_ms: 1,
        output: String::new(),
        connections: Some(connections),
    }
}

fn snap_of(state: &ClusterState) -> Snapshot {
    let mut p = Projection::new();
    p.update(state, None, &|n| state.endpoints_of(&n.name).collect());
    p.snapshot(View::Members).expect("build")
}

fn web_answers(snap: &Snapshot, n: usize) -> Vec<String> {
    (0..n)
        .flat_map(|_| {
            addrs(&ask(
                snap,
                "172.21.0.20",
                "web.frontend.local.",
                RecordType::A,
            ))
        })
        .collect()
}

#[test]
fn only_healthy_instances_are_answered_and_none_healthy_follows_the_service_rule() {
    let base = state_of(&nets(), &eps());
    let svc = web_service(LbPolicy::RoundRobin, AllUnhealthy::FailClosed);
    let st = with(
        &with(&base, &[svc]),
        &[
            health("web1", HealthState::Healthy, 0),
            health("web2", HealthState::Unhealthy, 0),
        ],
    );
    let snap = snap_of(&st);
    assert!(web_answers(&snap, 4).iter().all(|a| a == "172.21.0.11"));
    let srv = ask(
        &snap,
        "172.21.0.20",
        "_http._tcp.web.frontend.local.",
        RecordType::SRV,
    );
    assert_eq!(addrs(&srv), ["10 1 80 web1.frontend.local."]);
    let m = ask(&snap, "172.21.0.20", "web2.frontend.local.", RecordType::A);
    assert_eq!(addrs(&m), ["172.21.0.12"], "its own name still answers");

    let st = with(&st, &[health("web1", HealthState::Starting, 0)]);
    let snap = snap_of(&st);
    let m = ask(&snap, "172.21.0.20", "web.frontend.local.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty(), "fail-closed answered {:?}", addrs(&m));
    let txt = ask(&snap, "172.21.0.20", "web.frontend.local.", RecordType::TXT);
    assert!(
        addrs(&txt).concat().contains("no healthy instance"),
        "{:?}",
        addrs(&txt)
    );

    let open = web_service(LbPolicy::RoundRobin, AllUnhealthy::FailOpen);
    let snap = snap_of(&with(&st, &[open]));
    let got: BTreeSet<String> = web_answers(&snap, 4).into_iter().collect();
    assert_eq!(got.len(), 2, "fail-open answers every running instance");
    let mut q = Message::query();
    q.add_query(Query::query(
        Name::from_ascii("web.frontend.local.").expect("name"),
        RecordType::A,
    ));
    q.edns = Some(hickory_proto::op::Edns::new());
    let mut out = Vec::new();
    let client: IpAddr = "172.21.0.20".parse().expect("ip");
    let bytes = q.to_vec().expect("encode");
    let cfg = AnswerConfig::default();
    respond(&snap, &bytes, client, Transport::Udp, &cfg, &mut out);
    let m = Message::from_vec(&out).expect("answer");
    assert_eq!(m.answers.len(), 1);
    // The OPT record ends the message: option 15 (extended DNS error), info-code 0, the text.
    let text = b"no healthy instance of web: every running instance answered (fail-open)";
    assert!(out.ends_with(text), "no extended error in {:?}", m.edns);
    let option = &out[out.len() - text.len() - 6..];
    assert_eq!(
        &option[..2],
        &15u16.to_be_bytes(),
        "not an extended DNS error"
    );
    assert_eq!(&option[4..6], &[0, 0], "info-code 0 (Other)");
}

#[test]
fn weights_and_connections_decide_the_share_of_each_instance() {
    let base = state_of(&nets(), &eps());
    let mut eps3 = eps();
    eps3[3].weight = 3;
    let weighted = with(
        &state_of(&nets(), &eps3),
        &[web_service(LbPolicy::Weighted, AllUnhealthy::FailClosed)],
    );
    let st = with(
        &weighted,
        &[
            health("web1", HealthState::Healthy, 0),
            health("web2", HealthState::Healthy, 0),
        ],
    );
    let answers = web_answers(&snap_of(&st), 400);
    let web1 = answers.iter().filter(|a| *a == "172.21.0.11").count();
    assert!(
        (290..=310).contains(&web1),
        "web1 (weight 3 of 4) got {web1} of 400"
    );

    let least = with(
        &base,
        &[web_service(
            LbPolicy::LeastConnections,
            AllUnhealthy::FailClosed,
        )],
    );
    let st = with(
        &least,
        &[
            health("web1", HealthState::Healthy, 5),
            health("web2", HealthState::Healthy, 0),
        ],
    );
    assert!(web_answers(&snap_of(&st), 10)
        .iter()
        .all(|a| a == "172.21.0.12"));
}

#[test]
fn an_update_re_projects_only_the_networks_it_names() {
    let state = state_of(&nets(), &eps());
    let mut p = Projection::new();
    p.update(&state, None, &|n| state.endpoints_of(&n.name).collect());
    let mut more = eps();
    more.push(endpoint("backend", "cache", "172.22.0.7", None));
    more.push(endpoint("frontend", "web3", "172.21.0.13", None));
    let next = state_of(&nets(), &more);
    let touched = BTreeSet::from(["frontend".to_string()]);
    p.update(&next, Some(&touched), &|n| {
        next.endpoints_of(&n.name).collect()
    });
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
    p.update(&gone, Some(&BTreeSet::new()), &|n| {
        gone.endpoints_of(&n.name).collect()
    });
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
    p.update(&state, None, &|n| state.endpoints_of(&n.name).collect());
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

#[test]
fn a_scope_keeps_only_its_networks_and_changes_outside_it_change_nothing() {
    let state = state_of(&nets(), &eps());
    let all = |n: &Network| state.endpoints_of(&n.name).collect();
    let mut p = Projection::new();
    assert!(p.set_scope(Some(BTreeSet::from(["frontend".to_string()]))));
    assert!(
        p.update(&state, None, &all),
        "the scoped network is projected"
    );
    let snap = p.snapshot(View::Cluster).expect("build");
    assert!(snap.zones().any(|z| z.starts_with("frontend.local")));
    assert!(
        snap.zones().any(|z| z.starts_with("backend.local")),
        "a network out of scope keeps its zone"
    );
    let m = ask(&snap, "10.0.0.1", "postgres.backend.local.", RecordType::A);
    assert_eq!(
        m.metadata.response_code,
        ResponseCode::NXDomain,
        "but no record: its names are the cluster's, never forwarded"
    );
    let backend = BTreeSet::from(["backend".to_string()]);
    assert!(
        !p.update(&state, Some(&backend), &all),
        "a change of a network out of scope changes no part"
    );
    assert!(!p.set_scope(Some(BTreeSet::from(["frontend".to_string()]))));
    assert!(p.set_scope(None), "back to every network");
    assert!(
        p.update(&state, Some(&BTreeSet::new()), &all),
        "the others are added"
    );
    let snap = p.snapshot(View::Cluster).expect("build");
    assert!(snap.zones().any(|z| z.starts_with("backend.local")));
}

#[test]
fn the_next_snapshot_patches_the_previous_at_the_names_that_changed() {
    let state = state_of(&nets(), &eps());
    let mut p = Projection::new();
    p.update(&state, None, &|n| state.endpoints_of(&n.name).collect());
    let none = Authority::default();
    let first = p
        .next_snapshot(&Snapshot::default(), View::Members, &none)
        .expect("build");
    assert_eq!(
        first.names_encoded(),
        first.name_count(),
        "the first is whole"
    );
    let mut more = eps();
    more.push(endpoint("frontend", "web3", "172.21.0.13", Some("web")));
    let next = state_of(&nets(), &more);
    let touched = BTreeSet::from(["frontend".to_string()]);
    assert!(p.update(&next, Some(&touched), &|n| next
        .endpoints_of(&n.name)
        .collect()));
    let patched = p
        .next_snapshot(&first, View::Members, &none)
        .expect("patch");
    // web3, its alias, its PTR, the service's name and its SRV owner.
    assert_eq!(patched.names_encoded(), 5, "only what changed is encoded");
    let m = ask(
        &patched,
        "172.21.0.13",
        "web3.frontend.local.",
        RecordType::A,
    );
    assert_eq!(addrs(&m), ["172.21.0.13"]);
    let m = ask(
        &patched,
        "172.21.0.13",
        "web3-alias.frontend.local.",
        RecordType::A,
    );
    assert_eq!(addrs(&m), ["172.21.0.13"]);
    let m = ask(
        &patched,
        "172.21.0.20",
        "13.0.21.172.in-addr.arpa.",
        RecordType::PTR,
    );
    assert_eq!(addrs(&m), ["web3.frontend.local."]);
    let m = ask(
        &patched,
        "172.21.0.13",
        "postgres.backend.local.",
        RecordType::A,
    );
    assert_eq!(
        m.metadata.response_code,
        ResponseCode::NXDomain,
        "the new member's view is the patch's too"
    );
    let whole = p.snapshot(View::Members).expect("whole");
    for (qname, qtype) in [
        ("web.frontend.local.", RecordType::A),
        ("web1.frontend.local.", RecordType::A),
        ("postgres.backend.local.", RecordType::A),
    ] {
        for client in ["172.21.0.13", "172.22.0.5", "10.9.9.9"] {
            let (a, b) = (
                ask(&patched, client, qname, qtype),
                ask(&whole, client, qname, qtype),
            );
            assert_eq!(
                a.metadata.response_code, b.metadata.response_code,
                "{qname} for {client}"
            );
            assert_eq!(a.answers.len(), b.answers.len(), "{qname} for {client}");
        }
    }
    let unchanged = p
        .next_snapshot(&patched, View::Members, &none)
        .expect("patch");
    assert_eq!(
        unchanged.names_encoded(),
        0,
        "nothing changed, nothing encoded"
    );
    let other_view = p
        .next_snapshot(&unchanged, View::Cluster, &none)
        .expect("whole");
    assert_eq!(
        other_view.names_encoded(),
        other_view.name_count(),
        "another view: whole"
    );
    let stranger = p
        .next_snapshot(&first, View::Cluster, &none)
        .expect("whole");
    assert_eq!(
        stranger.names_encoded(),
        stranger.name_count(),
        "not the last one made: whole"
    );
}
