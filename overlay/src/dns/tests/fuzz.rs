//! Property tests: random and mutated packets never panic the engine, and every packet with a
//! readable query header gets a parseable response carrying its id. The one query parser keeps
//! its promises on the same packets, and reads well-formed questions as hickory does.

use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;
use proptest::prelude::*;

use super::{ask_raw, query, sample, with_edns};
use crate::dns::answer::Transport;
use crate::dns::wire::{label_starts, parse_query, Edns, MAX_NAME};
use crate::dns::Snapshot;

fn shared() -> &'static Snapshot {
    static SNAP: std::sync::OnceLock<Snapshot> = std::sync::OnceLock::new();
    SNAP.get_or_init(sample)
}

fn seeds() -> Vec<Vec<u8>> {
    let names = [
        "test.local.",
        "Web.Test.Local.",
        "alias.test.local.",
        "big.test.local.",
        "x.example.org.",
    ];
    let types = [
        RecordType::A,
        RecordType::AAAA,
        RecordType::SRV,
        RecordType::ANY,
        RecordType::PTR,
    ];
    let mut v = Vec::new();
    for (i, n) in names.iter().enumerate() {
        v.push(query(n, types[i]).to_vec().unwrap());
        v.push(
            with_edns(query(n, types[(i + 1) % types.len()]), 1232, 0)
                .to_vec()
                .unwrap(),
        );
    }
    v
}

fn check(snap: &Snapshot, packet: &[u8], transport: Transport) -> Result<(), TestCaseError> {
    let answer = ask_raw(snap, packet, transport);
    let answerable = packet.len() >= 12 && packet[2] & 0x80 == 0;
    prop_assert_eq!(answer.is_some(), answerable);
    if let Some(bytes) = answer {
        let parsed = Message::from_vec(&bytes);
        prop_assert!(
            parsed.is_ok(),
            "unparseable response {:02x?} to {:02x?}",
            bytes,
            packet
        );
        prop_assert_eq!(&bytes[..2], &packet[..2]);
        prop_assert!(bytes[2] & 0x80 != 0, "QR set");
        if transport == Transport::Udp {
            prop_assert!(bytes.len() <= 1232);
        }
    }
    Ok(())
}

/// What the parser promises of every query it returns (bounds, the lowercased name and its key),
/// checked against hickory's decoder where that decodes the packet too.
fn check_parse(p: &[u8]) -> Result<(), TestCaseError> {
    let Ok(q) = parse_query(p) else {
        return Ok(());
    };
    prop_assert!(q.question_end <= p.len() && q.name_len <= MAX_NAME);
    prop_assert_eq!(q.key().len(), q.name_len + 2);
    prop_assert_eq!(&q.key()[q.name_len..], &q.qtype.to_be_bytes()[..]);
    prop_assert_eq!(q.name(), p[q.question()][..q.name_len].to_ascii_lowercase());
    let Ok(m) = Message::from_vec(p) else {
        return Ok(());
    };
    prop_assert_eq!(m.queries.len(), 1);
    let theirs = &m.queries[0];
    let labels: Vec<Vec<u8>> = theirs
        .name()
        .iter()
        .map(|l| l.to_ascii_lowercase())
        .collect();
    let name = q.name();
    let ours: Vec<Vec<u8>> = label_starts(name)
        .map(|s| name[s + 1..s + 1 + usize::from(name[s])].to_vec())
        .collect();
    prop_assert_eq!(labels, ours);
    prop_assert_eq!(u16::from(theirs.query_type()), q.qtype);
    prop_assert_eq!(u16::from(theirs.query_class()), q.qclass);
    // hickory reads payloads below 512 as 512 (RFC 6891).
    let edns = |e: Option<Edns>| e.map(|e| (e.payload.max(512), e.version, e.dnssec_ok));
    let their_edns = m.edns.as_ref().map(|e| Edns {
        payload: e.max_payload(),
        version: e.version(),
        dnssec_ok: e.flags().dnssec_ok,
    });
    prop_assert_eq!(edns(q.edns), edns(their_edns));
    Ok(())
}

#[derive(Debug, Clone)]
enum Mutation {
    Set(usize, u8),
    Cut(usize),
    Insert(usize, u8),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        any::<usize>().prop_map(Mutation::Cut),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_packets_never_panic(packet in proptest::collection::vec(any::<u8>(), 0..600), tcp in any::<bool>()) {
        check_parse(&packet)?;
        check(shared(), &packet, if tcp { Transport::Tcp } else { Transport::Udp })?;
    }

    #[test]
    fn mutated_queries_get_parseable_answers(
        seed in 0usize..10,
        muts in proptest::collection::vec(mutation(), 1..6),
        tcp in any::<bool>(),
    ) {
        let mut packet = seeds()[seed].clone();
        for m in muts {
            let len = packet.len().max(1);
            match m {
                Mutation::Set(i, b) => if !packet.is_empty() { packet[i % len] = b },
                Mutation::Cut(i) => packet.truncate(i % len),
                Mutation::Insert(i, b) => packet.insert(i % (packet.len() + 1), b),
            }
        }
        check_parse(&packet)?;
        check(shared(), &packet, if tcp { Transport::Tcp } else { Transport::Udp })?;
    }

    #[test]
    fn well_formed_questions_are_read_as_hickory_reads_them(
        labels in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..64), 0..4),
        qtype in any::<u16>(),
        qclass in any::<u16>(),
        edns in proptest::option::of((any::<u16>(), any::<u8>(), any::<bool>())),
    ) {
        let mut p = vec![0x12, 0x34, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, u8::from(edns.is_some())];
        for l in &labels {
            p.push(l.len() as u8);
            p.extend_from_slice(l);
        }
        p.push(0);
        p.extend_from_slice(&qtype.to_be_bytes());
        p.extend_from_slice(&qclass.to_be_bytes());
        if let Some((payload, version, dnssec_ok)) = edns {
            p.extend_from_slice(&[0, 0, 41]);
            p.extend_from_slice(&payload.to_be_bytes());
            p.extend_from_slice(&[0, version, if dnssec_ok { 0x80 } else { 0 }, 0, 0, 0]);
        }
        let q = parse_query(&p).map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
        prop_assert_eq!((q.qtype, q.qclass), (qtype, qclass));
        prop_assert_eq!(q.edns.map(|e| (e.payload, e.version, e.dnssec_ok)), edns);
        check_parse(&p)?;
    }
}
