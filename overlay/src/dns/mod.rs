//! DNS engine: zone snapshots, prebuilt answers, the fast UDP path, TCP, forwarding and cache.

pub mod forward;
