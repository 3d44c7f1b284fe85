//! An in-memory WireGuard device for the agent's tests: applies changes as a device would,
//! records them, and fails when told to.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::device::{Backend, DeviceSpec, WgDevice};
use super::keys::public_of;
use super::plan::{DeviceChange, ObservedDevice};
use super::{Key, WgError};

#[derive(Debug, Default)]
struct Inner {
    up: Option<DeviceSpec>,
    device: ObservedDevice,
    applied: Vec<DeviceChange>,
    fail: Option<String>,
    removed: usize,
}

/// The fake; cheap to clone (clones share the device).
#[derive(Debug, Clone, Default)]
pub struct FakeWg(Arc<Mutex<Inner>>);

impl FakeWg {
    /// A device that does not exist yet.
    pub fn new() -> FakeWg {
        FakeWg::default()
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every change applied so far.
    pub fn applied(&self) -> Vec<DeviceChange> {
        self.inner().applied.clone()
    }

    /// The device as it is now.
    pub fn device(&self) -> ObservedDevice {
        self.inner().device.clone()
    }

    /// The link spec it was last brought up with, if it is up.
    pub fn spec(&self) -> Option<DeviceSpec> {
        self.inner().up.clone()
    }

    /// How often it was removed.
    pub fn removed(&self) -> usize {
        self.inner().removed
    }

    /// From now on every call fails with `why` (`None` heals it).
    pub fn fail(&self, why: Option<&str>) {
        self.inner().fail = why.map(str::to_string);
    }

    /// Records a handshake with peer `key` at unix time `at`.
    pub fn handshake(&self, key: &str, at: u64) {
        if let Some(p) = self.inner().device.peers.get_mut(key) {
            p.last_handshake = Some(at);
        }
    }

    fn check(&self) -> Result<(), WgError> {
        match &self.inner().fail {
            Some(why) => Err(WgError::NoBackend(why.clone())),
            None => Ok(()),
        }
    }
}

#[async_trait]
impl WgDevice for FakeWg {
    async fn ensure(&self, spec: &DeviceSpec) -> Result<(Backend, Option<String>), WgError> {
        self.check()?;
        self.inner().up = Some(spec.clone());
        Ok((Backend::Userspace("fake 1.0".into()), None))
    }

    async fn observe(&self) -> Result<ObservedDevice, WgError> {
        self.check()?;
        Ok(self.inner().device.clone())
    }

    async fn apply(&self, key: &Key, change: &DeviceChange, keepalive: u16) -> Result<(), WgError> {
        self.check()?;
        let mut inner = self.inner();
        let dev = &mut inner.device;
        if change.set_key {
            dev.public_key = Some(public_of(key));
            // A new private key ends every session, as the kernel does.
            dev.peers.values_mut().for_each(|p| p.last_handshake = None);
        }
        if let Some(port) = change.port {
            dev.port = port;
        }
        for k in &change.remove {
            dev.peers.remove(k);
        }
        for (k, p) in &change.upsert {
            let allowed: Vec<_> = p.tunnel.map(|t| (t.into(), 32)).into_iter().collect();
            // Allowed IPs are unique on a device: another peer holding one loses it.
            for other in dev.peers.values_mut() {
                other.allowed.retain(|a| !allowed.contains(a));
            }
            let entry = dev.peers.entry(k.clone()).or_default();
            entry.endpoint = Some(p.endpoint);
            entry.allowed = allowed;
            entry.keepalive = Some(keepalive);
        }
        inner.applied.push(change.clone());
        Ok(())
    }

    async fn remove(&self) -> Result<(), WgError> {
        let mut inner = self.inner();
        inner.up = None;
        inner.device = ObservedDevice::default();
        inner.removed += 1;
        Ok(())
    }
}
