//! Instruments the owners of state update: a fixed-bucket histogram of atomics (no lock, no
//! allocation per observation), and labelled counters and histograms behind a mutex for paths
//! that run at most a few times a second (reconciles, health rounds, policy reads).
//!
//! Label values are the caller's to keep bounded: networks, services, policies, upstreams —
//! things bounded by configuration, never clients or query names.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use super::expose::{FamilyWriter, HistogramSnapshot, HistogramWriter};

/// Buckets in seconds for durations from a fraction of a millisecond to ten seconds.
pub const DURATION_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// A histogram of durations in fixed buckets, updated with atomics.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    counts: Box<[AtomicU64]>,
    sum_nanos: AtomicU64,
}

impl Histogram {
    /// An empty histogram over `bounds` (seconds, ascending).
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_nanos: AtomicU64::new(0),
        }
    }

    /// Counts one duration.
    pub fn observe(&self, took: Duration) {
        let i = bucket(self.bounds, took.as_secs_f64());
        self.counts[i].fetch_add(1, Relaxed);
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Relaxed);
    }

    /// What it counted so far.
    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            bounds: self.bounds.to_vec(),
            counts: self.counts.iter().map(|c| c.load(Relaxed)).collect(),
            sum: self.sum_nanos.load(Relaxed) as f64 / 1e9,
        }
    }
}

/// Index of the bucket `v` falls in: the first bound at or above it, else the last (`+Inf`).
fn bucket(bounds: &[f64], v: f64) -> usize {
    bounds.partition_point(|b| *b < v)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Counters by `N` label values.
#[derive(Debug)]
pub struct CounterMap<const N: usize> {
    values: Mutex<BTreeMap<[String; N], u64>>,
}

impl<const N: usize> Default for CounterMap<N> {
    fn default() -> Self {
        CounterMap {
            values: Mutex::new(BTreeMap::new()),
        }
    }
}

impl<const N: usize> CounterMap<N> {
    /// Adds `n` to the counter of these label values.
    pub fn add(&self, labels: [&str; N], n: u64) {
        let key = labels.map(str::to_string);
        *lock(&self.values).entry(key).or_insert(0) += n;
    }

    /// The counter of these label values (0 when never counted).
    pub fn get(&self, labels: [&str; N]) -> u64 {
        let key = labels.map(str::to_string);
        lock(&self.values).get(&key).copied().unwrap_or(0)
    }

    /// Writes every counter into a family with the same labels.
    pub fn write(&self, out: &mut FamilyWriter<'_, N>) {
        for (labels, n) in lock(&self.values).iter() {
            out.add(labels.each_ref().map(String::as_str), *n as f64);
        }
    }
}

/// Histograms of durations by `N` label values, all over the same buckets.
#[derive(Debug)]
pub struct HistogramMap<const N: usize> {
    bounds: &'static [f64],
    values: Mutex<BTreeMap<[String; N], HistogramSnapshot>>,
}

impl<const N: usize> HistogramMap<N> {
    /// Empty histograms over `bounds` (seconds, ascending).
    pub fn new(bounds: &'static [f64]) -> HistogramMap<N> {
        HistogramMap {
            bounds,
            values: Mutex::new(BTreeMap::new()),
        }
    }

    /// Counts one duration in the histogram of these label values.
    pub fn observe(&self, labels: [&str; N], took: Duration) {
        let key = labels.map(str::to_string);
        let mut values = lock(&self.values);
        let h = values
            .entry(key)
            .or_insert_with(|| HistogramSnapshot::empty(self.bounds));
        h.counts[bucket(self.bounds, took.as_secs_f64())] += 1;
        h.sum += took.as_secs_f64();
    }

    /// Writes every histogram into a family with the same labels.
    pub fn write(&self, out: &mut HistogramWriter<'_, N>) {
        for (labels, h) in lock(&self.values).iter() {
            out.add(labels.each_ref().map(String::as_str), h);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Exposition;

    #[test]
    fn durations_fall_in_the_first_bucket_at_or_above_them() {
        let h = Histogram::new(&[0.001, 0.01]);
        h.observe(Duration::from_micros(1000));
        h.observe(Duration::from_millis(5));
        h.observe(Duration::from_secs(2));
        let s = h.snapshot();
        assert_eq!(s.counts, [1, 1, 1]);
        assert!((s.sum - 2.006).abs() < 1e-9, "{}", s.sum);
    }

    #[test]
    fn labelled_instruments_write_their_series() {
        let c = CounterMap::<2>::default();
        c.add(["frontend", "pass"], 2);
        c.add(["frontend", "pass"], 1);
        assert_eq!(c.get(["frontend", "pass"]), 3);
        assert_eq!(c.get(["frontend", "fail"]), 0);
        let h = HistogramMap::<1>::new(&[0.5]);
        h.observe(["change"], Duration::from_millis(100));
        h.observe(["change"], Duration::from_secs(1));
        let mut e = Exposition::new();
        c.write(&mut e.counter("c_total", "c", ["network", "result"]));
        h.write(&mut e.histogram("h_seconds", "h", ["kind"]));
        let text = e.render();
        assert!(
            text.contains("c_total{network=\"frontend\",result=\"pass\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("h_seconds_bucket{kind=\"change\",le=\"0.5\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("h_seconds_count{kind=\"change\"} 2\n"),
            "{text}"
        );
    }
}
