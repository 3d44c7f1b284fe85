//! Container and attachment routes: `/v1/containers...` (RuntimeActor) and `/v1/attachments...`
//! (NetworkActor), serving the contract of `shibafu_overlay::api::Agent`.

use std::path::PathBuf;

use axum::extract::{Path, Query, State};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use shibafu_overlay::api::{ApiError, Attach, ContainerInfo, LogChunk, RunContainer};
use shibafu_overlay::telemetry::Trace;

use super::{ApiFailure, SharedState};
use crate::network_actor::AttachRequest;
use crate::network_actor::{AttachWorkload, DetachWorkload};
use crate::runtime::{attached_info, Get, List, Logs, Remove, Run, Stop};

/// Routes of this module.
pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/v1/containers", post(run).get(list))
        .route("/v1/containers/{name}", get(get_one).delete(remove))
        .route("/v1/containers/{name}/logs", get(logs))
        .route("/v1/containers/{name}/stop", post(stop))
        .route("/v1/attachments", post(attach))
        .route("/v1/attachments/{network}/{name}", delete(detach))
}

type Answer<T> = Result<Json<T>, ApiFailure>;

fn answer<T>(r: Result<T, ApiError>) -> Answer<T> {
    r.map(Json).map_err(ApiFailure)
}

async fn run(State(s): State<SharedState>, Json(req): Json<RunContainer>) -> Answer<ContainerInfo> {
    answer(s.runtime.run.send(Run(req, Trace::current())).await?)
}

async fn list(State(s): State<SharedState>) -> Answer<Vec<ContainerInfo>> {
    answer(s.runtime.list.send(List).await?)
}

async fn get_one(State(s): State<SharedState>, Path(name): Path<String>) -> Answer<ContainerInfo> {
    answer(s.runtime.get.send(Get(name)).await?)
}

#[derive(Deserialize)]
struct OffsetQuery {
    #[serde(default)]
    offset: u64,
}

async fn logs(
    State(s): State<SharedState>,
    Path(name): Path<String>,
    Query(q): Query<OffsetQuery>,
) -> Answer<LogChunk> {
    answer(
        s.runtime
            .logs
            .send(Logs {
                name,
                offset: q.offset,
            })
            .await?,
    )
}

#[derive(Deserialize)]
struct GraceQuery {
    #[serde(default = "default_grace")]
    grace: u64,
}

fn default_grace() -> u64 {
    10
}

async fn stop(
    State(s): State<SharedState>,
    Path(name): Path<String>,
    Query(q): Query<GraceQuery>,
) -> Answer<ContainerInfo> {
    answer(
        s.runtime
            .stop
            .send(Stop {
                name,
                grace: q.grace,
            })
            .await?,
    )
}

#[derive(Deserialize)]
struct ForceQuery {
    #[serde(default)]
    force: bool,
}

async fn remove(
    State(s): State<SharedState>,
    Path(name): Path<String>,
    Query(q): Query<ForceQuery>,
) -> Answer<ContainerInfo> {
    answer(
        s.runtime
            .remove
            .send(Remove {
                name,
                force: q.force,
            })
            .await?,
    )
}

async fn attach(State(s): State<SharedState>, Json(req): Json<Attach>) -> Answer<ContainerInfo> {
    let netns = PathBuf::from(&req.netns);
    if !shibafu_overlay::container::netns_file::is_pinned(&netns) {
        return Err(ApiFailure(ApiError::invalid(format!(
            "--netns {}: not a network namespace file (create one with `ip netns add`, then pass /run/netns/NAME)",
            req.netns
        ))));
    }
    let r = AttachRequest {
        name: req.name,
        netns,
        container: false,
        networks: vec![req.network],
        ip: req.ip,
        aliases: req.aliases,
        trace: Trace::current(),
        ..AttachRequest::default()
    };
    let res = s.network.attach.send(AttachWorkload(r)).await?;
    answer(
        res.map(|(entry, _)| attached_info(&entry))
            .map_err(|e| e.to_api()),
    )
}

async fn detach(
    State(s): State<SharedState>,
    Path((network, name)): Path<(String, String)>,
) -> Answer<ContainerInfo> {
    let res = s
        .network
        .detach
        .send(DetachWorkload {
            name,
            network: Some(network),
        })
        .await?;
    answer(
        res.map(|entry| attached_info(&entry))
            .map_err(|e| e.to_api()),
    )
}
