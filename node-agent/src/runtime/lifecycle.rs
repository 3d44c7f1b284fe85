//! What the RuntimeActor does as its work completes: a run finished, an exit observed, a stop
//! done, a container released from its networks, a removal done. Each result names the
//! container and its id; results for a container that is gone or was replaced are dropped.
//!
//! An exit (observed by the watch, or met by a stop) releases the container: it leaves its
//! networks (its name stops resolving) and its namespace is unpinned; its log and exit code stay
//! until `rm`. Stops are answered once that is done; removals queued meanwhile follow it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use shibafu_overlay::api::ApiError;
use shibafu_overlay::container::state::Status;
use shibafu_overlay::container::ContainerHost;
use tracing::{debug, info, warn};

use super::actor::RuntimeActor;
use super::internal;
use super::run::{self, blocking, Started};
use super::table::{Phase, Reply, Work};
use crate::network_actor::AttachError;
use crate::network_actor::DetachWorkload;

/// A run finished (started, or refused with everything undone).
#[derive(Message)]
#[rtype(result = "()")]
pub struct RunDone {
    /// The container.
    pub name: String,
    /// Its id in the table.
    pub id: u64,
    /// What the run sequence came to.
    pub result: Result<Started, ApiError>,
    /// Where the run request's answer goes.
    pub reply: Reply,
}

#[derive(Message)]
#[rtype(result = "()")]
struct ExitObserved {
    name: String,
    id: u64,
    status: Status,
}

#[derive(Message)]
#[rtype(result = "()")]
struct Stopped {
    name: String,
    id: u64,
    /// `None` when the stop itself could not run.
    status: Option<Status>,
}

#[derive(Message)]
#[rtype(result = "()")]
struct Released {
    name: String,
    id: u64,
    /// Whether it was detached (it had an entry when the release began).
    detached: bool,
}

#[derive(Message)]
#[rtype(result = "()")]
struct Removed {
    name: String,
    id: u64,
    result: Result<(), ApiError>,
}

impl RuntimeActor {
    /// Watches the container for its exit (a pidfd on its shim, see `ContainerHost::watch_exit`).
    pub(super) fn watch(&self, name: &str, id: u64, ctx: &mut Context<Self>) {
        let exit = self.host.watch_exit(name);
        let (me, name) = (ctx.address(), name.to_string());
        actix_rt::spawn(async move {
            let status = exit.await;
            me.do_send(ExitObserved { name, id, status });
        });
    }

    /// SIGTERM, then SIGKILL after `grace` seconds, on a blocking thread.
    pub(super) fn stop_process(&self, name: &str, grace: u64, ctx: &mut Context<Self>) {
        let Some(id) = self.table.get(name).map(|c| c.id) else {
            return;
        };
        let (host, me, name) = (self.host.clone(), ctx.address(), name.to_string());
        actix_rt::spawn(async move {
            let n = name.clone();
            let status = blocking(move || host.stop(&n, Duration::from_secs(grace)))
                .await
                .ok();
            me.do_send(Stopped { name, id, status });
        });
    }

    /// Detaches an exited container from its networks (if it still has an entry) and unpins its
    /// namespace; failures are logged, as nothing is left to retry them but `rm`.
    pub(super) fn release(&mut self, name: &str, ctx: &mut Context<Self>) {
        let attached = self.local.contains_key(name);
        let Some(c) = self.table.get_mut(name) else {
            return;
        };
        c.work = Work::Releasing;
        let (id, netns) = (c.id, c.netns.clone());
        let (host, detach, me) = (self.host.clone(), self.net.detach.clone(), ctx.address());
        let name = name.to_string();
        actix_rt::spawn(async move {
            if attached {
                let req = DetachWorkload {
                    name: name.clone(),
                    network: None,
                };
                match detach.send(req).await {
                    Ok(Ok(_)) | Ok(Err(AttachError::UnknownWorkload(_))) => {}
                    Ok(Err(e)) => {
                        warn!(container = %name, error = %e, "detaching an exited container failed")
                    }
                    Err(e) => {
                        warn!(container = %name, error = %e, "detaching an exited container failed")
                    }
                }
            }
            match blocking(move || host.unpin_netns(&netns)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => warn!(container = %name, error = %e, "removing its namespace failed"),
                Err(e) => warn!(container = %name, error = %e, "removing its namespace failed"),
            }
            me.do_send(Released {
                name,
                id,
                detached: attached,
            });
        });
    }

    /// Releases every exited container that still holds networks or its namespace.
    pub(super) fn release_exited(&mut self, ctx: &mut Context<Self>) {
        let due: Vec<String> = self
            .table
            .iter()
            .filter(|(n, c)| c.needs_release(self.local.contains_key(*n)))
            .map(|(n, _)| n.clone())
            .collect();
        for name in due {
            self.release(&name, ctx);
        }
    }

    /// Detaches (if attached), unpins and removes a container that does not run.
    pub(super) fn start_removal(&mut self, name: &str, ctx: &mut Context<Self>) {
        let attached = self.local.contains_key(name);
        let Some(c) = self.table.get_mut(name) else {
            return;
        };
        c.work = Work::Removing;
        let (id, netns) = (c.id, c.netns.clone());
        let (host, detach, me) = (self.host.clone(), self.net.detach.clone(), ctx.address());
        let name = name.to_string();
        actix_rt::spawn(async move {
            let result = remove_container(host, detach, name.clone(), netns, attached).await;
            me.do_send(Removed { name, id, result });
        });
    }

    fn mark_exited(&mut self, name: &str, code: i32, ctx: &mut Context<Self>) {
        let Some(c) = self.table.get_mut(name) else {
            return;
        };
        if matches!(c.phase, Phase::Exited(_)) {
            return;
        }
        c.phase = Phase::Exited(code);
        info!(container = %name, code, "container exited; detaching it");
        if c.work == Work::Idle {
            self.release(name, ctx);
        }
    }

    /// Answers every waiting stop with the container as it is now.
    fn answer_stops(&mut self, name: &str) {
        let view = self.view_of(name);
        if let Some(c) = self.table.get_mut(name) {
            for reply in c.stops.drain(..) {
                let _ = reply.send(view.clone());
            }
        }
    }

    /// After work: a queued removal goes next; else waiting stops are answered once settled.
    fn after_work(&mut self, name: &str, ctx: &mut Context<Self>) {
        let Some(c) = self.table.get(name) else {
            return;
        };
        if !c.removals.is_empty() && c.settled() {
            self.start_removal(name, ctx);
        } else if c.settled() {
            self.answer_stops(name);
        }
    }
}

/// `rm` of a container that does not run: leave its networks, unpin, remove its files.
async fn remove_container(
    host: Arc<dyn ContainerHost>,
    detach: Recipient<DetachWorkload>,
    name: String,
    netns: PathBuf,
    attached: bool,
) -> Result<(), ApiError> {
    if attached {
        let req = DetachWorkload {
            name: name.clone(),
            network: None,
        };
        match detach.send(req).await.map_err(run::mailbox)? {
            Ok(_) | Err(AttachError::UnknownWorkload(_)) => {}
            Err(e) => return Err(e.to_api()),
        }
    }
    blocking(move || {
        host.unpin_netns(&netns)?;
        host.remove(&name)
    })
    .await?
    .map_err(internal)
}

impl Handler<RunDone> for RuntimeActor {
    type Result = ();

    fn handle(&mut self, msg: RunDone, ctx: &mut Context<Self>) {
        let RunDone {
            name,
            id,
            result,
            reply,
        } = msg;
        let started = match result {
            Ok(started) => started,
            Err(e) => {
                if self.table.current(&name, id).is_some() {
                    self.table.remove(&name);
                }
                let _ = reply.send(Err(e));
                return;
            }
        };
        let networks: Vec<String> = started
            .entry
            .interfaces
            .iter()
            .map(|i| i.endpoint.network.clone())
            .collect();
        info!(container = %name, ?networks, "container started");
        // The NetworkActor's broadcast of this attach may still be on its way.
        Arc::make_mut(&mut self.local).insert(name.clone(), started.entry);
        match (started.status, self.table.current(&name, id)) {
            (_, None) => {
                let _ = reply.send(Err(internal("container vanished while starting")));
                return;
            }
            (Status::Exited(code), Some(_)) => self.mark_exited(&name, code, ctx),
            (status, Some(c)) => {
                c.phase = Phase::from(status);
                self.watch(&name, id, ctx);
            }
        }
        let _ = reply.send(self.view_of(&name));
    }
}

impl Handler<ExitObserved> for RuntimeActor {
    type Result = ();

    fn handle(&mut self, msg: ExitObserved, ctx: &mut Context<Self>) {
        if self.table.current(&msg.name, msg.id).is_none() {
            return;
        }
        match msg.status {
            Status::Exited(code) => self.mark_exited(&msg.name, code, ctx),
            status => debug!(container = %msg.name, ?status, "no process left to watch"),
        }
    }
}

impl Handler<Stopped> for RuntimeActor {
    type Result = ();

    fn handle(&mut self, msg: Stopped, ctx: &mut Context<Self>) {
        if self.table.current(&msg.name, msg.id).is_none() {
            return;
        }
        if let Some(Status::Exited(code)) = msg.status {
            self.mark_exited(&msg.name, code, ctx);
        }
        let Some(c) = self.table.get(&msg.name) else {
            return;
        };
        if matches!(c.phase, Phase::Running(_)) {
            // The stop did not end it: answer as it is, and remove it anyway when forced.
            warn!(container = %msg.name, status = ?msg.status, "container still runs after stop");
            let remove = !c.removals.is_empty() && c.work == Work::Idle;
            self.answer_stops(&msg.name);
            if remove {
                self.start_removal(&msg.name, ctx);
            }
        }
    }
}

impl Handler<Released> for RuntimeActor {
    type Result = ();

    fn handle(&mut self, msg: Released, ctx: &mut Context<Self>) {
        let Some(c) = self.table.current(&msg.name, msg.id) else {
            return;
        };
        c.work = Work::Idle;
        c.pinned = false;
        debug!(container = %msg.name, "released from its networks");
        if !msg.detached && self.local.contains_key(&msg.name) {
            // Its entry arrived while the release ran (adopted at start): detach it now.
            self.release(&msg.name, ctx);
        } else {
            self.after_work(&msg.name, ctx);
        }
    }
}

impl Handler<Removed> for RuntimeActor {
    type Result = ();

    fn handle(&mut self, msg: Removed, ctx: &mut Context<Self>) {
        let Some(c) = self.table.current(&msg.name, msg.id) else {
            return;
        };
        match msg.result {
            Ok(()) => {
                let view = self.view_of(&msg.name);
                if let Some(c) = self.table.remove(&msg.name) {
                    info!(container = %msg.name, "removed");
                    for (reply, info) in c.removals {
                        let _ = reply.send(Ok(info));
                    }
                    for reply in c.stops {
                        let _ = reply.send(view.clone());
                    }
                }
            }
            Err(e) => {
                warn!(container = %msg.name, error = %e, "removing failed");
                c.work = Work::Idle;
                for (reply, _) in c.removals.drain(..) {
                    let _ = reply.send(Err(e.clone()));
                }
                self.after_work(&msg.name, ctx);
            }
        }
    }
}
