//! CNAME chains across zones under views: the view applies at every link of the chain, and a
//! chain into a hidden zone ends after the last visible CNAME, as if that zone were not ours.

use std::net::IpAddr;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, Record, RecordType};

use super::{datas, query, with_edns};
use crate::dns::answer::{respond, AnswerConfig, Outcome, Transport};
use crate::dns::{AnswerOrder, Snapshot, SnapshotBuilder};

/// Sees front.local and mid.local, not back.local.
const FRONT_MID: &str = "10.0.0.1";
/// Sees front.local only.
const FRONT: &str = "10.0.0.2";
/// Has no view: sees every zone (the default view).
const ANYONE: &str = "127.0.0.1";

fn rd(ty: RecordType, s: &str) -> RData {
    RData::try_from_str(ty, s).unwrap()
}

fn three_zones(views: bool) -> Snapshot {
    let cname = |s: &str| rd(RecordType::CNAME, s);
    let mut b = SnapshotBuilder::new();
    b.zone("front.local").zone("mid.local").zone("back.local");
    b.record("web.front.local", 5, rd(RecordType::A, "10.1.0.1"))
        .record("to-web.front.local", 5, cname("web.front.local."))
        .record("to-api.front.local", 5, cname("api.mid.local."))
        .record("to-db.front.local", 5, cname("db.back.local."))
        .record("hop.front.local", 5, cname("hop.mid.local."))
        .record("hop.mid.local", 5, cname("db.back.local."))
        .record("to-gone.front.local", 5, cname("gone.mid.local."))
        .record("to-pool.front.local", 5, cname("pool.mid.local."))
        .record("api.mid.local", 5, rd(RecordType::A, "10.2.0.1"))
        .record("db.back.local", 5, rd(RecordType::A, "10.3.0.1"))
        .record("db.back.local", 5, rd(RecordType::AAAA, "fd00:3::1"))
        .record("db.back.local", 5, rd(RecordType::TXT, "secret"));
    for i in 1..=3 {
        b.record(
            "pool.mid.local",
            5,
            rd(RecordType::A, &format!("10.2.1.{i}")),
        );
    }
    b.order("pool.mid.local", AnswerOrder::RoundRobin);
    if views {
        b.view(FRONT_MID.parse().unwrap(), &["front.local", "mid.local"])
            .view(FRONT.parse().unwrap(), &["front.local"]);
    }
    b.build().unwrap()
}

/// Answers `m` for `client` over UDP, forwarding on (a hidden target must not be forwarded);
/// returns the raw response too.
fn ask_from(snap: &Snapshot, client: &str, m: &Message) -> (Message, Vec<u8>) {
    let client: IpAddr = client.parse().unwrap();
    let cfg = AnswerConfig {
        forwarding: true,
        ..AnswerConfig::default()
    };
    let mut out = Vec::new();
    let packet = m.to_vec().unwrap();
    match respond(snap, &packet, client, Transport::Udp, &cfg, &mut out) {
        Outcome::Reply(_) => (Message::from_vec(&out).unwrap(), out),
        other => panic!("expected an authoritative reply, got {other:?}"),
    }
}

fn ask_for(snap: &Snapshot, client: &str, name: &str, ty: RecordType) -> Message {
    ask_from(snap, client, &query(name, ty)).0
}

fn owners(records: &[Record]) -> Vec<String> {
    records.iter().map(|r| r.name.to_string()).collect()
}

/// Nothing of back.local may show: only CNAMEs, no SOA, no additional records, and not even its
/// addresses anywhere in the bytes.
fn assert_no_leak(r: &Message, raw: &[u8]) {
    assert!(
        r.answers
            .iter()
            .all(|a| a.record_type() == RecordType::CNAME),
        "{r:?}"
    );
    assert!(r.authorities.is_empty(), "{r:?}");
    assert!(
        r.additionals
            .iter()
            .all(|a| a.record_type() == RecordType::OPT),
        "{r:?}"
    );
    assert!(
        !raw.windows(4).any(|w| w == [10, 3, 0, 1]),
        "address in {raw:?}"
    );
    assert!(
        !raw.windows(4).any(|w| w == [0xfd, 0, 0, 3]),
        "address in {raw:?}"
    );
}

#[test]
fn a_chain_into_another_visible_zone_is_followed_to_the_address() {
    let snap = three_zones(true);
    let r = ask_for(&snap, FRONT_MID, "to-api.front.local.", RecordType::A);
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert_eq!(datas(&r.answers), ["api.mid.local.", "10.2.0.1"]);
    let r = ask_for(&snap, FRONT, "to-web.front.local.", RecordType::A);
    assert_eq!(datas(&r.answers), ["web.front.local.", "10.1.0.1"]);
}

#[test]
fn a_chain_into_a_hidden_zone_ends_at_the_cname_without_leaking() {
    let snap = three_zones(true);
    for ty in [
        RecordType::A,
        RecordType::AAAA,
        RecordType::TXT,
        RecordType::MX,
    ] {
        let (r, raw) = ask_from(&snap, FRONT_MID, &query("to-db.front.local.", ty));
        assert_eq!(r.metadata.response_code, ResponseCode::NoError, "{ty}");
        assert!(r.metadata.authoritative, "{ty}");
        assert_eq!(datas(&r.answers), ["db.back.local."], "{ty}");
        assert_no_leak(&r, &raw);
    }
}

#[test]
fn a_chain_stops_at_the_first_hidden_zone_after_visible_links() {
    let snap = three_zones(true);
    let (r, raw) = ask_from(
        &snap,
        FRONT_MID,
        &with_edns(query("hop.front.local.", RecordType::A), 1232, 0),
    );
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert_eq!(owners(&r.answers), ["hop.front.local.", "hop.mid.local."]);
    assert_eq!(datas(&r.answers), ["hop.mid.local.", "db.back.local."]);
    assert_no_leak(&r, &raw);
    let (r, raw) = ask_from(&snap, FRONT, &query("hop.front.local.", RecordType::A));
    assert_eq!(
        datas(&r.answers),
        ["hop.mid.local."],
        "mid.local is hidden too"
    );
    assert_no_leak(&r, &raw);
}

#[test]
fn requesters_that_see_every_zone_get_the_whole_chain() {
    for (snap, client) in [(three_zones(true), ANYONE), (three_zones(false), FRONT)] {
        let r = ask_for(&snap, client, "hop.front.local.", RecordType::A);
        assert_eq!(
            datas(&r.answers),
            ["hop.mid.local.", "db.back.local.", "10.3.0.1"]
        );
        let r = ask_for(&snap, client, "to-db.front.local.", RecordType::TXT);
        assert_eq!(datas(&r.answers), ["db.back.local.", "secret"]);
    }
}

#[test]
fn negative_answers_at_the_end_of_a_visible_chain_carry_the_target_zones_soa() {
    let snap = three_zones(true);
    let r = ask_for(&snap, FRONT_MID, "to-api.front.local.", RecordType::AAAA);
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert_eq!(datas(&r.answers), ["api.mid.local."]);
    assert_eq!(
        owners(&r.authorities),
        ["mid.local."],
        "NODATA with the SOA"
    );
    assert_eq!(r.authorities[0].record_type(), RecordType::SOA);
    let r = ask_for(&snap, FRONT_MID, "to-gone.front.local.", RecordType::A);
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(datas(&r.answers), ["gone.mid.local."]);
    assert_eq!(owners(&r.authorities), ["mid.local."]);
    let r = ask_for(&snap, FRONT, "to-gone.front.local.", RecordType::A);
    assert_eq!(
        r.metadata.response_code,
        ResponseCode::NoError,
        "hidden: no NXDOMAIN"
    );
    assert_eq!(datas(&r.answers), ["gone.mid.local."]);
    assert!(r.authorities.is_empty());
}

#[test]
fn the_question_is_echoed_as_asked_in_a_cut_answer() {
    let snap = three_zones(true);
    let m = query("To-DB.Front.LOCAL.", RecordType::A);
    let (r, raw) = ask_from(&snap, FRONT_MID, &m);
    let asked = m.to_vec().unwrap();
    let question_end = asked.len();
    assert_eq!(
        &raw[12..question_end],
        &asked[12..],
        "question byte for byte"
    );
    assert_eq!(
        &raw[question_end..question_end + 2],
        &[0xc0, 12],
        "owner points at it"
    );
    // Owner pointer, type, class, TTL, length (12), then db.back + a pointer to local (10).
    assert_eq!(
        raw.len() - question_end,
        12 + 10,
        "the CNAME and nothing else"
    );
    assert_eq!(datas(&r.answers), ["db.back.local."]);
}

#[test]
fn a_chain_into_a_visible_ordered_rrset_still_rotates() {
    let snap = three_zones(true);
    let firsts: Vec<String> = (0..3)
        .map(|_| {
            let r = ask_for(&snap, FRONT_MID, "to-pool.front.local.", RecordType::A);
            assert_eq!(r.answers.len(), 4);
            r.answers[1].data.to_string()
        })
        .collect();
    assert_eq!(firsts, ["10.2.1.1", "10.2.1.2", "10.2.1.3"]);
    let r = ask_for(&snap, FRONT, "to-pool.front.local.", RecordType::A);
    assert_eq!(datas(&r.answers), ["pool.mid.local."]);
}
