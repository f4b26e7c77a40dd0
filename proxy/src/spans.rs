//! One span per request, exported over OTLP/HTTP (protobuf) to a collector, usually a sidecar on
//! `localhost:4318` (cargo feature `otlp`, `tracing.otlp` in the spec).
//!
//! The request path does nothing for this beyond the access-log record it already sends: the
//! access-log task turns a record with an edge span into `SpanData` and hands it to the exporter
//! task here, which sends batches of up to 512 spans at least once a second. When the collector
//! is slow or down, spans queue up to a bound and the rest are dropped and counted; requests never
//! wait for a collector.

use std::borrow::Cow;
use std::time::Duration;

use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanExporter as _, SpanLinks};
use opentelemetry_sdk::Resource;
use prometheus::{IntCounter, IntCounterVec, Opts, Registry};
use sitecar_config::OtlpSettings;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::access::Record;

/// Spans waiting for the exporter past this are dropped.
const QUEUE: usize = 8192;
/// Spans per export request.
const BATCH: usize = 512;
/// Longest wait before a partial batch is sent.
const DELAY: Duration = Duration::from_secs(1);

/// Where spans go, and what became of them.
#[derive(Debug, Clone)]
struct Counts {
    exported: IntCounter,
    failed: IntCounter,
    dropped: IntCounter,
}

/// The request path's end of the exporter: converts finished requests to spans.
#[derive(Debug)]
pub struct SpanSink {
    tx: mpsc::Sender<SpanData>,
    scope: InstrumentationScope,
    counts: Counts,
}

/// Why spans cannot be exported.
#[derive(Debug, thiserror::Error)]
#[error("OTLP exporter for {endpoint}: {message}")]
pub struct ExportError {
    endpoint: String,
    message: String,
}

impl SpanSink {
    /// Starts the exporter task (on the current tokio runtime). `registry` gets
    /// `sitecar_trace_spans_total{result=exported|failed|dropped}`.
    pub fn start(settings: &OtlpSettings, service_name: &str, registry: Option<&Registry>) -> Result<(Self, JoinHandle<()>), ExportError> {
        let fail = |message: String| ExportError { endpoint: settings.endpoint.clone(), message };
        let headers = settings.headers.iter().map(|(k, v)| (k.clone(), v.expose().to_owned())).collect();
        let mut exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(settings.endpoint.clone())
            .with_protocol(Protocol::HttpBinary)
            .with_timeout(settings.timeout)
            .with_headers(headers)
            .build()
            .map_err(|e| fail(e.to_string()))?;
        let resource = Resource::builder_empty()
            .with_service_name(service_name.to_owned())
            .with_attributes([KeyValue::new("service.version", env!("CARGO_PKG_VERSION"))])
            .build();
        exporter.set_resource(&resource);
        let results = IntCounterVec::new(Opts::new("sitecar_trace_spans_total", "Request spans by what became of them"), &["result"])
            .map_err(|e| fail(e.to_string()))?;
        if let Some(r) = registry {
            r.register(Box::new(results.clone())).map_err(|e| fail(e.to_string()))?;
        }
        let counts = Counts {
            exported: results.with_label_values(&["exported"]),
            failed: results.with_label_values(&["failed"]),
            dropped: results.with_label_values(&["dropped"]),
        };
        let (tx, rx) = mpsc::channel(QUEUE);
        let endpoint = settings.endpoint.clone();
        let task = tokio::spawn(export_loop(exporter, rx, counts.clone(), endpoint));
        let scope = InstrumentationScope::builder("sitecar").with_version(env!("CARGO_PKG_VERSION")).build();
        Ok((Self { tx, scope, counts }, task))
    }

    /// Queues the span of `r`, when the edge recorded one.
    pub fn push(&self, r: &Record) {
        let Some(span) = to_span(r, &self.scope) else { return };
        if self.tx.try_send(span).is_err() {
            self.counts.dropped.inc();
        }
    }
}

/// Sends a batch when it is full or its first span has waited [`DELAY`]; when every sender is
/// gone, sends what is left and ends.
async fn export_loop(exporter: opentelemetry_otlp::SpanExporter, mut rx: mpsc::Receiver<SpanData>, counts: Counts, endpoint: String) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut deadline: Option<tokio::time::Instant> = None;
    // Failures to pass over before the next warning: the first, then one in a hundred, so a
    // missing collector does not flood the log.
    let mut quiet = 0u32;
    loop {
        let open = tokio::select! {
            s = rx.recv() => match s {
                Some(s) => {
                    deadline.get_or_insert_with(|| tokio::time::Instant::now() + DELAY);
                    batch.push(s);
                    true
                }
                None => false,
            },
            _ = tokio::time::sleep_until(deadline.unwrap_or_else(tokio::time::Instant::now)), if deadline.is_some() => true,
        };
        let due = !open || batch.len() >= BATCH || deadline.is_some_and(|d| tokio::time::Instant::now() >= d);
        if due && !batch.is_empty() {
            deadline = None;
            let n = batch.len() as u64;
            match exporter.export(std::mem::replace(&mut batch, Vec::with_capacity(BATCH))).await {
                Ok(()) => counts.exported.inc_by(n),
                Err(e) => {
                    counts.failed.inc_by(n);
                    if quiet == 0 {
                        tracing::warn!(endpoint = %endpoint, error = %e, "could not export {n} spans");
                        quiet = 100;
                    }
                    quiet -= 1;
                }
            }
        }
        if !open {
            break;
        }
    }
}

fn hex_str(b: &[u8]) -> &str {
    std::str::from_utf8(b).unwrap_or("0")
}

/// The OpenTelemetry HTTP server span of a finished request.
fn to_span(r: &Record, scope: &InstrumentationScope) -> Option<SpanData> {
    let edge = r.span?;
    let trace_id = TraceId::from_hex(&r.trace_id).ok()?;
    let span_id = SpanId::from_hex(hex_str(&edge.span_id)).ok()?;
    let parent = edge.parent.and_then(|p| SpanId::from_hex(hex_str(&p)).ok());
    let (path, query) = r.target.split_once('?').map_or((r.target.as_str(), None), |(p, q)| (p, Some(q)));
    let mut attributes = Vec::with_capacity(12);
    attributes.push(KeyValue::new("http.request.method", r.method.as_str().to_owned()));
    attributes.push(KeyValue::new("url.path", path.to_owned()));
    if let Some(q) = query {
        attributes.push(KeyValue::new("url.query", q.to_owned()));
    }
    attributes.push(KeyValue::new("url.scheme", r.scheme));
    attributes.push(KeyValue::new("http.response.status_code", i64::from(r.status)));
    attributes.push(KeyValue::new("network.protocol.version", protocol_version(r.version)));
    attributes.push(KeyValue::new("client.address", r.client.to_string()));
    if let Some(host) = &r.host {
        attributes.push(KeyValue::new("server.address", host.clone()));
    }
    if let Some(ua) = &r.user_agent {
        attributes.push(KeyValue::new("user_agent.original", ua.clone()));
    }
    attributes.push(KeyValue::new("sitecar.request_id", r.request_id.clone()));
    if let Some(u) = r.upstream {
        attributes.push(KeyValue::new("sitecar.upstream.duration", u.as_secs_f64()));
    }
    if let Some(b) = r.bytes {
        attributes.push(KeyValue::new("http.response.body.size", b as i64));
    }
    // Server spans are errors for 5xx only (OpenTelemetry's HTTP conventions).
    let status = if r.status >= 500 { Status::error(format!("{}", r.status)) } else { Status::Unset };
    let start = r.at.checked_sub(r.duration).unwrap_or(r.at);
    Some(SpanData {
        span_context: SpanContext::new(trace_id, span_id, TraceFlags::SAMPLED, false, TraceState::default()),
        parent_span_id: parent.unwrap_or(SpanId::INVALID),
        parent_span_is_remote: parent.is_some(),
        span_kind: SpanKind::Server,
        name: Cow::Owned(r.method.as_str().to_owned()),
        start_time: start,
        end_time: r.at,
        attributes,
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status,
        instrumentation_scope: scope.clone(),
    })
}

fn protocol_version(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_10 => "1.0",
        http::Version::HTTP_2 => "2",
        _ => "1.1",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::headers::EdgeSpan;
    use std::time::SystemTime;

    #[test]
    fn a_record_becomes_a_server_span() {
        let scope = InstrumentationScope::builder("sitecar").build();
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_392_123);
        let mut r = Record {
            at,
            client: "203.0.113.7".parse().unwrap(),
            method: http::Method::POST,
            target: "/cart?id=3".into(),
            version: http::Version::HTTP_2,
            scheme: "https",
            host: Some("shop.example".into()),
            status: 503,
            bytes: Some(12),
            duration: Duration::from_millis(40),
            upstream: None,
            request_id: "rid".into(),
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
            span: Some(EdgeSpan { span_id: *b"00f067aa0ba902b7", parent: Some(*b"1111111111111111") }),
            user_agent: None,
            referer: None,
        };
        let s = to_span(&r, &scope).unwrap();
        assert_eq!(s.span_context.trace_id(), TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap());
        assert_eq!(s.span_context.span_id(), SpanId::from_hex("00f067aa0ba902b7").unwrap());
        assert_eq!(s.parent_span_id, SpanId::from_hex("1111111111111111").unwrap());
        assert!(s.parent_span_is_remote);
        assert_eq!((s.span_kind.clone(), s.name.as_ref()), (SpanKind::Server, "POST"));
        assert_eq!(s.end_time.duration_since(s.start_time).unwrap(), Duration::from_millis(40));
        let attr = |k: &str| s.attributes.iter().find(|kv| kv.key.as_str() == k).map(|kv| kv.value.to_string());
        assert_eq!(attr("url.path").as_deref(), Some("/cart"));
        assert_eq!(attr("url.query").as_deref(), Some("id=3"));
        assert_eq!(attr("http.response.status_code").as_deref(), Some("503"));
        assert_eq!(attr("network.protocol.version").as_deref(), Some("2"));
        assert!(matches!(s.status, Status::Error { .. }));
        r.span = None;
        assert!(to_span(&r, &scope).is_none(), "no edge span, nothing exported");
    }
}
