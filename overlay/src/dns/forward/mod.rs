//! Forwarding: conditional and default upstreams, TTL cache, in-flight coalescing, serve-stale.
//!
//! The server hands over a query it parsed once (a `wire::Query` with the packet it came from):
//! [`Forwarder::answer_from_cache`] answers it from a fresh cache entry without allocating;
//! [`Forwarder::resolve`] answers it from the cache, an in-flight query, the upstreams or stale.
//! Both key the cache from the parsed query, never parse the packet again, and write the same
//! bytes: the cached answer patched with the asker's id, flags and question spelling, RA set and
//! TTLs aged by the time spent in cache.

mod answer;
mod cache;
mod coalesce;
mod config;
#[cfg(test)]
pub(crate) mod fake_upstream;
mod key;
mod stats;
#[cfg(test)]
mod tests;
mod trace;
mod upstream;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use hickory_proto::op::Query as Question;
use hickory_proto::rr::{DNSClass, Name, RecordType};
use hickory_proto::serialize::binary::BinDecodable;

pub use answer::{ADVERTISED_UDP_SIZE, STALE_TTL};
pub use config::{ConfigError, ForwardConfig};
pub use stats::{ForwardStats, UpstreamStats};
pub use trace::{ForwardPath, UpstreamTry};
pub use upstream::UpstreamError;

use answer::{Answer, TtlClamp, TtlMode};
use cache::{Cache, Lookup};
use coalesce::{follow, InFlight, Role};
use config::Routes;
use key::Key;
use stats::{Counters, TryOutcome};

use crate::dns::wire::{name_to_string, response_limit, rtype, Query, Transport};

/// Caches at least this large are split into shards with their own locks.
const SHARDED_FROM: usize = 1024;
const SHARDS: usize = 16;

/// Why a query could not be answered by forwarding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForwardError {
    /// The query is not one this forwarder handles (answer FORMERR or REFUSED).
    #[error("query not forwarded: {0}")]
    BadQuery(&'static str),
    /// No upstream is configured for the name (answer REFUSED).
    #[error("no upstream is configured for {0}")]
    NoRoute(String),
    /// Every upstream of the route failed and nothing stale was cached (answer SERVFAIL).
    #[error("all {tried} upstream(s) failed for {qname}; last error: {last}")]
    AllFailed {
        /// The name asked.
        qname: String,
        /// Upstreams tried.
        tried: usize,
        /// How the last one failed.
        #[source]
        last: UpstreamError,
    },
    /// The cached answer's question is not as long as the query's (answer SERVFAIL); cannot
    /// happen for a query of the answer's cache key.
    #[error("the cached answer for {0} does not fit the query's question")]
    Mismatch(String),
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

type Outcome = Result<Arc<Answer>, ForwardError>;

struct Shard {
    cache: Cache<Arc<Answer>>,
    hits: u64,
    misses: u64,
}

/// The forwarding resolver. Clones share one cache, one in-flight table and one set of counters.
#[derive(Clone)]
pub struct Forwarder {
    inner: Arc<Inner>,
}

struct Inner {
    routes: Routes,
    timeout: Duration,
    clamp: TtlClamp,
    shards: Box<[Mutex<Shard>]>,
    in_flight: InFlight<Outcome>,
    counters: Counters,
    clock: Clock,
}

impl Forwarder {
    /// A forwarder for `cfg`. Settings [`ForwardConfig::validate`] rejects are repaired or
    /// skipped with a warning (bad zones dropped, min TTL capped at max TTL).
    pub fn new(cfg: ForwardConfig) -> Forwarder {
        if let Err(e) = cfg.validate() {
            tracing::warn!(error = %e, "forwarding configuration repaired");
        }
        let routes = Routes::new(&cfg);
        let shard_count = if cfg.cache_size >= SHARDED_FROM {
            SHARDS
        } else {
            1
        };
        let per_shard = cfg.cache_size.div_ceil(shard_count);
        let shards = (0..shard_count)
            .map(|_| {
                Mutex::new(Shard {
                    cache: Cache::new(per_shard, cfg.stale_for),
                    hits: 0,
                    misses: 0,
                })
            })
            .collect();
        Forwarder {
            inner: Arc::new(Inner {
                counters: Counters::new(routes.upstreams()),
                routes,
                timeout: cfg.timeout.max(Duration::from_millis(1)),
                clamp: TtlClamp {
                    min: cfg.min_ttl.min(cfg.max_ttl),
                    max: cfg.max_ttl,
                },
                shards,
                in_flight: InFlight::default(),
                clock: Clock::default(),
            }),
        }
    }

    /// True when some upstream serves `qname` (a conditional forwarder or a default upstream).
    pub fn has_route(&self, qname: &Name) -> bool {
        Key::name_only(qname).is_some_and(|k| self.inner.routes.route(k.name()).is_some())
    }

    /// Answers the query `q`, parsed from `packet`, from the cache or its upstreams into `out`
    /// (replacing its contents): the packet's id, RD/CD bits and question as asked, RA set, an
    /// OPT record when the query had one. Call it only for queries the server's own answering
    /// handed over (`Outcome::Forward`).
    pub(crate) async fn resolve(
        &self,
        packet: &[u8],
        q: &Query,
        out: &mut Vec<u8>,
    ) -> Result<(), ForwardError> {
        if matches!(q.qtype, rtype::AXFR | rtype::IXFR | rtype::OPT) {
            return Err(ForwardError::BadQuery(
                "zone transfers and OPT questions are not forwarded",
            ));
        }
        let key = Key::of(q);
        let (answer, mode) = self.inner.answer(q, &key).await?;
        if answer.write_wire(packet, q, mode, out) {
            Ok(())
        } else {
            Err(ForwardError::Mismatch(name_to_string(key.name())))
        }
    }

    /// Answers the query `q`, parsed from `packet`, from a fresh cache entry into `out`
    /// (replacing its contents, reusing its allocation; nothing else is allocated). False when it
    /// cannot: not cached or stale, or too large for UDP; then `out` holds nothing useful and the
    /// caller uses [`Self::resolve`]. Call it only for queries handed over as for `resolve`.
    pub(crate) fn answer_from_cache(
        &self,
        packet: &[u8],
        q: &Query,
        transport: Transport,
        out: &mut Vec<u8>,
    ) -> bool {
        let key = Key::of(q);
        let limit = response_limit(transport, q.edns, ADVERTISED_UDP_SIZE);
        let now = self.inner.clock.now();
        let mut shard = self.inner.shard(key.as_bytes());
        let Lookup::Fresh { value, age } = shard.cache.get(key.as_bytes(), now) else {
            return false;
        };
        if !value.write_wire(packet, q, TtlMode::Aged(age), out) || out.len() > limit {
            return false;
        }
        shard.hits += 1;
        true
    }

    /// Counters since start.
    pub fn stats(&self) -> ForwardStats {
        let (mut hits, mut misses, mut entries) = (0, 0, 0);
        for shard in self.inner.shards.iter() {
            let s = lock(shard);
            hits += s.hits;
            misses += s.misses;
            entries += s.cache.len();
        }
        self.inner.counters.snapshot(hits, misses, entries)
    }

    #[cfg(test)]
    fn advance_clock(&self, by: Duration) {
        self.inner.clock.advance(by);
    }
}

impl Inner {
    fn shard(&self, key: &[u8]) -> MutexGuard<'_, Shard> {
        lock(&self.shards[shard_index(key, self.shards.len())])
    }

    /// The answer for `q` (whose cache key is `key`) and how to render its TTLs; from the cache,
    /// the in-flight query, the upstreams, or stale.
    async fn answer(&self, q: &Query, key: &Key) -> Result<(Arc<Answer>, TtlMode), ForwardError> {
        let route = self
            .routes
            .route(key.name())
            .ok_or_else(|| ForwardError::NoRoute(name_to_string(key.name())))?;
        loop {
            let stale = {
                let mut shard = self.shard(key.as_bytes());
                let lookup = shard.cache.get(key.as_bytes(), self.clock.now());
                let stale = match lookup {
                    Lookup::Fresh { value, age } => {
                        let hit = (value.clone(), TtlMode::Aged(age));
                        shard.hits += 1;
                        return Ok(hit);
                    }
                    Lookup::Stale { value, recheck } => Some((value.clone(), recheck)),
                    Lookup::Miss => None,
                };
                shard.misses += 1;
                stale
            };
            let stale = match stale {
                Some((value, false)) => return Ok(self.serve_stale(q, value)),
                Some((value, true)) => Some(value),
                None => None,
            };
            let outcome = match self.in_flight.join(key.as_bytes()) {
                Role::Leader(lead) => {
                    let outcome = self.ask_upstreams(q, route, None).await;
                    let mut shard = self.shard(key.as_bytes());
                    let now = self.clock.now();
                    match &outcome {
                        Ok(a) => shard
                            .cache
                            .insert(key.as_bytes(), a.clone(), secs(a.ttl()), now),
                        Err(_) => shard.cache.note_refresh_failure(key.as_bytes(), now),
                    }
                    drop(shard);
                    lead.finish(outcome.clone());
                    outcome
                }
                Role::Follower(rx) => {
                    self.counters.coalesced();
                    match follow(rx).await {
                        Some(outcome) => outcome,
                        // The leader was cancelled: start over (cache, then lead or follow).
                        None => continue,
                    }
                }
            };
            return match (outcome, stale) {
                (Ok(answer), _) => Ok((answer, TtlMode::Aged(0))),
                (Err(_), Some(value)) => Ok(self.serve_stale(q, value)),
                (Err(e), None) => Err(e),
            };
        }
    }

    fn serve_stale(&self, q: &Query, value: Arc<Answer>) -> (Arc<Answer>, TtlMode) {
        self.counters.stale_served();
        tracing::debug!(qname = %name_to_string(q.name()), qtype = %RecordType::from(q.qtype), outcome = "stale", "served stale answer");
        (value, TtlMode::Stale)
    }

    /// Tries the route's upstreams in order until one gives a usable answer; each try is
    /// recorded in `tries` when given (a trace).
    async fn ask_upstreams(
        &self,
        q: &Query,
        route: &[usize],
        mut tries: Option<&mut Vec<UpstreamTry>>,
    ) -> Outcome {
        // The upstream request is a hickory message, so the question name (already lowercased
        // by the parser) is decoded into a hickory Name here, once per miss. The asker's packet
        // is never decoded by hickory.
        let name = Name::from_bytes(q.name())
            .map_err(|_| ForwardError::BadQuery("the question name cannot be sent upstream"))?;
        let mut asked = Question::query(name, RecordType::from(q.qtype));
        asked.set_query_class(DNSClass::from(q.qclass));
        let dnssec_ok = q.dnssec_ok();
        let mut last = UpstreamError::Io("no upstream tried".into());
        for &i in route {
            let Some(&addr) = self.routes.upstreams().get(i) else {
                continue;
            };
            let started = Instant::now();
            let result = upstream::exchange(addr, &asked, dnssec_ok, self.timeout)
                .await
                .and_then(|ex| {
                    let answer = Answer::from_upstream(&ex.response, &asked, self.clamp)
                        .map_err(|e| UpstreamError::Malformed(e.to_string()))?;
                    Ok((answer, ex.via_tcp))
                });
            let (qname, qtype) = (asked.name(), asked.query_type());
            if let Some(t) = tries.as_deref_mut() {
                t.push(UpstreamTry {
                    upstream: addr,
                    micros: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
                    error: result.as_ref().err().map(ToString::to_string),
                });
            }
            match result {
                Ok((answer, via_tcp)) => {
                    let outcome = if via_tcp {
                        TryOutcome::AnsweredOverTcp
                    } else {
                        TryOutcome::Answered
                    };
                    self.counters.upstream_try(i, outcome, started.elapsed());
                    tracing::debug!(upstream = %addr, %qname, %qtype, outcome = "answer", rcode = %answer.rcode(), ttl = answer.ttl(), tcp = via_tcp, "upstream answered");
                    return Ok(Arc::new(answer));
                }
                Err(e) => {
                    let outcome = if matches!(e, UpstreamError::Timeout(_)) {
                        TryOutcome::TimedOut
                    } else {
                        TryOutcome::Failed
                    };
                    self.counters.upstream_try(i, outcome, started.elapsed());
                    tracing::debug!(upstream = %addr, %qname, %qtype, outcome = "failed", error = %e, "upstream failed");
                    last = e;
                }
            }
        }
        Err(ForwardError::AllFailed {
            qname: asked.name().to_string(),
            tried: route.len(),
            last,
        })
    }
}

/// Spreads keys over shards from their first 16 and last 8 bytes (where names differ most):
/// cheap, and only a spread; each shard's map applies its own keyed hash.
fn shard_index(key: &[u8], shards: usize) -> usize {
    let word = |from: usize, to: usize| {
        let b = key.get(from.min(to)..to).unwrap_or_default();
        let mut w = [0u8; 8];
        w[..b.len()].copy_from_slice(b);
        u64::from_le_bytes(w)
    };
    let len = key.len();
    let h = [
        word(0, len.min(8)),
        word(8, len.min(16)),
        word(len.saturating_sub(8), len),
    ]
    .into_iter()
    .fold(len as u64, |h, w| {
        (h ^ w).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(29)
    });
    (h % shards as u64) as usize
}

fn secs(s: u32) -> Duration {
    Duration::from_secs(u64::from(s))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The forwarder's time source: the monotonic clock, which tests can push forward.
#[derive(Default)]
struct Clock {
    #[cfg(test)]
    skew_ms: std::sync::atomic::AtomicU64,
}

impl Clock {
    fn now(&self) -> Instant {
        let now = Instant::now();
        #[cfg(test)]
        let now =
            now + Duration::from_millis(self.skew_ms.load(std::sync::atomic::Ordering::Relaxed));
        now
    }

    #[cfg(test)]
    fn advance(&self, by: Duration) {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.skew_ms
            .fetch_add(ms, std::sync::atomic::Ordering::Relaxed);
    }
}
