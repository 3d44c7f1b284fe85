//! Health checks of this node's service instances and their connection counts, published to
//! etcd as `Health` records (`/shibafu/v1/health/<net>/<endpoint-id>`, under the node lease).
//!
//! - `plan`: which instances are checked or counted, and how (pure).
//! - `schedule`: one task per instance running its rounds on the agent's runtime.
//! - `actor`: the owner: judges rounds, publishes transitions and new counts, stops what goes.
//! - `writer`: the records' way to etcd, latest value per key, a few writes at once.
//!
//! The probes themselves and every rule (rise, fall, start period, what is worth a write) are
//! in `shibafu_overlay::health`.

mod actor;
mod plan;
mod schedule;
mod writer;

pub use actor::{HealthActor, HealthLinks};
pub use writer::RecordQueue;

#[cfg(test)]
mod tests;
