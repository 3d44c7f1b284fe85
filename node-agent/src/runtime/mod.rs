//! Containers on this node. The [`RuntimeActor`] owns their lifecycle: a table of this node's
//! containers (loaded from the state directory at start, kept current by the actor itself),
//! exits observed through pidfds, and every file, process and namespace operation run on
//! blocking threads with the result coming back as a message. Its views join the table with
//! this node's workload entries, which it keeps from [`crate::messages::LocalChanged`], so `ps`,
//! `logs`, `stop` and `inspect` never wait behind the NetworkActor.
//!
//! - `actor`: the owner and its request handlers; `lifecycle`: what it does as work completes.
//! - `table`: the state of each container and the requests waiting on it.
//! - `view`: the API view of containers and attachments.
//! - `run`: the run sequence (pin, attach, write files, start; undo on failure).

mod actor;
mod lifecycle;
mod run;
mod table;
mod view;

use actix::{Addr, Message, Recipient};
use shibafu_overlay::api::{ApiError, ContainerInfo, LogChunk, RunContainer};
use shibafu_overlay::telemetry::Trace;

pub use actor::RuntimeActor;
pub use view::attached_info;

use crate::network_actor::{AttachWorkload, DetachWorkload};

/// Starts a container; answers once it runs (or has already exited). The trace is the
/// request's: the run's span continues it.
#[derive(Debug, Message)]
#[rtype(result = "Result<ContainerInfo, ApiError>")]
pub struct Run(pub RunContainer, pub Trace);

/// Lists containers and attachments.
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<ContainerInfo>, ApiError>")]
pub struct List;

/// One container or attachment by name.
#[derive(Debug, Message)]
#[rtype(result = "Result<ContainerInfo, ApiError>")]
pub struct Get(pub String);

/// Log bytes from an offset; the exit code comes with the chunk that holds the end of the log.
#[derive(Debug, Message)]
#[rtype(result = "Result<LogChunk, ApiError>")]
pub struct Logs {
    /// Container name.
    pub name: String,
    /// Byte offset.
    pub offset: u64,
}

/// Stops a container; answers once it has exited and left its networks.
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

/// What containers and attachments need from the NetworkActor.
#[derive(Clone)]
pub struct NetworkRecipients {
    /// Attaches a workload to networks.
    pub attach: Recipient<AttachWorkload>,
    /// Detaches a workload from one network or all.
    pub detach: Recipient<DetachWorkload>,
}

/// The RuntimeActor's requests as recipients (what the API holds).
#[derive(Clone)]
pub struct RuntimeRecipients {
    /// `POST /v1/containers`.
    pub run: Recipient<Run>,
    /// `GET /v1/containers`.
    pub list: Recipient<List>,
    /// `GET /v1/containers/{name}`.
    pub get: Recipient<Get>,
    /// `GET /v1/containers/{name}/logs`.
    pub logs: Recipient<Logs>,
    /// `POST /v1/containers/{name}/stop`.
    pub stop: Recipient<Stop>,
    /// `DELETE /v1/containers/{name}`.
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

/// The error for requests the agent can no longer answer.
fn shutting_down() -> ApiError {
    ApiError::new(
        shibafu_overlay::api::ErrorKind::Internal,
        "agent is shutting down; retry",
    )
}

/// An internal error, with the failure's own message.
fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(shibafu_overlay::api::ErrorKind::Internal, e.to_string())
}

/// No container or attachment of that name.
fn not_found(name: &str) -> ApiError {
    ApiError::not_found(format!(
        "no container named {name:?} on this node; see `shibafu ps -a`"
    ))
}

#[cfg(test)]
mod tests;
