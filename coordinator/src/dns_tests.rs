//! The coordinator's DNS over a memory store, asked over UDP: names of every network, NS naming
//! each live coordinator with glue, a coordinator leaving NS when its lease goes, REFUSED out of
//! the cluster zones.

use std::time::{Duration, Instant};

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use shibafu_overlay::api::CreateNetwork;
use shibafu_overlay::model::Endpoint;
use shibafu_overlay::store::lease;
use shibafu_overlay::store::MemoryStore;
use tokio::net::UdpSocket;

use super::*;
use crate::{cluster, member};

async fn ask(server: SocketAddr, qname: &str, qtype: RecordType) -> Message {
    let mut q = Message::query();
    q.add_query(Query::query(Name::from_ascii(qname).expect("name"), qtype));
    let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    sock.send_to(&q.to_vec().expect("encode"), server)
        .await
        .expect("send");
    let mut buf = vec![0u8; 1500];
    let (n, _) = tokio::time::timeout(Duration::from_secs(2), sock.recv_from(&mut buf))
        .await
        .expect("answer in time")
        .expect("recv");
    Message::from_vec(&buf[..n]).expect("parse answer")
}

fn data(records: &[hickory_proto::rr::Record]) -> Vec<String> {
    let mut v: Vec<String> = records.iter().map(|r| r.data.to_string()).collect();
    v.sort();
    v
}

/// Asks until `check` holds of the answer (the watch and the rebuild take a moment).
async fn eventually(
    server: SocketAddr,
    qname: &str,
    qtype: RecordType,
    check: impl Fn(&Message) -> bool,
) -> Message {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let m = ask(server, qname, qtype).await;
        if check(&m) || Instant::now() > deadline {
            return m;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn stopped(mut rx: tokio::sync::watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

#[tokio::test]
async fn answers_the_cluster_with_every_live_coordinator_as_name_server() {
    let mem = MemoryStore::new();
    let store: Arc<dyn Store> = Arc::new(mem.clone());
    let req = CreateNetwork {
        name: "frontend".into(),
        subnet: "172.21.0.0/24".into(),
        ..CreateNetwork::default()
    };
    cluster::create_network(store.as_ref(), &req)
        .await
        .expect("network");
    let web = Endpoint::new(
        "frontend",
        "web",
        "node1",
        "172.21.0.5".parse().expect("ip"),
    );
    let key = shibafu_overlay::model::Object::key(&web).to_string();
    store
        .put(&key, serde_json::to_vec(&web).expect("json"), None)
        .await
        .expect("endpoint");

    let sockets = DnsSockets::bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
    let server = sockets.local_addr().expect("addr");
    let snapshot = Arc::new(ArcSwap::from_pointee(Snapshot::default()));
    let (stop, rx) = tokio::sync::watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(follow(
        store.clone(),
        snapshot.clone(),
        None,
        stopped(rx.clone()),
    ));
    let serving = serve(sockets, super::server(snapshot), stopped(rx.clone()));
    tasks.spawn(async move { serving.await.expect("serve") });
    // c1 is this coordinator, held as the binary holds it; c2 another one with its own lease.
    let c1 = member::record("c1", "http://127.0.0.1:7480".into(), Some(server));
    let owned = member::owned(&c1).expect("owned");
    tasks.spawn(lease::hold(
        store.clone(),
        owned,
        Duration::from_secs(5),
        stopped(rx.clone()),
    ));
    let c2 = member::record(
        "c2",
        "http://127.0.0.2:7480".into(),
        Some("127.0.0.2:53".parse().expect("addr")),
    );
    let c2_lease = lease::register(
        store.clone(),
        5,
        member::owned(&c2).expect("owned"),
        Duration::from_secs(2),
    )
    .await
    .expect("c2 registers");

    let ns = eventually(server, "frontend.local.", RecordType::NS, |m| {
        m.answers.len() == 2
    })
    .await;
    assert_eq!(
        data(&ns.answers),
        ["c1.ns.frontend.local.", "c2.ns.frontend.local."]
    );
    assert_eq!(data(&ns.additionals), ["127.0.0.1", "127.0.0.2"], "glue");
    assert!(ns.metadata.authoritative);

    let a = ask(server, "web.frontend.local.", RecordType::A).await;
    assert_eq!(a.metadata.response_code, ResponseCode::NoError);
    assert_eq!(data(&a.answers), ["172.21.0.5"]);
    let ptr = ask(server, "5.0.21.172.in-addr.arpa.", RecordType::PTR).await;
    assert_eq!(data(&ptr.answers), ["web.frontend.local."]);
    let soa = ask(server, "frontend.local.", RecordType::SOA).await;
    match soa.answers.first().map(|r| &r.data) {
        Some(RData::SOA(s)) => assert_eq!(s.mname.to_string(), "c1.ns.frontend.local."),
        other => panic!("no SOA: {other:?}"),
    }
    let reverse_ns = ask(server, "0.21.172.in-addr.arpa.", RecordType::NS).await;
    assert_eq!(
        data(&reverse_ns.answers),
        [
            "c1.ns.0.21.172.in-addr.arpa.",
            "c2.ns.0.21.172.in-addr.arpa."
        ]
    );

    // c2's lease expires: it leaves NS everywhere.
    assert!(mem.expire_lease(c2_lease));
    let ns = eventually(server, "frontend.local.", RecordType::NS, |m| {
        m.answers.len() == 1
    })
    .await;
    assert_eq!(data(&ns.answers), ["c1.ns.frontend.local."]);

    // Endpoints that come and go are re-projected by the ids their changes name: a new name
    // answers, a removed one is gone with its PTR, the others stay.
    let api = Endpoint::new(
        "frontend",
        "api",
        "node2",
        "172.21.0.6".parse().expect("ip"),
    );
    let api_key = shibafu_overlay::model::Object::key(&api).to_string();
    let json = serde_json::to_vec(&api).expect("json");
    store.put(&api_key, json, None).await.expect("api");
    let a = eventually(server, "api.frontend.local.", RecordType::A, |m| {
        !m.answers.is_empty()
    })
    .await;
    assert_eq!(data(&a.answers), ["172.21.0.6"]);
    assert!(store.delete(&key).await.expect("delete web"));
    let gone = eventually(server, "web.frontend.local.", RecordType::A, |m| {
        m.metadata.response_code == ResponseCode::NXDomain
    })
    .await;
    assert_eq!(gone.metadata.response_code, ResponseCode::NXDomain);
    let ptr = ask(server, "5.0.21.172.in-addr.arpa.", RecordType::PTR).await;
    assert!(ptr.answers.is_empty(), "{ptr:?}");
    let a = ask(server, "api.frontend.local.", RecordType::A).await;
    assert_eq!(data(&a.answers), ["172.21.0.6"]);

    // No open resolver: outside the cluster zones nothing is answered.
    let out = ask(server, "www.example.com.", RecordType::A).await;
    assert_eq!(out.metadata.response_code, ResponseCode::Refused);
    assert!(out.answers.is_empty());

    stop.send(true).expect("stop");
    while let Some(done) = tasks.join_next().await {
        done.expect("task ends cleanly");
    }
    assert!(
        mem.get("/shibafu/v1/coordinators/c1")
            .await
            .expect("get")
            .is_none(),
        "c1 deregistered on stop"
    );
}

#[test]
fn only_changes_that_reach_dns_rebuild() {
    let snapshot = Arc::new(ArcSwap::from_pointee(Snapshot::default()));
    let mut dns = ClusterDns::new(snapshot.clone());
    dns.apply(&ClusterChange::Snapshot {
        kvs: Vec::new(),
        revision: 1,
    });
    dns.publish();
    let first = snapshot.load_full();
    let node = shibafu_overlay::model::Node {
        schema: 1,
        name: "node1".into(),
        underlay: "10.0.0.11".parse().expect("ip"),
        version: "0".into(),
        wg: None,
        started_at: 0,
    };
    let kv = shibafu_overlay::store::KeyValue {
        key: "/shibafu/v1/nodes/node1".into(),
        value: serde_json::to_vec(&node).expect("json"),
        create_revision: 2,
        mod_revision: 2,
        lease: 0,
    };
    dns.apply(&ClusterChange::Events(vec![
        shibafu_overlay::store::WatchEvent::Put(kv),
    ]));
    dns.publish();
    assert!(
        Arc::ptr_eq(&first, &snapshot.load_full()),
        "a node joining leaves DNS alone"
    );
}
