//! Context propagation with the OpenTelemetry layer installed (a scoped subscriber whose spans
//! are collected in memory): parents, links, and the trace stamped into stored values.

use std::sync::{Arc, Mutex};

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use tracing_subscriber::layer::SubscriberExt;

use super::{follow, Trace, TraceParent};
use crate::model::{encode, Network};

#[derive(Debug, Clone, Default)]
struct Collected(Arc<Mutex<Vec<SpanData>>>);

impl SpanExporter for Collected {
    fn export(
        &self,
        batch: Vec<SpanData>,
    ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(batch);
        std::future::ready(Ok(()))
    }
}

/// Runs `f` under a subscriber that records spans; returns what it recorded.
fn traced(f: impl FnOnce()) -> Vec<SpanData> {
    let spans = Collected::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(spans.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    tracing::subscriber::with_default(subscriber, f);
    let _ = provider.force_flush();
    let got = spans.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
    got
}

fn named<'a>(spans: &'a [SpanData], name: &str) -> &'a SpanData {
    spans
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no span {name}: {spans:?}"))
}

const REMOTE: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
const OTHER: &str = "00-11111111111111111111111111111111-2222222222222222-01";

#[test]
fn one_context_becomes_the_parent_and_the_current_span_is_what_is_sent() {
    let mut sent = None;
    let spans = traced(|| {
        let span = tracing::info_span!("agent.request");
        Trace::from_header(Some(REMOTE)).adopt(&span);
        span.in_scope(|| {
            let child = tracing::info_span!("container.run");
            child.in_scope(|| sent = Trace::current().parent().copied());
        });
    });
    let request = named(&spans, "agent.request");
    assert_eq!(
        request.span_context.trace_id().to_string(),
        "0af7651916cd43dd8448eb211c80319c"
    );
    assert_eq!(request.parent_span_id.to_string(), "b7ad6b7169203331");
    assert!(request.parent_span_is_remote);
    let run = named(&spans, "container.run");
    assert_eq!(run.parent_span_id, request.span_context.span_id());
    let sent = sent.expect("a context inside a recorded span");
    assert_eq!(
        sent.to_string(),
        format!(
            "00-{}-{}-01",
            run.span_context.trace_id(),
            run.span_context.span_id()
        )
    );
}

#[test]
fn several_contexts_become_links_of_a_new_trace_and_duplicates_count_once() {
    let spans = traced(|| {
        let one = Trace::from_header(Some(REMOTE));
        let two = Trace::from_header(Some(OTHER));
        let folded = tracing::info_span!("dataplane.reconcile");
        follow(&folded, [&one, &Trace::NONE, &two, &one]);
        drop(folded);
        let single = tracing::info_span!("dns.update");
        follow(&single, [&one, &one]);
    });
    let folded = named(&spans, "dataplane.reconcile");
    assert_eq!(folded.parent_span_id, opentelemetry::trace::SpanId::INVALID);
    let linked: Vec<String> = folded
        .links
        .links
        .iter()
        .map(|l| l.span_context.span_id().to_string())
        .collect();
    assert_eq!(linked, ["b7ad6b7169203331", "2222222222222222"]);
    let single = named(&spans, "dns.update");
    assert_eq!(single.parent_span_id.to_string(), "b7ad6b7169203331");
    assert!(single.links.links.is_empty());
}

#[test]
fn a_value_written_in_a_recorded_span_stores_its_context_and_reads_back_equal() {
    let net = Network::new("frontend", "172.21.0.0/24".parse().expect("net"), 4096);
    let plain = encode(&net).expect("json");
    assert!(!String::from_utf8_lossy(&plain).contains("trace"));
    let mut stamped = Vec::new();
    let spans = traced(|| {
        let span = tracing::info_span!("create_network");
        stamped = span.in_scope(|| encode(&net)).expect("json");
    });
    let back: Network = serde_json::from_slice(&stamped).expect("decode");
    let written = named(&spans, "create_network");
    let parent: &TraceParent = back.trace.parent().expect("stored trace");
    assert_eq!(
        parent.trace_id(),
        written.span_context.trace_id().to_string()
    );
    assert_eq!(back, net, "the trace does not make values differ");
}
