//! The encrypted overlay: WireGuard between nodes. Pure parts decide tunnel addresses, MTUs,
//! which traffic is encrypted ([`tunnel`]) and the device's peers ([`plan`]); [`keys`] keeps a
//! node's key pair on disk; [`WgDevice`] is the device at the kernel edge, with the system
//! implementation ([`SystemWg`]: the kernel module through wireguard-control, else boringtun
//! as a managed process) and a fake for the agent's tests.

mod device;
mod fake;
mod kernel;
pub mod keys;
pub mod plan;
pub mod tunnel;
mod uapi;
mod userspace;

use std::path::PathBuf;

pub use device::{Backend, BackendChoice, DeviceSpec, SystemWg, WgDevice};
pub use fake::FakeWg;
pub use keys::{public_of, KeyFiles, Keys};
pub use plan::{desired_peers, diff, DesiredDevice, DesiredPeer, DeviceChange, ObservedDevice};
pub use wireguard_control::Key;

/// Errors of the encrypted overlay.
#[derive(Debug, thiserror::Error)]
pub enum WgError {
    /// A key file could not be read or written.
    #[error("{what} in {}: {source}", dir.display())]
    KeyFiles {
        /// What was being done.
        what: String,
        /// The key directory.
        dir: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A key file does not hold a base64 WireGuard key.
    #[error("{} does not hold a WireGuard key (base64 of 32 bytes); move it away to have a new one made", .0.display())]
    BadKeyFile(PathBuf),
    /// The device's link could not be created or configured.
    #[error("tunnel link: {0}")]
    Link(#[from] crate::netlink::NetlinkError),
    /// Neither backend could bring up the device.
    #[error("no WireGuard backend: {0}")]
    NoBackend(String),
    /// The device refused a configuration or could not be read.
    #[error("WireGuard device {ifname}: {what}: {source}")]
    Device {
        /// The device.
        ifname: String,
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
}
