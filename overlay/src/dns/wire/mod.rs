//! The one DNS wire layer: constants, the query parser, response size limits and helpers that
//! read and write raw messages without allocating. The authoritative engine and the forwarder
//! both read and write packets through it.

mod query;

pub(crate) use query::{parse_query, Edns, Query, Reject};

/// Length of the DNS header.
pub(crate) const HEADER_LEN: usize = 12;
/// Largest wire length of a name.
pub(crate) const MAX_NAME: usize = 255;
/// Wire length of an OPT record without options.
pub(crate) const OPT_LEN: usize = 11;
/// Largest DNS message over TCP.
const TCP_MAX: usize = 65535;
/// UDP payload size without EDNS (RFC 1035).
const UDP_CLASSIC: usize = 512;

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

/// The transport a query came over: it bounds the response size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// UDP: at most 512 bytes, or the EDNS size the client gives (capped by ours).
    Udp,
    /// TCP: up to 65535 bytes.
    Tcp,
}

/// The largest response to a query that came over `transport` with OPT record `edns`, when our
/// own UDP payload size is `max_udp`: 65535 bytes over TCP, 512 over UDP without EDNS, else the
/// requester's size capped at ours, never below 512.
#[inline]
pub(crate) fn response_limit(transport: Transport, edns: Option<Edns>, max_udp: u16) -> usize {
    match (transport, edns) {
        (Transport::Tcp, _) => TCP_MAX,
        (Transport::Udp, None) => UDP_CLASSIC,
        (Transport::Udp, Some(Edns { payload, .. })) => {
            usize::from(payload.min(max_udp)).max(UDP_CLASSIC)
        }
    }
}

/// Appends our OPT record ([`OPT_LEN`] bytes plus `options`, already encoded as code, length,
/// data): root owner, `payload` as our UDP size, the upper bits of `rcode` as the extended
/// rcode, version 0, the DO flag if `dnssec_ok`.
#[inline]
pub(crate) fn push_opt(
    out: &mut Vec<u8>,
    payload: u16,
    rcode: u16,
    dnssec_ok: bool,
    options: &[u8],
) {
    let [hi, lo] = payload.to_be_bytes();
    let do_bit = if dnssec_ok { 0x80 } else { 0 };
    let extended = (rcode >> 4) as u8;
    let [r0, r1] = (options.len() as u16).to_be_bytes();
    out.extend_from_slice(&[
        0,
        0,
        rtype::OPT as u8,
        hi,
        lo,
        extended,
        0,
        do_bit,
        0,
        r0,
        r1,
    ]);
    out.extend_from_slice(options);
}

/// The 16-bit big-endian value at `off`.
#[inline]
pub(crate) fn u16_at(p: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*p.get(off)?, *p.get(off + 1)?]))
}

/// The offset just past the (possibly compressed) name at `off`; None when it runs off the end
/// or uses a reserved label type.
#[inline]
pub(crate) fn skip_name(p: &[u8], mut off: usize) -> Option<usize> {
    loop {
        let len = *p.get(off)?;
        match len & 0xc0 {
            0xc0 => return p.get(off + 1).map(|_| off + 2),
            0x00 if len == 0 => return Some(off + 1),
            0x00 => off += 1 + usize::from(len),
            _ => return None,
        }
    }
}

/// Offsets of the TTL field of every record in an encoded message, or None when it does not
/// parse (the walk checks every bound).
pub(crate) fn ttl_offsets(p: &[u8]) -> Option<Vec<u16>> {
    let qd = u16_at(p, 4)?;
    let rr = u32::from(u16_at(p, 6)?) + u32::from(u16_at(p, 8)?) + u32::from(u16_at(p, 10)?);
    let mut pos = HEADER_LEN;
    for _ in 0..qd {
        pos = skip_name(p, pos)? + 4;
    }
    let mut offsets = Vec::with_capacity(rr as usize);
    for _ in 0..rr {
        pos = skip_name(p, pos)?;
        let rdlen = usize::from(u16_at(p, pos + 8)?);
        offsets.push(u16::try_from(pos + 4).ok()?);
        pos += 10 + rdlen;
    }
    (pos == p.len()).then_some(offsets)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A query for a.test. A with RD (id 0x1234), as hickory encodes it.
    const QUERY: [u8; 24] = [
        0x12, 0x34, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, b'a', 4, b't', b'e', b's', b't', 0, 0, 1,
        0, 1,
    ];

    #[test]
    fn ttl_offsets_rejects_garbage_without_panicking() {
        assert!(ttl_offsets(&[0; 5]).is_none());
        let mut p = QUERY.to_vec();
        assert_eq!(ttl_offsets(&p), Some(vec![]));
        p[7] = 1;
        assert!(ttl_offsets(&p).is_none());
    }

    #[test]
    fn skip_name_follows_labels_and_stops_at_a_pointer() {
        assert_eq!(skip_name(&QUERY, HEADER_LEN), Some(20));
        assert_eq!(skip_name(&[0xc0, 0x0c], 0), Some(2));
        assert_eq!(skip_name(&[0xc0], 0), None);
        assert_eq!(skip_name(&[0x40, 0], 0), None);
        assert_eq!(skip_name(&[3, b'a'], 0), None);
    }

    #[test]
    fn response_limits_follow_transport_and_edns() {
        let edns = |payload| {
            Some(Edns {
                payload,
                version: 0,
                dnssec_ok: false,
            })
        };
        assert_eq!(response_limit(Transport::Tcp, edns(512), 1232), 65535);
        assert_eq!(response_limit(Transport::Udp, None, 1232), 512);
        assert_eq!(response_limit(Transport::Udp, edns(4096), 1232), 1232);
        assert_eq!(response_limit(Transport::Udp, edns(1400), 4096), 1400);
        assert_eq!(response_limit(Transport::Udp, edns(100), 1232), 512);
    }

    #[test]
    fn names_render_as_dotted_text_with_escapes() {
        assert_eq!(name_to_string(b"\x01a\x04te.t\x00"), "a.te\\046t.");
        assert_eq!(name_to_string(b"\x00"), ".");
    }
}
