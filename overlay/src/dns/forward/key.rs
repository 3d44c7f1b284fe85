//! The forwarder's cache key, derived from the one parsed [`Query`] without reading the packet
//! again, and the name suffixes that routing walks.

use hickory_proto::rr::Name;

use crate::dns::wire::{Query, MAX_NAME};

/// Longest key: a 255-byte wire name, then qtype, qclass and the DO flag.
const MAX_KEY: usize = MAX_NAME + 5;

/// A cache key: the lowercased wire-format name, qtype, qclass and the DO flag. Lives on the
/// stack so building one for a lookup allocates nothing.
#[derive(Clone)]
pub struct Key {
    buf: [u8; MAX_KEY],
    len: usize,
    name_len: usize,
}

impl Key {
    /// The key of a parsed query: the lowercased name and QTYPE the parser already laid out for
    /// the prebuilt table, then QCLASS and the DO flag. Built only for queries that are forwarded.
    pub fn of(q: &Query) -> Key {
        let mut key = Key {
            buf: [0; MAX_KEY],
            len: 0,
            name_len: q.name_len,
        };
        let head = q.key();
        let [c0, c1] = q.qclass.to_be_bytes();
        key.buf[..head.len()].copy_from_slice(head);
        key.buf[head.len()..head.len() + 3].copy_from_slice(&[c0, c1, u8::from(q.dnssec_ok())]);
        key.len = head.len() + 3;
        key
    }

    /// A key holding only the lowercased wire form of `name`, for routing; None when the name
    /// does not fit the wire format.
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

    /// Appends one byte; None past the 255-byte limit of a name.
    fn push(&mut self, b: u8) -> Option<()> {
        if self.len >= MAX_NAME {
            return None;
        }
        self.buf[self.len] = b;
        self.len += 1;
        Some(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::wire::parse_query;
    use hickory_proto::op::{Edns, Message, Query as Question};
    use hickory_proto::rr::{DNSClass, RecordType};

    fn query_bytes(name: &str, class: DNSClass, edns: Option<Edns>) -> Vec<u8> {
        let mut m = Message::query();
        m.metadata.recursion_desired = true;
        let mut q = Question::query(Name::from_ascii(name).expect("name"), RecordType::AAAA);
        q.set_query_class(class);
        m.add_query(q);
        m.edns = edns;
        m.to_vec().expect("encode")
    }

    fn key_of(packet: &[u8]) -> Key {
        Key::of(&parse_query(packet).expect("parses"))
    }

    #[test]
    fn key_is_lowercased_name_qtype_qclass_and_do() {
        let bytes = query_bytes("WwW.Example.ORG.", DNSClass::IN, None);
        let key = key_of(&bytes);
        assert_eq!(key.name(), b"\x03www\x07example\x03org\x00");
        assert_eq!(
            key.as_bytes(),
            b"\x03www\x07example\x03org\x00\x00\x1c\x00\x01\x00"
        );
        let routed = Key::name_only(&Name::from_ascii("WwW.Example.ORG.").expect("name"));
        assert_eq!(routed.expect("fits").as_bytes(), key.name());
        let chaos = key_of(&query_bytes("www.example.org.", DNSClass::CH, None));
        assert_eq!(
            &chaos.as_bytes()[chaos.name().len()..],
            b"\x00\x1c\x00\x03\x00"
        );
    }

    #[test]
    fn the_do_flag_is_part_of_the_key() {
        let mut edns = Edns::new();
        edns.set_max_payload(1400).set_dnssec_ok(true);
        let with = key_of(&query_bytes("a.test.", DNSClass::IN, Some(edns)));
        assert_eq!(with.as_bytes().last(), Some(&1));
        let plain = Edns::new();
        let without = key_of(&query_bytes("a.test.", DNSClass::IN, Some(plain)));
        assert_eq!(
            without.as_bytes(),
            key_of(&query_bytes("a.test.", DNSClass::IN, None)).as_bytes()
        );
        assert_ne!(with.as_bytes(), without.as_bytes());
    }

    #[test]
    fn suffixes_walk_label_boundaries() {
        let all: Vec<&[u8]> = suffixes(b"\x01a\x04corp\x00").collect();
        assert_eq!(all, [&b"\x01a\x04corp\x00"[..], b"\x04corp\x00", b"\x00"]);
    }
}
