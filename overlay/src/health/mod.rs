//! Health checks of service instances: the pure parts (the rise/fall state machine, when a
//! record is worth a write, output bounds, HTTP status lines, the kernel's TCP tables) and the
//! probes behind one trait, [`Prober`], with a real implementation and a fake.
//!
//! The agent's HealthActor schedules the checks and publishes the records; everything it
//! decides is here, so it is tested without root, sockets or waiting.

mod command;
mod fake;
pub mod http;
pub mod netns_pool;
mod probe;
mod report;
mod socket_probe;
pub mod tcp_table;
mod tracker;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

pub use command::run_in_container;
pub use fake::{FakeProber, ProbeCall};
pub use probe::{CountError, Prober, SystemProber, Target, Verdict};
pub use report::{clip_output, clip_text, worth_publishing};
pub use tcp_table::Tally;
pub use tracker::Tracker;

/// The time records carry and start periods are measured in: unix milliseconds.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The system clock as a [`Clock`].
pub fn system_clock() -> Clock {
    Arc::new(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    })
}
