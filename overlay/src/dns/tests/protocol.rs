//! EDNS, truncation, malformed packets, opcodes, refusals and the RA/forwarding switch.

use hickory_proto::op::{Message, OpCode, ResponseCode};
use hickory_proto::rr::{RData, RecordType};

use super::{ask, ask_raw, query, sample, with_edns, CLIENT};
use crate::dns::answer::{respond, truncate_for_link, AnswerConfig, Outcome, Transport};
use crate::dns::wire::parse_query;

#[test]
fn edns_is_echoed_with_our_payload_size_and_absent_without_it() {
    let snap = sample();
    let r = ask(
        &snap,
        &with_edns(query("test.local.", RecordType::A), 4096, 0),
    );
    let edns = r.edns.expect("an OPT record");
    assert_eq!(edns.max_payload(), 1232);
    assert_eq!(edns.version(), 0);
    assert_eq!(r.answers.len(), 1);
    assert!(ask(&snap, &query("test.local.", RecordType::A))
        .edns
        .is_none());
}

#[test]
fn edns_version_above_zero_is_badvers_with_an_opt() {
    let snap = sample();
    let r = ask(
        &snap,
        &with_edns(query("test.local.", RecordType::A), 1232, 1),
    );
    assert_eq!(u16::from(r.metadata.response_code), 16, "BADVERS");
    assert!(r.answers.is_empty());
    assert_eq!(r.edns.expect("OPT").version(), 0);
}

#[test]
fn unknown_edns_options_are_ignored() {
    let snap = sample();
    let mut bytes = with_edns(query("test.local.", RecordType::A), 1232, 0)
        .to_vec()
        .unwrap();
    // Append an option (code 65001, 3 bytes) to the OPT record's RDATA.
    let rdlen_at = bytes.len() - 2;
    bytes[rdlen_at..].copy_from_slice(&7u16.to_be_bytes());
    bytes.extend_from_slice(&[0xfd, 0xe9, 0, 3, 1, 2, 3]);
    let r = Message::from_vec(&ask_raw(&snap, &bytes, Transport::Udp).unwrap()).unwrap();
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert_eq!(r.answers.len(), 1);
    let code = hickory_proto::rr::rdata::opt::EdnsCode::from(65001);
    assert!(
        r.edns.expect("OPT").options().get(code).is_none(),
        "options are not echoed"
    );
}

#[test]
fn too_large_for_udp_is_truncated_and_complete_over_tcp() {
    let snap = sample();
    let r = ask(&snap, &query("big.test.local.", RecordType::A));
    assert!(r.metadata.truncation);
    assert!(r.answers.is_empty());
    assert_eq!(r.queries.len(), 1);
    let big_edns = with_edns(query("big.test.local.", RecordType::A), 65000, 0);
    let raw = ask_raw(&snap, &big_edns.to_vec().unwrap(), Transport::Udp).unwrap();
    assert!(
        raw.len() <= 1232,
        "UDP answers are capped by our own payload size"
    );
    assert!(Message::from_vec(&raw).unwrap().metadata.truncation);
    let tcp = ask_raw(
        &snap,
        &query("big.test.local.", RecordType::A).to_vec().unwrap(),
        Transport::Tcp,
    );
    let r = Message::from_vec(&tcp.unwrap()).unwrap();
    assert!(!r.metadata.truncation);
    assert_eq!(r.answers.len(), 100);
}

#[test]
fn an_answer_too_large_for_its_link_is_cut_to_its_question_with_tc_aa_and_rcode() {
    let snap = sample();
    for (name, code) in [
        ("big.test.local.", ResponseCode::NoError),
        ("nope.test.local.", ResponseCode::NXDomain),
    ] {
        for edns in [false, true] {
            let mut m = query(name, RecordType::A);
            if edns {
                m = with_edns(m, 1232, 0);
            }
            let packet = m.to_vec().unwrap();
            let mut out = ask_raw(&snap, &packet, Transport::Udp).unwrap();
            let q = parse_query(&packet).unwrap();
            let reply = truncate_for_link(&packet, &q, &AnswerConfig::default(), &mut out);
            assert!(reply.truncated, "{name} edns={edns}");
            let r = Message::from_vec(&out).unwrap();
            assert!(r.metadata.truncation && r.metadata.authoritative, "{r:?}");
            assert_eq!(r.metadata.response_code, code);
            assert_eq!(r.metadata.id, m.metadata.id);
            assert_eq!(r.queries, m.queries);
            assert!(r.answers.is_empty() && r.authorities.is_empty() && r.additionals.is_empty());
            assert_eq!(r.edns.is_some(), edns, "OPT kept when the query had one");
        }
    }
}

#[test]
fn additional_records_are_dropped_before_truncating() {
    let mut b = crate::dns::SnapshotBuilder::new();
    b.zone("z.local").record(
        "_x._udp.z.local",
        5,
        RData::try_from_str(RecordType::SRV, "0 0 53 t.z.local.").unwrap(),
    );
    for i in 0..40 {
        b.record(
            "t.z.local",
            5,
            RData::try_from_str(RecordType::A, &format!("10.0.0.{i}")).unwrap(),
        );
    }
    let snap = b.build().unwrap();
    let small = ask(&snap, &query("_x._udp.z.local.", RecordType::SRV));
    assert!(!small.metadata.truncation);
    assert_eq!(small.answers.len(), 1);
    assert!(small.additionals.is_empty());
    let large = ask(
        &snap,
        &with_edns(query("_x._udp.z.local.", RecordType::SRV), 1232, 0),
    );
    assert_eq!(large.additionals.len(), 40);
}

#[test]
fn malformed_packets_get_formerr_when_a_header_is_readable() {
    let snap = sample();
    let good = query("test.local.", RecordType::A).to_vec().unwrap();
    let formerr = |p: &[u8]| {
        let r = Message::from_vec(&ask_raw(&snap, p, Transport::Udp).expect("a response")).unwrap();
        assert_eq!(r.metadata.id, 0x1234);
        assert!(r.metadata.recursion_desired);
        r.metadata.response_code
    };
    let mut two = good.clone();
    two[5] = 2;
    assert_eq!(formerr(&two), ResponseCode::FormErr, "QDCOUNT 2");
    let mut none = good.clone();
    none[5] = 0;
    assert_eq!(formerr(&none[..12]), ResponseCode::FormErr, "QDCOUNT 0");
    assert_eq!(
        formerr(&good[..good.len() - 1]),
        ResponseCode::FormErr,
        "cut question"
    );
    let mut trailing = good.clone();
    trailing.push(0);
    assert_eq!(
        formerr(&trailing),
        ResponseCode::FormErr,
        "trailing garbage"
    );
    let mut pointer = good[..12].to_vec();
    pointer.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1]);
    assert_eq!(
        formerr(&pointer),
        ResponseCode::FormErr,
        "pointer in the question"
    );
    let mut two_opts = with_edns(query("test.local.", RecordType::A), 1232, 0)
        .to_vec()
        .unwrap();
    let opt = two_opts[two_opts.len() - 11..].to_vec();
    two_opts.extend_from_slice(&opt);
    two_opts[11] = 2;
    assert_eq!(formerr(&two_opts), ResponseCode::FormErr, "two OPT records");
}

#[test]
fn silence_when_no_header_or_for_responses() {
    let snap = sample();
    assert!(ask_raw(&snap, &[0x12, 0x34, 0x01], Transport::Udp).is_none());
    assert!(ask_raw(&snap, &[], Transport::Udp).is_none());
    let mut response = query("test.local.", RecordType::A).to_vec().unwrap();
    response[2] |= 0x80;
    assert!(ask_raw(&snap, &response, Transport::Udp).is_none());
}

#[test]
fn unknown_opcodes_are_notimp() {
    let snap = sample();
    for op in [OpCode::Status, OpCode::Update, OpCode::Notify] {
        let mut m = query("test.local.", RecordType::SOA);
        m.metadata.op_code = op;
        let r = ask(&snap, &m);
        assert_eq!(r.metadata.response_code, ResponseCode::NotImp, "{op:?}");
        assert_eq!(r.metadata.op_code, op);
    }
}

#[test]
fn zone_transfers_foreign_names_and_classes_are_refused() {
    let snap = sample();
    for ty in [RecordType::AXFR, RecordType::IXFR] {
        let r = ask(&snap, &query("test.local.", ty));
        assert_eq!(r.metadata.response_code, ResponseCode::Refused, "{ty}");
    }
    let r = ask(&snap, &query("www.example.org.", RecordType::A));
    assert_eq!(r.metadata.response_code, ResponseCode::Refused);
    assert!(!r.metadata.authoritative);
    let mut ch = query("version.bind.", RecordType::TXT);
    ch.queries[0].set_query_class(hickory_proto::rr::DNSClass::CH);
    assert_eq!(
        ask(&snap, &ch).metadata.response_code,
        ResponseCode::Refused
    );
}

#[test]
fn with_forwarding_ra_is_set_and_foreign_names_are_handed_over() {
    let snap = sample();
    let cfg = AnswerConfig {
        forwarding: true,
        ..AnswerConfig::default()
    };
    let mut out = Vec::new();
    let local = query("test.local.", RecordType::A).to_vec().unwrap();
    assert!(matches!(
        respond(&snap, &local, CLIENT, Transport::Udp, &cfg, &mut out),
        Outcome::Reply(_)
    ));
    let r = Message::from_vec(&out).unwrap();
    assert!(r.metadata.recursion_available && r.metadata.authoritative);
    let foreign = query("www.example.org.", RecordType::A).to_vec().unwrap();
    assert_eq!(
        respond(&snap, &foreign, CLIENT, Transport::Udp, &cfg, &mut out),
        Outcome::Forward
    );
}

#[test]
fn queries_the_parser_rejects_are_answered_here_and_never_forwarded() {
    let snap = sample();
    let cfg = AnswerConfig {
        forwarding: true,
        ..AnswerConfig::default()
    };
    let mut out = Vec::new();
    let mut outcome = |p: &[u8]| respond(&snap, p, CLIENT, Transport::Udp, &cfg, &mut out);
    let good = query("www.example.org.", RecordType::A).to_vec().unwrap();
    assert_eq!(outcome(&good), Outcome::Forward);
    let rcode = |o: Outcome| match o {
        Outcome::Reply(r) => Some(r.rcode),
        _ => None,
    };
    let mut response = good.clone();
    response[2] |= 0x80;
    assert_eq!(outcome(&response), Outcome::Drop);
    let mut trailing = good.clone();
    trailing.push(0);
    let mut two = good.clone();
    two[5] = 2;
    let mut pointer = good[..12].to_vec();
    pointer.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1]);
    for bad in [&trailing, &two, &pointer, &good[..good.len() - 1]] {
        assert_eq!(rcode(outcome(bad)), Some(1), "FORMERR for {bad:02x?}");
    }
    let v1 = with_edns(query("www.example.org.", RecordType::A), 1232, 1);
    assert_eq!(rcode(outcome(&v1.to_vec().unwrap())), Some(16), "BADVERS");
}

#[test]
fn the_do_bit_is_copied() {
    let snap = sample();
    let mut m = with_edns(query("test.local.", RecordType::A), 1232, 0);
    if let Some(e) = m.edns.as_mut() {
        e.set_dnssec_ok(true);
    }
    assert!(ask(&snap, &m).edns.expect("OPT").flags().dnssec_ok);
}
