//! A small HTTP/1.1 JSON client for the shibafu APIs, over TCP (`http://host:port`, the
//! coordinator) or a unix socket (`unix:/run/shibafu/agent.sock`, the local agent).
//!
//! One connection per request: the CLI makes a handful of calls per run, and a fresh connection
//! keeps errors simple to report.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header::{ACCEPT, CONNECTION, CONTENT_TYPE, HOST, UPGRADE};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};

use super::types::ApiError;

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
    /// The request body could not be encoded (a bug).
    #[error("cannot encode the request: {0}")]
    Encode(String),
}

/// Where a server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `http://host:port`: TCP, the authority as given (`host:port`).
    Http(String),
    /// `unix:/path`: a unix stream socket.
    Unix(PathBuf),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Http(authority) => write!(f, "http://{authority}"),
            Target::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

impl FromStr for Target {
    type Err = ClientError;

    /// Parses `http://host[:port][/]`, `unix:/path` or a bare absolute path (a unix socket).
    fn from_str(s: &str) -> Result<Target, ClientError> {
        let bad = |reason: &str| ClientError::BadAddress {
            given: s.to_string(),
            reason: reason.to_string(),
        };
        if let Some(rest) = s.strip_prefix("http://") {
            let authority = rest.strip_suffix('/').unwrap_or(rest);
            if authority.is_empty()
                || authority.starts_with(':')
                || authority.contains(['/', '?', '#', '@', ' '])
            {
                return Err(bad("use http://HOST:PORT, without a path"));
            }
            let has_port = match authority.rsplit_once(':') {
                Some((host, port)) => !port.contains(']') && !host.is_empty(),
                None => false,
            };
            if has_port {
                Ok(Target::Http(authority.to_string()))
            } else {
                Ok(Target::Http(format!("{authority}:80")))
            }
        } else if s.starts_with("https://") {
            Err(bad("https is not supported yet: use http://HOST:PORT"))
        } else if let Some(path) = s.strip_prefix("unix:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.starts_with('/') {
                Ok(Target::Unix(PathBuf::from(path)))
            } else {
                Err(bad("use unix:/ABSOLUTE/PATH"))
            }
        } else if s.starts_with('/') {
            Ok(Target::Unix(PathBuf::from(s)))
        } else {
            Err(bad("use http://HOST:PORT or unix:/PATH/TO/SOCKET"))
        }
    }
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

/// A JSON client for one shibafu server.
#[derive(Debug, Clone)]
pub struct Client {
    target: Target,
    peer: String,
    hint: String,
    connect_timeout: Duration,
    request_timeout: Duration,
}

impl Client {
    /// A client for the server at `target`. `peer` names it in messages (`coordinator`),
    /// `hint` tells the user what to check when it cannot be reached.
    pub fn new(target: Target, peer: impl Into<String>, hint: impl Into<String>) -> Client {
        Client {
            target,
            peer: peer.into(),
            hint: hint.into(),
            connect_timeout: CONNECT_TIMEOUT,
            request_timeout: REQUEST_TIMEOUT,
        }
    }

    /// Sets the time allowed for a whole request (default [`REQUEST_TIMEOUT`]).
    pub fn with_request_timeout(mut self, timeout: Duration) -> Client {
        self.request_timeout = timeout;
        self
    }

    /// The server address.
    pub fn target(&self) -> &Target {
        &self.target
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
        let raw = self.send(method, path, body).await?;
        self.decode(raw)
    }

    /// Sends a request and returns the raw answer, whatever its status.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<RawResponse, ClientError> {
        let work = async {
            match &self.target {
                Target::Http(authority) => {
                    let io = self.connect(TcpStream::connect(authority.as_str())).await?;
                    self.exchange(io, method, path, body).await
                }
                Target::Unix(p) => {
                    let io = self.connect(UnixStream::connect(p)).await?;
                    self.exchange(io, method, path, body).await
                }
            }
        };
        tokio::time::timeout(self.request_timeout, work)
            .await
            .map_err(|_| self.timeout(self.request_timeout))?
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
        let work = async {
            match &self.target {
                Target::Http(authority) => {
                    let io = self.connect(TcpStream::connect(authority.as_str())).await?;
                    self.upgrade_on(io, method, path, body, protocol).await
                }
                Target::Unix(p) => {
                    let io = self.connect(UnixStream::connect(p)).await?;
                    self.upgrade_on(io, method, path, body, protocol).await
                }
            }
        };
        tokio::time::timeout(self.request_timeout, work)
            .await
            .map_err(|_| self.timeout(self.request_timeout))?
    }

    async fn connect<S>(
        &self,
        connecting: impl std::future::Future<Output = std::io::Result<S>>,
    ) -> Result<S, ClientError> {
        match tokio::time::timeout(self.connect_timeout, connecting).await {
            Ok(Ok(s)) => Ok(s),
            Ok(Err(e)) => Err(self.unreachable(e.to_string())),
            Err(_) => Err(self.unreachable(format!(
                "connection timed out after {}s",
                self.connect_timeout.as_secs()
            ))),
        }
    }

    fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Request<Full<Bytes>>, ClientError> {
        let host = match &self.target {
            Target::Http(authority) => authority.as_str(),
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
        builder
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| ClientError::Encode(format!("bad request path {path:?}: {e}")))
    }

    async fn exchange<S>(
        &self,
        io: S,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<RawResponse, ClientError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let req = self.request(method, path, body)?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| self.unreachable(e.to_string()))?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "api connection ended with an error");
            }
        });
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| self.protocol(format!("request failed: {e}")))?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| self.protocol(format!("reading the answer failed: {e}")))?
            .to_bytes();
        tracing::debug!(target = %self.target, %status, bytes = body.len(), "api answer");
        Ok(RawResponse { status, body })
    }

    async fn upgrade_on<S>(
        &self,
        io: S,
        method: Method,
        path: &str,
        body: Vec<u8>,
        protocol: &str,
    ) -> Result<UpgradedStream, ClientError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let mut req = self.request(method, path, Some(body))?;
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
            .map_err(|e| self.unreachable(e.to_string()))?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "api upgrade connection ended with an error");
            }
        });
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| self.protocol(format!("request failed: {e}")))?;
        if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            let status = resp.status();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| self.protocol(format!("reading the answer failed: {e}")))?
                .to_bytes();
            return Err(self.error_of(RawResponse { status, body }));
        }
        let upgraded = hyper::upgrade::on(resp)
            .await
            .map_err(|e| self.protocol(format!("upgrade failed: {e}")))?;
        Ok(TokioIo::new(upgraded))
    }

    /// Decodes a raw answer: 2xx as `T` (an empty body as JSON `null`), else the error body.
    pub fn decode<T: DeserializeOwned>(&self, raw: RawResponse) -> Result<T, ClientError> {
        if !raw.status.is_success() {
            return Err(self.error_of(raw));
        }
        let body: &[u8] = if raw.body.is_empty() {
            b"null"
        } else {
            &raw.body
        };
        serde_json::from_slice(body).map_err(|e| self.protocol(format!("bad JSON: {e}")))
    }

    fn error_of(&self, raw: RawResponse) -> ClientError {
        match serde_json::from_slice::<ApiError>(&raw.body) {
            Ok(e) => ClientError::Api(e),
            Err(_) => {
                let text = String::from_utf8_lossy(&raw.body);
                let text: String = text.trim().chars().take(200).collect();
                self.protocol(format!("status {}: {text:?}", raw.status))
            }
        }
    }

    fn unreachable(&self, reason: String) -> ClientError {
        ClientError::Unreachable {
            peer: self.peer.clone(),
            target: self.target.clone(),
            reason,
            hint: self.hint.clone(),
        }
    }

    fn timeout(&self, d: Duration) -> ClientError {
        ClientError::Timeout {
            peer: self.peer.clone(),
            target: self.target.clone(),
            secs: d.as_secs(),
            hint: self.hint.clone(),
        }
    }

    fn protocol(&self, detail: String) -> ClientError {
        ClientError::Protocol {
            peer: self.peer.clone(),
            target: self.target.clone(),
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
