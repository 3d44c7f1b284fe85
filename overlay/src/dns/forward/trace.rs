//! The forwarder's trace entry point: answers a query as [`Forwarder::resolve`] does and says
//! how (cache, which upstreams and how long each took, stale, or nothing), for
//! `shibafu network dns-trace`. The answer path never calls it.

use super::answer::TtlMode;
use super::cache::Lookup;
use super::key::Key;
use super::{secs, ForwardError, Forwarder};
use crate::dns::wire::{name_to_string, Query};

/// One upstream asked during a trace.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UpstreamTry {
    /// The upstream server.
    pub upstream: std::net::SocketAddr,
    /// How long it took to answer or fail, in microseconds.
    pub micros: u64,
    /// Why it failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// How the forwarder answered a traced query.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "via", rename_all = "snake_case")]
pub enum ForwardPath {
    /// From a fresh cache entry, cached `age_secs` ago.
    Cache {
        /// Seconds since the answer was cached.
        age_secs: u32,
    },
    /// From an upstream: the last try answered.
    Upstream {
        /// The upstreams asked, in order.
        tries: Vec<UpstreamTry>,
    },
    /// Every upstream failed; a stale cached answer was served.
    Stale {
        /// The upstreams asked, in order.
        tries: Vec<UpstreamTry>,
    },
    /// No answer: no upstream for the name, or all failed with nothing stale.
    Failed {
        /// The upstreams asked, in order.
        tries: Vec<UpstreamTry>,
        /// What went wrong.
        error: String,
    },
}

impl Forwarder {
    /// Answers `q` as [`Self::resolve`] does, but says how: from a fresh cache entry, or from
    /// which upstreams in how long (stale when they all failed and a stale entry exists). Not
    /// coalesced with other queries; a trace, not the answer path.
    pub(crate) async fn trace(&self, packet: &[u8], q: &Query, out: &mut Vec<u8>) -> ForwardPath {
        let key = Key::of(q);
        let Some(route) = self.inner.routes.route(key.name()) else {
            return ForwardPath::Failed {
                tries: Vec::new(),
                error: ForwardError::NoRoute(name_to_string(key.name())).to_string(),
            };
        };
        let stale = {
            let mut shard = self.inner.shard(key.as_bytes());
            match shard.cache.get(key.as_bytes(), self.inner.clock.now()) {
                Lookup::Fresh { value, age } => {
                    let value = value.clone();
                    shard.hits += 1;
                    value.write_wire(packet, q, TtlMode::Aged(age), out);
                    return ForwardPath::Cache { age_secs: age };
                }
                Lookup::Stale { value, .. } => Some(value.clone()),
                Lookup::Miss => None,
            }
        };
        let mut tries = Vec::new();
        match self.inner.ask_upstreams(q, route, Some(&mut tries)).await {
            Ok(answer) => {
                let mut shard = self.inner.shard(key.as_bytes());
                let now = self.inner.clock.now();
                shard.misses += 1;
                shard
                    .cache
                    .insert(key.as_bytes(), answer.clone(), secs(answer.ttl()), now);
                drop(shard);
                answer.write_wire(packet, q, TtlMode::Aged(0), out);
                ForwardPath::Upstream { tries }
            }
            Err(e) => match stale {
                Some(value) => {
                    value.write_wire(packet, q, TtlMode::Stale, out);
                    ForwardPath::Stale { tries }
                }
                None => ForwardPath::Failed {
                    tries,
                    error: e.to_string(),
                },
            },
        }
    }
}
