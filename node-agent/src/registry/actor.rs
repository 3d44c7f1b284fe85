//! RegistryActor: owns the [`Registry`]. Writes the book (a journal line per change) in order on
//! a blocking thread,
//! publishes this node's endpoint records under the node lease (in order), and broadcasts the
//! committed workloads to subscribers after every change (and at once to a new subscriber).

use std::sync::Arc;

use actix::prelude::*;
use shibafu_overlay::model::{Endpoint, Object};
use shibafu_overlay::telemetry::Trace;
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use super::book::{BookError, BookFile, BookWrite, Entry};
use super::{LocalWorkloads, Registry, RegistryError, Removed};
use crate::messages::{LocalChanged, SubscribeLocal};
use crate::publish::PublishQueue;

/// The book being written: resolves once it is on disk.
pub type Saved = oneshot::Receiver<Result<(), BookError>>;

/// The committed workload of that name, if any.
#[derive(Debug, Message)]
#[rtype(result = "Option<Entry>")]
pub struct GetWorkload(pub String);

/// Every committed workload.
#[derive(Debug, Message)]
#[rtype(result = "Arc<LocalWorkloads>")]
pub struct GetWorkloads;

/// Stages a workload whose kernel work is about to run (saved to the book, not announced).
#[derive(Debug, Message)]
#[rtype(result = "Staged")]
pub struct Stage(pub Entry);

/// Drops a staged workload again (its attach failed).
#[derive(Debug, Message)]
#[rtype(result = "Staged")]
pub struct Abort(pub String);

/// Commits a staged workload: announced, and its endpoint records published.
#[derive(Debug, Message)]
#[rtype(result = "Option<Entry>")]
pub struct Commit(pub String);

/// Removes a workload's interface on one network, or the whole workload.
#[derive(Debug, Message)]
#[rtype(result = "Result<RemovedSaved, RegistryError>")]
pub struct Remove {
    /// Workload name.
    pub name: String,
    /// The network, or `None` for all.
    pub network: Option<String>,
}

/// The workloads the kernel should hold after a stage or an abort, and the book write.
#[derive(Debug)]
pub struct Staged {
    /// Committed workloads with staged ones in their place.
    pub effective: Arc<LocalWorkloads>,
    /// Resolves once the book is on disk.
    pub saved: Saved,
}

/// A removal: what went, the workloads the kernel should hold now, and the book write.
#[derive(Debug)]
pub struct RemovedSaved {
    /// What was removed.
    pub removed: Removed,
    /// Workloads the kernel should hold.
    pub effective: Arc<LocalWorkloads>,
    /// Resolves once the book is on disk.
    pub saved: Saved,
}

type Queued = (BookWrite, oneshot::Sender<Result<(), BookError>>);

/// Does the book's writes one after the other, in the order the changes were made.
struct BookWriter {
    tx: mpsc::UnboundedSender<Queued>,
}

impl BookWriter {
    fn start(file: BookFile) -> BookWriter {
        let (tx, mut rx) = mpsc::unbounded_channel::<Queued>();
        tokio::spawn(async move {
            while let Some((write, done)) = rx.recv().await {
                let file = file.clone();
                let written = tokio::task::spawn_blocking(move || file.write(write))
                    .await
                    .unwrap_or_else(|e| {
                        Err(BookError::Io {
                            path: "local.json".into(),
                            source: std::io::Error::other(e),
                        })
                    });
                let _ = done.send(written);
            }
        });
        BookWriter { tx }
    }

    fn write(&self, write: Result<BookWrite, BookError>) -> Saved {
        let (done, saved) = oneshot::channel();
        match write {
            Ok(s) => {
                if let Err(mpsc::error::SendError((_, done))) = self.tx.send((s, done)) {
                    let _ = done.send(Err(BookError::Io {
                        path: "local.json".into(),
                        source: std::io::Error::other("book writer stopped"),
                    }));
                }
            }
            Err(e) => {
                let _ = done.send(Err(e));
            }
        }
        saved
    }
}

/// The actor; see the module documentation.
pub struct RegistryActor {
    reg: Registry,
    subscribers: Vec<Recipient<LocalChanged>>,
    publish: PublishQueue,
    writer: BookWriter,
    announced: Arc<LocalWorkloads>,
}

impl RegistryActor {
    /// The actor over a loaded registry, publishing through `publish`; starts its book writer
    /// on the current runtime.
    pub fn new(reg: Registry, publish: PublishQueue) -> RegistryActor {
        let announced = Arc::new(reg.workloads().clone());
        RegistryActor {
            writer: BookWriter::start(reg.file().clone()),
            reg,
            subscribers: Vec::new(),
            publish,
            announced,
        }
    }

    /// Records in the book what the workload `name` now is.
    fn save(&mut self, name: &str) -> Saved {
        self.writer.write(self.reg.book_write(name))
    }

    fn announce(&mut self) {
        self.announced = Arc::new(self.reg.workloads().clone());
        self.subscribers.retain(|s| s.connected());
        for s in &self.subscribers {
            s.do_send(LocalChanged(self.announced.clone()));
        }
    }

    /// Queues the record changes from `old` to `new` endpoints.
    fn publish_diff<'a>(
        &self,
        old: impl Iterator<Item = &'a Endpoint>,
        new: impl Iterator<Item = &'a Endpoint>,
    ) {
        let old: Vec<&Endpoint> = old.collect();
        let new: Vec<&Endpoint> = new.collect();
        for e in &old {
            if !new.iter().any(|n| n.network == e.network && n.id == e.id) {
                self.publish.delete(e.key());
            }
        }
        for e in new.iter().filter(|n| !old.contains(n)) {
            self.publish.put(*e);
        }
    }
}

impl Actor for RegistryActor {
    type Context = Context<Self>;

    fn started(&mut self, _ctx: &mut Context<Self>) {
        // A (re)started agent publishes its endpoints again under its new lease, outside the
        // traces of the requests that first made them.
        let endpoints: Vec<&Endpoint> = self.reg.endpoints().collect();
        for e in &endpoints {
            self.publish.put(&Endpoint {
                trace: Trace::NONE,
                ..(*e).clone()
            });
        }
        info!(
            workloads = self.reg.workloads().len(),
            endpoints = endpoints.len(),
            "local workloads loaded"
        );
    }
}

impl Handler<SubscribeLocal> for RegistryActor {
    type Result = ();

    fn handle(&mut self, msg: SubscribeLocal, _ctx: &mut Context<Self>) {
        msg.0.do_send(LocalChanged(self.announced.clone()));
        self.subscribers.push(msg.0);
    }
}

impl Handler<GetWorkload> for RegistryActor {
    type Result = Option<Entry>;

    fn handle(&mut self, msg: GetWorkload, _ctx: &mut Context<Self>) -> Option<Entry> {
        self.reg.get(&msg.0).cloned()
    }
}

impl Handler<GetWorkloads> for RegistryActor {
    type Result = MessageResult<GetWorkloads>;

    fn handle(&mut self, _msg: GetWorkloads, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(self.announced.clone())
    }
}

impl Handler<Stage> for RegistryActor {
    type Result = MessageResult<Stage>;

    fn handle(&mut self, msg: Stage, _ctx: &mut Context<Self>) -> Self::Result {
        let name = msg.0.name.clone();
        self.reg.stage(msg.0);
        MessageResult(Staged {
            effective: self.reg.effective(),
            saved: self.save(&name),
        })
    }
}

impl Handler<Abort> for RegistryActor {
    type Result = MessageResult<Abort>;

    fn handle(&mut self, msg: Abort, _ctx: &mut Context<Self>) -> Self::Result {
        self.reg.abort(&msg.0);
        MessageResult(Staged {
            effective: self.reg.effective(),
            saved: self.save(&msg.0),
        })
    }
}

impl Handler<Commit> for RegistryActor {
    type Result = Option<Entry>;

    fn handle(&mut self, msg: Commit, _ctx: &mut Context<Self>) -> Option<Entry> {
        let Some((old, new)) = self.reg.commit(&msg.0) else {
            warn!(name = %msg.0, "commit of a workload that is not staged");
            return None;
        };
        self.publish_diff(old.iter().flat_map(Entry::endpoints), new.endpoints());
        self.announce();
        Some(new)
    }
}

impl Handler<Remove> for RegistryActor {
    type Result = Result<RemovedSaved, RegistryError>;

    fn handle(&mut self, msg: Remove, _ctx: &mut Context<Self>) -> Self::Result {
        let removed = self.reg.remove(&msg.name, msg.network.as_deref())?;
        let gone: Vec<&Endpoint> = removed.gone.iter().map(|i| &i.endpoint).collect();
        self.publish_diff(gone.into_iter(), std::iter::empty());
        let saved = self.save(&msg.name);
        self.announce();
        Ok(RemovedSaved {
            removed,
            effective: self.reg.effective(),
            saved,
        })
    }
}
