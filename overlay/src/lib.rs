//! shibafu-overlay: everything the shibafu daemons and the CLI share.
//!
//! Pure core first (model, IPAM, planning, DNS answering); adapters at the edge (etcd, netlink,
//! sockets) behind small traits.

pub mod api;
pub mod container;
pub mod dns;
pub mod firewall;
pub mod health;
pub mod ipam;
pub mod metrics;
pub mod model;
pub mod netlink;
pub mod netns;
pub mod plan;
pub mod policy;
pub mod probe;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod wireguard;
