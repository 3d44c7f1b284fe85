//! Views (answers scoped by requester address), snapshot validation and atomic swaps.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, RecordType};

use super::query;
use crate::dns::answer::{respond, AnswerConfig, Outcome, Transport};
use crate::dns::{DefaultView, DnsError, Snapshot, SnapshotBuilder};

fn a(ip: &str) -> RData {
    RData::try_from_str(RecordType::A, ip).unwrap()
}

fn two_networks(default: DefaultView) -> Snapshot {
    let mut b = SnapshotBuilder::new();
    b.zone("frontend.local")
        .zone("backend.local")
        .record("web.frontend.local", 5, a("172.21.0.2"))
        .record("postgres.backend.local", 5, a("172.22.0.2"))
        .record("api.backend.local", 5, a("172.22.0.3"))
        .record("api.frontend.local", 5, a("172.21.0.3"))
        .view("172.21.0.2".parse().unwrap(), &["frontend.local"])
        .view("172.22.0.2".parse().unwrap(), &["backend.local"])
        .view("172.21.0.3".parse().unwrap(), &["frontend.local"])
        .view("172.22.0.3".parse().unwrap(), &["backend.local"])
        .default_view(default);
    b.build().unwrap()
}

fn rcode_for(snap: &Snapshot, client: &str, name: &str) -> (ResponseCode, usize) {
    let mut out = Vec::new();
    let client: IpAddr = client.parse().unwrap();
    let q = query(name, RecordType::A).to_vec().unwrap();
    let Outcome::Reply(_) = respond(
        snap,
        &q,
        client,
        Transport::Udp,
        &AnswerConfig::default(),
        &mut out,
    ) else {
        panic!("no reply")
    };
    let r = Message::from_vec(&out).unwrap();
    (r.metadata.response_code, r.answers.len())
}

#[test]
fn a_container_sees_only_the_zones_of_its_networks() {
    let snap = two_networks(DefaultView::AllZones);
    assert_eq!(
        rcode_for(&snap, "172.21.0.2", "api.frontend.local."),
        (ResponseCode::NoError, 1)
    );
    assert_eq!(
        rcode_for(&snap, "172.21.0.2", "postgres.backend.local."),
        (ResponseCode::NXDomain, 0)
    );
    assert_eq!(
        rcode_for(&snap, "172.22.0.3", "postgres.backend.local."),
        (ResponseCode::NoError, 1)
    );
    assert_eq!(
        rcode_for(&snap, "172.22.0.3", "web.frontend.local."),
        (ResponseCode::NXDomain, 0)
    );
    assert_eq!(
        rcode_for(&snap, "::ffff:172.21.0.2", "postgres.backend.local."),
        (ResponseCode::NXDomain, 0)
    );
}

#[test]
fn unknown_requesters_get_the_default_view() {
    let all = two_networks(DefaultView::AllZones);
    assert_eq!(
        rcode_for(&all, "127.0.0.1", "postgres.backend.local."),
        (ResponseCode::NoError, 1)
    );
    let none = two_networks(DefaultView::NoZones);
    assert_eq!(
        rcode_for(&none, "127.0.0.1", "postgres.backend.local."),
        (ResponseCode::NXDomain, 0)
    );
    assert_eq!(
        rcode_for(&none, "127.0.0.1", "nothing.frontend.local."),
        (ResponseCode::NXDomain, 0)
    );
}

#[test]
fn views_add_up_for_a_container_on_two_networks() {
    let mut b = SnapshotBuilder::new();
    b.zone("f.local")
        .zone("b.local")
        .record("x.f.local", 5, a("10.0.0.1"))
        .record("y.b.local", 5, a("10.0.1.1"));
    let ip: IpAddr = "10.0.0.9".parse().unwrap();
    b.view(ip, &["f.local"])
        .view(ip, &["b.local"])
        .default_view(DefaultView::NoZones);
    let snap = b.build().unwrap();
    assert_eq!(
        rcode_for(&snap, "10.0.0.9", "x.f.local.").0,
        ResponseCode::NoError
    );
    assert_eq!(
        rcode_for(&snap, "10.0.0.9", "y.b.local.").0,
        ResponseCode::NoError
    );
}

#[test]
fn bad_snapshots_are_refused_with_the_reason() {
    let mut b = SnapshotBuilder::new();
    b.zone("z.local").record("x.other", 5, a("10.0.0.1"));
    assert!(matches!(b.build(), Err(DnsError::OutsideZones { .. })));
    let mut b = SnapshotBuilder::new();
    let cname = RData::try_from_str(RecordType::CNAME, "y.z.local.").unwrap();
    b.zone("z.local")
        .record("x.z.local", 5, a("10.0.0.1"))
        .record("x.z.local", 5, cname);
    let err = b.build().err().expect("a conflict");
    assert!(
        err.to_string().contains("CNAME cannot stand beside"),
        "{err}"
    );
    let mut b = SnapshotBuilder::new();
    b.zone("z.local")
        .view("10.0.0.1".parse().unwrap(), &["nope.local"]);
    assert!(matches!(b.build(), Err(DnsError::UnknownZone(_))));
    let mut b = SnapshotBuilder::new();
    b.zone("z..local");
    assert!(matches!(b.build(), Err(DnsError::InvalidName { .. })));
}

#[test]
fn given_soa_sets_the_negative_ttl() {
    let mut b = SnapshotBuilder::new();
    let soa = RData::try_from_str(
        RecordType::SOA,
        "ns1.z.local. admin.z.local. 7 3600 600 86400 30",
    )
    .unwrap();
    b.zone("z.local").record("z.local", 20, soa);
    let snap = b.build().unwrap();
    let mut out = Vec::new();
    let q = query("nope.z.local.", RecordType::A).to_vec().unwrap();
    respond(
        &snap,
        &q,
        super::CLIENT,
        Transport::Udp,
        &AnswerConfig::default(),
        &mut out,
    );
    let r = Message::from_vec(&out).unwrap();
    assert_eq!(r.authorities[0].ttl, 20, "min(SOA TTL 20, minimum 30)");
}

#[test]
fn swapping_snapshots_under_load_never_fails_a_query() {
    let handle = Arc::new(ArcSwap::from_pointee(two_networks(DefaultView::AllZones)));
    let stop = Arc::new(AtomicBool::new(false));
    let answered: Arc<[AtomicU64; 2]> = Arc::default();
    let q = query("web.frontend.local.", RecordType::A)
        .to_vec()
        .unwrap();
    let readers: Vec<_> = (0..2)
        .map(|i| {
            let (handle, stop, q) = (handle.clone(), stop.clone(), q.clone());
            let total = Arc::clone(&answered);
            std::thread::spawn(move || {
                let mut out = Vec::new();
                let mut answered = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let snap = handle.load();
                    let r = respond(
                        &snap,
                        &q,
                        super::CLIENT,
                        Transport::Udp,
                        &AnswerConfig::default(),
                        &mut out,
                    );
                    assert!(matches!(r, Outcome::Reply(x) if x.rcode == 0));
                    answered += 1;
                    total[i].fetch_add(1, Ordering::Relaxed);
                }
                answered
            })
        })
        .collect();
    // At least 200 swaps, and on until each reader has answered (bounded: 10 s).
    let started = std::time::Instant::now();
    let mut swaps = 0;
    while swaps < 200 || answered.iter().any(|a| a.load(Ordering::Relaxed) == 0) {
        handle.store(Arc::new(two_networks(DefaultView::AllZones)));
        swaps += 1;
        if started.elapsed() > std::time::Duration::from_secs(10) {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        assert!(
            r.join().unwrap() > 0,
            "each reader answered during the swaps"
        );
    }
}
