//! Answering one query, bytes in, bytes out: the pure core of the server.
//!
//! Local names are answered from the snapshot's prebuilt sections (header patched, question
//! copied exactly as asked), everything else from [`compose`]; errors follow RFC 1035/6891/8482.
//! Views apply to the question's zone and to every zone a CNAME chain enters: a chain stops
//! before a zone the requester may not see.
//! The output buffer is reused between calls, so steady-state answering does not allocate.

use std::net::IpAddr;

use super::encode::Writer;
use super::snapshot::{compose, Composed, Cut, Found, Snapshot};
use super::wire::{
    parse_query, push_opt, rcode, response_limit, rtype, Query, Reject, CLASS_IN, HEADER_LEN,
    OPT_LEN,
};

pub use super::wire::Transport;

/// Server-wide answering settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnswerConfig {
    /// Our EDNS UDP payload size: advertised in OPT and the cap on UDP responses.
    pub max_udp_payload: u16,
    /// Whether a forwarder exists: sets RA, and out-of-zone queries are handed over instead of
    /// REFUSED.
    pub forwarding: bool,
}

impl Default for AnswerConfig {
    fn default() -> Self {
        AnswerConfig {
            max_udp_payload: 1232,
            forwarding: false,
        }
    }
}

/// What [`respond`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The response is in the output buffer.
    Reply(Reply),
    /// Send nothing (no header could be read, or the packet is a response).
    Drop,
    /// The name is outside every zone and forwarding is on: the caller forwards the query (the
    /// server hands the query it parsed for answering to the forwarder).
    Forward,
}

/// Facts about a response, for metrics and query logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    /// Response code (16 is BADVERS).
    pub rcode: u16,
    /// Records in the answer section.
    pub answers: u16,
    /// Index of the zone that answered, if one did.
    pub zone: Option<u16>,
    /// Whether the answer was copied from prebuilt bytes.
    pub prebuilt: bool,
    /// Whether TC was set.
    pub truncated: bool,
}

/// A query read ahead of answering: parsed and its lookup hash computed, so the UDP loop can
/// prefetch the lookups of the next queries of a batch while it answers this one.
pub(crate) struct Prepared {
    parsed: Result<Query, Reject>,
    hash: u64,
}

impl Prepared {
    /// Parses `packet` and computes its prebuilt-table hash.
    #[inline]
    pub(crate) fn new(snap: &Snapshot, packet: &[u8]) -> Prepared {
        let parsed = parse_query(packet);
        let hash = parsed.as_ref().map_or(0, |q| snap.key_hash(q.key()));
        Prepared { parsed, hash }
    }

    /// The parsed query, when the packet was one.
    #[inline]
    pub(crate) fn query(&self) -> Option<&Query> {
        self.parsed.as_ref().ok()
    }

    /// Prefetches the table slot (first stage).
    #[inline]
    pub(crate) fn prefetch_slot(&self, snap: &Snapshot) {
        if self.parsed.is_ok() {
            snap.prefetch_slot(self.hash);
        }
    }

    /// Prefetches the prebuilt entry (second stage, once the slot had time to arrive).
    #[inline]
    pub(crate) fn prefetch_entry(&self, snap: &Snapshot) {
        if self.parsed.is_ok() {
            snap.prefetch_entry(self.hash);
        }
    }
}

/// Answers `query` from `snap` into `out` (cleared first).
pub fn respond(
    snap: &Snapshot,
    query: &[u8],
    client: IpAddr,
    transport: Transport,
    cfg: &AnswerConfig,
    out: &mut Vec<u8>,
) -> Outcome {
    let prepared = Prepared::new(snap, query);
    respond_prepared(snap, query, &prepared, client, transport, cfg, out)
}

/// [`respond`] for a query already [`Prepared`] from the same `query` bytes.
pub(crate) fn respond_prepared(
    snap: &Snapshot,
    query: &[u8],
    prepared: &Prepared,
    client: IpAddr,
    transport: Transport,
    cfg: &AnswerConfig,
    out: &mut Vec<u8>,
) -> Outcome {
    out.clear();
    let q = match &prepared.parsed {
        Ok(q) => q,
        Err(Reject::Silent) => return Outcome::Drop,
        Err(Reject::NotImp) => return header_only(query, rcode::NOTIMP, cfg, out),
        Err(Reject::FormErr) => return header_only(query, rcode::FORMERR, cfg, out),
    };
    if q.edns.is_some_and(|e| e.version > 0) {
        let reply = empty_reply(query, q, rcode::BADVERS, false, transport, cfg, out);
        return Outcome::Reply(reply);
    }
    if q.qclass != CLASS_IN || q.qtype == rtype::AXFR || q.qtype == rtype::IXFR {
        let reply = empty_reply(query, q, rcode::REFUSED, false, transport, cfg, out);
        return Outcome::Reply(reply);
    }
    let n = q.name_len;
    let found = snap.prebuilt(q.key(), prepared.hash);
    let zone = match &found {
        Some(Found::Fixed { zone, .. }) => *zone,
        Some(Found::Varying(pre)) => pre.zone,
        None => match snap.zone_of(q.name()) {
            Some(zone) => zone,
            None if cfg.forwarding => return Outcome::Forward,
            None => {
                let reply = empty_reply(query, q, rcode::REFUSED, false, transport, cfg, out);
                return Outcome::Reply(reply);
            }
        },
    };
    out.extend_from_slice(&query[..q.question_end]);
    let visible = snap.visible(client, zone);
    let note = match &found {
        Some(Found::Varying(pre)) if visible => pre.note.as_deref(),
        _ => None,
    };
    let (mut meta, bytes) = match found {
        _ if !visible => (hidden_zone(snap, zone, q, out), None),
        Some(Found::Fixed { meta, bytes, .. }) => (meta, Some(bytes)),
        Some(Found::Varying(pre)) => {
            let packed = pre.pick();
            match pre.cut_for(|zone| snap.visible(client, zone)) {
                None => (packed.meta, Some(&packed.bytes[..])),
                Some(cut) => (cut.meta(), Some(&packed.bytes[..cut.at])),
            }
        }
        None => {
            let mut w = Writer::new(out);
            w.mark_name_at(HEADER_LEN, n);
            let sees = |cut: Cut| snap.visible(client, cut.zone);
            (compose(snap, q.name(), q.qtype, 0, &mut w, sees), None)
        }
    };
    let prebuilt = bytes.is_some();
    if let Some(bytes) = bytes {
        out.extend_from_slice(bytes);
        meta.additional_at += q.question_end;
    }
    let reply = Reply {
        rcode: meta.rcode,
        answers: 0,
        zone: Some(zone),
        prebuilt,
        truncated: false,
    };
    let limit = limit(q, transport, cfg);
    let how = Finish {
        authoritative: true,
        limit,
        note: note.unwrap_or_default(),
    };
    Outcome::Reply(finish(q, meta, reply, &how, cfg, out))
}

/// A zone the client may not see looks like a name that does not exist.
fn hidden_zone(snap: &Snapshot, zone: u16, q: &Query, out: &mut Vec<u8>) -> Composed {
    let mut w = Writer::new(out);
    w.mark_name_at(HEADER_LEN, q.name_len);
    let mut meta = Composed {
        rcode: rcode::NXDOMAIN,
        rotations: 1,
        ..Composed::default()
    };
    if let Some(z) = snap.zones.get(usize::from(zone)) {
        w.record(&z.apex, rtype::SOA, z.negative_ttl, &z.soa);
        meta.ns = 1;
    }
    meta.additional_at = w.len();
    meta
}

/// The response size allowed for this query.
fn limit(q: &Query, transport: Transport, cfg: &AnswerConfig) -> usize {
    response_limit(transport, q.edns, cfg.max_udp_payload)
}

/// Header and question only, with `code` (REFUSED, BADVERS, ...); `truncated` sets TC and
/// sends the reply whatever the client's size.
fn empty_reply(
    query: &[u8],
    q: &Query,
    code: u16,
    truncated: bool,
    transport: Transport,
    cfg: &AnswerConfig,
    out: &mut Vec<u8>,
) -> Reply {
    out.extend_from_slice(&query[..q.question_end]);
    let meta = Composed {
        rcode: code,
        additional_at: out.len(),
        rotations: 1,
        ..Composed::default()
    };
    let reply = Reply {
        rcode: code,
        answers: 0,
        zone: None,
        prebuilt: false,
        truncated,
    };
    let limit = if truncated {
        0
    } else {
        limit(q, transport, cfg)
    };
    let how = Finish {
        authoritative: false,
        limit,
        note: &[],
    };
    finish(q, meta, reply, &how, cfg, out)
}

/// Header and question of `query` (parsed as `q`) with `code`, for answers decided outside the
/// snapshot: a failed forward, or a forwarded answer too large for UDP when `truncated`.
pub(crate) fn reply_without_records(
    query: &[u8],
    q: &Query,
    code: u16,
    truncated: bool,
    transport: Transport,
    cfg: &AnswerConfig,
    out: &mut Vec<u8>,
) -> Reply {
    out.clear();
    empty_reply(query, q, code, truncated, transport, cfg, out)
}

/// `out`, an answer to `query` (parsed as `q`) too large for the link it leaves by (EMSGSIZE:
/// answers are sent with DF), cut to header and question with TC, its rcode and AA kept, so the
/// client asks again over TCP.
pub(crate) fn truncate_for_link(
    query: &[u8],
    q: &Query,
    cfg: &AnswerConfig,
    out: &mut Vec<u8>,
) -> Reply {
    let code = out.get(3).map_or(rcode::SERVFAIL, |b| u16::from(b & 0x0f));
    let authoritative = out.get(2).map_or(0, |b| b & 0x04);
    let reply = reply_without_records(query, q, code, true, Transport::Udp, cfg, out);
    out[2] |= authoritative;
    reply
}

/// Header alone (the question could not be read): FORMERR or NOTIMP.
fn header_only(query: &[u8], code: u16, cfg: &AnswerConfig, out: &mut Vec<u8>) -> Outcome {
    out.extend_from_slice(&query[..HEADER_LEN]);
    out[2] = 0x80 | (query[2] & 0x79);
    out[3] = if cfg.forwarding { 0x80 } else { 0 } | (code & 0x0f) as u8;
    out[4..HEADER_LEN].fill(0);
    Outcome::Reply(Reply {
        rcode: code,
        answers: 0,
        zone: None,
        prebuilt: false,
        truncated: false,
    })
}

/// How [`finish`] completes a message.
struct Finish<'a> {
    /// Sets AA.
    authoritative: bool,
    /// Largest size allowed.
    limit: usize,
    /// EDNS options for the OPT record (a name's note), empty for none.
    note: &'a [u8],
}

/// Fits the message to `limit` (drop the additional section, else truncate with TC), then writes
/// the header and the OPT record (with the note's options).
fn finish(
    q: &Query,
    mut meta: Composed,
    mut reply: Reply,
    how: &Finish<'_>,
    cfg: &AnswerConfig,
    out: &mut Vec<u8>,
) -> Reply {
    let (authoritative, limit, note) = (how.authoritative, how.limit, how.note);
    let opt = if q.edns.is_some() {
        OPT_LEN + note.len()
    } else {
        0
    };
    if out.len() + opt > limit {
        if meta.ar > 0 && meta.additional_at + opt <= limit {
            out.truncate(meta.additional_at);
            meta.ar = 0;
        } else {
            out.truncate(q.question_end);
            meta.an = 0;
            meta.ns = 0;
            meta.ar = 0;
            reply.truncated = true;
        }
    }
    let flags = out[2];
    out[2] = 0x80
        | (flags & 0x79)
        | if authoritative { 0x04 } else { 0 }
        | if reply.truncated { 0x02 } else { 0 };
    out[3] = if cfg.forwarding { 0x80 } else { 0 } | (out[3] & 0x10) | (meta.rcode & 0x0f) as u8;
    reply.answers = meta.an;
    let ar = meta.ar + u16::from(q.edns.is_some());
    for (i, v) in [1, meta.an, meta.ns, ar].into_iter().enumerate() {
        out[4 + 2 * i..6 + 2 * i].copy_from_slice(&v.to_be_bytes());
    }
    if let Some(edns) = q.edns {
        push_opt(
            out,
            cfg.max_udp_payload.max(512),
            meta.rcode,
            edns.dnssec_ok,
            note,
        );
    }
    reply
}
