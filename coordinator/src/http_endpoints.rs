//! `GET /v1/endpoints`: every endpoint in the cluster (container interfaces with their node,
//! network, addresses and service), read-only, for `network topology` and `network diagnose`.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use shibafu_overlay::model::Endpoint;
use shibafu_overlay::store::keys::Prefix;
use shibafu_overlay::store::StoreExt;
use tracing::instrument;

use crate::cluster::store_error;
use crate::http::{AppState, HttpError};

/// Routes of this module.
pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/endpoints", get(list))
}

#[instrument(name = "list_endpoints", skip_all, fields(method = "GET"))]
async fn list(State(st): State<AppState>) -> Result<Json<Vec<Endpoint>>, HttpError> {
    let (mut endpoints, _) = st
        .store()
        .list_objects::<Endpoint>(&Prefix::Endpoints)
        .await
        .map_err(store_error)?;
    endpoints.sort_by(|a, b| (&a.network, &a.name).cmp(&(&b.network, &b.name)));
    Ok(Json(endpoints))
}
