//! Read-only diagnosis routes: `GET /v1/containers/{name}/net` (inside a container's namespace
//! and the host ends of its veths), `GET /v1/diag/host` (bridges, VXLAN devices, FDB and
//! neighbour entries), `POST /v1/containers/{name}/probe` (a probe from inside a container)
//! `POST /v1/diag/probe` (a probe from the node itself) and `POST /v1/diag/dns-trace` (a query
//! traced through a network's DNS server), serving the diagnosis calls of
//! `shibafu_overlay::api::Agent`. They read the kernel with netlink and change nothing but the
//! DNS cache a traced forwarded query fills, as any query would.

use std::path::PathBuf;

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use shibafu_overlay::api::{
    ApiError, ContainerInfo, ContainerNet, DnsTraceRequest, ErrorKind, HostNet, NamespaceNet,
    ProbeRequest, ProbeResult, MAX_PROBE_MS,
};
use shibafu_overlay::dns::trace::DnsTrace;
use shibafu_overlay::netlink::{inspect_host, inspect_namespace, NetlinkDataplane};

use super::{ApiFailure, SharedState};
use crate::messages::{GetStatus, TraceDns};
use crate::runtime::Get;

/// Routes of this module.
pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/v1/containers/{name}/net", get(container_net))
        .route("/v1/containers/{name}/probe", post(probe))
        .route("/v1/diag/host", get(host_net))
        .route("/v1/diag/probe", post(host_probe))
        .route("/v1/diag/dns-trace", post(dns_trace))
}

type Answer<T> = Result<Json<T>, ApiFailure>;

fn internal(what: &str, e: impl std::fmt::Display) -> ApiFailure {
    ApiFailure(ApiError::new(ErrorKind::Internal, format!("{what}: {e}")))
}

async fn container(s: &SharedState, name: String) -> Result<ContainerInfo, ApiFailure> {
    s.runtime.get.send(Get(name)).await?.map_err(ApiFailure)
}

/// Is the container's namespace there to enter?
fn enterable(info: &ContainerInfo) -> bool {
    matches!(info.state.as_str(), "running" | "attached")
}

async fn container_net(
    State(s): State<SharedState>,
    Path(name): Path<String>,
) -> Answer<ContainerNet> {
    let status = s.status.send(GetStatus).await?;
    let info = container(&s, name).await?;
    let (inside, error) = if enterable(&info) {
        match inspect_namespace(Some(&PathBuf::from(&info.netns))).await {
            Ok(n) => (n, None),
            Err(e) => (NamespaceNet::default(), Some(e.to_string())),
        }
    } else {
        (
            NamespaceNet::default(),
            Some(format!(
                "container is {}, its namespace is not entered",
                info.state
            )),
        )
    };
    let host = inspect_host(&NetlinkDataplane::current())
        .await
        .map_err(|e| internal("reading the host's links", e))?;
    let peers: Vec<u32> = inside.links.iter().filter_map(|l| l.peer_index).collect();
    let host_side = host
        .links
        .into_iter()
        .filter(|l| peers.contains(&l.index))
        .collect();
    Ok(Json(ContainerNet {
        node: status.node,
        container: info,
        inside,
        error,
        host_side,
    }))
}

async fn host_net(State(s): State<SharedState>) -> Answer<HostNet> {
    let status = s.status.send(GetStatus).await?;
    let host = inspect_host(&NetlinkDataplane::current())
        .await
        .map_err(|e| internal("reading the host's links", e))?;
    Ok(Json(HostNet {
        node: status.node,
        underlay: status.underlay,
        links: host.links,
        vxlan_fdb: host.fdb,
        bridge_fdb: host.port_fdb,
        neighbours: host.neighbours,
    }))
}

fn check_timeout(req: &ProbeRequest) -> Result<(), ApiFailure> {
    if req.timeout_ms == 0 || req.timeout_ms > MAX_PROBE_MS {
        return Err(ApiFailure(ApiError::invalid(format!(
            "timeout_ms {}: give 1 to {MAX_PROBE_MS}",
            req.timeout_ms
        ))));
    }
    Ok(())
}

/// A probe from the agent's own namespace (the node's underlay).
async fn host_probe(Json(req): Json<ProbeRequest>) -> Answer<ProbeResult> {
    check_timeout(&req)?;
    tokio::task::spawn_blocking(move || shibafu_overlay::probe::probe(&req))
        .await
        .map(Json)
        .map_err(|e| internal("probe", e))
}

async fn probe(
    State(s): State<SharedState>,
    Path(name): Path<String>,
    Json(req): Json<ProbeRequest>,
) -> Answer<ProbeResult> {
    check_timeout(&req)?;
    let info = container(&s, name).await?;
    if !enterable(&info) {
        return Err(ApiFailure(ApiError::invalid(format!(
            "container {} is {}: nothing to probe from",
            info.name, info.state
        ))));
    }
    shibafu_overlay::probe::probe_in(&PathBuf::from(&info.netns), req)
        .await
        .map(Json)
        .map_err(|e| internal("entering the container's namespace", e))
}

async fn dns_trace(
    State(s): State<SharedState>,
    Json(req): Json<DnsTraceRequest>,
) -> Answer<DnsTrace> {
    let qtype: hickory_proto::rr::RecordType = req.qtype.to_uppercase().parse().map_err(|_| {
        ApiFailure(ApiError::invalid(format!(
            "type {:?}: give a record type such as A, AAAA, SRV, PTR, TXT",
            req.qtype
        )))
    })?;
    let msg = TraceDns {
        network: req.network,
        query: req.query,
        qtype,
        client: req.client,
    };
    s.dns_trace.send(msg).await?.map(Json).map_err(ApiFailure)
}
