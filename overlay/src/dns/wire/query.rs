//! The one query parser: header checks, exactly one question (a lowercased copy of its name, on
//! the stack), EDNS in the additional section. Pure, no allocation.

use std::ops::Range;

use super::{rtype, skip_name, u16_at, HEADER_LEN, MAX_NAME};

/// The EDNS0 OPT record of a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Edns {
    /// Requester's UDP payload size (the OPT class).
    pub(crate) payload: u16,
    /// EDNS version.
    pub(crate) version: u8,
    /// The DO bit.
    pub(crate) dnssec_ok: bool,
}

/// A parsed query: offsets into the packet plus a lowercased copy of the name. The header (id,
/// RD, CD) is not copied: answers take it from the packet, which every holder of a `Query` has.
#[derive(Clone)]
pub(crate) struct Query {
    /// Byte offset just past the question section.
    pub(crate) question_end: usize,
    /// QTYPE.
    pub(crate) qtype: u16,
    /// QCLASS.
    pub(crate) qclass: u16,
    /// The question name, lowercased, in wire form (ends with the root label), then QTYPE.
    pub(crate) lower: [u8; MAX_NAME + 2],
    /// Wire length of `lower`.
    pub(crate) name_len: usize,
    /// The OPT record, when the query had one.
    pub(crate) edns: Option<Edns>,
}

impl Query {
    /// The lowercased question name in wire form.
    #[inline]
    pub(crate) fn name(&self) -> &[u8] {
        &self.lower[..self.name_len]
    }

    /// The lookup key of prebuilt answers: the lowercased name followed by the big-endian QTYPE.
    #[inline]
    pub(crate) fn key(&self) -> &[u8] {
        &self.lower[..self.name_len + 2]
    }

    /// Where the question (name as asked, QTYPE, QCLASS) lies in the packet.
    #[inline]
    pub(crate) fn question(&self) -> Range<usize> {
        HEADER_LEN..self.question_end
    }

    /// Whether the query's OPT record sets DO.
    #[inline]
    pub(crate) fn dnssec_ok(&self) -> bool {
        self.edns.is_some_and(|e| e.dnssec_ok)
    }
}

/// Why a packet could not be taken as a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reject {
    /// Not a query we may answer (too short for a header, or a response): stay silent.
    Silent,
    /// The opcode is not QUERY: NOTIMP.
    NotImp,
    /// A header was read but the rest is malformed: FORMERR.
    FormErr,
}

/// Parses a query packet. Silent: shorter than a header, or a response. NotImp: an opcode other
/// than QUERY. FormErr: QDCOUNT other than 1, a compressed or cut question name, a name over 255
/// bytes, a record running off the end, two OPT records or one not owned by the root, bytes
/// after the last record. Answer and authority records and additional records other than OPT
/// are skipped; unknown EDNS options are ignored.
pub(crate) fn parse_query(p: &[u8]) -> Result<Query, Reject> {
    if p.len() < HEADER_LEN || p[2] & 0x80 != 0 {
        return Err(Reject::Silent);
    }
    if (p[2] >> 3) & 0x0f != 0 {
        return Err(Reject::NotImp);
    }
    let count = |off| u16_at(p, off).unwrap_or(0);
    if count(4) != 1 {
        return Err(Reject::FormErr);
    }
    let mut q = Query {
        question_end: 0,
        qtype: 0,
        qclass: 0,
        lower: [0; MAX_NAME + 2],
        name_len: 0,
        edns: None,
    };
    let mut off = HEADER_LEN;
    loop {
        let len = usize::from(*p.get(off).ok_or(Reject::FormErr)?);
        if len & 0xc0 != 0 {
            return Err(Reject::FormErr);
        }
        if q.name_len + len + 1 > MAX_NAME || off + 1 + len > p.len() {
            return Err(Reject::FormErr);
        }
        q.lower[q.name_len] = len as u8;
        for i in 0..len {
            q.lower[q.name_len + 1 + i] = p[off + 1 + i].to_ascii_lowercase();
        }
        q.name_len += len + 1;
        off += len + 1;
        if len == 0 {
            break;
        }
    }
    q.qtype = u16_at(p, off).ok_or(Reject::FormErr)?;
    q.lower[q.name_len..q.name_len + 2].copy_from_slice(&q.qtype.to_be_bytes());
    q.qclass = u16_at(p, off + 2).ok_or(Reject::FormErr)?;
    off += 4;
    q.question_end = off;
    let records = usize::from(count(6)) + usize::from(count(8));
    for _ in 0..records {
        off = skip_record(p, off)?.0;
    }
    for _ in 0..count(10) {
        let (next, owner_root, ty) = skip_record(p, off)?;
        if ty == rtype::OPT {
            if !owner_root || q.edns.is_some() {
                return Err(Reject::FormErr);
            }
            let class = u16_at(p, off + 3).ok_or(Reject::FormErr)?;
            q.edns = Some(Edns {
                payload: class,
                version: p[off + 6],
                dnssec_ok: p[off + 7] & 0x80 != 0,
            });
        }
        off = next;
    }
    if off != p.len() {
        return Err(Reject::FormErr);
    }
    Ok(q)
}

/// Skips one resource record at `off`; returns (next offset, owner is the root, type).
fn skip_record(p: &[u8], off: usize) -> Result<(usize, bool, u16), Reject> {
    let name_end = skip_name(p, off).ok_or(Reject::FormErr)?;
    let owner_root = name_end == off + 1;
    let ty = u16_at(p, name_end).ok_or(Reject::FormErr)?;
    let rdlen = usize::from(u16_at(p, name_end + 8).ok_or(Reject::FormErr)?);
    let next = name_end + 10 + rdlen;
    if next > p.len() {
        return Err(Reject::FormErr);
    }
    Ok((next, owner_root, ty))
}
