//! The routes of declarative configuration; every decision lives in [`crate::apply`].

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use shibafu_overlay::api::{ApiError, ApplyAnswer, ApplyRequest, Document};
use tracing::instrument;

use crate::apply;
use crate::http::{AppState, HttpError};

type Answer<T> = Result<T, HttpError>;

/// Routes of this module.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/apply", post(apply_document))
        .route("/v1/export", get(export))
}

#[instrument(name = "apply", skip_all, fields(method = "POST", dry_run, prune))]
async fn apply_document(
    State(st): State<AppState>,
    body: Result<Json<ApplyRequest>, JsonRejection>,
) -> Answer<Json<ApplyAnswer>> {
    let Json(req) =
        body.map_err(|r| ApiError::invalid(format!("invalid request body: {}", r.body_text())))?;
    let span = tracing::Span::current();
    span.record("dry_run", req.dry_run);
    span.record("prune", req.prune);
    Ok(Json(apply::apply(st.store(), &req).await?))
}

#[instrument(name = "export", skip_all, fields(method = "GET"))]
async fn export(State(st): State<AppState>) -> Answer<Json<Document>> {
    Ok(Json(apply::export(st.store()).await?))
}
