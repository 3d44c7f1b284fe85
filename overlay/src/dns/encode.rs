//! Writing records into a message buffer with name compression (RFC 1035 4.1.4).

use super::wire::{label_starts, CLASS_IN};

/// Record data in the form the encoder writes: names kept apart so they can be compressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Rd {
    /// Opaque RDATA, written as is (A, AAAA, TXT and every type without compressible names).
    Raw(Box<[u8]>),
    /// A single compressible name (CNAME, PTR, NS).
    Name(Box<[u8]>),
    /// MX: preference, then a compressible exchange name.
    Mx(u16, Box<[u8]>),
    /// SRV: priority, weight, port, then a target name that must not be compressed (RFC 2782).
    Srv([u8; 6], Box<[u8]>),
    /// SOA: mname, rname (compressible), then serial, refresh, retry, expire, minimum.
    Soa(Box<[u8]>, Box<[u8]>, [u8; 20]),
}

/// Most names remembered as compression targets in one message.
const MAX_MARKS: usize = 48;

/// Appends records to a message buffer, compressing names against those already written.
pub(crate) struct Writer<'a> {
    buf: &'a mut Vec<u8>,
    marks: [u16; MAX_MARKS],
    marked: usize,
}

impl<'a> Writer<'a> {
    /// A writer appending to `buf`, which already holds the header and question.
    pub(crate) fn new(buf: &'a mut Vec<u8>) -> Self {
        Writer {
            buf,
            marks: [0; MAX_MARKS],
            marked: 0,
        }
    }

    /// Current length of the message.
    pub(crate) fn len(&self) -> usize {
        self.buf.len()
    }

    /// Remembers every suffix of the uncompressed name at `off` as a compression target.
    pub(crate) fn mark_name_at(&mut self, off: usize, name_len: usize) {
        let end = (off + name_len).min(self.buf.len());
        let mut starts = [0usize; 128];
        let mut n = 0;
        for s in label_starts(&self.buf[off..end]) {
            if n < starts.len() {
                starts[n] = off + s;
                n += 1;
            }
        }
        for &s in &starts[..n] {
            self.mark(s);
        }
    }

    fn mark(&mut self, off: usize) {
        if self.marked < MAX_MARKS && off < 0x4000 {
            self.marks[self.marked] = off as u16;
            self.marked += 1;
        }
    }

    /// Writes a wire name, replacing its longest already-written suffix by a pointer.
    pub(crate) fn name(&mut self, name: &[u8], compress: bool) {
        let mut pos = 0;
        while let Some(&len) = name.get(pos) {
            if len == 0 {
                break;
            }
            if compress {
                if let Some(target) = self.find(&name[pos..]) {
                    self.buf.extend_from_slice(&(0xc000 | target).to_be_bytes());
                    return;
                }
            }
            let here = self.buf.len();
            self.mark(here);
            let end = (pos + 1 + usize::from(len)).min(name.len());
            self.buf.extend_from_slice(&name[pos..end]);
            pos = end;
        }
        self.buf.push(0);
    }

    fn find(&self, suffix: &[u8]) -> Option<u16> {
        self.marks[..self.marked]
            .iter()
            .copied()
            .find(|&m| names_equal_at(self.buf, usize::from(m), suffix))
    }

    /// Appends a big-endian u16.
    pub(crate) fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    /// Appends a big-endian u32.
    pub(crate) fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    /// Appends one resource record of class IN.
    pub(crate) fn record(&mut self, owner: &[u8], rtype: u16, ttl: u32, rd: &Rd) {
        self.name(owner, true);
        self.u16(rtype);
        self.u16(CLASS_IN);
        self.u32(ttl);
        let len_at = self.buf.len();
        self.u16(0);
        match rd {
            Rd::Raw(bytes) => self.buf.extend_from_slice(bytes),
            Rd::Name(n) => self.name(n, true),
            Rd::Mx(pref, n) => {
                self.u16(*pref);
                self.name(n, true);
            }
            Rd::Srv(head, target) => {
                self.buf.extend_from_slice(head);
                self.name(target, false);
            }
            Rd::Soa(mname, rname, tail) => {
                self.name(mname, true);
                self.name(rname, true);
                self.buf.extend_from_slice(tail);
            }
        }
        let rdlen = (self.buf.len() - len_at - 2) as u16;
        self.buf[len_at..len_at + 2].copy_from_slice(&rdlen.to_be_bytes());
    }
}

/// Whether the (possibly compressed) name at `off` in `buf` equals the wire name `suffix`,
/// ignoring ASCII case.
fn names_equal_at(buf: &[u8], mut off: usize, suffix: &[u8]) -> bool {
    let mut i = 0;
    let mut hops = 0;
    loop {
        let Some(&len) = buf.get(off) else {
            return false;
        };
        if len & 0xc0 == 0xc0 {
            hops += 1;
            let Some(&low) = buf.get(off + 1) else {
                return false;
            };
            if hops > 64 {
                return false;
            }
            off = (usize::from(len & 0x3f) << 8) | usize::from(low);
            continue;
        }
        if suffix.get(i) != Some(&len) {
            return false;
        }
        if len == 0 {
            return true;
        }
        let n = usize::from(len);
        match (buf.get(off + 1..off + 1 + n), suffix.get(i + 1..i + 1 + n)) {
            (Some(a), Some(b)) if a.eq_ignore_ascii_case(b) => {}
            _ => return false,
        }
        off += n + 1;
        i += n + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(s: &str) -> Vec<u8> {
        let mut v = Vec::new();
        for l in s.split('.').filter(|l| !l.is_empty()) {
            v.push(l.len() as u8);
            v.extend_from_slice(l.as_bytes());
        }
        v.push(0);
        v
    }

    #[test]
    fn compresses_against_the_question_ignoring_case() {
        let mut buf = vec![0u8; 12];
        buf.extend_from_slice(&wire("WWW.Example.com"));
        let mut w = Writer::new(&mut buf);
        w.mark_name_at(12, 17);
        w.name(&wire("mail.example.com"), true);
        assert_eq!(&buf[29..], &[4, b'm', b'a', b'i', b'l', 0xc0, 16]);
    }

    #[test]
    fn srv_target_is_never_compressed_but_is_marked() {
        let mut buf = vec![0u8; 12];
        buf.extend_from_slice(&wire("a.b"));
        let mut w = Writer::new(&mut buf);
        w.mark_name_at(12, 5);
        let start = w.len();
        w.name(&wire("a.b"), false);
        w.name(&wire("x.a.b"), true);
        assert_eq!(&buf[start..start + 5], &wire("a.b")[..]);
        assert_eq!(&buf[start + 5..], &[1, b'x', 0xc0, 12]);
    }
}
