//! Counters and a latency histogram, cheap on the hot path: each UDP thread tallies in plain
//! integers and adds them to shared atomics once per batch; zone counters are flushed by name.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use super::answer::Reply;
use super::forward::ForwardStats;
use super::wire::rcode;
use crate::metrics::Exposition;

/// Histogram buckets: bucket i counts latencies below 2^i microseconds; the last takes the rest.
pub(crate) const BUCKETS: usize = 24;
/// Response codes counted one by one (0..=15, then 16 for BADVERS and anything above).
const RCODES: usize = 17;
/// Query types counted one by one; the last slot takes every other type and packets that were
/// no query.
const QTYPES: usize = QTYPE_NAMES.len();
/// Names of the counted query types (as CoreDNS counts them), `other` last.
const QTYPE_NAMES: [&str; 16] = [
    "A", "NS", "CNAME", "SOA", "PTR", "MX", "TXT", "AAAA", "SRV", "NAPTR", "DS", "DNSKEY", "SVCB",
    "HTTPS", "ANY", "other",
];

/// Counter slot of query type `qtype` (`None`: the packet was no query).
#[inline]
fn qtype_slot(qtype: Option<u16>) -> usize {
    match qtype {
        Some(1) => 0,
        Some(2) => 1,
        Some(5) => 2,
        Some(6) => 3,
        Some(12) => 4,
        Some(15) => 5,
        Some(16) => 6,
        Some(28) => 7,
        Some(33) => 8,
        Some(35) => 9,
        Some(43) => 10,
        Some(48) => 11,
        Some(64) => 12,
        Some(65) => 13,
        Some(255) => 14,
        _ => QTYPES - 1,
    }
}

/// What one thread counted since its last flush.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tally {
    pub(crate) queries: u64,
    pub(crate) qtypes: [u64; QTYPES],
    pub(crate) prebuilt: u64,
    pub(crate) truncated: u64,
    pub(crate) coalesced: u64,
    pub(crate) forwarded: u64,
    pub(crate) dropped: u64,
    pub(crate) rcodes: [u64; RCODES],
    pub(crate) latency: [u64; BUCKETS],
    pub(crate) latency_us: u64,
}

impl Tally {
    /// Counts a query of type `qtype` (`None`: the packet was no query) by its type.
    #[inline]
    pub(crate) fn qtype(&mut self, qtype: Option<u16>) {
        self.qtypes[qtype_slot(qtype)] += 1;
    }

    /// Counts one response (queries are counted apart, as received).
    #[inline]
    pub(crate) fn reply(&mut self, r: &Reply) {
        self.prebuilt += u64::from(r.prebuilt);
        self.truncated += u64::from(r.truncated);
        self.rcodes[usize::from(r.rcode).min(RCODES - 1)] += 1;
    }

    /// Counts `n` queries that each took `took`.
    #[inline]
    pub(crate) fn latency(&mut self, took: Duration, n: u64) {
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let bucket = (64 - micros.leading_zeros() as usize).min(BUCKETS - 1);
        self.latency[bucket] += n;
        self.latency_us = self.latency_us.saturating_add(micros.saturating_mul(n));
    }
}

/// Per-zone outcome counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ZoneCounts {
    /// NOERROR answers with records.
    pub answers: u64,
    /// NOERROR answers without records (NODATA).
    pub nodata: u64,
    /// NXDOMAIN answers (including zones hidden from the requester).
    pub nxdomain: u64,
}

impl ZoneCounts {
    /// Counts one authoritative response.
    pub(crate) fn count(&mut self, r: &Reply) {
        match (r.rcode, r.answers) {
            (rcode::NXDOMAIN, _) => self.nxdomain += 1,
            (rcode::NOERROR, 0) => self.nodata += 1,
            (rcode::NOERROR, _) => self.answers += 1,
            _ => {}
        }
    }
}

#[derive(Default)]
struct Shard {
    queries: AtomicU64,
    qtypes: [AtomicU64; QTYPES],
    prebuilt: AtomicU64,
    truncated: AtomicU64,
    coalesced: AtomicU64,
    forwarded: AtomicU64,
    dropped: AtomicU64,
    rcodes: [AtomicU64; RCODES],
    latency: [AtomicU64; BUCKETS],
    latency_us: AtomicU64,
}

fn add(a: &AtomicU64, v: u64) {
    if v != 0 {
        a.fetch_add(v, Relaxed);
    }
}

impl Shard {
    fn add(&self, t: &Tally) {
        add(&self.queries, t.queries);
        add(&self.prebuilt, t.prebuilt);
        add(&self.truncated, t.truncated);
        add(&self.coalesced, t.coalesced);
        add(&self.forwarded, t.forwarded);
        add(&self.dropped, t.dropped);
        add(&self.latency_us, t.latency_us);
        self.rcodes
            .iter()
            .zip(&t.rcodes)
            .for_each(|(a, v)| add(a, *v));
        self.qtypes
            .iter()
            .zip(&t.qtypes)
            .for_each(|(a, v)| add(a, *v));
        self.latency
            .iter()
            .zip(&t.latency)
            .for_each(|(a, v)| add(a, *v));
    }

    fn read(&self) -> Tally {
        let mut t = Tally {
            queries: self.queries.load(Relaxed),
            prebuilt: self.prebuilt.load(Relaxed),
            truncated: self.truncated.load(Relaxed),
            coalesced: self.coalesced.load(Relaxed),
            forwarded: self.forwarded.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            latency_us: self.latency_us.load(Relaxed),
            ..Tally::default()
        };
        t.rcodes
            .iter_mut()
            .zip(&self.rcodes)
            .for_each(|(v, a)| *v = a.load(Relaxed));
        t.qtypes
            .iter_mut()
            .zip(&self.qtypes)
            .for_each(|(v, a)| *v = a.load(Relaxed));
        t.latency
            .iter_mut()
            .zip(&self.latency)
            .for_each(|(v, a)| *v = a.load(Relaxed));
        t
    }
}

/// The server's counters, shared by its UDP threads and TCP tasks.
#[derive(Default)]
pub struct Metrics {
    udp: Shard,
    tcp: Shard,
    zones: Mutex<BTreeMap<String, ZoneCounts>>,
}

impl Metrics {
    /// Adds a UDP thread's tally.
    pub(crate) fn add_udp(&self, t: &Tally) {
        self.udp.add(t);
    }

    /// Adds a TCP tally.
    pub(crate) fn add_tcp(&self, t: &Tally) {
        self.tcp.add(t);
    }

    /// Adds per-zone counts.
    pub(crate) fn add_zones<'a>(&self, counts: impl Iterator<Item = (&'a str, ZoneCounts)>) {
        let mut zones = self.zones.lock().unwrap_or_else(PoisonError::into_inner);
        for (name, c) in counts {
            let z = zones.entry(name.to_string()).or_default();
            z.answers += c.answers;
            z.nodata += c.nodata;
            z.nxdomain += c.nxdomain;
        }
    }

    /// A consistent-enough copy of every counter.
    pub fn report(&self, forward: Option<ForwardStats>) -> MetricsReport {
        let (udp, tcp) = (self.udp.read(), self.tcp.read());
        let sum = |f: fn(&Tally) -> u64| f(&udp) + f(&tcp);
        let mut rcodes = BTreeMap::new();
        for (i, name) in RCODE_NAMES.iter().enumerate() {
            let n = udp.rcodes[i] + tcp.rcodes[i];
            if n > 0 {
                rcodes.insert((*name).to_string(), n);
            }
        }
        let mut requests = BTreeMap::new();
        for (proto, t) in [("udp", &udp), ("tcp", &tcp)] {
            for (name, n) in QTYPE_NAMES.iter().zip(&t.qtypes) {
                if *n > 0 {
                    requests.insert((proto, *name), *n);
                }
            }
        }
        MetricsReport {
            queries_udp: udp.queries,
            requests,
            queries_tcp: tcp.queries,
            prebuilt: sum(|t| t.prebuilt),
            truncated: sum(|t| t.truncated),
            coalesced: sum(|t| t.coalesced),
            forwarded: sum(|t| t.forwarded),
            dropped: sum(|t| t.dropped),
            rcodes,
            zones: self
                .zones
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
            latency: (0..BUCKETS)
                .map(|i| (1u64 << i, udp.latency[i] + tcp.latency[i]))
                .collect(),
            latency_sum_us: sum(|t| t.latency_us),
            forward,
        }
    }
}

const RCODE_NAMES: [&str; RCODES] = [
    "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "YXDOMAIN", "YXRRSET",
    "NXRRSET", "NOTAUTH", "NOTZONE", "RCODE11", "RCODE12", "RCODE13", "RCODE14", "RCODE15",
    "BADVERS",
];

/// A copy of the server's counters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricsReport {
    /// Queries received over UDP (answered, forwarded or dropped).
    pub queries_udp: u64,
    /// Queries received over TCP.
    pub queries_tcp: u64,
    /// Queries received by transport (`udp`, `tcp`) and query type (`other` for the rest and
    /// for packets that were no query); only those counted at least once.
    pub requests: BTreeMap<(&'static str, &'static str), u64>,
    /// Answers copied from prebuilt bytes.
    pub prebuilt: u64,
    /// Answers sent with TC set.
    pub truncated: u64,
    /// UDP answers that left in a segmented send with others of their size to their requester.
    pub coalesced: u64,
    /// Queries handed to the forwarder (including its cache hits).
    pub forwarded: u64,
    /// Packets answered with silence (no readable header, or a response).
    pub dropped: u64,
    /// Responses by code name (forwarded answers included).
    pub rcodes: BTreeMap<String, u64>,
    /// Authoritative outcomes by zone.
    pub zones: BTreeMap<String, ZoneCounts>,
    /// Latency histogram: (upper bound in microseconds, count), the last bucket open-ended.
    /// UDP latency is the time from reading a batch to sending its answers.
    pub latency: Vec<(u64, u64)>,
    /// Sum of all latencies, in microseconds.
    pub latency_sum_us: u64,
    /// The forwarder's cache and upstream counters, when there is one.
    pub forward: Option<ForwardStats>,
}

impl MetricsReport {
    /// Renders the report alone in the Prometheus text exposition format, as the server of
    /// `network`.
    pub fn to_prometheus(&self, network: &str) -> String {
        let mut out = Exposition::new();
        self.write(network, &mut out);
        out.render()
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tallies_add_up_and_render() {
        let m = Metrics::default();
        let mut t = Tally::default();
        let ok = Reply {
            rcode: 0,
            answers: 1,
            zone: Some(0),
            prebuilt: true,
            truncated: false,
        };
        let nx = Reply {
            rcode: 3,
            answers: 0,
            ..ok
        };
        t.queries = 2;
        t.qtype(Some(1));
        t.qtype(None);
        t.reply(&ok);
        t.reply(&nx);
        t.latency(Duration::from_micros(3), 2);
        m.add_udp(&t);
        m.add_udp(&t);
        let mut z = ZoneCounts::default();
        z.count(&ok);
        z.count(&nx);
        m.add_zones([("test.local.", z)].into_iter());
        let r = m.report(None);
        assert_eq!(r.queries_udp, 4);
        assert_eq!(r.prebuilt, 4);
        assert_eq!(r.rcodes["NXDOMAIN"], 2);
        assert_eq!(r.latency[2], (4, 4), "3 µs falls in the < 4 µs bucket");
        assert_eq!(
            r.zones["test.local."],
            ZoneCounts {
                answers: 1,
                nodata: 0,
                nxdomain: 1
            }
        );
        let text = r.to_prometheus("frontend");
        for line in [
            "shibafu_dns_responses_total{network=\"frontend\",rcode=\"NXDOMAIN\"} 2",
            "# TYPE shibafu_dns_responses_total counter",
            "shibafu_dns_requests_total{network=\"frontend\",proto=\"udp\",type=\"A\"} 2",
            "shibafu_dns_requests_total{network=\"frontend\",proto=\"udp\",type=\"other\"} 2",
            "shibafu_dns_request_duration_seconds_bucket{network=\"frontend\",le=\"0.000004\"} 4",
            "shibafu_dns_request_duration_seconds_bucket{network=\"frontend\",le=\"+Inf\"} 4",
            "shibafu_dns_request_duration_seconds_sum{network=\"frontend\"} 0.000012",
            "shibafu_dns_request_duration_seconds_count{network=\"frontend\"} 4",
            "shibafu_dns_zone_responses_total{network=\"frontend\",zone=\"test.local.\",outcome=\"nxdomain\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
    }
}
