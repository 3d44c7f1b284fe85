//! The bytes of an nf_tables set-element batch and of the kernel's answers, as pure functions.
//!
//! A batch is what `nft add element` / `nft delete element` send (see `nft --debug=mnl`):
//! BATCH_BEGIN, one NEWSETELEM (flags REQUEST|CREATE, no EXCL: adding a present element is not
//! an error) or DELSETELEM per run of consecutive changes to one set with one op, BATCH_END.
//! Integers are host order except `nfgenmsg.res_id` and the addresses (network order). Unlike
//! nft we leave out NFTA_SET_ELEM_LIST_SET_ID (only needed for a set made in the same batch) and
//! ask for an ack on the last message only: the kernel answers every failed message anyway, in
//! batch order, before that ack, so the ack ends the answer without one reply per message
//! filling the socket's receive buffer.

use std::net::IpAddr;

use super::{ElementChange, ElementOp};

const NLMSG_HDRLEN: usize = 16;
const NLA_HDRLEN: usize = 4;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_CAPPED: u16 = 0x100;
const NLM_F_ACK_TLVS: u16 = 0x200;
const NLMSGERR_ATTR_OFFS: u16 = 2;
const NLA_F_NESTED: u16 = 0x8000;
const NLA_TYPE_MASK: u16 = 0x3fff;

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_DELSETELEM: u16 = 14;
const AF_UNSPEC: u8 = 0;
const NFPROTO_INET: u8 = 1;

const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_DATA_VALUE: u16 = 1;

/// Longest table or set name the kernel takes (NFT_NAME_MAXLEN without the NUL).
pub(super) const MAX_NAME: usize = 255;

/// Elements per message stop here: the ELEMENTS nest's length is a u16.
const MAX_ELEMENTS_NEST: usize = 60_000;

/// One element message of a batch and the changes it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Message {
    /// Its sequence number.
    pub seq: u32,
    /// Index in `changes` of its first change.
    pub first: usize,
    /// Per element: offset of its NFTA_LIST_ELEM from the message start (what the kernel's
    /// NLMSGERR_ATTR_OFFS points at when that element fails), and its index in `changes`.
    pub elements: Vec<(u32, usize)>,
}

/// An encoded batch and where each change sits in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Batch {
    /// What is sent, in one datagram.
    pub bytes: Vec<u8>,
    /// Sequence number of BATCH_BEGIN (errors of the whole batch, such as a failed commit).
    pub begin_seq: u32,
    /// The element messages, in order; the last one asks for the ack.
    pub messages: Vec<Message>,
}

impl Batch {
    /// The change a kernel error points at: the element at `offset` of message `seq`, else the
    /// message's first change (the error is about the set or table, shared by all its changes).
    pub fn blame(&self, seq: u32, offset: Option<u32>) -> Option<usize> {
        let m = self.messages.iter().find(|m| m.seq == seq)?;
        let exact = offset.and_then(|o| m.elements.iter().find(|(at, _)| *at == o));
        Some(exact.map_or(m.first, |(_, i)| *i))
    }

    /// Whether `seq` numbers a message of this batch (BATCH_BEGIN to BATCH_END).
    pub fn owns(&self, seq: u32) -> bool {
        (seq.wrapping_sub(self.begin_seq) as usize) <= self.messages.len() + 1
    }

    /// Sequence number of the message carrying the ack request.
    pub fn ack_seq(&self) -> Option<u32> {
        self.messages.last().map(|m| m.seq)
    }
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// Starts a netlink message with its nfgenmsg; returns its start.
fn begin_msg(buf: &mut Vec<u8>, ty: u16, flags: u16, seq: u32, family: u8, res_id: u16) -> usize {
    let start = buf.len();
    buf.extend_from_slice(&0u32.to_ne_bytes()); // length, set by end_msg
    buf.extend_from_slice(&ty.to_ne_bytes());
    buf.extend_from_slice(&flags.to_ne_bytes());
    buf.extend_from_slice(&seq.to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it in
    buf.extend_from_slice(&[family, 0]); // family, NFNETLINK_V0
    buf.extend_from_slice(&res_id.to_be_bytes());
    start
}

fn end_msg(buf: &mut [u8], start: usize) {
    let len = u32::try_from(buf.len() - start).unwrap_or(u32::MAX);
    buf[start..start + 4].copy_from_slice(&len.to_ne_bytes());
}

fn put_attr(buf: &mut Vec<u8>, ty: u16, data: &[u8]) {
    let len = u16::try_from(NLA_HDRLEN + data.len()).unwrap_or(u16::MAX);
    buf.extend_from_slice(&len.to_ne_bytes());
    buf.extend_from_slice(&ty.to_ne_bytes());
    buf.extend_from_slice(data);
    buf.resize(align4(buf.len()), 0);
}

fn put_str(buf: &mut Vec<u8>, ty: u16, s: &str) {
    let mut data = Vec::with_capacity(s.len() + 1);
    data.extend_from_slice(s.as_bytes());
    data.push(0);
    put_attr(buf, ty, &data);
}

fn begin_nest(buf: &mut Vec<u8>, ty: u16) -> usize {
    let start = buf.len();
    buf.extend_from_slice(&0u16.to_ne_bytes());
    buf.extend_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
    start
}

fn end_nest(buf: &mut [u8], start: usize) {
    let len = u16::try_from(buf.len() - start).unwrap_or(u16::MAX);
    buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
}

fn put_element(buf: &mut Vec<u8>, addr: IpAddr) {
    let elem = begin_nest(buf, NFTA_LIST_ELEM);
    let key = begin_nest(buf, NFTA_SET_ELEM_KEY);
    match addr {
        IpAddr::V4(a) => put_attr(buf, NFTA_DATA_VALUE, &a.octets()),
        IpAddr::V6(a) => put_attr(buf, NFTA_DATA_VALUE, &a.octets()),
    }
    end_nest(buf, key);
    end_nest(buf, elem);
}

fn batch_marker(buf: &mut Vec<u8>, ty: u16, seq: u32) {
    let start = begin_msg(buf, ty, NLM_F_REQUEST, seq, AF_UNSPEC, NFNL_SUBSYS_NFTABLES);
    end_msg(buf, start);
}

/// Encodes `changes` to sets of `inet <table>` as one batch numbered from `seq` (BATCH_BEGIN
/// gets `seq`). Names must be valid (checked by the caller); `changes` must not be empty.
pub(super) fn encode_batch(table: &str, changes: &[ElementChange], seq: u32) -> Batch {
    let mut buf = Vec::with_capacity(64 + changes.len() * 64);
    batch_marker(&mut buf, NFNL_MSG_BATCH_BEGIN, seq);
    let mut messages: Vec<Message> = Vec::new();
    let mut next_seq = seq.wrapping_add(1);
    let mut last_start = None;
    let mut i = 0;
    while i < changes.len() {
        let (set, op) = (&changes[i].set, changes[i].op);
        let (ty, flags) = match op {
            ElementOp::Add => (NFT_MSG_NEWSETELEM, NLM_F_REQUEST | NLM_F_CREATE),
            ElementOp::Delete => (NFT_MSG_DELSETELEM, NLM_F_REQUEST),
        };
        let ty = (NFNL_SUBSYS_NFTABLES << 8) | ty;
        let start = begin_msg(&mut buf, ty, flags, next_seq, NFPROTO_INET, 0);
        last_start = Some(start);
        put_str(&mut buf, NFTA_SET_ELEM_LIST_TABLE, table);
        put_str(&mut buf, NFTA_SET_ELEM_LIST_SET, set);
        let nest = begin_nest(&mut buf, NFTA_SET_ELEM_LIST_ELEMENTS);
        let mut message = Message {
            seq: next_seq,
            first: i,
            elements: Vec::new(),
        };
        while i < changes.len()
            && changes[i].set == *set
            && changes[i].op == op
            && buf.len() - nest < MAX_ELEMENTS_NEST
        {
            let offset = u32::try_from(buf.len() - start).unwrap_or(u32::MAX);
            message.elements.push((offset, i));
            put_element(&mut buf, changes[i].addr);
            i += 1;
        }
        end_nest(&mut buf, nest);
        end_msg(&mut buf, start);
        messages.push(message);
        next_seq = next_seq.wrapping_add(1);
    }
    if let Some(start) = last_start {
        // nlmsg_flags sit at bytes 6..8 of the header.
        let flags = u16::from_ne_bytes([buf[start + 6], buf[start + 7]]) | NLM_F_ACK;
        buf[start + 6..start + 8].copy_from_slice(&flags.to_ne_bytes());
    }
    batch_marker(&mut buf, NFNL_MSG_BATCH_END, next_seq);
    Batch {
        bytes: buf,
        begin_seq: seq,
        messages,
    }
}

/// One NLMSG_ERROR from the kernel: an ack (`error == 0`) or a failure of message `seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Reply {
    /// Sequence number of the message it answers.
    pub seq: u32,
    /// 0, or a negative errno.
    pub error: i32,
    /// Offset of the offending attribute in that message (extended ack), if the kernel said.
    pub offset: Option<u32>,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The NLMSG_ERROR replies in one received datagram; other messages and junk are skipped.
pub(super) fn parse_replies(buf: &[u8]) -> Vec<Reply> {
    let mut out = Vec::new();
    let mut at = 0;
    while let (Some(len), Some(ty), Some(flags), Some(seq)) = (
        u32_at(buf, at),
        u16_at(buf, at + 4),
        u16_at(buf, at + 6),
        u32_at(buf, at + 8),
    ) {
        let len = len as usize;
        if len < NLMSG_HDRLEN || at + len > buf.len() {
            break;
        }
        let msg = &buf[at..at + len];
        if ty == NLMSG_ERROR {
            if let Some(error) = u32_at(msg, NLMSG_HDRLEN) {
                out.push(Reply {
                    seq,
                    error: error as i32,
                    offset: error_offset(msg, flags),
                });
            }
        }
        at += align4(len);
    }
    out
}

/// NLMSGERR_ATTR_OFFS of an extended ack: the TLVs follow the echoed request (only its header
/// when the reply is capped).
fn error_offset(msg: &[u8], flags: u16) -> Option<u32> {
    if flags & NLM_F_ACK_TLVS == 0 {
        return None;
    }
    let inner = NLMSG_HDRLEN + 4;
    let echoed = if flags & NLM_F_CAPPED != 0 {
        NLMSG_HDRLEN
    } else {
        u32_at(msg, inner)? as usize
    };
    let mut at = inner + align4(echoed);
    while let (Some(len), Some(ty)) = (u16_at(msg, at), u16_at(msg, at + 2)) {
        let len = len as usize;
        if len < NLA_HDRLEN || at + len > msg.len() {
            break;
        }
        if ty & NLA_TYPE_MASK == NLMSGERR_ATTR_OFFS {
            return u32_at(msg, at + NLA_HDRLEN);
        }
        at += align4(len);
    }
    None
}

#[cfg(test)]
#[path = "wire_tests.rs"]
mod tests;
