//! The batch bytes against what nft 1.0.6 sends for the same command (captured with
//! `strace -xx nft ...` and `nft --debug=mnl`), and the kernel's answers as they arrive.
//! Byte literals are little-endian hosts' (netlink integers are host order).

use super::*;

fn v4(s: &str) -> IpAddr {
    IpAddr::V4(s.parse().expect("v4"))
}

fn v6(s: &str) -> IpAddr {
    IpAddr::V6(s.parse().expect("v6"))
}

/// BATCH_BEGIN / BATCH_END as nft sends them: family AF_UNSPEC, res_id htons(10).
fn marker(ty: u8, seq: u8) -> Vec<u8> {
    vec![
        20, 0, 0, 0, ty, 0, 1, 0, seq, 0, 0, 0, 0, 0, 0,
        0, // len 20, type, REQUEST, seq, port 0
        0, 0, 0, 10, // AF_UNSPEC, V0, res_id = htons(NFNL_SUBSYS_NFTABLES)
    ]
}

/// NFTA_SET_ELEM_LIST_TABLE "shibafu-policy" as nft sends it.
const TABLE_ATTR: [u8; 20] = [
    19, 0, 1, 0, b's', b'h', b'i', b'b', b'a', b'f', b'u', b'-', b'p', b'o', b'l', b'i', b'c',
    b'y', 0, 0,
];

#[cfg(target_endian = "little")]
#[test]
fn one_v4_add_is_what_nft_sends() {
    // nft: `add element inet shibafu-policy a4 { 10.0.0.1 }`. Ours differs in two places: no
    // NFTA_SET_ELEM_LIST_SET_ID (08 00 04 00 00 00 00 01 after the set name; only a set made in
    // the same batch needs it), hence length 68 instead of 76; and NLM_F_ACK (0x405, not 0x401).
    let batch = encode_batch(
        "shibafu-policy",
        &[ElementChange::add("a4", v4("10.0.0.1"))],
        0,
    );
    let mut want = marker(0x10, 0);
    want.extend_from_slice(&[
        68, 0, 0, 0, 0x0c, 0x0a, 0x05, 0x04, 1, 0, 0, 0, 0, 0, 0, 0, // NEWSETELEM, seq 1
        1, 0, 0, 0, // NFPROTO_INET, V0, res_id 0
    ]);
    want.extend_from_slice(&TABLE_ATTR);
    want.extend_from_slice(&[7, 0, 2, 0, b'a', b'4', 0, 0]); // NFTA_SET_ELEM_LIST_SET
    want.extend_from_slice(&[
        20, 0, 3, 0x80, // NFTA_SET_ELEM_LIST_ELEMENTS | NESTED
        16, 0, 1, 0x80, // NFTA_LIST_ELEM | NESTED
        12, 0, 1, 0x80, // NFTA_SET_ELEM_KEY | NESTED
        8, 0, 1, 0, 10, 0, 0, 1, // NFTA_DATA_VALUE 10.0.0.1
    ]);
    want.extend_from_slice(&marker(0x11, 2));
    assert_eq!(batch.bytes, want);
    assert_eq!(batch.begin_seq, 0);
    assert_eq!(
        batch.messages,
        vec![Message {
            seq: 1,
            first: 0,
            elements: vec![(52, 0)]
        }]
    );
    assert_eq!(batch.ack_seq(), Some(1));
}

#[cfg(target_endian = "little")]
#[test]
fn one_v6_delete_is_what_nft_sends() {
    // nft: `delete element inet shibafu-policy a6 { fd00::1 }`: DELSETELEM with flags REQUEST
    // (ours adds NLM_F_ACK), no set id, length 80.
    let batch = encode_batch(
        "shibafu-policy",
        &[ElementChange::delete("a6", v6("fd00::1"))],
        0,
    );
    let mut want = marker(0x10, 0);
    want.extend_from_slice(&[
        80, 0, 0, 0, 0x0e, 0x0a, 0x05, 0x00, 1, 0, 0, 0, 0, 0, 0, 0, // DELSETELEM, seq 1
        1, 0, 0, 0,
    ]);
    want.extend_from_slice(&TABLE_ATTR);
    want.extend_from_slice(&[7, 0, 2, 0, b'a', b'6', 0, 0]);
    want.extend_from_slice(&[32, 0, 3, 0x80, 28, 0, 1, 0x80, 24, 0, 1, 0x80, 20, 0, 1, 0]);
    want.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    want.extend_from_slice(&marker(0x11, 2));
    assert_eq!(batch.bytes, want);
}

/// (type, flags, seq) of every message in `bytes`.
fn headers(bytes: &[u8]) -> Vec<(u16, u16, u32)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let len = u32_at(bytes, at).expect("len") as usize;
        let ty = u16_at(bytes, at + 4).expect("type");
        out.push((
            ty,
            u16_at(bytes, at + 6).expect("flags"),
            u32_at(bytes, at + 8).expect("seq"),
        ));
        at += align4(len);
    }
    assert_eq!(at, bytes.len(), "messages must tile the batch");
    out
}

#[test]
fn runs_of_one_set_and_op_share_a_message_in_order() {
    let changes = [
        ElementChange::add("a4", v4("10.0.0.1")),
        ElementChange::add("a4", v4("10.0.0.2")),
        ElementChange::add("a6", v6("fd00::2")),
        ElementChange::delete("a4", v4("10.0.0.1")),
        ElementChange::add("a4", v4("10.0.0.3")),
    ];
    let batch = encode_batch("t", &changes, 100);
    let new = 0x0a0c;
    let del = 0x0a0e;
    assert_eq!(
        headers(&batch.bytes),
        vec![
            (0x10, 0x1, 100),
            (new, 0x401, 101),
            (new, 0x401, 102),
            (del, 0x1, 103),
            (new, 0x405, 104), // only the last asks for the ack
            (0x11, 0x1, 105),
        ]
    );
    let firsts: Vec<usize> = batch.messages.iter().map(|m| m.first).collect();
    assert_eq!(firsts, vec![0, 2, 3, 4]);
    // Table "t" takes 8 bytes: the elements nest starts at 20 + 8 + 8 = 36.
    assert_eq!(batch.messages[0].elements, vec![(40, 0), (56, 1)]);
    assert_eq!(batch.ack_seq(), Some(104));
}

#[test]
fn blame_names_the_element_or_else_the_message() {
    let changes = [
        ElementChange::add("a4", v4("10.0.0.1")),
        ElementChange::add("a4", v4("10.0.0.2")),
        ElementChange::delete("gone", v4("10.0.0.3")),
    ];
    let batch = encode_batch("shibafu-policy", &changes, 7);
    assert_eq!(batch.blame(8, Some(68)), Some(1), "second element of seq 8");
    assert_eq!(batch.blame(8, Some(52)), Some(0));
    assert_eq!(
        batch.blame(9, Some(40)),
        Some(2),
        "the set name: its first change"
    );
    assert_eq!(batch.blame(9, None), Some(2));
    assert_eq!(batch.blame(7, None), None, "BATCH_BEGIN is no change");
}

#[test]
fn long_runs_split_so_every_nest_length_fits_a_u16() {
    let changes: Vec<ElementChange> = (0..5000u32)
        .map(|i| {
            ElementChange::add(
                "a6",
                IpAddr::V6((0xfd00_u128 << 112 | u128::from(i)).into()),
            )
        })
        .collect();
    let batch = encode_batch("shibafu-policy", &changes, 0);
    assert!(batch.messages.len() >= 3, "{}", batch.messages.len());
    let carried: usize = batch.messages.iter().map(|m| m.elements.len()).sum();
    assert_eq!(carried, 5000);
    for (ty, _, _) in &headers(&batch.bytes)[1..batch.messages.len() + 1] {
        assert_eq!(*ty, 0x0a0c);
    }
    // Each message: header 20, table 20, set "a6" 8, then the nest, which is the rest.
    let mut at = 20;
    for _ in &batch.messages {
        let len = u32_at(&batch.bytes, at).expect("len") as usize;
        let nest = u16_at(&batch.bytes, at + 48).expect("nest len") as usize;
        assert_eq!(nest, len - 48, "nest length must not be clipped");
        at += len;
    }
    assert_eq!(at + 20, batch.bytes.len());
}

#[test]
fn a_failure_echoing_the_request_gives_errno_and_offset() {
    // The kernel's answer to nft's `delete element ... a4 { 10.0.0.2 }` when 10.0.0.2 is
    // absent (no NETLINK_CAP_ACK): ENOENT, the request echoed, NLMSGERR_ATTR_OFFS 52.
    let request = encode_batch(
        "shibafu-policy",
        &[ElementChange::delete("a4", v4("10.0.0.2"))],
        0,
    );
    let echoed = &request.bytes[20..20 + 68];
    let mut reply = Vec::new();
    reply.extend_from_slice(&96u32.to_ne_bytes());
    reply.extend_from_slice(&2u16.to_ne_bytes()); // NLMSG_ERROR
    reply.extend_from_slice(&0x200u16.to_ne_bytes()); // NLM_F_ACK_TLVS
    reply.extend_from_slice(&1u32.to_ne_bytes());
    reply.extend_from_slice(&7398u32.to_ne_bytes());
    reply.extend_from_slice(&(-2i32).to_ne_bytes());
    reply.extend_from_slice(echoed);
    reply.extend_from_slice(&[8, 0, 2, 0]);
    reply.extend_from_slice(&52u32.to_ne_bytes());
    assert_eq!(reply.len(), 96);
    let got = parse_replies(&reply);
    assert_eq!(
        got,
        vec![Reply {
            seq: 1,
            error: -2,
            offset: Some(52)
        }]
    );
    assert_eq!(request.blame(1, Some(52)), Some(0));
}

#[test]
fn capped_answers_and_plain_acks_parse_in_one_datagram() {
    let mut dgram = Vec::new();
    // Capped failure: error, the request's header only, then the TLVs.
    dgram.extend_from_slice(&44u32.to_ne_bytes());
    dgram.extend_from_slice(&2u16.to_ne_bytes());
    dgram.extend_from_slice(&0x300u16.to_ne_bytes()); // CAPPED | ACK_TLVS
    dgram.extend_from_slice(&5u32.to_ne_bytes());
    dgram.extend_from_slice(&0u32.to_ne_bytes());
    dgram.extend_from_slice(&(-17i32).to_ne_bytes());
    dgram.extend_from_slice(&[0; 16]); // the request's header
    dgram.extend_from_slice(&[8, 0, 2, 0]);
    dgram.extend_from_slice(&40u32.to_ne_bytes());
    // Some other message, skipped.
    dgram.extend_from_slice(&20u32.to_ne_bytes());
    dgram.extend_from_slice(&0x0a0fu16.to_ne_bytes());
    dgram.extend_from_slice(&[0; 14]);
    // A plain ack.
    dgram.extend_from_slice(&36u32.to_ne_bytes());
    dgram.extend_from_slice(&2u16.to_ne_bytes());
    dgram.extend_from_slice(&0x100u16.to_ne_bytes());
    dgram.extend_from_slice(&6u32.to_ne_bytes());
    dgram.extend_from_slice(&0u32.to_ne_bytes());
    dgram.extend_from_slice(&0i32.to_ne_bytes());
    dgram.extend_from_slice(&[0; 16]);
    // A truncated tail, ignored.
    dgram.extend_from_slice(&[99, 0, 0]);
    assert_eq!(
        parse_replies(&dgram),
        vec![
            Reply {
                seq: 5,
                error: -17,
                offset: Some(40)
            },
            Reply {
                seq: 6,
                error: 0,
                offset: None
            },
        ]
    );
}
