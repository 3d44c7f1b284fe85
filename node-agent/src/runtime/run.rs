//! The run sequence: validate, pin a fresh network namespace, attach it to the networks, write
//! the container's /etc files and start it. A step that fails undoes every step before it, so a
//! refused run leaves nothing behind. Files, mounts and processes are handled on blocking
//! threads.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use actix::MailboxError;
use shibafu_overlay::api::{ApiError, ErrorKind, RunContainer};
use shibafu_overlay::container::caps::CapSet;
use shibafu_overlay::container::etc_files::{self, Attachment};
use shibafu_overlay::container::state::Status;
use shibafu_overlay::container::{ContainerHost, NewContainer};
use shibafu_overlay::model::{self, Network};
use shibafu_overlay::telemetry::Trace;
use tracing::warn;

use super::{internal, NetworkRecipients};
use crate::network_actor::AttachRequest;
use crate::network_actor::{AttachWorkload, DetachWorkload};
use crate::registry::book::Entry;

/// A container that started: its workload entry (its interfaces) and its first status.
#[derive(Debug)]
pub struct Started {
    /// The entry the attach made.
    pub entry: Entry,
    /// Running, or already exited.
    pub status: Status,
}

/// Refuses what needs no I/O to refuse: a bad name, an empty command, an unknown capability.
pub fn validate(req: &RunContainer) -> Result<(), ApiError> {
    model::validate_name(&req.name).map_err(|e| ApiError::invalid(e.to_string()))?;
    if req.command.is_empty() {
        return Err(ApiError::invalid("give a command to run (after --)"));
    }
    capabilities(req)?;
    Ok(())
}

/// The container's capabilities: Docker's default set with the request's additions and drops.
fn capabilities(req: &RunContainer) -> Result<CapSet, ApiError> {
    CapSet::resolve(&req.cap_add, &req.cap_drop).map_err(|e| ApiError::invalid(e.to_string()))
}

/// The name is taken by a container of this node.
pub fn duplicate(name: &str) -> ApiError {
    ApiError::new(
        ErrorKind::Duplicate,
        format!("container {name:?} already exists on this node; remove it with `shibafu rm {name}` or pick another name"),
    )
}

/// The NetworkActor cannot be reached.
pub fn mailbox(e: MailboxError) -> ApiError {
    ApiError::new(
        ErrorKind::Internal,
        format!("agent is shutting down ({e}); retry"),
    )
}

/// Runs `f` on a blocking thread.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(internal)
}

/// Runs a validated request whose namespace goes on `netns`; see the module documentation.
pub async fn run(
    host: Arc<dyn ContainerHost>,
    net: NetworkRecipients,
    req: RunContainer,
    netns: PathBuf,
) -> Result<Started, ApiError> {
    let (h, name, rootfs, ns) = (
        host.clone(),
        req.name.clone(),
        req.rootfs.clone(),
        netns.clone(),
    );
    blocking(move || claim(h.as_ref(), &name, rootfs.as_deref(), &ns)).await??;
    let attach = AttachRequest {
        name: req.name.clone(),
        netns: netns.clone(),
        container: true,
        networks: req.networks.clone(),
        ip: req.ip,
        aliases: req.aliases.clone(),
        service: req.service.clone(),
        port: req.port,
        weight: req.weight,
        health: req.health.clone(),
        trace: Trace::current(),
        ..AttachRequest::default()
    };
    let attached = net
        .attach
        .send(AttachWorkload(attach))
        .await
        .map_err(mailbox)
        .and_then(|r| r.map_err(|e| e.to_api()));
    let (entry, nets) = match attached {
        Ok(v) => v,
        Err(e) => {
            undo_files(host, req.name, netns).await;
            return Err(e);
        }
    };
    let new = new_container(&req, netns.clone(), &entry, &nets);
    let h = host.clone();
    let started = blocking(move || {
        h.prepare(&new)?;
        h.start(&new.name)
    })
    .await
    .and_then(|r| r.map_err(internal));
    match started {
        Ok(status) => Ok(Started { entry, status }),
        Err(e) => {
            let detach = DetachWorkload {
                name: req.name.clone(),
                network: None,
            };
            if let Ok(Err(err)) = net.detach.send(detach).await {
                warn!(container = %req.name, error = %err, "undoing the attach of a failed run");
            }
            undo_files(host, req.name, netns).await;
            Err(e)
        }
    }
}

/// Refuses a name already recorded or a root filesystem that is not a directory, then pins the
/// namespace.
fn claim(
    host: &dyn ContainerHost,
    name: &str,
    rootfs: Option<&str>,
    netns: &Path,
) -> Result<(), ApiError> {
    if host.exists(name) {
        return Err(duplicate(name));
    }
    if let Some(root) = rootfs {
        if !host.is_dir(Path::new(root)) {
            return Err(ApiError::invalid(format!(
                "--rootfs {root}: not a directory"
            )));
        }
    }
    host.pin_netns(netns).map_err(internal)
}

/// Unpins the namespace and removes whatever was recorded (each step tried; failures logged).
async fn undo_files(host: Arc<dyn ContainerHost>, name: String, netns: PathBuf) {
    let undone = blocking(move || {
        let unpinned = host.unpin_netns(&netns);
        let removed = host.remove(&name);
        unpinned.and(removed)
    })
    .await;
    match undone {
        Ok(Ok(())) => {}
        Ok(Err(e)) => warn!(error = %e, "undoing a failed run left files behind"),
        Err(e) => warn!(error = %e, "undoing a failed run left files behind"),
    }
}

fn new_container(
    req: &RunContainer,
    netns: PathBuf,
    entry: &Entry,
    nets: &[Network],
) -> NewContainer {
    let atts = etc_attachments(entry, nets);
    NewContainer {
        caps: capabilities(req).unwrap_or_default(),
        name: req.name.clone(),
        netns,
        rootfs: req.rootfs.as_ref().map(PathBuf::from),
        command: req.command.clone(),
        env: req.env.clone(),
        resolv_conf: etc_files::resolv_conf(&atts),
        hosts: etc_files::hosts(&req.name, &atts),
        hostname: etc_files::hostname(&req.name),
    }
}

/// What the container sees of each network: zone, gateway (its DNS server), its addresses.
fn etc_attachments(entry: &Entry, nets: &[Network]) -> Vec<Attachment> {
    entry
        .interfaces
        .iter()
        .filter_map(|i| {
            let n = nets.iter().find(|n| n.name == i.endpoint.network)?;
            let mut addrs = vec![IpAddr::V4(i.endpoint.ipv4)];
            addrs.extend(i.endpoint.ipv6.map(IpAddr::V6));
            Some(Attachment {
                zone: n.zone.clone(),
                gateway: IpAddr::V4(n.gateway()),
                addrs,
            })
        })
        .collect()
}
