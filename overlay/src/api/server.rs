//! What both HTTP servers (the coordinator's and the agent's, axum) share: every error answer
//! carries the shared JSON error body.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::{ApiError, ErrorKind};

/// Middleware giving the rejections of axum's own extractors (a body that is not JSON or too
/// large, a path segment that is not UTF-8, a bad query, a wrong method) the shared error body,
/// keeping their status: every error answer is JSON.
pub async fn json_errors(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    let json = resp
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|t| t.as_bytes().starts_with(b"application/json"));
    if json || !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let text = axum::body::to_bytes(resp.into_body(), 64 << 10)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let text = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("request refused")
            .to_string()
    } else {
        text
    };
    let kind = match status {
        StatusCode::NOT_FOUND => ErrorKind::NotFound,
        s if s.is_server_error() => ErrorKind::Internal,
        _ => ErrorKind::Invalid,
    };
    (status, Json(ApiError::new(kind, text))).into_response()
}
