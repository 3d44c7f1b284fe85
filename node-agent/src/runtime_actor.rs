//! RuntimeActor: containers on this node. `run` pins a network namespace, has the NetworkActor
//! attach it, writes the container's /etc files and starts the shim; a container that exits is
//! detached from its networks (its name stops resolving) but keeps its log and exit code until
//! `rm`. State lives in files (see `container::state`), so an agent restart loses nothing.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use actix::prelude::*;
use shibafu_overlay::api::{
    ApiError, ContainerInfo, ErrorKind, InterfaceInfo, LogChunk, RunContainer,
};
use shibafu_overlay::container::etc_files::{self, Attachment};
use shibafu_overlay::container::state::{ContainerDir, Status};
use shibafu_overlay::container::{launch, netns_file, ContainerSpec};
use shibafu_overlay::model::{self, Network};
use tracing::{info, warn};

use crate::network_actor::{AttachError, AttachRequest, AttachWorkload, DetachWorkload};
use crate::registry::actor::GetWorkloads;
use crate::registry::book::Entry;

/// How long a container may take to start.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest log chunk answered at once.
const LOG_CHUNK: u64 = 1 << 20;

/// Starts a container.
#[derive(Debug, Message)]
#[rtype(result = "Result<ContainerInfo, ApiError>")]
pub struct Run(pub RunContainer);

/// Lists containers and attachments.
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<ContainerInfo>, ApiError>")]
pub struct List;

/// One container or attachment by name.
#[derive(Debug, Message)]
#[rtype(result = "Result<ContainerInfo, ApiError>")]
pub struct Get(pub String);

/// Log bytes from an offset.
#[derive(Debug, Message)]
#[rtype(result = "Result<LogChunk, ApiError>")]
pub struct Logs {
    /// Container name.
    pub name: String,
    /// Byte offset.
    pub offset: u64,
}

/// Stops a container.
#[derive(Debug, Message)]
#[rtype(result = "Result<ContainerInfo, ApiError>")]
pub struct Stop {
    /// Container name.
    pub name: String,
    /// Seconds between SIGTERM and SIGKILL.
    pub grace: u64,
}

/// Removes a container (running ones only with force).
#[derive(Debug, Message)]
#[rtype(result = "Result<ContainerInfo, ApiError>")]
pub struct Remove {
    /// Container name.
    pub name: String,
    /// Stop it first if running.
    pub force: bool,
}

/// What the actor needs from the NetworkActor.
#[derive(Clone)]
pub struct NetworkRecipients {
    /// Attach.
    pub attach: Recipient<AttachWorkload>,
    /// Detach.
    pub detach: Recipient<DetachWorkload>,
    /// This node's workloads (the local registry).
    pub list: Recipient<GetWorkloads>,
}

/// The actor; see the module documentation.
pub struct RuntimeActor {
    state_dir: PathBuf,
    agent_bin: PathBuf,
    net: NetworkRecipients,
}

impl RuntimeActor {
    /// The actor; `agent_bin` is the binary whose `shim` subcommand runs containers.
    pub fn new(state_dir: PathBuf, agent_bin: PathBuf, net: NetworkRecipients) -> RuntimeActor {
        RuntimeActor {
            state_dir,
            agent_bin,
            net,
        }
    }
}

impl Actor for RuntimeActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(Duration::from_millis(500), |act, _| {
            let (dir, net) = (act.state_dir.clone(), act.net.clone());
            actix_rt::spawn(async move { detach_exited(&dir, &net).await });
        });
    }
}

fn mailbox(e: MailboxError) -> ApiError {
    ApiError::new(
        ErrorKind::Internal,
        format!("agent is shutting down ({e}); retry"),
    )
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(ErrorKind::Internal, e.to_string())
}

fn netns_path(state_dir: &Path, name: &str) -> PathBuf {
    state_dir.join("netns").join(name)
}

/// Containers whose process has exited but which still hold network endpoints.
async fn detach_exited(state_dir: &Path, net: &NetworkRecipients) {
    let Ok(entries) = net.list.send(GetWorkloads).await else {
        return;
    };
    for e in entries.values().filter(|e| e.container) {
        if let Status::Exited(code) = ContainerDir::under(state_dir, &e.name).status() {
            info!(container = %e.name, code, "container exited; detaching it");
            if let Ok(Err(err)) = net
                .detach
                .send(DetachWorkload {
                    name: e.name.clone(),
                    network: None,
                })
                .await
            {
                warn!(container = %e.name, error = %err, "detaching an exited container failed");
            }
            if let Err(err) = netns_file::remove(&e.netns) {
                warn!(container = %e.name, error = %err, "removing its namespace failed");
            }
        }
    }
}

/// The API view of a workload's interfaces.
fn interfaces(entry: Option<&Entry>) -> Vec<InterfaceInfo> {
    entry
        .map(|e| {
            e.interfaces
                .iter()
                .map(|i| InterfaceInfo {
                    network: i.endpoint.network.clone(),
                    ifname: i.ifname.clone(),
                    ipv4: i.endpoint.ipv4,
                    ipv6: i.endpoint.ipv6,
                    mac: i.endpoint.mac.to_string(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The API view of a namespace attached from elsewhere.
pub fn attached_info(entry: &Entry) -> ContainerInfo {
    ContainerInfo {
        name: entry.name.clone(),
        state: "attached".into(),
        pid: None,
        exit_code: None,
        command: vec![],
        netns: entry.netns.display().to_string(),
        interfaces: interfaces(Some(entry)),
    }
}

/// The API view of a container directory (and its book entry, if attached).
fn info_of(state_dir: &Path, name: &str, entry: Option<&Entry>) -> Option<ContainerInfo> {
    let dir = ContainerDir::under(state_dir, name);
    let spec = dir.read_spec().ok();
    if spec.is_none() {
        // An attachment from outside: no container directory.
        return entry.map(attached_info);
    }
    let (state, pid, exit_code) = match dir.status() {
        Status::Created => ("created", None, None),
        Status::Running(pid) => ("running", Some(pid), None),
        Status::Exited(code) => ("exited", None, Some(code)),
    };
    Some(ContainerInfo {
        name: name.to_string(),
        state: state.into(),
        pid,
        exit_code,
        command: spec.map(|s| s.command).unwrap_or_default(),
        netns: netns_path(state_dir, name).display().to_string(),
        interfaces: interfaces(entry),
    })
}

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

/// The whole `run`: validate, pin a namespace, attach, write files, start; undo on failure.
async fn run(
    state_dir: PathBuf,
    agent_bin: PathBuf,
    net: NetworkRecipients,
    req: RunContainer,
) -> Result<ContainerInfo, ApiError> {
    model::validate_name(&req.name).map_err(|e| ApiError::invalid(e.to_string()))?;
    if req.command.is_empty() {
        return Err(ApiError::invalid("give a command to run (after --)"));
    }
    let dir = ContainerDir::under(&state_dir, &req.name);
    if dir.path().exists() {
        return Err(ApiError::new(
            ErrorKind::Duplicate,
            format!("container {:?} already exists on this node; remove it with `shibafu rm {}` or pick another name", req.name, req.name),
        ));
    }
    if let Some(root) = &req.rootfs {
        if !Path::new(root).is_dir() {
            return Err(ApiError::invalid(format!(
                "--rootfs {root}: not a directory"
            )));
        }
    }
    let netns = netns_path(&state_dir, &req.name);
    std::fs::create_dir_all(netns.parent().unwrap_or(&state_dir)).map_err(internal)?;
    netns_file::create(&netns).map_err(internal)?;
    let attach = AttachRequest {
        name: req.name.clone(),
        netns: netns.clone(),
        container: true,
        networks: req.networks.clone(),
        ip: req.ip,
        aliases: req.aliases.clone(),
        service: req.service.clone(),
        port: req.port,
    };
    let (entry, nets) = match net
        .attach
        .send(AttachWorkload(attach))
        .await
        .map_err(mailbox)
        .and_then(|r| r.map_err(|e| e.to_api()))
    {
        Ok(v) => v,
        Err(e) => {
            let _ = netns_file::remove(&netns);
            return Err(e);
        }
    };
    let started = start(&dir, &agent_bin, &req, &netns, &entry, &nets).await;
    if let Err(e) = started {
        let _ = net
            .detach
            .send(DetachWorkload {
                name: req.name.clone(),
                network: None,
            })
            .await;
        let _ = netns_file::remove(&netns);
        let _ = dir.remove();
        return Err(e);
    }
    info!(container = %req.name, networks = ?req.networks, "container started");
    info_of(&state_dir, &req.name, Some(&entry))
        .ok_or_else(|| internal("container vanished while starting"))
}

async fn start(
    dir: &ContainerDir,
    agent_bin: &Path,
    req: &RunContainer,
    netns: &Path,
    entry: &Entry,
    nets: &[Network],
) -> Result<(), ApiError> {
    let atts = etc_attachments(entry, nets);
    let spec = ContainerSpec {
        name: req.name.clone(),
        netns: netns.to_path_buf(),
        dir: dir.path().to_path_buf(),
        rootfs: req.rootfs.as_ref().map(PathBuf::from),
        command: req.command.clone(),
        env: req.env.clone(),
    };
    dir.prepare(
        &spec,
        &etc_files::resolv_conf(&atts),
        &etc_files::hosts(&req.name, &atts),
        &etc_files::hostname(&req.name),
    )
    .map_err(internal)?;
    let (bin, d) = (agent_bin.to_path_buf(), dir.clone());
    tokio::task::spawn_blocking(move || launch::start(&bin, &d, START_TIMEOUT))
        .await
        .map_err(internal)?
        .map(|_| ())
        .map_err(internal)
}

fn read_log(path: &Path, offset: u64) -> Result<(String, u64), ApiError> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((String::new(), offset)),
        Err(e) => return Err(internal(e)),
    };
    f.seek(SeekFrom::Start(offset)).map_err(internal)?;
    let mut buf = Vec::new();
    f.take(LOG_CHUNK).read_to_end(&mut buf).map_err(internal)?;
    let next = offset + buf.len() as u64;
    Ok((String::from_utf8_lossy(&buf).into_owned(), next))
}

async fn lookup(
    state_dir: &Path,
    net: &NetworkRecipients,
    name: &str,
) -> Result<ContainerInfo, ApiError> {
    let entries = net.list.send(GetWorkloads).await.map_err(mailbox)?;
    let entry = entries.get(name);
    info_of(state_dir, name, entry).ok_or_else(|| {
        ApiError::not_found(format!(
            "no container named {name:?} on this node; see `shibafu ps -a`"
        ))
    })
}

async fn remove(
    state_dir: PathBuf,
    net: NetworkRecipients,
    name: String,
    force: bool,
) -> Result<ContainerInfo, ApiError> {
    let info = lookup(&state_dir, &net, &name).await?;
    let dir = ContainerDir::under(&state_dir, &name);
    if info.state == "running" {
        if !force {
            return Err(ApiError::new(
                ErrorKind::Conflict,
                format!(
                    "container {name:?} is running: stop it first or use `shibafu rm -f {name}`"
                ),
            ));
        }
        let d = dir.clone();
        tokio::task::spawn_blocking(move || launch::stop(&d, Duration::from_secs(2)))
            .await
            .map_err(internal)?;
    }
    if !info.interfaces.is_empty() {
        match net
            .detach
            .send(DetachWorkload {
                name: name.clone(),
                network: None,
            })
            .await
            .map_err(mailbox)?
        {
            Ok(_) | Err(AttachError::UnknownWorkload(_)) => {}
            Err(e) => return Err(e.to_api()),
        }
    }
    if info.state != "attached" {
        netns_file::remove(&netns_path(&state_dir, &name)).map_err(internal)?;
        dir.remove().map_err(internal)?;
    }
    info!(container = %name, "removed");
    Ok(info)
}

impl Handler<Run> for RuntimeActor {
    type Result = ResponseFuture<Result<ContainerInfo, ApiError>>;
    fn handle(&mut self, msg: Run, _: &mut Context<Self>) -> Self::Result {
        Box::pin(run(
            self.state_dir.clone(),
            self.agent_bin.clone(),
            self.net.clone(),
            msg.0,
        ))
    }
}

impl Handler<List> for RuntimeActor {
    type Result = ResponseFuture<Result<Vec<ContainerInfo>, ApiError>>;
    fn handle(&mut self, _: List, _: &mut Context<Self>) -> Self::Result {
        let (dir, net) = (self.state_dir.clone(), self.net.clone());
        Box::pin(async move {
            let entries = net.list.send(GetWorkloads).await.map_err(mailbox)?;
            let mut names: std::collections::BTreeSet<String> = entries.keys().cloned().collect();
            if let Ok(rd) = std::fs::read_dir(dir.join("containers")) {
                names.extend(
                    rd.flatten()
                        .filter_map(|d| d.file_name().into_string().ok()),
                );
            }
            Ok(names
                .iter()
                .filter_map(|n| info_of(&dir, n, entries.get(n)))
                .collect())
        })
    }
}

impl Handler<Get> for RuntimeActor {
    type Result = ResponseFuture<Result<ContainerInfo, ApiError>>;
    fn handle(&mut self, msg: Get, _: &mut Context<Self>) -> Self::Result {
        let (dir, net) = (self.state_dir.clone(), self.net.clone());
        Box::pin(async move { lookup(&dir, &net, &msg.0).await })
    }
}

impl Handler<Logs> for RuntimeActor {
    type Result = ResponseFuture<Result<LogChunk, ApiError>>;
    fn handle(&mut self, msg: Logs, _: &mut Context<Self>) -> Self::Result {
        let (dir, net) = (self.state_dir.clone(), self.net.clone());
        Box::pin(async move {
            let info = lookup(&dir, &net, &msg.name).await?;
            // Read the exit code before the log, so a chunk carrying it is the complete rest.
            let exit_code = info.exit_code;
            let (data, next_offset) =
                read_log(&ContainerDir::under(&dir, &msg.name).log(), msg.offset)?;
            Ok(LogChunk {
                data,
                next_offset,
                exit_code,
            })
        })
    }
}

impl Handler<Stop> for RuntimeActor {
    type Result = ResponseFuture<Result<ContainerInfo, ApiError>>;
    fn handle(&mut self, msg: Stop, _: &mut Context<Self>) -> Self::Result {
        let (dir, net) = (self.state_dir.clone(), self.net.clone());
        Box::pin(async move {
            lookup(&dir, &net, &msg.name).await?;
            let d = ContainerDir::under(&dir, &msg.name);
            tokio::task::spawn_blocking(move || launch::stop(&d, Duration::from_secs(msg.grace)))
                .await
                .map_err(internal)?;
            detach_exited(&dir, &net).await;
            lookup(&dir, &net, &msg.name).await
        })
    }
}

impl Handler<Remove> for RuntimeActor {
    type Result = ResponseFuture<Result<ContainerInfo, ApiError>>;
    fn handle(&mut self, msg: Remove, _: &mut Context<Self>) -> Self::Result {
        Box::pin(remove(
            self.state_dir.clone(),
            self.net.clone(),
            msg.name,
            msg.force,
        ))
    }
}

/// The RuntimeActor's messages as recipients (what the API holds).
#[derive(Clone)]
pub struct RuntimeRecipients {
    /// Run.
    pub run: Recipient<Run>,
    /// List.
    pub list: Recipient<List>,
    /// Get one.
    pub get: Recipient<Get>,
    /// Logs.
    pub logs: Recipient<Logs>,
    /// Stop.
    pub stop: Recipient<Stop>,
    /// Remove.
    pub remove: Recipient<Remove>,
}

impl RuntimeRecipients {
    /// All recipients of one actor.
    pub fn of(addr: &Addr<RuntimeActor>) -> RuntimeRecipients {
        RuntimeRecipients {
            run: addr.clone().recipient(),
            list: addr.clone().recipient(),
            get: addr.clone().recipient(),
            logs: addr.clone().recipient(),
            stop: addr.clone().recipient(),
            remove: addr.clone().recipient(),
        }
    }
}
