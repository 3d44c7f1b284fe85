//! An upstream answer as the cache keeps it: TTLs clamped, negative TTL per RFC 2308, encoded
//! once with the offsets of its TTLs, so every answer (a hit, or the miss that fetched it) is the
//! cached bytes patched for the asker without allocating. Pure: rendering takes the age in cache
//! as a parameter.

use hickory_proto::op::{Edns, Message, OpCode, Query as Question, ResponseCode};
use hickory_proto::rr::{RData, Record};

use crate::dns::wire::{push_opt, skip_name, ttl_offsets, Query, HEADER_LEN};

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
    wire: Box<[u8]>,
    question_end: usize,
    ttl_offsets: Box<[u16]>,
    ttl: u32,
}

impl Answer {
    /// Builds the cached form of `resp` (whose rcode the caller accepted) for `question`, which
    /// should be lowercased: the encoded bytes carry it and hits patch in the asker's spelling.
    pub fn from_upstream(
        resp: &Message,
        question: &Question,
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
        msg.answers = answers;
        msg.authorities = authorities;
        msg.additionals = additionals;
        let wire = msg
            .to_vec()
            .map_err(|e| AnswerError::Encode(e.to_string()))?;
        let unparsable = || AnswerError::Encode("encoded answer does not parse".into());
        let offsets = ttl_offsets(&wire).ok_or_else(unparsable)?;
        let question_end = skip_name(&wire, HEADER_LEN).ok_or_else(unparsable)? + 4;
        Ok(Answer {
            rcode: resp.response_code,
            wire: wire.into(),
            question_end,
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

    /// Writes the response to the raw query `packet` (parsed as `q`) into `out`, reusing its
    /// allocation: the packet's id, RD and CD bits and question as asked, RA set, TTLs per `ttl`,
    /// our OPT record when the query had one. False when the asked question's length differs
    /// from the cached one's (never for a query of this answer's cache key).
    pub fn write_wire(&self, packet: &[u8], q: &Query, ttl: TtlMode, out: &mut Vec<u8>) -> bool {
        let (Some(header), Some(asked)) = (packet.get(..HEADER_LEN), packet.get(q.question()))
        else {
            return false;
        };
        if q.question_end != self.question_end {
            return false;
        }
        out.clear();
        out.extend_from_slice(&self.wire);
        out[0..2].copy_from_slice(&header[0..2]);
        out[2] = 0x80 | (header[2] & 0x01);
        out[3] = 0x80 | (header[3] & 0x10) | self.rcode.low();
        out[q.question()].copy_from_slice(asked);
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
                &[],
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
    use crate::dns::wire::parse_query;
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

    fn question() -> Question {
        Question::query(name("www.test."), RecordType::A)
    }

    fn build(m: &Message, clamp: TtlClamp) -> Answer {
        Answer::from_upstream(m, &question(), clamp).expect("cacheable")
    }

    fn query(qname: &str, edns: Option<Edns>) -> Message {
        let mut q = Message::query();
        q.metadata.recursion_desired = true;
        q.add_query(Question::query(name(qname), RecordType::A));
        q.edns = edns;
        q
    }

    /// The answer rendered for `q` (encoded and parsed as the server does), decoded.
    fn render(ans: &Answer, q: &Message, ttl: TtlMode) -> Message {
        let packet = q.to_vec().expect("encode");
        let parsed = parse_query(&packet).expect("a plain query");
        let mut out = vec![0xaa; 3];
        assert!(ans.write_wire(&packet, &parsed, ttl, &mut out));
        Message::from_vec(&out).expect("decodes")
    }

    fn fresh(ans: &Answer) -> Message {
        render(ans, &query("www.test.", None), TtlMode::Aged(0))
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
        let ttls: Vec<u32> = fresh(&ans).answers.iter().map(|r| r.ttl).collect();
        assert_eq!(ttls, [30, 3600]);
    }

    #[test]
    fn nxdomain_and_nodata_live_for_the_lower_of_soa_ttl_and_minimum() {
        let nx = upstream(ResponseCode::NXDomain, vec![], vec![soa(3600, 60)]);
        let ans = build(&nx, WIDE);
        assert_eq!((ans.ttl(), ans.rcode()), (60, ResponseCode::NXDomain));
        assert_eq!(fresh(&ans).authorities[0].ttl, 60);
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
    fn rendering_echoes_the_query_and_ages_ttls() {
        let ans = build(
            &upstream(ResponseCode::NoError, vec![a("www.test.", 300, 1)], vec![]),
            WIDE,
        );
        let mut q = query("WwW.TeSt.", None);
        q.metadata.checking_disabled = true;
        let r = render(&ans, &q, TtlMode::Aged(100));
        assert_eq!(r.metadata.id, q.metadata.id);
        assert!(r.metadata.recursion_available && r.metadata.recursion_desired);
        assert!(r.metadata.checking_disabled);
        assert!(!r.metadata.authoritative && !r.metadata.truncation);
        assert_eq!(r.queries[0].name().to_ascii(), "WwW.TeSt.");
        assert_eq!(r.answers[0].ttl, 200);
        assert!(r.edns.is_none());
        assert_eq!(render(&ans, &q, TtlMode::Aged(400)).answers[0].ttl, 0);
        assert_eq!(render(&ans, &q, TtlMode::Stale).answers[0].ttl, STALE_TTL);
    }

    #[test]
    fn rendering_adds_our_opt_and_keeps_the_rcode() {
        let ans = build(
            &upstream(ResponseCode::NXDomain, vec![], vec![soa(3600, 900)]),
            WIDE,
        );
        let mut edns = Edns::new();
        edns.set_max_payload(4096).set_dnssec_ok(true);
        let r = render(&ans, &query("WWW.test.", Some(edns)), TtlMode::Aged(7));
        assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
        assert_eq!(r.authorities[0].ttl, 893);
        let opt = r.edns.expect("OPT");
        assert_eq!(opt.max_payload(), ADVERTISED_UDP_SIZE);
        assert!(opt.flags().dnssec_ok);
        assert_eq!(opt.version(), 0);
    }

    #[test]
    fn a_question_of_another_length_is_not_rendered() {
        let ans = build(
            &upstream(ResponseCode::NoError, vec![a("www.test.", 300, 1)], vec![]),
            WIDE,
        );
        let mut out = Vec::new();
        let longer = query("www2.test.", None).to_vec().expect("encode");
        let parsed = parse_query(&longer).expect("a plain query");
        assert!(!ans.write_wire(&longer, &parsed, TtlMode::Aged(0), &mut out));
        let same = query("WWW.test.", None).to_vec().expect("encode");
        let parsed = parse_query(&same).expect("a plain query");
        assert!(!ans.write_wire(&same[..20], &parsed, TtlMode::Aged(0), &mut out));
        assert!(ans.write_wire(&same, &parsed, TtlMode::Aged(0), &mut out));
    }
}
