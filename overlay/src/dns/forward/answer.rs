//! An upstream answer as the cache keeps it: TTLs clamped, negative TTL per RFC 2308, parsed
//! records for `resolve`, and the encoded bytes with TTL offsets for the allocation-free
//! cache-hit path. Pure: rendering takes the age in cache as a parameter.

use hickory_proto::op::{Edns, Message, OpCode, Query, ResponseCode};
use hickory_proto::rr::{RData, Record};

use super::wire::WireQuery;
use crate::dns::wire::{push_opt, ttl_offsets, HEADER_LEN};

/// The UDP payload size advertised in our OPT records (the DNS flag day 2020 value).
pub const ADVERTISED_UDP_SIZE: u16 = 1232;
/// TTL of records served stale (RFC 8767 section 4).
pub const STALE_TTL: u32 = 30;

/// Errors building a cacheable answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AnswerError {
    /// The answer parsed but could not be encoded again (e.g. a record hickory cannot emit).
    #[error("upstream answer cannot be re-encoded: {0}")]
    Encode(String),
}

/// Bounds applied to every cached TTL.
#[derive(Debug, Clone, Copy)]
pub struct TtlClamp {
    /// Lowest TTL kept, in seconds.
    pub min: u32,
    /// Highest TTL kept, in seconds.
    pub max: u32,
}

impl TtlClamp {
    fn apply(self, ttl: u32) -> u32 {
        ttl.max(self.min).min(self.max)
    }
}

/// How record TTLs are rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TtlMode {
    /// Subtract this many seconds spent in cache.
    Aged(u32),
    /// Serve-stale: every TTL is [`STALE_TTL`].
    Stale,
}

impl TtlMode {
    fn apply(self, stored: u32) -> u32 {
        match self {
            TtlMode::Aged(age) => stored.saturating_sub(age),
            TtlMode::Stale => STALE_TTL,
        }
    }
}

/// A NOERROR or NXDOMAIN answer from upstream, ready to be served to any asker of its question.
#[derive(Debug)]
pub struct Answer {
    rcode: ResponseCode,
    answers: Vec<Record>,
    authorities: Vec<Record>,
    additionals: Vec<Record>,
    wire: Box<[u8]>,
    ttl_offsets: Box<[u16]>,
    ttl: u32,
}

impl Answer {
    /// Builds the cached form of `resp` (whose rcode the caller accepted) for `question`, which
    /// should be lowercased: the encoded bytes carry it and hits patch in the asker's spelling.
    pub fn from_upstream(
        resp: &Message,
        question: &Query,
        clamp: TtlClamp,
    ) -> Result<Answer, AnswerError> {
        let clamped = |records: &[Record]| -> Vec<Record> {
            records
                .iter()
                .map(|r| {
                    let mut r = r.clone();
                    r.ttl = clamp.apply(match &r.data {
                        // RFC 2308 section 5: negative answers live min(SOA TTL, SOA MINIMUM).
                        RData::SOA(soa) => r.ttl.min(soa.minimum),
                        _ => r.ttl,
                    });
                    r
                })
                .collect()
        };
        let answers = clamped(&resp.answers);
        let authorities = clamped(&resp.authorities);
        let additionals = clamped(&resp.additionals);
        let negative = resp.response_code == ResponseCode::NXDomain || answers.is_empty();
        let has_soa = authorities.iter().any(|r| matches!(r.data, RData::SOA(_)));
        // RFC 2308 section 5: a negative answer without an SOA is not cached.
        let ttl = if negative && !has_soa {
            0
        } else {
            answers
                .iter()
                .chain(&authorities)
                .chain(&additionals)
                .map(|r| r.ttl)
                .min()
                .unwrap_or(0)
        };

        let mut msg = Message::response(0, OpCode::Query);
        msg.metadata.recursion_available = true;
        msg.metadata.response_code = resp.response_code;
        msg.add_query(question.clone());
        msg.answers.clone_from(&answers);
        msg.authorities.clone_from(&authorities);
        msg.additionals.clone_from(&additionals);
        let wire = msg
            .to_vec()
            .map_err(|e| AnswerError::Encode(e.to_string()))?;
        let offsets = ttl_offsets(&wire)
            .ok_or_else(|| AnswerError::Encode("encoded answer does not parse".into()))?;
        Ok(Answer {
            rcode: resp.response_code,
            answers,
            authorities,
            additionals,
            wire: wire.into(),
            ttl_offsets: offsets.into(),
            ttl,
        })
    }

    /// Seconds this answer may be cached (0: not at all).
    pub fn ttl(&self) -> u32 {
        self.ttl
    }

    /// The response code (NOERROR or NXDOMAIN).
    pub fn rcode(&self) -> ResponseCode {
        self.rcode
    }

    /// The response to `query`: its id, flags and question as asked, RA set, TTLs per `ttl`.
    pub fn to_message(&self, query: &Message, ttl: TtlMode) -> Message {
        let render = |records: &[Record]| -> Vec<Record> {
            records
                .iter()
                .map(|r| {
                    let mut r = r.clone();
                    r.ttl = ttl.apply(r.ttl);
                    r
                })
                .collect()
        };
        let mut m = Message::response(query.id, query.op_code);
        m.metadata.recursion_desired = query.recursion_desired;
        m.metadata.checking_disabled = query.checking_disabled;
        m.metadata.recursion_available = true;
        m.metadata.response_code = self.rcode;
        m.queries.clone_from(&query.queries);
        m.answers = render(&self.answers);
        m.authorities = render(&self.authorities);
        m.additionals = render(&self.additionals);
        m.edns = query
            .edns
            .as_ref()
            .map(|e| response_edns(e.flags().dnssec_ok));
        m
    }

    /// Writes the response to the raw query `packet` (parsed as `q`) into `out`, reusing its
    /// allocation. False when the asked question's length differs from the cached one's.
    pub fn write_wire(
        &self,
        packet: &[u8],
        q: &WireQuery,
        ttl: TtlMode,
        out: &mut Vec<u8>,
    ) -> bool {
        let (Some(asked), Some(cached)) = (
            packet.get(q.question.clone()),
            self.wire.get(q.question.clone()),
        ) else {
            return false;
        };
        if asked.len() != cached.len() {
            return false;
        }
        out.clear();
        out.extend_from_slice(&self.wire);
        out[0..2].copy_from_slice(&q.id.to_be_bytes());
        out[2] = 0x80 | u8::from(q.rd);
        out[3] = 0x80 | if q.cd { 0x10 } else { 0 } | self.rcode.low();
        out[q.question.clone()].copy_from_slice(asked);
        for &off in self.ttl_offsets.iter() {
            let at = usize::from(off);
            let stored = u32::from_be_bytes([out[at], out[at + 1], out[at + 2], out[at + 3]]);
            out[at..at + 4].copy_from_slice(&ttl.apply(stored).to_be_bytes());
        }
        if let Some(edns) = q.edns {
            push_opt(
                out,
                ADVERTISED_UDP_SIZE,
                u16::from(self.rcode),
                edns.dnssec_ok,
            );
            let arcount = u16::from_be_bytes([out[10], out[11]]).wrapping_add(1);
            out[10..HEADER_LEN].copy_from_slice(&arcount.to_be_bytes());
        }
        true
    }
}

/// Our OPT record for a response: advertised payload size, DO echoed.
pub fn response_edns(dnssec_ok: bool) -> Edns {
    let mut edns = Edns::new();
    edns.set_max_payload(ADVERTISED_UDP_SIZE)
        .set_dnssec_ok(dnssec_ok);
    edns
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::forward::wire::parse_query;
    use hickory_proto::rr::rdata::{A, SOA};
    use hickory_proto::rr::{Name, RecordType};

    const WIDE: TtlClamp = TtlClamp {
        min: 0,
        max: 86_400,
    };

    fn name(s: &str) -> Name {
        Name::from_ascii(s).expect("name")
    }

    fn a(owner: &str, ttl: u32, last: u8) -> Record {
        Record::from_rdata(name(owner), ttl, RData::A(A::new(10, 0, 0, last)))
    }

    fn soa(ttl: u32, minimum: u32) -> Record {
        let data = SOA::new(
            name("ns.test."),
            name("admin.test."),
            1,
            3600,
            600,
            86_400,
            minimum,
        );
        Record::from_rdata(name("test."), ttl, RData::SOA(data))
    }

    fn upstream(rcode: ResponseCode, answers: Vec<Record>, authorities: Vec<Record>) -> Message {
        let mut m = Message::response(7, OpCode::Query);
        m.metadata.response_code = rcode;
        m.add_query(question());
        m.answers = answers;
        m.authorities = authorities;
        m
    }

    fn question() -> Query {
        Query::query(name("www.test."), RecordType::A)
    }

    fn build(m: &Message, clamp: TtlClamp) -> Answer {
        Answer::from_upstream(m, &question(), clamp).expect("cacheable")
    }

    fn query(qname: &str, edns: Option<Edns>) -> Message {
        let mut q = Message::query();
        q.metadata.recursion_desired = true;
        q.add_query(Query::query(name(qname), RecordType::A));
        q.edns = edns;
        q
    }

    #[test]
    fn positive_ttl_is_the_smallest_record_ttl() {
        let m = upstream(
            ResponseCode::NoError,
            vec![a("www.test.", 300, 1), a("www.test.", 60, 2)],
            vec![],
        );
        assert_eq!(build(&m, WIDE).ttl(), 60);
    }

    #[test]
    fn clamps_raise_and_lower_every_ttl() {
        let m = upstream(
            ResponseCode::NoError,
            vec![a("www.test.", 5, 1), a("www.test.", 900_000, 2)],
            vec![],
        );
        let ans = build(&m, TtlClamp { min: 30, max: 3600 });
        assert_eq!(ans.ttl(), 30);
        let ttls: Vec<u32> = ans.answers.iter().map(|r| r.ttl).collect();
        assert_eq!(ttls, [30, 3600]);
    }

    #[test]
    fn nxdomain_and_nodata_live_for_the_lower_of_soa_ttl_and_minimum() {
        let nx = upstream(ResponseCode::NXDomain, vec![], vec![soa(3600, 60)]);
        let ans = build(&nx, WIDE);
        assert_eq!((ans.ttl(), ans.rcode()), (60, ResponseCode::NXDomain));
        assert_eq!(ans.authorities[0].ttl, 60);
        let nodata = upstream(ResponseCode::NoError, vec![], vec![soa(20, 60)]);
        assert_eq!(build(&nodata, WIDE).ttl(), 20);
        assert_eq!(build(&nodata, TtlClamp { min: 45, max: 50 }).ttl(), 45);
    }

    #[test]
    fn negative_answers_without_soa_are_not_cached() {
        assert_eq!(
            build(&upstream(ResponseCode::NXDomain, vec![], vec![]), WIDE).ttl(),
            0
        );
        assert_eq!(
            build(&upstream(ResponseCode::NoError, vec![], vec![]), WIDE).ttl(),
            0
        );
    }

    #[test]
    fn message_rendering_echoes_the_query_and_ages_ttls() {
        let ans = build(
            &upstream(ResponseCode::NoError, vec![a("www.test.", 300, 1)], vec![]),
            WIDE,
        );
        let q = query("WwW.TeSt.", None);
        let r = ans.to_message(&q, TtlMode::Aged(100));
        assert_eq!(r.metadata.id, q.metadata.id);
        assert!(r.metadata.recursion_available && r.metadata.recursion_desired);
        assert!(!r.metadata.authoritative);
        assert!(r.queries[0].name().eq_ignore_root_case(&name("WwW.TeSt.")));
        assert_eq!(r.answers[0].ttl, 200);
        assert!(r.edns.is_none());
        assert_eq!(ans.to_message(&q, TtlMode::Aged(400)).answers[0].ttl, 0);
        assert_eq!(ans.to_message(&q, TtlMode::Stale).answers[0].ttl, STALE_TTL);
    }

    #[test]
    fn wire_rendering_matches_message_rendering() {
        let upstream_msg = upstream(ResponseCode::NXDomain, vec![], vec![soa(3600, 900)]);
        let ans = build(&upstream_msg, WIDE);
        let mut edns = Edns::new();
        edns.set_max_payload(4096).set_dnssec_ok(false);
        for edns in [None, Some(edns)] {
            let q = query("WWW.test.", edns);
            let packet = q.to_vec().expect("encode");
            let parsed = parse_query(&packet).expect("plain query");
            let mut out = vec![0xaa; 3];
            assert!(ans.write_wire(&packet, &parsed, TtlMode::Aged(7), &mut out));
            let from_wire = Message::from_vec(&out).expect("decodes");
            let from_msg = ans.to_message(&q, TtlMode::Aged(7));
            assert_eq!(from_wire.metadata, from_msg.metadata);
            assert!(from_wire.queries[0]
                .name()
                .eq_ignore_root_case(&name("WWW.test.")));
            assert_eq!(from_wire.authorities, from_msg.authorities);
            assert_eq!(from_wire.authorities[0].ttl, 893);
            assert_eq!(
                from_wire.edns.map(|e| e.max_payload()),
                from_msg.edns.map(|e| e.max_payload())
            );
        }
    }
}
