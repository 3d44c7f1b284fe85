//! The service routes of the coordinator API; every decision lives in [`crate::services`].

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use shibafu_overlay::api::{ApiError, ServiceInfo, ServiceSpec};
use shibafu_overlay::model::Service;
use tracing::instrument;

use crate::http::{AppState, HttpError};
use crate::services;

type Answer<T> = Result<T, HttpError>;

/// Routes of this module.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/services", get(list).post(create))
        .route(
            "/v1/services/{network}/{name}",
            get(inspect).put(update).delete(remove),
        )
}

fn body(body: Result<Json<ServiceSpec>, JsonRejection>) -> Result<ServiceSpec, ApiError> {
    body.map(|Json(b)| b)
        .map_err(|r| ApiError::invalid(format!("invalid request body: {}", r.body_text())))
}

#[instrument(name = "create_service", skip_all, fields(method = "POST"))]
async fn create(
    State(st): State<AppState>,
    spec: Result<Json<ServiceSpec>, JsonRejection>,
) -> Answer<(StatusCode, Json<Service>)> {
    let spec = body(spec)?;
    let service = services::create_service(st.store(), &spec).await?;
    Ok((StatusCode::CREATED, Json(service)))
}

#[instrument(name = "update_service", skip_all, fields(method = "PUT", network = %network, service = %name))]
async fn update(
    State(st): State<AppState>,
    Path((network, name)): Path<(String, String)>,
    spec: Result<Json<ServiceSpec>, JsonRejection>,
) -> Answer<Json<Service>> {
    let spec = body(spec)?;
    if spec.network != network || spec.name != name {
        return Err(ApiError::invalid(format!(
            "the body names service {:?} on {:?}, the path {name:?} on {network:?}",
            spec.name, spec.network
        ))
        .into());
    }
    Ok(Json(services::update_service(st.store(), &spec).await?))
}

#[instrument(name = "list_services", skip_all, fields(method = "GET"))]
async fn list(State(st): State<AppState>) -> Answer<Json<Vec<ServiceInfo>>> {
    Ok(Json(services::list_services(st.store()).await?))
}

#[instrument(name = "inspect_service", skip_all, fields(method = "GET", network = %network, service = %name))]
async fn inspect(
    State(st): State<AppState>,
    Path((network, name)): Path<(String, String)>,
) -> Answer<Json<ServiceInfo>> {
    Ok(Json(
        services::get_service(st.store(), &network, &name).await?,
    ))
}

#[instrument(name = "remove_service", skip_all, fields(method = "DELETE", network = %network, service = %name))]
async fn remove(
    State(st): State<AppState>,
    Path((network, name)): Path<(String, String)>,
) -> Answer<Json<ServiceInfo>> {
    Ok(Json(
        services::remove_service(st.store(), &network, &name).await?,
    ))
}
