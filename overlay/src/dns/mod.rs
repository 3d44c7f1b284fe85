//! DNS engine: zone snapshots, prebuilt answers, the fast UDP path, TCP, forwarding and cache.
//!
//! The authoritative side is pure: a [`Snapshot`] (built with [`SnapshotBuilder`]) answers a
//! query given as bytes into a reusable buffer ([`answer::respond`]). Answers for every local
//! (name, type) are prebuilt at snapshot time, so the hot path copies bytes and patches the header.
//! [`DnsServer`] serves a snapshot handle (`Arc<ArcSwap<Snapshot>>`) over UDP (one thread per
//! socket, recvmmsg/sendmmsg batches) and TCP (tokio), forwarding other names to an optional
//! [`forward::Forwarder`].

pub mod answer;
mod assemble;
mod audience;
pub mod authority;
pub mod balance;
mod batch;
mod coalesce;
mod encode;
mod exposition;
pub mod forward;
mod hash;
pub mod metrics;
mod parts;
pub mod projection;
pub mod records;
mod reproject;
mod server;
mod snapshot;
mod tcp;
pub mod trace;
mod udp;
mod wire;

#[cfg(test)]
pub(crate) mod tests;

pub use metrics::{Metrics, MetricsReport, ZoneCounts};
pub use records::{parse_records, RecordsError};
pub use server::{bind_tcp, bind_udp, bind_udp_group, DnsServer, ServerConfig};
pub use snapshot::{reverse_name, AnswerOrder, DefaultView, Snapshot, SnapshotBuilder};

/// Errors of the DNS engine: building snapshots and running servers.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// A name given to the builder is not a valid DNS name.
    #[error("invalid DNS name {name:?}: {reason}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A record's owner lies outside every configured zone.
    #[error("record {name} is outside every zone ({zones}); add a zone that contains it")]
    OutsideZones {
        /// The owner name.
        name: String,
        /// The configured zones, comma separated.
        zones: String,
    },
    /// Records at one name contradict each other (CNAME beside other data, SOA off the apex...).
    #[error("records at {name} conflict: {reason}")]
    Conflict {
        /// The owner name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// A view or an order names a zone or name the builder does not know.
    #[error("unknown zone {0:?} in a view; declare it with .zone() first")]
    UnknownZone(String),
    /// The record data cannot be encoded.
    #[error("record {name}: cannot encode its data: {reason}")]
    Encode {
        /// The owner name.
        name: String,
        /// The encoder's message.
        reason: String,
    },
    /// A socket operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, with the address.
        what: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}
