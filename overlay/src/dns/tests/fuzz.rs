//! Property tests: random and mutated packets never panic the engine, and every packet with a
//! readable query header gets a parseable response carrying its id.

use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;
use proptest::prelude::*;

use super::{ask_raw, query, sample, with_edns};
use crate::dns::answer::Transport;
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
        check(shared(), &packet, if tcp { Transport::Tcp } else { Transport::Udp })?;
    }
}
