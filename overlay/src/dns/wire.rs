//! Reading queries off the wire without allocating: header, question (lowercased copy), EDNS.

/// Length of the DNS header.
pub(crate) const HEADER_LEN: usize = 12;
/// Largest wire length of a name.
pub(crate) const MAX_NAME: usize = 255;

/// Record and query types the engine treats specially.
pub(crate) mod rtype {
    pub(crate) const A: u16 = 1;
    pub(crate) const NS: u16 = 2;
    pub(crate) const CNAME: u16 = 5;
    pub(crate) const SOA: u16 = 6;
    pub(crate) const MX: u16 = 15;
    pub(crate) const AAAA: u16 = 28;
    pub(crate) const SRV: u16 = 33;
    pub(crate) const OPT: u16 = 41;
    pub(crate) const IXFR: u16 = 251;
    pub(crate) const AXFR: u16 = 252;
    pub(crate) const ANY: u16 = 255;
}

/// Response codes used by the engine (BADVERS is extended: 16).
pub(crate) mod rcode {
    pub(crate) const NOERROR: u16 = 0;
    pub(crate) const FORMERR: u16 = 1;
    pub(crate) const SERVFAIL: u16 = 2;
    pub(crate) const NXDOMAIN: u16 = 3;
    pub(crate) const NOTIMP: u16 = 4;
    pub(crate) const REFUSED: u16 = 5;
    pub(crate) const BADVERS: u16 = 16;
}

/// Class IN.
pub(crate) const CLASS_IN: u16 = 1;

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

/// A parsed query: offsets into the packet plus a lowercased copy of the name.
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

/// The 16-bit big-endian value at `off`.
#[inline]
pub(crate) fn u16_at(p: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*p.get(off)?, *p.get(off + 1)?]))
}

/// Parses a query packet: header checks, exactly one question, EDNS in the additional section.
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
fn skip_record(p: &[u8], mut off: usize) -> Result<(usize, bool, u16), Reject> {
    let start = off;
    loop {
        let len = *p.get(off).ok_or(Reject::FormErr)?;
        match len & 0xc0 {
            0xc0 => {
                off += 2;
                break;
            }
            0x00 => {
                off += 1 + usize::from(len);
                if len == 0 {
                    break;
                }
            }
            _ => return Err(Reject::FormErr),
        }
    }
    let owner_root = off == start + 1;
    let ty = u16_at(p, off).ok_or(Reject::FormErr)?;
    let rdlen = usize::from(u16_at(p, off + 8).ok_or(Reject::FormErr)?);
    let next = off + 10 + rdlen;
    if next > p.len() {
        return Err(Reject::FormErr);
    }
    Ok((next, owner_root, ty))
}

/// Iterates the label start offsets of a wire name (without the root label).
pub(crate) fn label_starts(name: &[u8]) -> impl Iterator<Item = usize> + '_ {
    let mut off = 0;
    std::iter::from_fn(move || {
        let len = usize::from(*name.get(off)?);
        if len == 0 {
            return None;
        }
        let here = off;
        off += len + 1;
        Some(here)
    })
}

/// Renders a wire name as dotted text (for logs and errors), root as ".".
pub(crate) fn name_to_string(name: &[u8]) -> String {
    let mut s = String::new();
    for start in label_starts(name) {
        let len = usize::from(name[start]);
        for &b in &name[start + 1..start + 1 + len] {
            if b == b'.' || b == b'\\' || !b.is_ascii_graphic() {
                s.push_str(&format!("\\{b:03}"));
            } else {
                s.push(char::from(b));
            }
        }
        s.push('.');
    }
    if s.is_empty() {
        s.push('.');
    }
    s
}
