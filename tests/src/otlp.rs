//! [`OtlpReceiver`]: a tiny OTLP/HTTP trace collector for tests. It listens inside a network
//! namespace (the lab's control host), accepts `POST`s of `http/protobuf` and `http/json` export
//! requests, answers 200 and keeps every span it decoded, flattened with its resource.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use prost::Message;

/// Largest export request read.
const MAX_BODY: usize = 16 << 20;

/// One received span with what a test asserts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedSpan {
    /// Span name.
    pub name: String,
    /// Trace id, 32 hex digits.
    pub trace_id: String,
    /// Span id, 16 hex digits.
    pub span_id: String,
    /// Parent span id (empty for a root).
    pub parent_id: String,
    /// The span's attributes, values as text.
    pub attributes: BTreeMap<String, String>,
    /// The resource's attributes (`service.name`, `host.name`, ...).
    pub resource: BTreeMap<String, String>,
    /// Linked contexts: (trace id, span id).
    pub links: Vec<(String, String)>,
    /// The `Content-Type` it arrived with.
    pub content_type: String,
}

impl ReceivedSpan {
    /// A span attribute, or "" when absent.
    pub fn attr(&self, key: &str) -> &str {
        self.attributes.get(key).map_or("", String::as_str)
    }

    /// The resource's `service.name`.
    pub fn service(&self) -> &str {
        self.resource.get("service.name").map_or("", String::as_str)
    }

    /// The resource's `host.name`, or "".
    pub fn host(&self) -> &str {
        self.resource.get("host.name").map_or("", String::as_str)
    }
}

/// A collector on `addr` inside a namespace; stops when dropped.
pub struct OtlpReceiver {
    addr: SocketAddr,
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl OtlpReceiver {
    /// Listens on `addr` inside the namespace `/run/netns/<netns>` (the thread enters it; the
    /// test process stays where it is); panics if it cannot.
    pub fn start_in(netns: &str, addr: SocketAddr) -> OtlpReceiver {
        let spans = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready) = std::sync::mpsc::channel();
        let path = format!("/run/netns/{netns}");
        let (kept, stopping) = (spans.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let bound = enter(&path).and_then(|()| TcpListener::bind(addr));
            let listener = match bound {
                Ok(l) => l,
                Err(e) => {
                    let _ = ready_tx.send(Err(e.to_string()));
                    return;
                }
            };
            let _ = listener.set_nonblocking(true);
            let _ = ready_tx.send(Ok(()));
            while !stopping.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        if let Some(got) = serve(stream) {
                            kept.lock().unwrap_or_else(|p| p.into_inner()).extend(got);
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        match ready.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("OTLP receiver cannot listen on {addr} in {netns}: {e}"),
            Err(_) => panic!("OTLP receiver thread died"),
        }
        OtlpReceiver {
            addr,
            spans,
            stop,
            thread: Some(thread),
        }
    }

    /// The endpoint to give as `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.spans.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn enter(path: &str) -> std::io::Result<()> {
    let ns = File::open(path)?;
    // SAFETY: setns on a descriptor we own; it changes only this thread's namespace.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Reads one request, answers it, and returns its spans (`None` for anything unreadable).
fn serve(stream: TcpStream) -> Option<Vec<ReceivedSpan>> {
    stream.set_nonblocking(false).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let (mut len, mut content_type) = (0usize, String::new());
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        match k.trim().to_ascii_lowercase().as_str() {
            "content-length" => len = v.trim().parse().ok()?,
            "content-type" => content_type = v.trim().to_string(),
            _ => {}
        }
    }
    if len > MAX_BODY {
        return None;
    }
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    let mut out = stream;
    let _ = out.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    Some(decode(&content_type, &body))
}

/// The spans of an export request in either OTLP/HTTP encoding.
pub fn decode(content_type: &str, body: &[u8]) -> Vec<ReceivedSpan> {
    let request = if content_type.starts_with("application/json") {
        serde_json::from_slice::<ExportTraceServiceRequest>(body).ok()
    } else {
        ExportTraceServiceRequest::decode(body).ok()
    };
    let Some(request) = request else {
        return Vec::new();
    };
    let mut spans = Vec::new();
    for rs in request.resource_spans {
        let resource = rs
            .resource
            .map(|r| attrs(&r.attributes))
            .unwrap_or_default();
        for s in rs.scope_spans.into_iter().flat_map(|ss| ss.spans) {
            spans.push(ReceivedSpan {
                name: s.name,
                trace_id: hex(&s.trace_id),
                span_id: hex(&s.span_id),
                parent_id: hex(&s.parent_span_id),
                attributes: attrs(&s.attributes),
                resource: resource.clone(),
                links: s
                    .links
                    .iter()
                    .map(|l| (hex(&l.trace_id), hex(&l.span_id)))
                    .collect(),
                content_type: content_type.to_string(),
            });
        }
    }
    spans
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attrs(kvs: &[KeyValue]) -> BTreeMap<String, String> {
    kvs.iter()
        .map(|kv| {
            let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(Value::StringValue(s)) => s.clone(),
                Some(Value::IntValue(i)) => i.to_string(),
                Some(Value::BoolValue(b)) => b.to_string(),
                Some(Value::DoubleValue(d)) => d.to_string(),
                Some(other) => format!("{other:?}"),
                None => String::new(),
            };
            (kv.key.clone(), v)
        })
        .collect()
}
