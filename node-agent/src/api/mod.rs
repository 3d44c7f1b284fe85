//! The agent's local HTTP/JSON API on a unix socket (mode 0600: only root talks to it).
//!
//! Routing lives here; each group of endpoints is a submodule contributing a `routes()`
//! router over the shared [`ApiState`] (actor recipients). Handlers ask actors and await their
//! answers; they hold no state of their own. Errors use the shared body
//! `{"error": "...", "kind": "..."}` of `shibafu_overlay::api::ApiError`.

mod cni;
mod cni_pins;
mod containers;
mod diag;
mod status;

use std::fs;
use std::future::Future;
use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

use actix::{MailboxError, Recipient};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use shibafu_overlay::api::{ApiError, ErrorKind};
use shibafu_overlay::telemetry::{request_span, TRACEPARENT};
use tokio::net::UnixListener;
use tracing::Instrument;

use crate::messages::{GetNetworks, GetStatus, TraceDns};
use crate::runtime::{NetworkRecipients, RuntimeRecipients};
use crate::tunnel::GetTunnel;
pub use cni::CniLinks;

/// What the handlers reach: the actors answering each kind of request.
#[derive(Clone)]
pub struct ApiState {
    /// Answers `GET /v1/status`.
    pub status: Recipient<GetStatus>,
    /// Answers `GET /v1/networks`.
    pub networks: Recipient<GetNetworks>,
    /// Attachments (NetworkActor).
    pub network: NetworkRecipients,
    /// Containers (RuntimeActor).
    pub runtime: RuntimeRecipients,
    /// Answers `POST /v1/diag/dns-trace` (DnsActor).
    pub dns_trace: Recipient<TraceDns>,
    /// Answers `GET /v1/tunnel` (TunnelActor).
    pub tunnel: Recipient<GetTunnel>,
    /// What the CNI routes need besides attach and detach.
    pub cni: CniLinks,
    /// The agent's certificate (for etcd), shown by `/v1/health`.
    pub certificate: Option<shibafu_overlay::tls::CertInfo>,
}

/// Shared state as handlers see it.
pub type SharedState = Arc<ApiState>;

/// The whole API: every submodule's routes, a JSON 404 for anything else.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .merge(status::routes())
        .merge(containers::routes())
        .merge(cni::routes())
        .merge(diag::routes())
        .fallback(|| async { ApiFailure(ApiError::not_found("no such API endpoint")) })
        .layer(axum::middleware::from_fn(shibafu_overlay::api::json_errors))
        .layer(axum::middleware::from_fn(traced))
        .with_state(Arc::new(state))
}

/// Runs a request in its `agent.request` span, continuing the caller's trace.
async fn traced(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let parent = req.headers().get(TRACEPARENT).and_then(|v| v.to_str().ok());
    let span = request_span(
        "agent.request",
        req.method().as_str(),
        req.uri().path(),
        parent,
    );
    next.run(req).instrument(span).await
}

/// Binds the API socket: removes a stale socket file first, refuses to replace anything else,
/// and restricts the socket to its owner (0600).
pub fn bind(path: &Path) -> io::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => fs::remove_file(path)?,
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "{} exists and is not a socket: remove it or pick another --api-socket",
                    path.display()
                ),
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = UnixListener::bind(path)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Serves `router` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: UnixListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

/// An error answer: the shared error body with the status its kind implies.
#[derive(Debug)]
pub struct ApiFailure(pub ApiError);

impl IntoResponse for ApiFailure {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(self.0)).into_response()
    }
}

impl From<MailboxError> for ApiFailure {
    fn from(e: MailboxError) -> Self {
        ApiFailure(ApiError::new(
            ErrorKind::Internal,
            format!("agent is shutting down or overloaded ({e}): retry in a moment"),
        ))
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod bad_input_tests;
