//! The HTTP/JSON surface of the coordinator: routes, body extraction and error mapping. The
//! handlers are thin: every decision lives in [`crate::cluster`].

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use shibafu_overlay::api::{
    ApiError, CreateNetwork, ErrorKind, Health, LinkNetworks, NodeInfo, RemovedNetwork,
};
use shibafu_overlay::model::{Link, Network, NetworkProblem};
use shibafu_overlay::store::Store;
use shibafu_overlay::telemetry::{request_span, TRACEPARENT};
use shibafu_overlay::tls::CertInfo;
use tracing::{info, instrument, warn, Instrument};

use crate::cluster;
use crate::links::{self, Linked};
use crate::{http_apply, http_endpoints, http_policies, http_services};

/// Shared state of the handlers: only the store (the coordinator keeps no state of its own).
#[derive(Clone)]
pub struct AppState {
    store: Arc<dyn Store>,
}

impl AppState {
    /// The cluster store.
    pub fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }
}

/// An [`ApiError`] as an HTTP response: its status and its JSON body.
pub struct HttpError(pub ApiError);

impl From<ApiError> for HttpError {
    /// Logs the error where `?` converts it: inside the handler's span.
    fn from(e: ApiError) -> HttpError {
        if e.status() >= 500 {
            warn!(kind = ?e.kind, error = %e.error, "request failed");
        } else {
            info!(kind = ?e.kind, error = %e.error, "request rejected");
        }
        HttpError(e)
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(self.0)).into_response()
    }
}

type Answer<T> = Result<T, HttpError>;

/// The coordinator's routes over `store`.
pub fn router(store: Arc<dyn Store>) -> Router {
    Router::new()
        .route("/v1/networks", get(list_networks).post(create_network))
        .route(
            "/v1/networks/{name}",
            get(get_network).delete(remove_network),
        )
        .route("/v1/networks/{name}/problems", get(network_problems))
        .route("/v1/links", get(list_links).post(create_link))
        .route("/v1/links/{a}/{b}", delete(remove_link))
        .route("/v1/nodes", get(list_nodes))
        .route("/v1/nodes/{name}/rotate-key", post(rotate_key))
        .merge(http_services::routes())
        .merge(http_policies::routes())
        .merge(http_apply::routes())
        .merge(http_endpoints::routes())
        .route("/v1/health", get(health))
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn(shibafu_overlay::api::json_errors))
        .layer(axum::middleware::from_fn(traced))
        .with_state(AppState { store })
}

/// Runs a request in its `coordinator.request` span, continuing the caller's trace.
async fn traced(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let parent = req.headers().get(TRACEPARENT).and_then(|v| v.to_str().ok());
    let span = request_span(
        "coordinator.request",
        req.method().as_str(),
        req.uri().path(),
        parent,
    );
    next.run(req).instrument(span).await
}

#[instrument(name = "create_network", skip_all, fields(method = "POST", network))]
async fn create_network(
    State(st): State<AppState>,
    body: Result<Json<CreateNetwork>, JsonRejection>,
) -> Answer<(StatusCode, Json<Network>)> {
    let Json(req) =
        body.map_err(|r| ApiError::invalid(format!("invalid request body: {}", r.body_text())))?;
    tracing::Span::current().record("network", req.name.as_str());
    let net = cluster::create_network(st.store.as_ref(), &req).await?;
    Ok((StatusCode::CREATED, Json(net)))
}

#[instrument(name = "list_networks", skip_all, fields(method = "GET"))]
async fn list_networks(State(st): State<AppState>) -> Answer<Json<Vec<Network>>> {
    Ok(Json(cluster::list_networks(st.store.as_ref()).await?))
}

#[instrument(name = "get_network", skip_all, fields(method = "GET", network = %name))]
async fn get_network(
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> Answer<Json<Network>> {
    Ok(Json(cluster::get_network(st.store.as_ref(), &name).await?))
}

#[instrument(name = "network_problems", skip_all, fields(method = "GET", network = %name))]
async fn network_problems(
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> Answer<Json<Vec<NetworkProblem>>> {
    Ok(Json(
        cluster::network_problems(st.store.as_ref(), &name).await?,
    ))
}

/// Query of `DELETE /v1/networks/{name}`.
#[derive(Debug, Deserialize)]
struct RemoveQuery {
    #[serde(default)]
    force: bool,
}

#[instrument(name = "remove_network", skip_all, fields(method = "DELETE", network = %name))]
async fn remove_network(
    State(st): State<AppState>,
    Path(name): Path<String>,
    query: Result<Query<RemoveQuery>, QueryRejection>,
) -> Answer<Json<RemovedNetwork>> {
    let Query(q) = query.map_err(|r| {
        ApiError::invalid(format!(
            "invalid query: {} (use ?force=true or ?force=false)",
            r.body_text()
        ))
    })?;
    Ok(Json(
        cluster::remove_network(st.store.as_ref(), &name, q.force).await?,
    ))
}

#[instrument(name = "create_link", skip_all, fields(method = "POST", a, b))]
async fn create_link(
    State(st): State<AppState>,
    body: Result<Json<LinkNetworks>, JsonRejection>,
) -> Answer<(StatusCode, Json<Link>)> {
    let Json(req) =
        body.map_err(|r| ApiError::invalid(format!("invalid request body: {}", r.body_text())))?;
    let span = tracing::Span::current();
    span.record("a", req.a.as_str());
    span.record("b", req.b.as_str());
    let (link, linked) = links::create_link(st.store.as_ref(), &req.a, &req.b).await?;
    let status = match linked {
        Linked::Created => StatusCode::CREATED,
        Linked::Existing => StatusCode::OK,
    };
    Ok((status, Json(link)))
}

#[instrument(name = "remove_link", skip_all, fields(method = "DELETE", a = %a, b = %b))]
async fn remove_link(
    State(st): State<AppState>,
    Path((a, b)): Path<(String, String)>,
) -> Answer<Json<Link>> {
    Ok(Json(links::remove_link(st.store.as_ref(), &a, &b).await?))
}

#[instrument(name = "list_links", skip_all, fields(method = "GET"))]
async fn list_links(State(st): State<AppState>) -> Answer<Json<Vec<Link>>> {
    Ok(Json(links::list_links(st.store.as_ref()).await?))
}

#[instrument(name = "list_nodes", skip_all, fields(method = "GET"))]
async fn list_nodes(State(st): State<AppState>) -> Answer<Json<Vec<NodeInfo>>> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    Ok(Json(cluster::list_nodes(st.store.as_ref(), now).await?))
}

#[instrument(name = "rotate_key", skip_all, fields(method = "POST", node = %name))]
async fn rotate_key(
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> Answer<(StatusCode, Json<NodeInfo>)> {
    let info = crate::rotation::request_rotation(st.store.as_ref(), &name).await?;
    Ok((StatusCode::ACCEPTED, Json(info)))
}

/// This coordinator's own certificate, for `/v1/health` (an extension set where it serves TLS).
#[derive(Debug, Clone)]
pub struct OwnCertificate(pub CertInfo);

#[instrument(name = "health", skip_all, fields(method = "GET"))]
async fn health(
    State(st): State<AppState>,
    own: Option<Extension<OwnCertificate>>,
) -> Answer<Json<Health>> {
    cluster::check_store(st.store.as_ref()).await?;
    Ok(Json(Health {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        certificate: own.map(|Extension(OwnCertificate(c))| c),
    }))
}

async fn no_route(method: Method, uri: Uri) -> HttpError {
    HttpError(ApiError::not_found(format!(
        "no such route: {method} {}",
        uri.path()
    )))
}

async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    let e = ApiError::new(
        ErrorKind::Invalid,
        format!("method {method} not allowed on {}", uri.path()),
    );
    (StatusCode::METHOD_NOT_ALLOWED, Json(e)).into_response()
}

#[cfg(test)]
#[path = "http_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "api_bad_input_tests.rs"]
mod bad_input_tests;

#[cfg(test)]
#[path = "stored_garbage_tests.rs"]
mod stored_garbage_tests;
