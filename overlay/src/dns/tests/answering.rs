//! Record types, CNAME chains, NODATA vs NXDOMAIN, case echo, answer order.

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};

use super::{ask, ask_raw, datas, query, sample};
use crate::dns::answer::Transport;

#[test]
fn a_record_is_authoritative_with_id_rd_echoed_and_no_ra() {
    let snap = sample();
    let r = ask(&snap, &query("test.local.", RecordType::A));
    assert_eq!(r.metadata.id, 0x1234);
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(r.metadata.authoritative);
    assert!(r.metadata.recursion_desired);
    assert!(!r.metadata.recursion_available);
    assert_eq!(datas(&r.answers), ["10.0.0.5"]);
    assert_eq!(r.answers[0].ttl, 60);
    assert!(r.authorities.is_empty() && r.additionals.is_empty());
}

#[test]
fn question_case_is_echoed_byte_for_byte_and_matching_ignores_it() {
    let snap = sample();
    let packet = query("WeB.TeSt.LoCaL.", RecordType::AAAA).to_vec().unwrap();
    let resp = ask_raw(&snap, &packet, Transport::Udp).unwrap();
    let question_end = 12 + "WeB.TeSt.LoCaL.".len() + 1 + 4;
    assert_eq!(&resp[12..question_end], &packet[12..question_end]);
    assert_eq!(
        &resp[question_end..question_end + 2],
        &[0xc0, 12],
        "owner points at the question"
    );
    let r = hickory_proto::op::Message::from_vec(&resp).unwrap();
    assert_eq!(datas(&r.answers), ["fd00::5"]);
}

#[test]
fn existing_name_without_the_type_is_nodata_with_the_soa() {
    let snap = sample();
    let r = ask(&snap, &query("test.local.", RecordType::AAAA));
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(r.answers.is_empty());
    assert_eq!(r.authorities.len(), 1);
    let soa = &r.authorities[0];
    assert_eq!(soa.record_type(), RecordType::SOA);
    assert_eq!(soa.name.to_string(), "test.local.");
    assert_eq!(soa.ttl, 5, "negative TTL is min(SOA TTL, minimum)");
    assert!(r.metadata.authoritative);
}

#[test]
fn missing_name_is_nxdomain_with_the_soa_and_empty_non_terminals_exist() {
    let snap = sample();
    let r = ask(&snap, &query("nope.test.local.", RecordType::A));
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    assert!(r.answers.is_empty());
    assert_eq!(r.authorities[0].record_type(), RecordType::SOA);
    let ent = ask(&snap, &query("_tcp.web.test.local.", RecordType::A));
    assert_eq!(ent.metadata.response_code, ResponseCode::NoError);
    assert!(ent.answers.is_empty());
    assert_eq!(ent.authorities.len(), 1);
}

#[test]
fn cname_chains_are_followed_inside_the_zones() {
    let snap = sample();
    let r = ask(&snap, &query("Alias.test.local.", RecordType::A));
    assert_eq!(
        datas(&r.answers),
        ["alias2.test.local.", "web.test.local.", "10.0.0.6"]
    );
    assert_eq!(r.answers[0].name.to_string(), "alias.test.local.");
    assert_eq!(r.answers[2].name.to_string(), "web.test.local.");
    let r = ask(&snap, &query("alias.test.local.", RecordType::CNAME));
    assert_eq!(datas(&r.answers), ["alias2.test.local."]);
    let r = ask(&snap, &query("alias.test.local.", RecordType::TXT));
    assert_eq!(r.answers.len(), 2, "both CNAMEs, then NODATA at the target");
    assert_eq!(r.authorities[0].record_type(), RecordType::SOA);
}

#[test]
fn cname_to_a_missing_local_name_is_nxdomain_and_to_a_foreign_name_stops() {
    let snap = sample();
    let r = ask(&snap, &query("dangling.test.local.", RecordType::A));
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(datas(&r.answers), ["nothing.test.local."]);
    let r = ask(&snap, &query("away.test.local.", RecordType::A));
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert_eq!(datas(&r.answers), ["www.example.org."]);
    assert!(r.authorities.is_empty());
    let r = ask(&snap, &query("loop1.test.local.", RecordType::A));
    assert_eq!(
        datas(&r.answers),
        ["loop2.test.local.", "loop1.test.local."]
    );
}

#[test]
fn ptr_for_ipv4_and_ipv6() {
    let snap = sample();
    let r = ask(&snap, &query("5.0.0.10.in-addr.arpa.", RecordType::PTR));
    assert_eq!(datas(&r.answers), ["test.local."]);
    let v6 = crate::dns::reverse_name("fd00::5".parse().unwrap());
    let r = ask(&snap, &query(&v6, RecordType::PTR));
    assert_eq!(datas(&r.answers), ["web.test.local."]);
    let r = ask(&snap, &query("9.0.0.10.in-addr.arpa.", RecordType::PTR));
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
}

#[test]
fn srv_answers_carry_the_target_addresses_as_additional_records() {
    let snap = sample();
    let r = ask(&snap, &query("_http._tcp.web.test.local.", RecordType::SRV));
    let RData::SRV(srv) = &r.answers[0].data else {
        panic!("not SRV")
    };
    assert_eq!((srv.priority, srv.weight, srv.port), (10, 5, 8080));
    assert_eq!(srv.target.to_string(), "web.test.local.");
    let mut extra = datas(&r.additionals);
    extra.sort();
    assert_eq!(extra, ["10.0.0.6", "fd00::5"]);
}

#[test]
fn txt_soa_and_ns_at_the_apex() {
    let snap = sample();
    let r = ask(&snap, &query("txt.test.local.", RecordType::TXT));
    let RData::TXT(txt) = &r.answers[0].data else {
        panic!("not TXT")
    };
    assert_eq!(
        txt.txt_data.iter().map(|s| &s[..]).collect::<Vec<_>>(),
        [&b"hello world"[..], b"second"]
    );
    let r = ask(&snap, &query("test.local.", RecordType::SOA));
    let RData::SOA(soa) = &r.answers[0].data else {
        panic!("not SOA")
    };
    assert_eq!(soa.mname.to_string(), "ns.test.local.");
    assert_eq!(soa.minimum, 5);
    let r = ask(&snap, &query("test.local.", RecordType::NS));
    assert_eq!(datas(&r.answers), ["ns.test.local."]);
}

#[test]
fn round_robin_rotates_the_rrset_and_fixed_keeps_it() {
    let snap = sample();
    let firsts: Vec<String> = (0..6)
        .map(|_| datas(&ask(&snap, &query("svc.test.local.", RecordType::A)).answers)[0].clone())
        .collect();
    assert_eq!(
        firsts[..3]
            .iter()
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        3
    );
    assert_eq!(firsts[..3], firsts[3..]);
    let r = ask(&snap, &query("svc.test.local.", RecordType::A));
    assert_eq!(r.answers.len(), 3);
    let big1 = datas(&ask_tcp(&snap, "big.test.local."));
    let big2 = datas(&ask_tcp(&snap, "big.test.local."));
    assert_eq!(big1, big2);
}

#[test]
fn a_sequence_order_cycles_through_the_given_permutations() {
    let mut b = crate::dns::SnapshotBuilder::new();
    b.zone("z.local");
    for ip in ["10.0.0.1", "10.0.0.2", "10.0.0.3"] {
        b.record(
            "w.z.local",
            5,
            RData::try_from_str(RecordType::A, ip).unwrap(),
        );
    }
    b.order(
        "w.z.local",
        crate::dns::AnswerOrder::Sequence(vec![vec![2, 0, 1], vec![1]]),
    );
    let snap = b.build().unwrap();
    let a = datas(&ask(&snap, &query("w.z.local.", RecordType::A)).answers);
    let b = datas(&ask(&snap, &query("w.z.local.", RecordType::A)).answers);
    assert_eq!(a, ["10.0.0.3", "10.0.0.1", "10.0.0.2"]);
    assert_eq!(b, ["10.0.0.2", "10.0.0.1", "10.0.0.3"]);
}

#[test]
fn one_record_per_answer_follows_the_schedule_for_names_with_several() {
    let mut b = crate::dns::SnapshotBuilder::new();
    b.zone("z.local");
    for ip in ["10.0.0.1", "10.0.0.2", "10.0.0.3"] {
        b.record(
            "w.z.local",
            5,
            RData::try_from_str(RecordType::A, ip).unwrap(),
        );
    }
    b.record(
        "one.z.local",
        5,
        RData::try_from_str(RecordType::A, "10.0.0.9").unwrap(),
    );
    b.order_names_with_several(crate::dns::AnswerOrder::OnePerAnswer(vec![2, 2, 0]));
    let snap = b.build().unwrap();
    let got: Vec<Vec<String>> = (0..6)
        .map(|_| datas(&ask(&snap, &query("w.z.local.", RecordType::A)).answers))
        .collect();
    let start = got
        .iter()
        .position(|a| a == &["10.0.0.1"])
        .expect("a first record");
    let cycle: Vec<&str> = (0..3)
        .map(|k| got[(start + 1 + k) % 6][0].as_str())
        .collect();
    assert_eq!(cycle, ["10.0.0.3", "10.0.0.3", "10.0.0.1"]);
    assert!(got.iter().all(|a| a.len() == 1), "{got:?}");
    let one = datas(&ask(&snap, &query("one.z.local.", RecordType::A)).answers);
    assert_eq!(one, ["10.0.0.9"]);
}

#[test]
fn any_is_answered_minimally_with_one_rrset() {
    let snap = sample();
    let r = ask(&snap, &query("web.test.local.", RecordType::ANY));
    assert_eq!(datas(&r.answers), ["10.0.0.6"]);
    let r = ask(&snap, &query("alias.test.local.", RecordType::ANY));
    assert_eq!(datas(&r.answers), ["alias2.test.local."]);
}

fn ask_tcp(snap: &crate::dns::Snapshot, name: &str) -> Vec<hickory_proto::rr::Record> {
    let bytes = query(name, RecordType::A).to_vec().unwrap();
    let resp = ask_raw(snap, &bytes, Transport::Tcp).unwrap();
    hickory_proto::op::Message::from_vec(&resp).unwrap().answers
}
