use std::borrow::Cow;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::{Instant, SystemTime};

use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue};

use super::*;

fn span(name: &'static str, parent: SpanId) -> SpanData {
    SpanData {
        span_context: SpanContext::new(
            TraceId::from(0x0af7651916cd43dd8448eb211c80319c_u128),
            SpanId::from(0xb7ad6b7169203331_u64),
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        ),
        parent_span_id: parent,
        parent_span_is_remote: true,
        span_kind: SpanKind::Internal,
        name: Cow::Borrowed(name),
        start_time: SystemTime::now(),
        end_time: SystemTime::now(),
        attributes: vec![KeyValue::new("network", "frontend")],
        dropped_attributes_count: 0,
        events: Default::default(),
        links: Default::default(),
        status: Status::Unset,
        instrumentation_scope: InstrumentationScope::builder("shibafu").build(),
    }
}

fn resource() -> ResourceAttributesWithSchema {
    let r = Resource::builder_empty()
        .with_service_name("shibafu-agent")
        .build();
    ResourceAttributesWithSchema::from(&r)
}

/// A request as the listener read it: request line, headers, body.
type Got = (String, Vec<String>, Vec<u8>);

/// One request read by a listener on loopback, answered with `status`.
fn serve_once(status: &'static str) -> (HttpTarget, mpsc::Receiver<Got>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().expect("accept");
        let mut reader = BufReader::new(stream.try_clone().expect("clone"));
        let mut line = String::new();
        reader.read_line(&mut line).expect("line");
        let mut headers = Vec::new();
        let mut len = 0;
        loop {
            let mut h = String::new();
            reader.read_line(&mut h).expect("header");
            let h = h.trim_end().to_string();
            if h.is_empty() {
                break;
            }
            if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().expect("length");
            }
            headers.push(h);
        }
        let mut body = vec![0; len];
        reader.read_exact(&mut body).expect("body");
        let mut out = stream;
        let _ = write!(out, "HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n");
        let _ = tx.send((line.trim_end().to_string(), headers, body));
    });
    let target = HttpTarget {
        host: "127.0.0.1".into(),
        port,
        path: "/v1/traces".into(),
    };
    (target, rx)
}

fn exporter(target: HttpTarget, protocol: Protocol) -> OtlpHttpExporter {
    let mut e = OtlpHttpExporter::new(OtlpConfig {
        target,
        protocol,
        headers: vec![("x-tenant".into(), "lab".into())],
        timeout: Duration::from_secs(2),
    });
    e.set_resource(
        &Resource::builder_empty()
            .with_service_name("shibafu-agent")
            .build(),
    );
    e
}

#[test]
fn protobuf_bodies_decode_to_the_spans_with_their_resource() {
    let body = encode(
        vec![span("agent.run", SpanId::from(7_u64))],
        &resource(),
        Protocol::HttpProtobuf,
    );
    let req = ExportTraceServiceRequest::decode(body.as_slice()).expect("protobuf");
    let rs = &req.resource_spans[0];
    let attrs = &rs.resource.as_ref().expect("resource").attributes;
    assert!(attrs.iter().any(|kv| kv.key == "service.name"));
    let s = &rs.scope_spans[0].spans[0];
    assert_eq!(s.name, "agent.run");
    assert_eq!(s.parent_span_id, 7_u64.to_be_bytes().to_vec());
    assert_eq!(s.attributes[0].key, "network");
}

#[test]
fn json_bodies_use_hex_ids_and_camel_case() {
    let body = encode(
        vec![span("agent.run", SpanId::INVALID)],
        &resource(),
        Protocol::HttpJson,
    );
    let text = String::from_utf8(body.clone()).expect("utf8");
    assert!(
        text.contains("\"traceId\":\"0af7651916cd43dd8448eb211c80319c\""),
        "{text}"
    );
    assert!(text.contains("\"resourceSpans\""), "{text}");
    let back: ExportTraceServiceRequest = serde_json::from_slice(&body).expect("json");
    assert_eq!(
        back.resource_spans[0].scope_spans[0].spans[0].name,
        "agent.run"
    );
}

#[test]
fn both_protocols_post_to_the_path_with_their_content_type_and_headers() {
    for protocol in [Protocol::HttpProtobuf, Protocol::HttpJson] {
        let (target, got) = serve_once("200 OK");
        let e = exporter(target, protocol);
        e.send(vec![span("cli.run", SpanId::INVALID)])
            .expect("exported");
        let (line, headers, body) = got.recv().expect("request");
        assert_eq!(line, "POST /v1/traces HTTP/1.1");
        let ct = format!("Content-Type: {}", protocol.content_type());
        assert!(headers.contains(&ct), "{headers:?}");
        assert!(
            headers.contains(&"x-tenant: lab".to_string()),
            "{headers:?}"
        );
        assert!(!body.is_empty());
    }
}

#[test]
fn a_refusing_or_silent_collector_fails_the_export_within_the_timeout() {
    let (target, _got) = serve_once("503 Service Unavailable");
    let e = exporter(target, Protocol::HttpProtobuf);
    let err = e.send(vec![span("x", SpanId::INVALID)]).expect_err("503");
    assert!(err.to_string().contains("503"), "{err}");

    let closed = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let target = HttpTarget {
        host: "127.0.0.1".into(),
        port,
        path: "/".into(),
    };
    assert!(post(&target, "a/b", &[], b"x", Duration::from_secs(1)).is_err());

    // Accepts (the kernel does) but never answers.
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
    let target = HttpTarget {
        host: "127.0.0.1".into(),
        port: silent.local_addr().expect("addr").port(),
        path: "/".into(),
    };
    let t0 = Instant::now();
    let err = post(&target, "a/b", &[], b"x", Duration::from_millis(300)).expect_err("silent");
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "{:?} {err}",
        t0.elapsed()
    );
}
