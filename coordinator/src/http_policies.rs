//! The network policy routes of the coordinator API; every decision lives in
//! [`crate::policies`].

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use shibafu_overlay::api::{ApiError, PolicyInfo, PolicySpec};
use shibafu_overlay::model::Policy;
use tracing::instrument;

use crate::http::{AppState, HttpError};
use crate::policies;

type Answer<T> = Result<T, HttpError>;

/// Routes of this module.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/policies", get(list).post(create))
        .route("/v1/policies/{name}", get(inspect).delete(remove))
}

#[instrument(name = "create_policy", skip_all, fields(method = "POST", policy))]
async fn create(
    State(st): State<AppState>,
    spec: Result<Json<PolicySpec>, JsonRejection>,
) -> Answer<(StatusCode, Json<Policy>)> {
    let Json(spec) =
        spec.map_err(|r| ApiError::invalid(format!("invalid request body: {}", r.body_text())))?;
    tracing::Span::current().record("policy", spec.name.as_str());
    let policy = policies::create_policy(st.store(), &spec).await?;
    Ok((StatusCode::CREATED, Json(policy)))
}

#[instrument(name = "list_policies", skip_all, fields(method = "GET"))]
async fn list(State(st): State<AppState>) -> Answer<Json<Vec<Policy>>> {
    Ok(Json(policies::list_policies(st.store()).await?))
}

#[instrument(name = "inspect_policy", skip_all, fields(method = "GET", policy = %name))]
async fn inspect(State(st): State<AppState>, Path(name): Path<String>) -> Answer<Json<PolicyInfo>> {
    Ok(Json(policies::get_policy(st.store(), &name).await?))
}

#[instrument(name = "remove_policy", skip_all, fields(method = "DELETE", policy = %name))]
async fn remove(State(st): State<AppState>, Path(name): Path<String>) -> Answer<Json<Policy>> {
    Ok(Json(policies::remove_policy(st.store(), &name).await?))
}
