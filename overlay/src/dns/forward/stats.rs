//! Forwarder counters: cheap atomics off the hot path, read as a plain snapshot.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::metrics::{Histogram, HistogramSnapshot, DURATION_BUCKETS};

/// A snapshot of the forwarder's counters since it started.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ForwardStats {
    /// Questions answered from a fresh cache entry.
    pub cache_hits: u64,
    /// Questions that found no fresh entry (they went upstream, followed another query, or got
    /// a stale answer).
    pub cache_misses: u64,
    /// Stale answers served because every upstream failed (RFC 8767).
    pub stale_served: u64,
    /// Questions that waited for an identical query already in flight instead of sending one.
    pub coalesced: u64,
    /// Answers held in the cache now (fresh or stale).
    pub cache_entries: usize,
    /// Per upstream, in configuration order (each address once).
    pub upstreams: Vec<UpstreamStats>,
}

/// Counters of one upstream.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamStats {
    /// The upstream's address.
    pub addr: SocketAddr,
    /// Tries sent to it (a truncated UDP answer retried over TCP is one try).
    pub queries: u64,
    /// Tries that failed other than by timeout (error rcode, malformed answer, socket error).
    pub failures: u64,
    /// Tries that got no acceptable answer in time.
    pub timeouts: u64,
    /// Tries that fell back to TCP because the UDP answer was truncated.
    pub tcp_retries: u64,
    /// Time of each try, whatever its outcome.
    pub latency: HistogramSnapshot,
}

/// How one upstream try ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TryOutcome {
    /// Usable answer over UDP.
    Answered,
    /// Usable answer over TCP after truncation.
    AnsweredOverTcp,
    /// Failed other than by timeout.
    Failed,
    /// No answer in time.
    TimedOut,
}

struct UpstreamCounters {
    queries: AtomicU64,
    failures: AtomicU64,
    timeouts: AtomicU64,
    tcp_retries: AtomicU64,
    latency: Histogram,
}

impl Default for UpstreamCounters {
    fn default() -> Self {
        UpstreamCounters {
            queries: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
            tcp_retries: AtomicU64::new(0),
            latency: Histogram::new(DURATION_BUCKETS),
        }
    }
}

/// Counters that are not kept per cache shard.
pub struct Counters {
    stale_served: AtomicU64,
    coalesced: AtomicU64,
    upstreams: Vec<(SocketAddr, UpstreamCounters)>,
}

impl Counters {
    /// Zeroed counters for these upstreams (indexed like `Routes::upstreams`).
    pub fn new(upstreams: &[SocketAddr]) -> Counters {
        Counters {
            stale_served: AtomicU64::new(0),
            coalesced: AtomicU64::new(0),
            upstreams: upstreams
                .iter()
                .map(|a| (*a, UpstreamCounters::default()))
                .collect(),
        }
    }

    /// Counts a stale answer served.
    pub fn stale_served(&self) {
        self.stale_served.fetch_add(1, Relaxed);
    }

    /// Counts a question that followed an in-flight query.
    pub fn coalesced(&self) {
        self.coalesced.fetch_add(1, Relaxed);
    }

    /// Counts one try of upstream `i` that took `took`.
    pub fn upstream_try(&self, i: usize, outcome: TryOutcome, took: Duration) {
        let Some((_, c)) = self.upstreams.get(i) else {
            return;
        };
        c.queries.fetch_add(1, Relaxed);
        c.latency.observe(took);
        let extra = match outcome {
            TryOutcome::Answered => return,
            TryOutcome::AnsweredOverTcp => &c.tcp_retries,
            TryOutcome::Failed => &c.failures,
            TryOutcome::TimedOut => &c.timeouts,
        };
        extra.fetch_add(1, Relaxed);
    }

    /// A snapshot, with the cache figures the caller gathered from its shards.
    pub fn snapshot(
        &self,
        cache_hits: u64,
        cache_misses: u64,
        cache_entries: usize,
    ) -> ForwardStats {
        ForwardStats {
            cache_hits,
            cache_misses,
            stale_served: self.stale_served.load(Relaxed),
            coalesced: self.coalesced.load(Relaxed),
            cache_entries,
            upstreams: self
                .upstreams
                .iter()
                .map(|(addr, c)| UpstreamStats {
                    addr: *addr,
                    queries: c.queries.load(Relaxed),
                    failures: c.failures.load(Relaxed),
                    timeouts: c.timeouts.load(Relaxed),
                    tcp_retries: c.tcp_retries.load(Relaxed),
                    latency: c.latency.snapshot(),
                })
                .collect(),
        }
    }
}
