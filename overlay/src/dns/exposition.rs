//! A DNS server's counters as Prometheus families, named and labelled as CoreDNS names them
//! where the meaning is the same (`requests_total{proto,type}`, `responses_total{rcode}`,
//! `request_duration_seconds`, cache hits and misses, forward requests by upstream `to`). Every
//! family carries `network`: the network whose gateway server counted (the coordinator's
//! cluster-wide server uses its own name for it).

use super::forward::{ForwardStats, UpstreamStats};
use super::metrics::MetricsReport;
use crate::metrics::{Exposition, HistogramSnapshot};

/// Upper bounds (seconds) of the answer latency buckets: 2^i microseconds for i in 0..23, as
/// the servers count them; anything slower is `+Inf`.
const LATENCY_BOUNDS: [f64; 23] = latency_bounds();

const fn latency_bounds() -> [f64; 23] {
    let mut b = [0.0; 23];
    let mut i = 0;
    let mut micros = 1.0;
    while i < 23 {
        b[i] = micros / 1e6;
        micros *= 2.0;
        i += 1;
    }
    b
}

impl MetricsReport {
    /// Writes this report as the server of `network` into `out`.
    pub fn write(&self, network: &str, out: &mut Exposition) {
        let mut requests = out.counter(
            "shibafu_dns_requests_total",
            "DNS queries received, by transport and query type (other: any other type, or no query).",
            ["network", "proto", "type"],
        );
        for ((proto, qtype), n) in &self.requests {
            requests.add([network, proto, qtype], *n as f64);
        }
        let mut responses = out.counter(
            "shibafu_dns_responses_total",
            "DNS responses sent, by response code (forwarded answers included).",
            ["network", "rcode"],
        );
        for (rcode, n) in &self.rcodes {
            responses.add([network, rcode], *n as f64);
        }
        let counts: Vec<u64> = self.latency.iter().map(|(_, n)| *n).collect();
        if counts.len() == LATENCY_BOUNDS.len() + 1 {
            let h = HistogramSnapshot {
                bounds: LATENCY_BOUNDS.to_vec(),
                counts,
                sum: self.latency_sum_us as f64 / 1e6,
            };
            out.histogram(
                "shibafu_dns_request_duration_seconds",
                "Time to answer a query: over UDP from reading its batch to sending the batch's answers (each query of a batch counts), over TCP from reading it to having its answer.",
                ["network"],
            )
            .add([network], &h);
        }
        let simple = [
            (
                "shibafu_dns_prebuilt_answers_total",
                "Answers copied from prebuilt bytes (the fast path).",
                self.prebuilt,
            ),
            (
                "shibafu_dns_truncated_responses_total",
                "Responses sent with TC set (too large for UDP).",
                self.truncated,
            ),
            (
                "shibafu_dns_coalesced_responses_total",
                "UDP answers sent in one segmented send with others of their size to their requester (UDP GSO).",
                self.coalesced,
            ),
            (
                "shibafu_dns_forwarded_requests_total",
                "Queries for names outside the cluster zones handed to the forwarder (cache hits included).",
                self.forwarded,
            ),
            (
                "shibafu_dns_dropped_requests_total",
                "Packets answered with silence (no readable header, or a response).",
                self.dropped,
            ),
        ];
        for (name, help, n) in simple {
            out.counter(name, help, ["network"])
                .add([network], n as f64);
        }
        let mut zones = out.counter(
            "shibafu_dns_zone_responses_total",
            "Authoritative responses by zone and outcome (answer, nodata, nxdomain).",
            ["network", "zone", "outcome"],
        );
        for (zone, c) in &self.zones {
            for (outcome, n) in [
                ("answer", c.answers),
                ("nodata", c.nodata),
                ("nxdomain", c.nxdomain),
            ] {
                zones.add([network, zone, outcome], n as f64);
            }
        }
        if let Some(f) = &self.forward {
            write_forward(f, network, out);
        }
    }
}

/// Reads one counter of an upstream.
type UpstreamCount = fn(&UpstreamStats) -> u64;

/// The forwarder's cache and upstream families.
fn write_forward(f: &ForwardStats, network: &str, out: &mut Exposition) {
    let cache = [
        (
            "shibafu_dns_cache_hits_total",
            "Forwarded questions answered from a fresh cache entry.",
            f.cache_hits,
        ),
        (
            "shibafu_dns_cache_misses_total",
            "Forwarded questions that found no fresh cache entry.",
            f.cache_misses,
        ),
        (
            "shibafu_dns_cache_stale_served_total",
            "Stale cached answers served because every upstream failed (RFC 8767).",
            f.stale_served,
        ),
        (
            "shibafu_dns_forward_coalesced_total",
            "Forwarded questions that waited for an identical query in flight instead of sending one.",
            f.coalesced,
        ),
    ];
    for (name, help, n) in cache {
        out.counter(name, help, ["network"])
            .add([network], n as f64);
    }
    out.gauge(
        "shibafu_dns_cache_entries",
        "Answers held in the forwarder's cache (fresh or stale).",
        ["network"],
    )
    .add([network], f.cache_entries as f64);
    let per_upstream: [(&'static str, &'static str, UpstreamCount); 4] = [
        (
            "shibafu_dns_forward_requests_total",
            "Tries sent to an upstream (a truncated UDP answer retried over TCP is one try).",
            |u| u.queries,
        ),
        (
            "shibafu_dns_forward_failures_total",
            "Tries that failed other than by timeout (error rcode, malformed answer, socket error).",
            |u| u.failures,
        ),
        (
            "shibafu_dns_forward_timeouts_total",
            "Tries that got no acceptable answer in time.",
            |u| u.timeouts,
        ),
        (
            "shibafu_dns_forward_tcp_retries_total",
            "Tries that fell back to TCP because the UDP answer was truncated.",
            |u| u.tcp_retries,
        ),
    ];
    for (name, help, get) in per_upstream {
        let mut family = out.counter(name, help, ["network", "to"]);
        for u in &f.upstreams {
            family.add([network, &u.addr.to_string()], get(u) as f64);
        }
    }
    let mut latency = out.histogram(
        "shibafu_dns_forward_request_duration_seconds",
        "Time of one try of an upstream, whatever its outcome.",
        ["network", "to"],
    );
    for u in &f.upstreams {
        latency.add([network, &u.addr.to_string()], &u.latency);
    }
}
