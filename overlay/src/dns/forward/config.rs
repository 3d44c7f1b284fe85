//! Forwarder settings and the routing table: conditional forwarders by name suffix (longest
//! label-wise match wins), then the default upstreams.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use super::key::suffixes;

/// Forwarding and cache settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardConfig {
    /// Default upstreams, tried in order.
    pub upstreams: Vec<SocketAddr>,
    /// Conditional forwarders: name suffix (e.g. "corp.example", trailing dot optional, any case)
    /// to the upstreams that serve it, tried in order.
    pub zones: Vec<(String, Vec<SocketAddr>)>,
    /// Time allowed for one try of one upstream (UDP, and TCP after truncation) before failover.
    pub timeout: Duration,
    /// Lowest TTL cached, in seconds; smaller TTLs are raised to it.
    pub min_ttl: u32,
    /// Highest TTL cached, in seconds; larger TTLs are lowered to it.
    pub max_ttl: u32,
    /// Most answers held; the least recently used go first (CLOCK). 0 disables the cache.
    pub cache_size: usize,
    /// How long past its TTL an answer may be served (with TTL 30) when every upstream fails.
    pub stale_for: Duration,
}

impl Default for ForwardConfig {
    /// No upstreams; 2 s per upstream try; TTLs clamped to [0, 86400]; 10 000 answers; stale
    /// answers served for up to 1 h after expiry.
    fn default() -> Self {
        ForwardConfig {
            upstreams: Vec::new(),
            zones: Vec::new(),
            timeout: Duration::from_secs(2),
            min_ttl: 0,
            max_ttl: 86_400,
            cache_size: 10_000,
            stale_for: Duration::from_secs(3600),
        }
    }
}

/// Invalid forwarding settings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A conditional forwarder's suffix is not a domain name.
    #[error("forward zone {zone:?}: {reason}; give a domain name such as corp.example")]
    BadZone {
        /// The suffix as configured.
        zone: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A conditional forwarder has no upstream.
    #[error("forward zone {0:?} has no upstream; give at least one IP[:PORT]")]
    ZoneWithoutUpstream(String),
    /// The same suffix is configured twice.
    #[error("forward zone {0:?} is configured twice; merge its upstreams into one entry")]
    DuplicateZone(String),
    /// min_ttl is above max_ttl.
    #[error("min TTL {min} is above max TTL {max}")]
    TtlBounds {
        /// Configured minimum.
        min: u32,
        /// Configured maximum.
        max: u32,
    },
    /// The per-try timeout is zero.
    #[error("upstream timeout must be above zero")]
    ZeroTimeout,
}

impl ForwardConfig {
    /// Checks the settings; [`super::Forwarder::new`] skips what this rejects, with a warning.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.min_ttl > self.max_ttl {
            return Err(ConfigError::TtlBounds {
                min: self.min_ttl,
                max: self.max_ttl,
            });
        }
        if self.timeout.is_zero() {
            return Err(ConfigError::ZeroTimeout);
        }
        let mut seen = HashMap::new();
        for (zone, ups) in &self.zones {
            let wire = zone_wire(zone)?;
            if ups.is_empty() {
                return Err(ConfigError::ZoneWithoutUpstream(zone.clone()));
            }
            if seen.insert(wire, ()).is_some() {
                return Err(ConfigError::DuplicateZone(zone.clone()));
            }
        }
        Ok(())
    }
}

/// Lowercased wire form of a suffix such as "Corp.Example." (the empty string or "." is the root).
fn zone_wire(zone: &str) -> Result<Box<[u8]>, ConfigError> {
    let bad = |reason| ConfigError::BadZone {
        zone: zone.to_owned(),
        reason,
    };
    let trimmed = zone.trim().trim_end_matches('.');
    let mut wire = Vec::with_capacity(trimmed.len() + 2);
    if !trimmed.is_empty() {
        for label in trimmed.split('.') {
            let len = u8::try_from(label.len())
                .ok()
                .filter(|n| (1..=63).contains(n))
                .ok_or_else(|| bad("every label must be 1 to 63 bytes"))?;
            wire.push(len);
            wire.extend(label.bytes().map(|b| b.to_ascii_lowercase()));
        }
    }
    wire.push(0);
    if wire.len() > 255 {
        return Err(bad("name longer than 255 bytes"));
    }
    Ok(wire.into())
}

/// Which upstreams serve which names. Upstreams are numbered once each, for per-upstream stats.
#[derive(Debug)]
pub struct Routes {
    upstreams: Vec<SocketAddr>,
    default: Vec<usize>,
    zones: HashMap<Box<[u8]>, Vec<usize>>,
}

impl Routes {
    /// The routing table of `cfg`; invalid or empty zones are skipped with a warning.
    pub fn new(cfg: &ForwardConfig) -> Routes {
        let mut upstreams = Vec::new();
        let mut number = |addrs: &[SocketAddr]| -> Vec<usize> {
            addrs
                .iter()
                .map(|a| match upstreams.iter().position(|u| u == a) {
                    Some(i) => i,
                    None => {
                        upstreams.push(*a);
                        upstreams.len() - 1
                    }
                })
                .collect()
        };
        let default = number(&cfg.upstreams);
        let mut zones = HashMap::new();
        for (zone, addrs) in &cfg.zones {
            match zone_wire(zone) {
                Ok(_) if addrs.is_empty() => {
                    tracing::warn!(zone = %zone, "forward zone without upstreams ignored");
                }
                Ok(wire) => {
                    zones.insert(wire, number(addrs));
                }
                Err(e) => tracing::warn!(zone = %zone, error = %e, "forward zone ignored"),
            }
        }
        Routes {
            upstreams,
            default,
            zones,
        }
    }

    /// Every configured upstream, each once; route entries index into this.
    pub fn upstreams(&self) -> &[SocketAddr] {
        &self.upstreams
    }

    /// Upstreams for a lowercased wire-format name: the longest matching zone's, else the
    /// default ones; None when that list is empty.
    pub fn route(&self, name: &[u8]) -> Option<&[usize]> {
        let list = if self.zones.is_empty() {
            &self.default
        } else {
            suffixes(name)
                .find_map(|s| self.zones.get(s))
                .unwrap_or(&self.default)
        };
        (!list.is_empty()).then_some(list.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn routes() -> Routes {
        Routes::new(&ForwardConfig {
            upstreams: vec![addr(1)],
            zones: vec![
                ("Corp.Example.".into(), vec![addr(2)]),
                ("a.corp.example".into(), vec![addr(3), addr(1)]),
                ("bad..zone".into(), vec![addr(4)]),
            ],
            ..ForwardConfig::default()
        })
    }

    fn route_of(r: &Routes, name: &[u8]) -> Vec<SocketAddr> {
        let list = r.route(name).unwrap_or_default();
        list.iter().map(|&i| r.upstreams()[i]).collect()
    }

    #[test]
    fn longest_label_wise_suffix_wins() {
        let r = routes();
        let corp = b"\x04corp\x07example\x00";
        assert_eq!(route_of(&r, corp), [addr(2)]);
        assert_eq!(route_of(&r, b"\x01x\x04corp\x07example\x00"), [addr(2)]);
        assert_eq!(
            route_of(&r, b"\x01x\x01a\x04corp\x07example\x00"),
            [addr(3), addr(1)]
        );
        assert_eq!(route_of(&r, b"\x05xcorp\x07example\x00"), [addr(1)]);
        assert_eq!(route_of(&r, b"\x00"), [addr(1)]);
        assert_eq!(r.upstreams(), [addr(1), addr(2), addr(3)]);
    }

    #[test]
    fn no_default_means_no_route_outside_zones() {
        let r = Routes::new(&ForwardConfig {
            zones: vec![("corp.example".into(), vec![addr(2)])],
            ..ForwardConfig::default()
        });
        assert!(r.route(b"\x04corp\x07example\x00").is_some());
        assert!(r.route(b"\x05other\x00").is_none());
    }

    #[test]
    fn validate_names_what_is_wrong() {
        let with_zone = |zone: &str, ups: Vec<SocketAddr>| ForwardConfig {
            zones: vec![(zone.into(), ups)],
            ..ForwardConfig::default()
        };
        assert_eq!(ForwardConfig::default().validate(), Ok(()));
        assert_eq!(with_zone("corp.example.", vec![addr(1)]).validate(), Ok(()));
        assert!(matches!(
            with_zone("bad..zone", vec![addr(1)]).validate(),
            Err(ConfigError::BadZone { .. })
        ));
        assert_eq!(
            with_zone("corp", vec![]).validate(),
            Err(ConfigError::ZoneWithoutUpstream("corp".into()))
        );
        let mut dup = with_zone("corp", vec![addr(1)]);
        dup.zones.push(("CORP.".into(), vec![addr(2)]));
        assert_eq!(
            dup.validate(),
            Err(ConfigError::DuplicateZone("CORP.".into()))
        );
        let ttl = ForwardConfig {
            min_ttl: 10,
            max_ttl: 5,
            ..ForwardConfig::default()
        };
        assert!(ttl
            .validate()
            .expect_err("min above max")
            .to_string()
            .contains("min TTL 10"));
    }
}
