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

#[cfg(test)]
mod tests {
    use hickory_proto::op::{Message, OpCode, Query as Question};
    use hickory_proto::rr::{DNSClass, Name, RecordType};

    use super::*;

    /// A query for `name` with RD set, id 0x1234, and an OPT record when `edns` is
    /// (payload, version, DO).
    fn query(name: &str, ty: RecordType, edns: Option<(u16, u8, bool)>) -> Vec<u8> {
        let mut m = Message::query();
        m.metadata.id = 0x1234;
        m.metadata.recursion_desired = true;
        m.add_query(Question::query(Name::from_ascii(name).expect("name"), ty));
        if let Some((payload, version, dnssec_ok)) = edns {
            let mut e = hickory_proto::op::Edns::new();
            e.set_max_payload(payload)
                .set_version(version)
                .set_dnssec_ok(dnssec_ok);
            m.edns = Some(e);
        }
        m.to_vec().expect("encode")
    }

    /// A header with these flags and counts, then `body` as it is.
    fn raw(flags: u16, counts: [u16; 4], body: &[u8]) -> Vec<u8> {
        let mut p = vec![0x12, 0x34];
        p.extend_from_slice(&flags.to_be_bytes());
        counts
            .iter()
            .for_each(|c| p.extend_from_slice(&c.to_be_bytes()));
        p.extend_from_slice(body);
        p
    }

    /// The question a.test. A IN in wire form.
    const QUESTION: &[u8] = b"\x01a\x04test\x00\x00\x01\x00\x01";
    /// An OPT record: payload 1232, version 0, no flags, no options.
    const OPT: &[u8] = b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00";

    fn reject(p: &[u8]) -> Option<Reject> {
        parse_query(p).err()
    }

    #[test]
    fn short_packets_and_responses_are_silent() {
        let good = query("a.test.", RecordType::A, None);
        assert_eq!(reject(&[]), Some(Reject::Silent));
        assert_eq!(reject(&good[..HEADER_LEN - 1]), Some(Reject::Silent));
        let mut response = good.clone();
        response[2] |= 0x80;
        assert_eq!(reject(&response), Some(Reject::Silent));
        assert_eq!(reject(&good), None);
    }

    #[test]
    fn opcodes_other_than_query_are_notimp() {
        for op in [OpCode::Status, OpCode::Notify, OpCode::Update] {
            let mut m = Message::from_vec(&query("a.test.", RecordType::A, None)).expect("ok");
            m.metadata.op_code = op;
            let p = m.to_vec().expect("encode");
            assert_eq!(reject(&p), Some(Reject::NotImp), "{op:?}");
        }
    }

    #[test]
    fn malformed_queries_are_formerr() {
        let good = query("a.test.", RecordType::A, None);
        let mut cases: Vec<(&str, Vec<u8>)> = vec![
            ("no question", raw(0x0100, [0, 0, 0, 0], &[])),
            (
                "two questions",
                raw(0x0100, [2, 0, 0, 0], &[QUESTION, QUESTION].concat()),
            ),
            ("cut question", good[..good.len() - 1].to_vec()),
            ("name without its root", raw(0x0100, [1, 0, 0, 0], b"\x01a")),
            (
                "pointer in the question",
                raw(0x0100, [1, 0, 0, 0], b"\xc0\x0c\x00\x01\x00\x01"),
            ),
            (
                "reserved label type",
                raw(0x0100, [1, 0, 0, 0], b"\x41a\x00\x00\x01\x00\x01"),
            ),
            (
                "record past the end",
                raw(0x0100, [1, 0, 0, 1], &[QUESTION, &OPT[..10]].concat()),
            ),
            (
                "two OPT records",
                raw(0x0100, [1, 0, 0, 2], &[QUESTION, OPT, OPT].concat()),
            ),
            (
                "OPT not owned by the root",
                raw(0x0100, [1, 0, 0, 1], &[QUESTION, b"\x01x", OPT].concat()),
            ),
        ];
        let mut trailing = good.clone();
        trailing.push(0);
        cases.push(("trailing bytes", trailing));
        let mut long = Vec::new();
        (0..5).for_each(|_| long.extend_from_slice(&[&[63u8][..], &[b'a'; 63]].concat()));
        long.extend_from_slice(b"\x00\x00\x01\x00\x01");
        cases.push(("name over 255 bytes", raw(0x0100, [1, 0, 0, 0], &long)));
        for (what, p) in cases {
            assert_eq!(reject(&p), Some(Reject::FormErr), "{what}");
        }
    }

    #[test]
    fn a_name_of_255_bytes_is_the_longest_read() {
        let label = |n: usize| [&[n as u8][..], &vec![b'A'; n]].concat();
        let name = [label(63), label(63), label(63), label(61), vec![0]].concat();
        assert_eq!(name.len(), MAX_NAME);
        let p = raw(
            0x0100,
            [1, 0, 0, 0],
            &[&name[..], b"\x00\x01\x00\x01"].concat(),
        );
        let q = parse_query(&p).expect("fits");
        assert_eq!(q.name(), name.to_ascii_lowercase());
    }

    #[test]
    fn the_question_is_read_lowercased_and_keyed_by_name_then_type() {
        let p = query("WwW.Example.ORG.", RecordType::AAAA, None);
        let q = parse_query(&p).expect("parses");
        assert_eq!(q.name(), b"\x03www\x07example\x03org\x00");
        assert_eq!(q.key(), b"\x03www\x07example\x03org\x00\x00\x1c");
        assert_eq!((q.qtype, q.qclass), (28, 1));
        assert_eq!(
            &p[q.question()],
            b"\x03WwW\x07Example\x03ORG\x00\x00\x1c\x00\x01"
        );
        assert_eq!(q.question_end, p.len());
        assert!(q.edns.is_none() && !q.dnssec_ok());
        let mut chaos = Message::from_vec(&p).expect("decodes");
        chaos.queries[0].set_query_class(DNSClass::CH);
        let chaos = parse_query(&chaos.to_vec().expect("encode")).expect("parses");
        assert_eq!(chaos.qclass, 3);
    }

    #[test]
    fn edns_payload_version_and_do_are_read() {
        let q =
            parse_query(&query("a.test.", RecordType::A, Some((1400, 0, true)))).expect("parses");
        let edns = Edns {
            payload: 1400,
            version: 0,
            dnssec_ok: true,
        };
        assert_eq!(q.edns, Some(edns));
        assert!(q.dnssec_ok());
        let v1 = parse_query(&query("a.test.", RecordType::A, Some((1232, 1, false))))
            .expect("version 1 parses: the answer is BADVERS");
        assert_eq!(v1.edns.map(|e| (e.version, e.dnssec_ok)), Some((1, false)));
    }

    #[test]
    fn other_sections_are_skipped_and_edns_options_ignored() {
        let answer = b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04\x0a\x00\x00\x01";
        let cookie = b"\x00\x00\x29\x04\xd0\x00\x00\x80\x00\x00\x0c\x00\x0a\x00\x08abcdefgh";
        let body = [
            QUESTION,
            answer,
            answer,
            b"\x01x\x00\x00\x10\x00\x01\x00\x00\x00\x00\x00\x00",
            cookie,
        ]
        .concat();
        let q = parse_query(&raw(0x0100, [1, 1, 1, 2], &body)).expect("parses");
        assert_eq!(q.question_end, HEADER_LEN + QUESTION.len());
        assert_eq!(
            q.edns,
            Some(Edns {
                payload: 1232,
                version: 0,
                dnssec_ok: true
            })
        );
    }
}
