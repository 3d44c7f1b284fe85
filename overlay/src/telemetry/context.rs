//! Trace context that crosses processes and mailboxes: a W3C `traceparent`, taken from the
//! current span, carried in an HTTP header, an actor message or a stored object, and turned back
//! into a span's parent (one context) or its links (several folded into one piece of work).
//!
//! Without the OpenTelemetry layer (no `OTEL_EXPORTER_OTLP_*` endpoint) spans have no context:
//! [`Trace::current`] is empty, nothing is sent or stored, and following an empty trace is a
//! no-op.

use std::fmt;

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The HTTP header carrying the context (W3C Trace Context).
pub const TRACEPARENT: &str = "traceparent";

/// A valid W3C `traceparent` value (version 00): trace id, parent span id, flags.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceParent {
    trace_id: TraceId,
    span_id: SpanId,
    flags: TraceFlags,
}

impl TraceParent {
    /// Parses a header value; `None` for anything that is not a valid version-00 value with
    /// non-zero ids.
    pub fn parse(text: &str) -> Option<TraceParent> {
        let mut parts = text.trim().split('-');
        let (version, trace, span, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
        if parts.next().is_some()
            || version != "00"
            || !hex(trace, 32)
            || !hex(span, 16)
            || !hex(flags, 2)
        {
            return None;
        }
        let trace_id = TraceId::from_hex(trace).ok()?;
        let span_id = SpanId::from_hex(span).ok()?;
        let flags = TraceFlags::new(u8::from_str_radix(flags, 16).ok()?);
        (trace_id != TraceId::INVALID && span_id != SpanId::INVALID).then_some(TraceParent {
            trace_id,
            span_id,
            flags,
        })
    }

    /// The context of `span`, if it is recorded by OpenTelemetry.
    pub fn of(span: &tracing::Span) -> Option<TraceParent> {
        let cx = span.context();
        let sc = cx.span().span_context().clone();
        sc.is_valid().then(|| TraceParent {
            trace_id: sc.trace_id(),
            span_id: sc.span_id(),
            flags: sc.trace_flags(),
        })
    }

    /// The trace id, as 32 hex digits.
    pub fn trace_id(&self) -> String {
        self.trace_id.to_string()
    }

    fn span_context(&self) -> SpanContext {
        SpanContext::new(
            self.trace_id,
            self.span_id,
            self.flags,
            true,
            TraceState::default(),
        )
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{}-{}-{:02x}",
            self.trace_id,
            self.span_id,
            self.flags.to_u8()
        )
    }
}

impl fmt::Debug for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceParent({self})")
    }
}

/// Maybe a trace context: what a message or a stored object carries.
///
/// It is metadata about who caused a value, not part of the value: two `Trace`s always compare
/// equal, so objects differing only in it are equal (an apply that changes nothing stays a
/// no-op, a re-published record is no change). On the wire it is the `traceparent` string; a
/// value without one, or with one that does not parse, reads as no trace.
#[derive(Clone, Copy, Default)]
pub struct Trace(Option<TraceParent>);

impl Trace {
    /// No trace.
    pub const NONE: Trace = Trace(None);

    /// The context of the current span (none without OpenTelemetry).
    pub fn current() -> Trace {
        Trace::of(&tracing::Span::current())
    }

    /// The context of `span`.
    pub fn of(span: &tracing::Span) -> Trace {
        Trace(TraceParent::of(span))
    }

    /// From a `traceparent` header value; an invalid one is no trace.
    pub fn from_header(value: Option<&str>) -> Trace {
        Trace(value.and_then(TraceParent::parse))
    }

    /// The context, if any.
    pub fn parent(&self) -> Option<&TraceParent> {
        self.0.as_ref()
    }

    /// True without a context.
    pub fn is_none(&self) -> bool {
        self.0.is_none()
    }

    /// Makes `span` (just created, not yet entered) a child of this context; nothing without
    /// one.
    pub fn adopt(&self, span: &tracing::Span) {
        if let Some(p) = &self.0 {
            let cx = opentelemetry::Context::new().with_remote_span_context(p.span_context());
            // Fails only without the OpenTelemetry layer, where there is nothing to link.
            let _ = span.set_parent(cx);
        }
    }
}

impl PartialEq for Trace {
    fn eq(&self, _: &Trace) -> bool {
        true
    }
}

impl Eq for Trace {}

impl fmt::Debug for Trace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(p) => write!(f, "Trace({p})"),
            None => write!(f, "Trace(none)"),
        }
    }
}

impl Serialize for Trace {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match &self.0 {
            Some(p) => s.collect_str(p),
            None => s.serialize_none(),
        }
    }
}

impl<'de> Deserialize<'de> for Trace {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Trace, D::Error> {
        let text = Option::<String>::deserialize(d)?;
        Ok(Trace::from_header(text.as_deref()))
    }
}

/// Makes `span` (just created) follow the contexts of the changes it handles: a child of the
/// one context when there is one, linked to each when several were folded into it. Duplicates
/// count once.
pub fn follow<'a>(span: &tracing::Span, traces: impl IntoIterator<Item = &'a Trace>) {
    let mut parents: Vec<TraceParent> = Vec::new();
    for p in traces.into_iter().filter_map(Trace::parent) {
        if !parents.contains(p) {
            parents.push(*p);
        }
    }
    match parents.as_slice() {
        [] => {}
        [one] => Trace(Some(*one)).adopt(span),
        many => {
            for p in many {
                span.add_link(p.span_context());
            }
        }
    }
}

/// The span of one API request a daemon serves: named `server` (`agent.request`,
/// `coordinator.request`), with the method and path, a child of the caller's `traceparent`.
pub fn request_span(
    server: &'static str,
    method: &str,
    path: &str,
    traceparent: Option<&str>,
) -> tracing::Span {
    let span = tracing::info_span!(
        "request",
        otel.name = server,
        otel.kind = "server",
        http.request.method = method,
        url.path = path,
    );
    Trace::from_header(traceparent).adopt(&span);
    span
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    #[test]
    fn a_traceparent_reads_back_as_written_and_bad_ones_are_refused() {
        let p = TraceParent::parse(HEADER).expect("valid");
        assert_eq!(p.to_string(), HEADER);
        assert_eq!(p.trace_id(), "0af7651916cd43dd8448eb211c80319c");
        for bad in [
            "",
            "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-x",
            "00-0af7651916cd43dd8448eb211c80319z-b7ad6b7169203331-01",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad}");
        }
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Stored {
        name: String,
        #[serde(default, skip_serializing_if = "Trace::is_none")]
        trace: Trace,
    }

    #[test]
    fn a_stored_trace_is_optional_lenient_and_never_makes_values_differ() {
        let old: Stored = serde_json::from_str(r#"{"name":"a"}"#).expect("old value");
        assert!(old.trace.is_none());
        assert_eq!(
            serde_json::to_string(&old).expect("json"),
            r#"{"name":"a"}"#
        );
        let new: Stored =
            serde_json::from_str(&format!(r#"{{"name":"a","trace":"{HEADER}"}}"#)).expect("new");
        assert_eq!(
            new.trace.parent().map(ToString::to_string),
            Some(HEADER.into())
        );
        assert_eq!(old, new);
        let json = serde_json::to_string(&new).expect("json");
        assert!(json.contains(HEADER), "{json}");
        let junk: Stored = serde_json::from_str(r#"{"name":"a","trace":"junk"}"#).expect("lenient");
        assert!(junk.trace.is_none());
    }

    #[test]
    fn without_the_opentelemetry_layer_there_is_no_context_and_following_is_a_no_op() {
        let span = tracing::info_span!("x");
        assert!(Trace::of(&span).is_none());
        let t = Trace::from_header(Some(HEADER));
        follow(&span, [&t, &t]);
        assert!(Trace::current().is_none());
    }
}
