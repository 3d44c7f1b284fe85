//! Prometheus metrics: cheap instruments the owners of each piece of state update, a registry
//! of collectors read only at scrape time, the text exposition format, and the `/metrics`
//! server.
//!
//! - `expose`: an [`Exposition`] built family by family and rendered as text (pure).
//! - `instruments`: atomic counters and fixed-bucket histograms, and labelled maps of them for
//!   paths that are not hot.
//! - `registry`: the [`Collect`] trait and the [`Registry`] a scrape walks.
//! - `cluster`: gauges of the cluster state a process holds.
//! - `http`: `GET /metrics` on a listener the caller bound.
//!
//! Hot paths (the DNS answer loop) keep their own per-thread tallies and atomics and are read
//! by a collector at scrape time: a scrape takes no lock the answer path takes.

mod cluster;
mod expose;
mod http;
mod instruments;
mod registry;

pub use cluster::{write_cluster, ClusterGauges};
pub use expose::{Exposition, FamilyWriter, HistogramSnapshot, HistogramWriter, Kind};
pub use http::{bind, serve, MetricsError};
pub use instruments::{CounterMap, Histogram, HistogramMap, DURATION_BUCKETS};
pub use registry::{Collect, Registry};
