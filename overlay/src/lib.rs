//! shibafu-overlay: everything the shibafu daemons and the CLI share.
//!
//! Pure core first (model, IPAM, planning, DNS answering); adapters at the edge (etcd, netlink,
//! sockets) behind small traits.

pub mod dns;
pub mod model;
pub mod store;
