//! A small HTTP/1.1 JSON client for the shibafu APIs, over TCP (`http://host:port`), TLS with a
//! client certificate (`https://host:port`, the coordinator of a secure cluster) or a unix
//! socket (`unix:/run/shibafu/agent.sock`, the local agent).
//!
//! One connection per request: the CLI makes a handful of calls per run, and a fresh connection
//! keeps errors simple to report. A client may know several servers of one kind (coordinators):
//! it tries them in order and moves on only when one cannot be reached or does not answer in
//! time, never after an answer (an error answer is the cluster's answer).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header::{ACCEPT, CONNECTION, CONTENT_TYPE, HOST, UPGRADE};

use super::connect::{self, Stream};
use super::target::Target;
use super::types::ApiError;
use crate::telemetry::{Trace, TRACEPARENT};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Default time allowed to open a connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Default time allowed for a whole request and its answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Errors of the API client. Messages tell the user what to do.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server address does not parse.
    #[error("invalid address {given:?}: {reason}")]
    BadAddress {
        /// The address as given.
        given: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The connection could not be opened.
    #[error("cannot reach {peer} at {target}: {reason} ({hint})")]
    Unreachable {
        /// What the server is (`coordinator`, `agent`).
        peer: String,
        /// Its address.
        target: Target,
        /// Why the connection failed.
        reason: String,
        /// What the user can do.
        hint: String,
    },
    /// The server did not answer in time.
    #[error("{peer} at {target} did not answer within {secs}s ({hint})")]
    Timeout {
        /// What the server is.
        peer: String,
        /// Its address.
        target: Target,
        /// The timeout in seconds.
        secs: u64,
        /// What the user can do.
        hint: String,
    },
    /// None of several servers could be reached or answered in time.
    #[error("cannot reach any {peer}: {} ({hint})", attempts.iter().map(|(t, why)| format!("{t}: {why}")).collect::<Vec<_>>().join("; "))]
    NoneReachable {
        /// What the servers are.
        peer: String,
        /// Each server tried, in order, with why it failed.
        attempts: Vec<(Target, String)>,
        /// What the user can do.
        hint: String,
    },
    /// The server answered with an error body; its message is shown as is.
    #[error("{0}")]
    Api(ApiError),
    /// The answer was not what a shibafu API sends.
    #[error("unexpected answer from {peer} at {target}: {detail} (is that a shibafu {peer}?)")]
    Protocol {
        /// What the server is.
        peer: String,
        /// Its address.
        target: Target,
        /// What was wrong.
        detail: String,
    },
    /// The TLS files do not make a client configuration.
    #[error("{0}")]
    Tls(String),
    /// The request body could not be encoded (a bug).
    #[error("cannot encode the request: {0}")]
    Encode(String),
}

/// The raw answer of a request: status and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawResponse {
    /// HTTP status.
    pub status: StatusCode,
    /// Body bytes.
    pub body: Bytes,
}

/// A bidirectional byte stream after an HTTP upgrade (for `exec`, `logs -f`).
pub type UpgradedStream = TokioIo<hyper::upgrade::Upgraded>;

/// A JSON client for one shibafu server, or for several of one kind tried in order.
#[derive(Debug, Clone)]
pub struct Client {
    target: Target,
    fallbacks: Vec<Target>,
    peer: String,
    hint: String,
    connect_timeout: Duration,
    request_timeout: Duration,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl Client {
    /// A client for the server at `target`. `peer` names it in messages (`coordinator`),
    /// `hint` tells the user what to check when it cannot be reached.
    pub fn new(target: Target, peer: impl Into<String>, hint: impl Into<String>) -> Client {
        Client {
            target,
            fallbacks: Vec::new(),
            peer: peer.into(),
            hint: hint.into(),
            connect_timeout: CONNECT_TIMEOUT,
            request_timeout: REQUEST_TIMEOUT,
            tls: None,
        }
    }

    /// Adds servers to try, in order, when those before cannot be reached or do not answer in
    /// time; a request that got an answer (even an error) is never sent again elsewhere.
    pub fn with_fallbacks(mut self, fallbacks: impl IntoIterator<Item = Target>) -> Client {
        self.fallbacks.extend(fallbacks);
        self
    }

    /// Sets the TLS configuration (the cluster CA and a client certificate) for `https://`
    /// servers.
    pub fn with_tls(mut self, tls: Option<Arc<rustls::ClientConfig>>) -> Client {
        self.tls = tls;
        self
    }

    /// Sets the time allowed for a whole request (default [`REQUEST_TIMEOUT`]).
    pub fn with_request_timeout(mut self, timeout: Duration) -> Client {
        self.request_timeout = timeout;
        self
    }

    /// The server address (the first, when there are several).
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Every server address, in the order they are tried.
    pub fn targets(&self) -> impl Iterator<Item = &Target> {
        std::iter::once(&self.target).chain(&self.fallbacks)
    }

    /// `GET path`, decoding a JSON answer.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.call(Method::GET, path, None).await
    }

    /// `POST path` with a JSON body, decoding a JSON answer.
    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let body = encode(body)?;
        self.call(Method::POST, path, Some(body)).await
    }

    /// `PUT path` with a JSON body, decoding a JSON answer.
    pub async fn put<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let body = encode(body)?;
        self.call(Method::PUT, path, Some(body)).await
    }

    /// `DELETE path`, decoding a JSON answer (`()` accepts an empty one).
    pub async fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.call(Method::DELETE, path, None).await
    }

    /// Sends a request and decodes the answer: 2xx as `T`, anything else as [`ApiError`].
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T, ClientError> {
        let (target, raw) = self
            .first_answer(|t| self.send_to(t, method.clone(), path, body.clone()))
            .await?;
        self.decode_from(target, raw)
    }

    /// Sends a request and returns the raw answer, whatever its status.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<RawResponse, ClientError> {
        self.first_answer(|t| self.send_to(t, method.clone(), path, body.clone()))
            .await
            .map(|(_, raw)| raw)
    }

    /// Sends a request asking to upgrade the connection to `protocol` and returns the raw
    /// stream once the server answers `101 Switching Protocols`. Any other answer is decoded as
    /// an error. The request timeout covers the handshake only.
    pub async fn upgrade<B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: &B,
        protocol: &str,
    ) -> Result<UpgradedStream, ClientError> {
        let body = encode(body)?;
        let attempt = self.first_answer(|target| {
            let (method, body) = (method.clone(), body.clone());
            async move {
                let work = async {
                    let io = self.open(target).await?;
                    self.upgrade_on(target, io, method, path, body, protocol)
                        .await
                };
                tokio::time::timeout(self.request_timeout, work)
                    .await
                    .map_err(|_| self.timeout(target, self.request_timeout))?
            }
        });
        attempt.await.map(|(_, s)| s)
    }

    /// Runs `attempt` on each server in order until one is reached and answers in time;
    /// returns that server and its result, or every failure when none did.
    async fn first_answer<'a, T, F, Fut>(
        &'a self,
        attempt: F,
    ) -> Result<(&'a Target, T), ClientError>
    where
        F: Fn(&'a Target) -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        let mut failures = Vec::new();
        for target in self.targets() {
            match attempt(target).await {
                Err(e @ (ClientError::Unreachable { .. } | ClientError::Timeout { .. })) => {
                    tracing::debug!(%target, error = %e, "no answer; trying the next server");
                    failures.push(e);
                }
                other => return other.map(|t| (target, t)),
            }
        }
        Err(self.none_reachable(failures))
    }

    /// The failures of every server tried: the one error when there was one server.
    fn none_reachable(&self, mut failures: Vec<ClientError>) -> ClientError {
        if failures.len() == 1 {
            if let Some(only) = failures.pop() {
                return only;
            }
        }
        let attempts = failures
            .into_iter()
            .filter_map(|e| match e {
                ClientError::Unreachable { target, reason, .. } => Some((target, reason)),
                ClientError::Timeout { target, secs, .. } => {
                    Some((target, format!("no answer within {secs}s")))
                }
                _ => None,
            })
            .collect();
        ClientError::NoneReachable {
            peer: self.peer.clone(),
            attempts,
            hint: self.hint.clone(),
        }
    }

    /// One request to one server, bounded by the request timeout.
    async fn send_to(
        &self,
        target: &Target,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<RawResponse, ClientError> {
        let work = async {
            let io = self.open(target).await?;
            self.exchange(target, io, method, path, body).await
        };
        tokio::time::timeout(self.request_timeout, work)
            .await
            .map_err(|_| self.timeout(target, self.request_timeout))?
    }

    /// Opens a connection to `target`, bounded by the connect timeout.
    async fn open(&self, target: &Target) -> Result<Stream, ClientError> {
        let opening = connect::open(target, self.tls.as_ref());
        match tokio::time::timeout(self.connect_timeout, opening).await {
            Ok(Ok(s)) => Ok(s),
            Ok(Err(reason)) => Err(self.unreachable(target, reason)),
            Err(_) => Err(self.unreachable(
                target,
                format!(
                    "connection timed out after {}s",
                    self.connect_timeout.as_secs()
                ),
            )),
        }
    }

    fn request(
        &self,
        target: &Target,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Request<Full<Bytes>>, ClientError> {
        let host = match target {
            Target::Http(authority) | Target::Https(authority) => authority.as_str(),
            Target::Unix(_) => "localhost",
        };
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, host)
            .header(ACCEPT, "application/json");
        if body.is_some() {
            builder = builder.header(CONTENT_TYPE, "application/json");
        }
        if let Some(parent) = Trace::current().parent() {
            builder = builder.header(TRACEPARENT, parent.to_string());
        }
        builder
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| ClientError::Encode(format!("bad request path {path:?}: {e}")))
    }

    async fn exchange(
        &self,
        target: &Target,
        io: Stream,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<RawResponse, ClientError> {
        let req = self.request(target, method, path, body)?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| self.unreachable(target, e.to_string()))?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "api connection ended with an error");
            }
        });
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| self.protocol(target, format!("request failed: {e}")))?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| self.protocol(target, format!("reading the answer failed: {e}")))?
            .to_bytes();
        tracing::debug!(%target, %status, bytes = body.len(), "api answer");
        Ok(RawResponse { status, body })
    }

    async fn upgrade_on(
        &self,
        target: &Target,
        io: Stream,
        method: Method,
        path: &str,
        body: Vec<u8>,
        protocol: &str,
    ) -> Result<UpgradedStream, ClientError> {
        let mut req = self.request(target, method, path, Some(body))?;
        let headers = req.headers_mut();
        headers.insert(
            CONNECTION,
            hyper::header::HeaderValue::from_static("upgrade"),
        );
        let proto = hyper::header::HeaderValue::from_str(protocol)
            .map_err(|e| ClientError::Encode(format!("bad upgrade protocol {protocol:?}: {e}")))?;
        headers.insert(UPGRADE, proto);
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| self.unreachable(target, e.to_string()))?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "api upgrade connection ended with an error");
            }
        });
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| self.protocol(target, format!("request failed: {e}")))?;
        if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            let status = resp.status();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| self.protocol(target, format!("reading the answer failed: {e}")))?
                .to_bytes();
            return Err(self.error_of(target, RawResponse { status, body }));
        }
        let upgraded = hyper::upgrade::on(resp)
            .await
            .map_err(|e| self.protocol(target, format!("upgrade failed: {e}")))?;
        Ok(TokioIo::new(upgraded))
    }

    /// Decodes a raw answer: 2xx as `T` (an empty body as JSON `null`), else the error body.
    pub fn decode<T: DeserializeOwned>(&self, raw: RawResponse) -> Result<T, ClientError> {
        self.decode_from(&self.target, raw)
    }

    fn decode_from<T: DeserializeOwned>(
        &self,
        target: &Target,
        raw: RawResponse,
    ) -> Result<T, ClientError> {
        if !raw.status.is_success() {
            return Err(self.error_of(target, raw));
        }
        let body: &[u8] = if raw.body.is_empty() {
            b"null"
        } else {
            &raw.body
        };
        serde_json::from_slice(body).map_err(|e| self.protocol(target, format!("bad JSON: {e}")))
    }

    fn error_of(&self, target: &Target, raw: RawResponse) -> ClientError {
        match serde_json::from_slice::<ApiError>(&raw.body) {
            Ok(e) => ClientError::Api(e),
            Err(_) => {
                let text = String::from_utf8_lossy(&raw.body);
                let text: String = text.trim().chars().take(200).collect();
                self.protocol(target, format!("status {}: {text:?}", raw.status))
            }
        }
    }

    fn unreachable(&self, target: &Target, reason: String) -> ClientError {
        ClientError::Unreachable {
            peer: self.peer.clone(),
            target: target.clone(),
            reason,
            hint: self.hint.clone(),
        }
    }

    fn timeout(&self, target: &Target, d: Duration) -> ClientError {
        ClientError::Timeout {
            peer: self.peer.clone(),
            target: target.clone(),
            secs: d.as_secs(),
            hint: self.hint.clone(),
        }
    }

    fn protocol(&self, target: &Target, detail: String) -> ClientError {
        ClientError::Protocol {
            peer: self.peer.clone(),
            target: target.clone(),
            detail,
        }
    }
}

fn encode<B: Serialize>(body: &B) -> Result<Vec<u8>, ClientError> {
    serde_json::to_vec(body).map_err(|e| ClientError::Encode(e.to_string()))
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
