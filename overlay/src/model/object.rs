//! What every stored value shares: it knows its key, and it is read back through one decoder
//! that checks the schema version and that the value belongs at the key it was found under.

use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{
    CoordinatorRecord, Endpoint, Health, IpamBlock, Link, Network, NetworkProblem, Node, Policy,
    PolicyCounters, Rotation, Service, TunnelStatus, SCHEMA_VERSION,
};
use crate::store::keys::Key;
use crate::telemetry::Trace;

/// A value of the v1 schema, stored at the key it names.
pub trait Object:
    Clone + PartialEq + fmt::Debug + Serialize + DeserializeOwned + Send + Sync + 'static
{
    /// The key this value is stored at.
    fn key(&self) -> Key;

    /// The trace context stored with the value (kinds without one have none).
    fn trace(&self) -> Trace {
        Trace::NONE
    }

    /// Where the value keeps its trace context, for kinds that carry one.
    fn trace_mut(&mut self) -> Option<&mut Trace> {
        None
    }
}

/// The JSON of `value` as it is stored: carrying the current span's trace context when there is
/// one (so watchers continue the trace of the change that writes it), else its own.
pub fn encode<T: Object>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    let current = Trace::current();
    if current.is_none() {
        return serde_json::to_vec(value);
    }
    let mut stamped = value.clone();
    if let Some(slot) = stamped.trace_mut() {
        *slot = current;
    }
    serde_json::to_vec(&stamped)
}

/// Implements the trace accessors of [`Object`] for kinds with a `trace` field.
macro_rules! traced {
    () => {
        fn trace(&self) -> Trace {
            self.trace
        }

        fn trace_mut(&mut self) -> Option<&mut Trace> {
            Some(&mut self.trace)
        }
    };
}

/// Why a stored value cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Not JSON of the expected shape.
    #[error("malformed: {0}")]
    Malformed(String),
    /// Written by a build with another schema version.
    #[error("unknown schema version {0} (this build reads {SCHEMA_VERSION})")]
    Schema(u32),
    /// A valid value under the wrong key (written by hand, or a bug).
    #[error("value belongs at {0}, not here")]
    WrongKey(String),
}

#[derive(Deserialize)]
struct Versioned {
    schema: u32,
}

/// Decodes the value found at `key`: JSON of `T`, schema version [`SCHEMA_VERSION`], and
/// `T::key()` equal to `key`.
pub fn decode<T: Object>(key: &str, value: &[u8]) -> Result<T, DecodeError> {
    let malformed = |e: serde_json::Error| DecodeError::Malformed(e.to_string());
    let v: Versioned = serde_json::from_slice(value).map_err(malformed)?;
    if v.schema != SCHEMA_VERSION {
        return Err(DecodeError::Schema(v.schema));
    }
    let t: T = serde_json::from_slice(value).map_err(malformed)?;
    let own = t.key().to_string();
    if own != key {
        return Err(DecodeError::WrongKey(own));
    }
    Ok(t)
}

impl Object for Network {
    traced!();

    fn key(&self) -> Key {
        Key::Network(self.name.clone())
    }
}

impl Object for Node {
    fn key(&self) -> Key {
        Key::Node(self.name.clone())
    }
}

impl Object for Endpoint {
    traced!();

    fn key(&self) -> Key {
        Key::Endpoint {
            network: self.network.clone(),
            id: self.id.clone(),
        }
    }
}

impl Object for Link {
    fn key(&self) -> Key {
        Key::Link(self.a.clone(), self.b.clone())
    }
}

impl Object for IpamBlock {
    fn key(&self) -> Key {
        Key::IpamBlock {
            network: self.network.clone(),
            cidr: self.cidr.to_string(),
        }
    }
}

impl Object for Service {
    traced!();

    fn key(&self) -> Key {
        Key::Service {
            network: self.network.clone(),
            name: self.name.clone(),
        }
    }
}

impl Object for Health {
    fn key(&self) -> Key {
        Key::Health {
            network: self.network.clone(),
            id: self.endpoint.clone(),
        }
    }
}

impl Object for CoordinatorRecord {
    fn key(&self) -> Key {
        Key::Coordinator(self.name.clone())
    }
}

impl Object for Policy {
    traced!();

    fn key(&self) -> Key {
        Key::Policy(self.name.clone())
    }
}

impl Object for PolicyCounters {
    fn key(&self) -> Key {
        Key::PolicyCounters {
            policy: self.policy.clone(),
            node: self.node.clone(),
        }
    }
}

impl Object for TunnelStatus {
    fn key(&self) -> Key {
        Key::Tunnel(self.node.clone())
    }
}

impl Object for Rotation {
    traced!();

    fn key(&self) -> Key {
        Key::Rotation(self.node.clone())
    }
}

impl Object for NetworkProblem {
    fn key(&self) -> Key {
        Key::Problem {
            network: self.network.clone(),
            node: self.node.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_checks_version_shape_and_key() {
        let n = Network::new("backend", "172.22.0.0/24".parse().expect("net"), 4096);
        let key = n.key().to_string();
        let bytes = serde_json::to_vec(&n).expect("json");
        assert_eq!(decode::<Network>(&key, &bytes), Ok(n.clone()));
        assert!(matches!(
            decode::<Network>("/shibafu/v1/networks/other", &bytes),
            Err(DecodeError::WrongKey(k)) if k == key
        ));
        let mut v2 = serde_json::to_value(&n).expect("value");
        v2["schema"] = 2.into();
        let v2 = serde_json::to_vec(&v2).expect("json");
        assert_eq!(decode::<Network>(&key, &v2), Err(DecodeError::Schema(2)));
        assert!(matches!(
            decode::<Network>(&key, b"{garbage"),
            Err(DecodeError::Malformed(_))
        ));
        assert!(matches!(
            decode::<Node>(&key, &bytes),
            Err(DecodeError::Malformed(_))
        ));
    }

    #[test]
    fn block_keys_spell_the_cidr_with_an_underscore() {
        let b = IpamBlock {
            schema: SCHEMA_VERSION,
            network: "f".into(),
            cidr: "172.21.0.16/28".parse().expect("cidr"),
            node: "n1".into(),
        };
        let key = "/shibafu/v1/ipam/f/blocks/172.21.0.16_28";
        assert_eq!(b.key().to_string(), key);
        let bytes = serde_json::to_vec(&b).expect("json");
        assert_eq!(decode::<IpamBlock>(key, &bytes), Ok(b));
    }
}
