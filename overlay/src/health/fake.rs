//! A [`Prober`] that answers as the test says, for unit tests of whoever schedules checks:
//! verdicts per instance name, connection counts per namespace, and a log of every probe.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;

use super::probe::{CountError, Prober, Target, Verdict};
use super::tcp_table::Tally;
use crate::model::Probe;

/// One probe the fake answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeCall {
    /// The target as given.
    pub target: Target,
    /// The probe as given.
    pub probe: Probe,
}

#[derive(Default)]
struct Script {
    verdicts: BTreeMap<String, Verdict>,
    connections: BTreeMap<PathBuf, u32>,
    calls: Vec<ProbeCall>,
    counts: Vec<PathBuf>,
}

/// The fake; every instance passes with empty output and has no connections until told.
#[derive(Default)]
pub struct FakeProber {
    script: Mutex<Script>,
}

impl FakeProber {
    /// A fake where everything passes.
    pub fn new() -> FakeProber {
        FakeProber::default()
    }

    fn script(&self) -> MutexGuard<'_, Script> {
        self.script.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// From now on probes of instance `name` answer `verdict`.
    pub fn answer(&self, name: &str, verdict: Verdict) {
        self.script().verdicts.insert(name.to_string(), verdict);
    }

    /// From now on the namespace `netns` has `n` connections on every port.
    pub fn set_connections(&self, netns: &Path, n: u32) {
        self.script().connections.insert(netns.to_path_buf(), n);
    }

    /// Every probe so far, in order.
    pub fn calls(&self) -> Vec<ProbeCall> {
        self.script().calls.clone()
    }

    /// The probes of instance `name` so far.
    pub fn calls_of(&self, name: &str) -> Vec<ProbeCall> {
        self.calls()
            .into_iter()
            .filter(|c| c.target.name == name)
            .collect()
    }

    /// The namespaces counted so far, in order.
    pub fn counts(&self) -> Vec<PathBuf> {
        self.script().counts.clone()
    }
}

#[async_trait]
impl Prober for FakeProber {
    async fn probe(&self, target: &Target, probe: &Probe, _timeout: Duration) -> Verdict {
        let mut s = self.script();
        s.calls.push(ProbeCall {
            target: target.clone(),
            probe: probe.clone(),
        });
        s.verdicts
            .get(&target.name)
            .cloned()
            .unwrap_or_else(|| Verdict::pass(""))
    }

    async fn connections(
        &self,
        netns: &Path,
        _port: u16,
        _last: Option<Tally>,
    ) -> Result<Tally, CountError> {
        let mut s = self.script();
        s.counts.push(netns.to_path_buf());
        Ok(Tally::counted(
            s.connections.get(netns).copied().unwrap_or(0),
        ))
    }
}
