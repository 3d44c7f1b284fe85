//! The RuntimeActor: the one owner of this node's containers. At start it loads the table from
//! the state directory (on a blocking thread, before it takes any request) and adopts what it
//! finds: running containers get an exit watch, exited ones still holding networks are released.
//! Handlers stay short: they answer from the table and this node's workload entries, or start
//! work whose result comes back as a message (see `lifecycle`).

use std::sync::Arc;

use actix::prelude::*;
use shibafu_overlay::api::{ApiError, ContainerInfo, ErrorKind, LogChunk};
use shibafu_overlay::container::state::Status;
use shibafu_overlay::container::{ContainerHost, Recorded};
use tokio::sync::oneshot;
use tracing::{error, info, info_span, Instrument};

use super::run::{self, blocking};
use super::table::{Phase, Table, Work};
use super::view::{self, attached_info};
use super::{
    internal, not_found, shutting_down, Get, List, Logs, NetworkRecipients, Remove, Run, Stop,
};
use crate::messages::LocalChanged;
use crate::network_actor::AttachError;
use crate::network_actor::DetachWorkload;
use crate::registry::LocalWorkloads;

/// Grace between SIGTERM and SIGKILL when `rm -f` stops a running container.
const FORCE_GRACE: u64 = 2;

/// The actor; see the module documentation.
pub struct RuntimeActor {
    pub(super) host: Arc<dyn ContainerHost>,
    pub(super) net: NetworkRecipients,
    pub(super) table: Table,
    /// This node's workload entries, as the last [`LocalChanged`] had them.
    pub(super) local: Arc<LocalWorkloads>,
}

impl RuntimeActor {
    /// The owner of the containers `host` runs, attaching them through `net`. Subscribe it to
    /// [`LocalChanged`] so its views show interfaces.
    pub fn new(host: Arc<dyn ContainerHost>, net: NetworkRecipients) -> RuntimeActor {
        RuntimeActor {
            host,
            net,
            table: Table::default(),
            local: Arc::default(),
        }
    }

    /// Takes in the containers found at start.
    fn adopt(&mut self, loaded: Result<Vec<Recorded>, String>, ctx: &mut Context<Self>) {
        let recorded = loaded.unwrap_or_else(|e| {
            error!(error = %e, "cannot read the recorded containers; starting without them");
            Vec::new()
        });
        for r in &recorded {
            let phase = Phase::from(r.status);
            let netns = self.host.netns_path(&r.name);
            let id = self
                .table
                .insert(&r.name, r.command.clone(), netns, phase, r.pinned);
            if !matches!(phase, Phase::Exited(_)) {
                self.watch(&r.name, id, ctx);
            }
        }
        let running = recorded
            .iter()
            .filter(|r| matches!(r.status, Status::Running(_)))
            .count();
        info!(containers = recorded.len(), running, "containers adopted");
        self.release_exited(ctx);
    }

    /// The container or attachment `name` as the API shows it.
    pub(super) fn view_of(&self, name: &str) -> Result<ContainerInfo, ApiError> {
        view::lookup(&self.table, &self.local, name).ok_or_else(|| not_found(name))
    }
}

impl Actor for RuntimeActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let host = self.host.clone();
        let load = async move {
            match tokio::task::spawn_blocking(move || host.load()).await {
                Ok(loaded) => loaded.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            }
        };
        // No request is taken before the table is loaded.
        ctx.wait(
            load.into_actor(self)
                .map(|loaded, act, ctx| act.adopt(loaded, ctx)),
        );
    }
}

/// The answer to a request, once `rx` has it.
fn answer<T: Send + 'static>(
    rx: oneshot::Receiver<Result<T, ApiError>>,
) -> ResponseFuture<Result<T, ApiError>> {
    Box::pin(async move { rx.await.unwrap_or_else(|_| Err(shutting_down())) })
}

fn ready<T: Send + 'static>(r: Result<T, ApiError>) -> ResponseFuture<Result<T, ApiError>> {
    Box::pin(std::future::ready(r))
}

impl Handler<Run> for RuntimeActor {
    type Result = ResponseFuture<Result<ContainerInfo, ApiError>>;

    fn handle(&mut self, msg: Run, ctx: &mut Context<Self>) -> Self::Result {
        let Run(req, trace) = msg;
        if let Err(e) = run::validate(&req) {
            return ready(Err(e));
        }
        if self.table.get(&req.name).is_some() {
            return ready(Err(run::duplicate(&req.name)));
        }
        let netns = self.host.netns_path(&req.name);
        let name = req.name.clone();
        let id = self.table.insert(
            &name,
            req.command.clone(),
            netns.clone(),
            Phase::Starting,
            true,
        );
        let (tx, rx) = oneshot::channel();
        let (host, net, me) = (self.host.clone(), self.net.clone(), ctx.address());
        let span = info_span!("container.run", container = %name);
        trace.adopt(&span);
        let run = async move {
            let result = run::run(host, net, req, netns).await;
            me.do_send(super::lifecycle::RunDone {
                name,
                id,
                result,
                reply: tx,
            });
        };
        actix_rt::spawn(run.instrument(span));
        answer(rx)
    }
}

impl Handler<List> for RuntimeActor {
    type Result = Result<Vec<ContainerInfo>, ApiError>;

    fn handle(&mut self, _: List, _: &mut Context<Self>) -> Self::Result {
        Ok(view::list(&self.table, &self.local))
    }
}

impl Handler<Get> for RuntimeActor {
    type Result = Result<ContainerInfo, ApiError>;

    fn handle(&mut self, msg: Get, _: &mut Context<Self>) -> Self::Result {
        self.view_of(&msg.0)
    }
}

impl Handler<Logs> for RuntimeActor {
    type Result = ResponseFuture<Result<LogChunk, ApiError>>;

    fn handle(&mut self, msg: Logs, _: &mut Context<Self>) -> Self::Result {
        // The exit code is taken before the log is read: the chunk carrying it is the whole rest
        // (the exit is only known once every process of the container is gone).
        let exit_code = match self.table.get(&msg.name).map(|c| c.phase) {
            Some(Phase::Exited(code)) => Some(code),
            Some(_) => None,
            None if self.local.contains_key(&msg.name) => {
                // A namespace attached from elsewhere has no log.
                return ready(Ok(LogChunk {
                    data: String::new(),
                    next_offset: msg.offset,
                    exit_code: None,
                }));
            }
            None => return ready(Err(not_found(&msg.name))),
        };
        let host = self.host.clone();
        Box::pin(async move {
            let read = blocking(move || host.read_log(&msg.name, msg.offset))
                .await?
                .map_err(internal)?;
            Ok(LogChunk {
                data: read.text,
                next_offset: read.next_offset,
                exit_code,
            })
        })
    }
}

impl Handler<Stop> for RuntimeActor {
    type Result = ResponseFuture<Result<ContainerInfo, ApiError>>;

    fn handle(&mut self, msg: Stop, ctx: &mut Context<Self>) -> Self::Result {
        let attached = self.local.contains_key(&msg.name);
        let Some(c) = self.table.get_mut(&msg.name) else {
            let found = self.local.get(&msg.name).map(attached_info);
            return ready(found.ok_or_else(|| not_found(&msg.name)));
        };
        let (running, release) = (
            matches!(c.phase, Phase::Running(_)),
            c.needs_release(attached),
        );
        if !running && !release && c.work == Work::Idle {
            return ready(self.view_of(&msg.name));
        }
        let (tx, rx) = oneshot::channel();
        c.stops.push(tx);
        if running {
            self.stop_process(&msg.name, msg.grace, ctx);
        } else if release {
            self.release(&msg.name, ctx);
        }
        answer(rx)
    }
}

impl Handler<Remove> for RuntimeActor {
    type Result = ResponseFuture<Result<ContainerInfo, ApiError>>;

    fn handle(&mut self, msg: Remove, ctx: &mut Context<Self>) -> Self::Result {
        let name = msg.name;
        let info = match self.view_of(&name) {
            Ok(info) => info,
            Err(e) => return ready(Err(e)),
        };
        let Some(c) = self.table.get_mut(&name) else {
            return Box::pin(remove_attachment(self.net.clone(), name, info));
        };
        match c.phase {
            Phase::Starting => {
                return ready(Err(conflict(
                    &name,
                    "is starting: remove it once `shibafu run` has answered",
                )))
            }
            Phase::Running(_) if !msg.force => {
                return ready(Err(conflict(
                    &name,
                    &format!("is running: stop it first or use `shibafu rm -f {name}`"),
                )))
            }
            _ => {}
        }
        let (tx, rx) = oneshot::channel();
        c.removals.push((tx, info));
        let (running, idle) = (matches!(c.phase, Phase::Running(_)), c.work == Work::Idle);
        if running {
            self.stop_process(&name, FORCE_GRACE, ctx);
        } else if idle {
            self.start_removal(&name, ctx);
        }
        answer(rx)
    }
}

/// A container that cannot be removed as it is.
fn conflict(name: &str, why: &str) -> ApiError {
    ApiError::new(ErrorKind::Conflict, format!("container {name:?} {why}"))
}

/// `rm` of a namespace attached from elsewhere: it leaves its networks; the namespace stays.
async fn remove_attachment(
    net: NetworkRecipients,
    name: String,
    info: ContainerInfo,
) -> Result<ContainerInfo, ApiError> {
    if !info.interfaces.is_empty() {
        let detach = DetachWorkload {
            name: name.clone(),
            network: None,
        };
        match net.detach.send(detach).await.map_err(run::mailbox)? {
            Ok(_) | Err(AttachError::UnknownWorkload(_)) => {}
            Err(e) => return Err(e.to_api()),
        }
    }
    info!(attachment = %name, "removed");
    Ok(info)
}

impl Handler<LocalChanged> for RuntimeActor {
    type Result = ();

    fn handle(&mut self, msg: LocalChanged, ctx: &mut Context<Self>) {
        self.local = msg.0;
        self.release_exited(ctx);
    }
}
