//! Raw DNS wire helpers of the forwarder: cache keys and a strict query parser for the
//! cache-hit path.

use std::ops::Range;

use hickory_proto::op::Query;
use hickory_proto::rr::Name;

use crate::dns::wire::{rtype, u16_at as be16, Edns, HEADER_LEN};

/// Longest key: a 255-byte wire name, then qtype, qclass and the DO flag.
const MAX_KEY: usize = 255 + 5;

/// A cache key: the lowercased wire-format name, qtype, qclass and the DO flag. Lives on the
/// stack so building one for a lookup allocates nothing.
#[derive(Clone)]
pub struct Key {
    buf: [u8; MAX_KEY],
    len: usize,
    name_len: usize,
}

impl Key {
    /// The key of a parsed question; None when the name does not fit the wire format.
    pub fn from_query(query: &Query, dnssec_ok: bool) -> Option<Key> {
        let mut key = Key::name_only(query.name())?;
        key.finish(
            u16::from(query.query_type()),
            u16::from(query.query_class()),
            dnssec_ok,
        );
        Some(key)
    }

    /// A key holding only the lowercased wire form of `name`, for routing.
    pub fn name_only(name: &Name) -> Option<Key> {
        let mut key = Key {
            buf: [0; MAX_KEY],
            len: 0,
            name_len: 0,
        };
        for label in name.iter() {
            let n = u8::try_from(label.len())
                .ok()
                .filter(|&n| (1..=63).contains(&n))?;
            key.push(n)?;
            for &b in label {
                key.push(b.to_ascii_lowercase())?;
            }
        }
        key.push(0)?;
        key.name_len = key.len;
        Some(key)
    }

    fn push(&mut self, b: u8) -> Option<()> {
        self.extend_lowercase(&[b])
    }

    /// Appends `bytes` lowercased; None past the 255-byte limit of a name.
    fn extend_lowercase(&mut self, bytes: &[u8]) -> Option<()> {
        let end = self.len + bytes.len();
        if end > 255 {
            return None;
        }
        for (d, &b) in self.buf[self.len..end].iter_mut().zip(bytes) {
            // Branch-free ASCII lowercase, so the loop vectorises.
            *d = b | (u8::from(b.wrapping_sub(b'A') < 26) << 5);
        }
        self.len = end;
        Some(())
    }

    fn finish(&mut self, qtype: u16, qclass: u16, dnssec_ok: bool) {
        let [t0, t1] = qtype.to_be_bytes();
        let [c0, c1] = qclass.to_be_bytes();
        self.buf[self.len..self.len + 5].copy_from_slice(&[t0, t1, c0, c1, u8::from(dnssec_ok)]);
        self.len += 5;
    }

    /// The whole key.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// The lowercased wire-format name, root label included.
    pub fn name(&self) -> &[u8] {
        &self.buf[..self.name_len]
    }
}

/// Every suffix of a wire-format name at a label boundary, longest first, ending with the root.
pub fn suffixes(name: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut pos = Some(0usize);
    std::iter::from_fn(move || {
        let start = pos?;
        let len = usize::from(*name.get(start)?);
        pos = (len != 0).then_some(start + 1 + len);
        name.get(start..)
    })
}

/// A plain standard query read straight from the wire.
pub struct WireQuery {
    /// Query id.
    pub id: u16,
    /// Recursion desired.
    pub rd: bool,
    /// Checking disabled.
    pub cd: bool,
    /// Byte range of the question (name, type, class) in the packet.
    pub question: Range<usize>,
    /// The cache key of the question.
    pub key: Key,
    /// The OPT record, when the query has one.
    pub edns: Option<Edns>,
}

/// Parses a query with exactly one question and at most an OPT record (EDNS version 0) in its
/// additional section. Anything else, including compressed question names, yields None so the
/// caller takes the general path.
pub fn parse_query(p: &[u8]) -> Option<WireQuery> {
    let header = p.get(..HEADER_LEN)?;
    let opcode = (header[2] >> 3) & 0x0f;
    if header[2] & 0x80 != 0 || opcode != 0 {
        return None;
    }
    let counts = [be16(p, 4)?, be16(p, 6)?, be16(p, 8)?, be16(p, 10)?];
    if counts[0] != 1 || counts[1] != 0 || counts[2] != 0 || counts[3] > 1 {
        return None;
    }
    let mut q = WireQuery {
        id: be16(p, 0)?,
        rd: header[2] & 0x01 != 0,
        cd: header[3] & 0x10 != 0,
        question: HEADER_LEN..HEADER_LEN,
        key: Key {
            buf: [0; MAX_KEY],
            len: 0,
            name_len: 0,
        },
        edns: None,
    };
    let key = &mut q.key;
    let mut pos = HEADER_LEN;
    loop {
        let n = usize::from(*p.get(pos)?);
        if n > 63 {
            return None;
        }
        // The length byte comes along: at most 63, it is no ASCII letter to lowercase.
        key.extend_lowercase(p.get(pos..pos + 1 + n)?)?;
        pos += 1 + n;
        if n == 0 {
            break;
        }
    }
    key.name_len = key.len;
    key.finish(be16(p, pos)?, be16(p, pos + 2)?, false);
    q.question.end = pos + 4;
    pos += 4;
    if counts[3] == 1 {
        if *p.get(pos)? != 0 || be16(p, pos + 1)? != rtype::OPT || *p.get(pos + 6)? != 0 {
            return None;
        }
        let edns = Edns {
            payload: be16(p, pos + 3)?,
            version: 0,
            dnssec_ok: be16(p, pos + 7)? & 0x8000 != 0,
        };
        pos += 11 + usize::from(be16(p, pos + 9)?);
        let last = q.key.len - 1;
        q.key.buf[last] = u8::from(edns.dnssec_ok);
        q.edns = Some(edns);
    }
    (pos == p.len()).then_some(q)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Message;
    use hickory_proto::rr::RecordType;

    fn query_bytes(name: &str, edns: Option<hickory_proto::op::Edns>) -> Vec<u8> {
        let mut m = Message::query();
        m.metadata.recursion_desired = true;
        let name = Name::from_ascii(name).expect("name");
        m.add_query(Query::query(name, RecordType::AAAA));
        m.edns = edns;
        m.to_vec().expect("encode")
    }

    #[test]
    fn wire_key_equals_parsed_key_and_ignores_case() {
        let bytes = query_bytes("WwW.Example.ORG.", None);
        let q = parse_query(&bytes).expect("parses");
        let parsed = Message::from_vec(&bytes).expect("decode");
        let key = Key::from_query(&parsed.queries[0], false).expect("key");
        assert_eq!(q.key.as_bytes(), key.as_bytes());
        assert_eq!(q.key.name(), b"\x03www\x07example\x03org\x00");
        assert_eq!(&bytes[q.question.clone()][1..4], b"WwW");
        assert!(q.rd && q.edns.is_none());
    }

    #[test]
    fn edns_payload_and_do_flag_are_read_and_do_is_part_of_the_key() {
        let mut edns = hickory_proto::op::Edns::new();
        edns.set_max_payload(1400).set_dnssec_ok(true);
        let with = parse_query(&query_bytes("a.test.", Some(edns))).expect("parses");
        assert_eq!(
            with.edns,
            Some(Edns {
                payload: 1400,
                version: 0,
                dnssec_ok: true
            })
        );
        let without = parse_query(&query_bytes("a.test.", None)).expect("parses");
        assert_ne!(with.key.as_bytes(), without.key.as_bytes());
    }

    #[test]
    fn unusual_queries_are_left_to_the_general_path() {
        let good = query_bytes("a.test.", None);
        let mut response = good.clone();
        response[2] |= 0x80;
        let mut trailing = good.clone();
        trailing.push(0);
        let mut two_questions = good.clone();
        two_questions[5] = 2;
        let mut pointer = good.clone();
        pointer[12] = 0xc0;
        let mut edns1 = hickory_proto::op::Edns::new();
        edns1.set_version(1);
        for bad in [
            &response[..],
            &trailing,
            &two_questions,
            &pointer,
            &good[..good.len() - 1],
            &query_bytes("a.test.", Some(edns1)),
        ] {
            assert!(parse_query(bad).is_none());
        }
        assert!(parse_query(&good).is_some());
    }

    #[test]
    fn suffixes_walk_label_boundaries() {
        let all: Vec<&[u8]> = suffixes(b"\x01a\x04corp\x00").collect();
        assert_eq!(all, [&b"\x01a\x04corp\x00"[..], b"\x04corp\x00", b"\x00"]);
    }
}
