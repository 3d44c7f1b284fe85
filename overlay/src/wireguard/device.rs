//! The WireGuard device at the kernel edge: [`WgDevice`], and [`SystemWg`], which picks the
//! kernel module when it is there (configured through wireguard-control's netlink backend,
//! [`super::kernel`]) and otherwise runs boringtun-cli and configures it through its socket
//! ([`super::uapi`]). Configuration calls block on a socket, so they run on the blocking pool.

use std::fmt;
use std::path::PathBuf;

use async_trait::async_trait;
use ipnet::Ipv4Net;
use tokio::sync::Mutex;
use tracing::{info, warn};
use wireguard_control::Key;

use super::plan::{DeviceChange, ObservedDevice};
use super::{uapi, userspace, WgError};
use crate::netlink::{self, TunnelLink};

/// What carries a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// The kernel module.
    Kernel,
    /// A userspace implementation; its `--version` line.
    Userspace(String),
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Backend::Kernel => write!(f, "kernel"),
            Backend::Userspace(v) => write!(f, "userspace ({v})"),
        }
    }
}

/// Which backends the agent may use (`--wg-backend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackendChoice {
    /// The kernel module when it is there, else userspace.
    #[default]
    Auto,
    /// Only the kernel module.
    Kernel,
    /// Only userspace.
    Userspace,
}

impl std::str::FromStr for BackendChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(BackendChoice::Auto),
            "kernel" => Ok(BackendChoice::Kernel),
            "userspace" => Ok(BackendChoice::Userspace),
            _ => Err(format!("{s:?}: use auto, kernel or userspace")),
        }
    }
}

/// How the device's link should look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceSpec {
    /// MTU.
    pub mtu: u32,
    /// This node's tunnel address with the tunnel range's prefix.
    pub address: Ipv4Net,
}

/// The device, as the agent's tunnel owner drives it.
#[async_trait]
pub trait WgDevice: Send + Sync {
    /// Makes sure the device exists and its link is as `spec` says; which backend carries it,
    /// and, when the kernel module was wanted but missing, why.
    async fn ensure(&self, spec: &DeviceSpec) -> Result<(Backend, Option<String>), WgError>;
    /// Reads its key, port and peers.
    async fn observe(&self) -> Result<ObservedDevice, WgError>;
    /// Applies `change`, with `key` as the private key when the change sets it.
    async fn apply(&self, key: &Key, change: &DeviceChange, keepalive: u16) -> Result<(), WgError>;
    /// Removes the device (no network needs it any more).
    async fn remove(&self) -> Result<(), WgError>;
}

/// The system's device named `ifname` in the caller's namespace.
pub struct SystemWg {
    ifname: String,
    choice: BackendChoice,
    program: PathBuf,
    log: PathBuf,
    backend: Mutex<Option<Backend>>,
    /// The userspace program's `--version`, asked once.
    version: Mutex<Option<String>>,
}

impl SystemWg {
    /// Device `ifname`, using `choice`; the userspace backend runs `program` logging to `log`.
    pub fn new(ifname: &str, choice: BackendChoice, program: PathBuf, log: PathBuf) -> SystemWg {
        SystemWg {
            ifname: ifname.to_string(),
            choice,
            program,
            log,
            backend: Mutex::new(None),
            version: Mutex::new(None),
        }
    }

    fn device_error(&self, what: &str, source: std::io::Error) -> WgError {
        WgError::Device {
            ifname: self.ifname.clone(),
            what: what.to_string(),
            source,
        }
    }

    async fn start_userspace(&self) -> Result<Backend, WgError> {
        let mut cached = self.version.lock().await;
        let version = match cached.clone() {
            Some(v) => v,
            None => {
                let v = userspace::version(&self.program)
                    .await
                    .map_err(WgError::NoBackend)?;
                *cached = Some(v.clone());
                v
            }
        };
        drop(cached);
        if !userspace::serving(&self.ifname) {
            // A TUN device left by a process that died would keep the name taken.
            netlink::delete_link(&self.ifname).await?;
            userspace::start(&self.program, &self.ifname, &self.log)
                .await
                .map_err(WgError::NoBackend)?;
            info!(ifname = %self.ifname, program = %self.program.display(), %version, "userspace WireGuard started");
        }
        Ok(Backend::Userspace(version))
    }

    async fn bring_up(&self) -> Result<(Backend, Option<String>), WgError> {
        let link = netlink::tunnel_link(&self.ifname).await?;
        match (link, self.choice) {
            (TunnelLink::Kernel, BackendChoice::Auto | BackendChoice::Kernel) => {
                Ok((Backend::Kernel, None))
            }
            (TunnelLink::Kernel, BackendChoice::Userspace) => {
                netlink::delete_link(&self.ifname).await?;
                Ok((self.start_userspace().await?, None))
            }
            (TunnelLink::Other(_), BackendChoice::Auto | BackendChoice::Userspace) => {
                Ok((self.start_userspace().await?, None))
            }
            (TunnelLink::Other(kind), BackendChoice::Kernel) => Err(WgError::NoBackend(format!(
                "{} exists as a {kind} link, not a kernel WireGuard device",
                self.ifname
            ))),
            (TunnelLink::Missing, BackendChoice::Userspace) => {
                Ok((self.start_userspace().await?, None))
            }
            (TunnelLink::Missing, choice) => match netlink::create_wireguard(&self.ifname).await {
                Ok(()) => Ok((Backend::Kernel, None)),
                Err(e) if choice == BackendChoice::Kernel => Err(WgError::NoBackend(format!(
                    "the kernel has no WireGuard module ({e})"
                ))),
                Err(e) => {
                    let why = format!("the kernel has no WireGuard module ({e})");
                    Ok((self.start_userspace().await?, Some(why)))
                }
            },
        }
    }

    async fn backend(&self) -> Result<Backend, WgError> {
        self.backend
            .lock()
            .await
            .clone()
            .ok_or_else(|| WgError::NoBackend("the device is not up yet".into()))
    }
}

#[async_trait]
impl WgDevice for SystemWg {
    async fn ensure(&self, spec: &DeviceSpec) -> Result<(Backend, Option<String>), WgError> {
        let (backend, why) = self.bring_up().await?;
        netlink::configure_tunnel_link(&self.ifname, spec.mtu, spec.address).await?;
        let mut held = self.backend.lock().await;
        if held.as_ref() != Some(&backend) {
            info!(ifname = %self.ifname, backend = %backend, mtu = spec.mtu, address = %spec.address, "WireGuard device up");
        }
        *held = Some(backend.clone());
        Ok((backend, why))
    }

    async fn observe(&self) -> Result<ObservedDevice, WgError> {
        let backend = self.backend().await?;
        let ifname = self.ifname.clone();
        let read = tokio::task::spawn_blocking(move || match backend {
            Backend::Kernel => super::kernel::get(&ifname),
            Backend::Userspace(_) => uapi::get(&ifname),
        });
        read.await
            .map_err(|e| self.device_error("read", std::io::Error::other(e)))?
            .map_err(|e| self.device_error("read", e))
    }

    async fn apply(&self, key: &Key, change: &DeviceChange, keepalive: u16) -> Result<(), WgError> {
        let backend = self.backend().await?;
        let (ifname, key, change) = (self.ifname.clone(), key.clone(), change.clone());
        let write = tokio::task::spawn_blocking(move || match backend {
            Backend::Kernel => super::kernel::set(&ifname, &key, &change, keepalive),
            Backend::Userspace(_) => uapi::set(&ifname, &key, &change, keepalive),
        });
        write
            .await
            .map_err(|e| self.device_error("configure", std::io::Error::other(e)))?
            .map_err(|e| self.device_error("configure", e))
    }

    async fn remove(&self) -> Result<(), WgError> {
        // Also a device an earlier agent left: whatever carries the name goes.
        self.backend.lock().await.take();
        userspace::stop(&self.program, &self.ifname);
        if let Err(e) = netlink::delete_link(&self.ifname).await {
            warn!(ifname = %self.ifname, error = %e, "cannot delete the WireGuard device");
            return Err(e.into());
        }
        Ok(())
    }
}
