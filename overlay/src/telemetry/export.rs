//! The OTLP/HTTP span exporter: encodes a batch (protobuf or JSON) and posts it with a small
//! blocking HTTP/1.1 client whose every step is bounded by the configured timeout. It runs on
//! the SDK's batch thread, never on a runtime that serves requests; a failed export drops the
//! batch and says so once in a while, it never retries or blocks a caller.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use opentelemetry_sdk::Resource;
use prost::Message;

use super::config::{HttpTarget, OtlpConfig, Protocol};

/// Most of a collector's answer read (its status line is all that matters).
const MAX_ANSWER: u64 = 16 * 1024;

/// Exports spans to one OTLP/HTTP collector.
#[derive(Debug)]
pub struct OtlpHttpExporter {
    config: OtlpConfig,
    resource: ResourceAttributesWithSchema,
    failures: AtomicU64,
}

impl OtlpHttpExporter {
    /// An exporter posting to the collector `config` names.
    pub fn new(config: OtlpConfig) -> OtlpHttpExporter {
        OtlpHttpExporter {
            config,
            resource: ResourceAttributesWithSchema::from(&Resource::builder_empty().build()),
            failures: AtomicU64::new(0),
        }
    }

    fn send(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let body = encode(batch, &self.resource, self.config.protocol);
        let posted = post(
            &self.config.target,
            self.config.protocol.content_type(),
            &self.config.headers,
            &body,
            self.config.timeout,
        );
        posted.map_err(|e| {
            // One line for the first failure and every hundredth: a collector that is away
            // must not flood the log.
            let n = self.failures.fetch_add(1, Ordering::Relaxed);
            if n % 100 == 0 {
                // Not a tracing event: it would be exported by the exporter that failed.
                let _ = writeln!(
                    std::io::stderr(),
                    "shibafu: spans to {} dropped: {e} ({} failed exports so far)",
                    self.config.target,
                    n + 1
                );
            }
            OTelSdkError::InternalFailure(e)
        })
    }
}

impl SpanExporter for OtlpHttpExporter {
    fn export(
        &self,
        batch: Vec<SpanData>,
    ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        std::future::ready(self.send(batch))
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.resource = ResourceAttributesWithSchema::from(resource);
    }
}

/// The export request body of `batch` in `protocol`.
pub fn encode(
    batch: Vec<SpanData>,
    resource: &ResourceAttributesWithSchema,
    protocol: Protocol,
) -> Vec<u8> {
    let request = ExportTraceServiceRequest {
        resource_spans: group_spans_by_resource_and_scope(batch, resource),
    };
    match protocol {
        Protocol::HttpProtobuf => request.encode_to_vec(),
        // Plain data with string keys: serialising it cannot fail.
        Protocol::HttpJson => serde_json::to_vec(&request).unwrap_or_default(),
    }
}

/// Posts `body` and reads the answer's status; `Err` says what went wrong in words.
pub fn post(
    target: &HttpTarget,
    content_type: &str,
    headers: &[(String, String)],
    body: &[u8],
    timeout: Duration,
) -> Result<(), String> {
    let addrs = (target.host.as_str(), target.port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {}: {e}", target.host))?;
    let mut last = format!("{} has no address", target.host);
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(stream) => return exchange(stream, target, content_type, headers, body, timeout),
            Err(e) => last = format!("cannot connect to {addr}: {e}"),
        }
    }
    Err(last)
}

fn exchange(
    mut stream: TcpStream,
    target: &HttpTarget,
    content_type: &str,
    headers: &[(String, String)],
    body: &[u8],
    timeout: Duration,
) -> Result<(), String> {
    let io = |e: std::io::Error| format!("talking to {}: {e}", target.authority());
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    let mut head = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n",
        target.path,
        target.authority(),
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).map_err(io)?;
    stream.write_all(body).map_err(io)?;
    let mut answer = Vec::new();
    let mut limited = (&mut stream).take(MAX_ANSWER);
    // The status line is enough; a collector closing early after it is fine.
    let mut buf = [0u8; 1024];
    while !answer.windows(2).any(|w| w == b"\r\n") {
        match limited.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) => return Err(io(e)),
        }
    }
    let line = String::from_utf8_lossy(&answer);
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| format!("{} answered no HTTP status", target.authority()))?;
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(format!("{} answered HTTP {status}", target.authority()))
    }
}

#[cfg(test)]
mod tests;
