//! `GET /v1/health` (the agent answers; same body as the coordinator's), `GET /v1/status`
//! (node, etcd connectivity, revision, networks and nodes seen) and `GET /v1/networks` (the
//! networks as this agent sees them).

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use shibafu_overlay::api::{Health, TunnelReport};
use shibafu_overlay::model::Network;

use super::{ApiFailure, SharedState};
use crate::messages::{AgentStatus, GetNetworks, GetStatus};
use crate::tunnel::GetTunnel;

/// Routes of this module.
pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/v1/health", get(health))
        .route("/v1/status", get(status))
        .route("/v1/networks", get(networks))
        .route("/v1/tunnel", get(tunnel))
}

async fn health(State(s): State<SharedState>) -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        certificate: s.certificate.clone(),
    })
}

async fn status(State(s): State<SharedState>) -> Result<Json<AgentStatus>, ApiFailure> {
    Ok(Json(s.status.send(GetStatus).await?))
}

async fn tunnel(State(s): State<SharedState>) -> Result<Json<TunnelReport>, ApiFailure> {
    Ok(Json(s.tunnel.send(GetTunnel).await?))
}

async fn networks(State(s): State<SharedState>) -> Result<Json<Vec<Network>>, ApiFailure> {
    Ok(Json(s.networks.send(GetNetworks).await?))
}
