//! W3C trace context and OTLP/HTTP export through `sitecar up`: a span per sampled request reaches
//! a real collector endpoint (a protobuf-decoding HTTP server on loopback), main's spans are its
//! children, a client's sampling decision is kept, and a stuck collector never slows requests.

#![cfg(feature = "otlp")]
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use prost::Message;

mod support;
use support::*;

/// One received span, flattened.
#[derive(Debug, Clone)]
struct Got {
    service: String,
    trace_id: String,
    span_id: String,
    parent: String,
    name: String,
    kind: i32,
    attributes: Vec<(String, String)>,
}

impl Got {
    fn attr(&self, k: &str) -> Option<&str> {
        self.attributes.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str())
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn text(v: &Option<opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        Some(Value::BoolValue(b)) => b.to_string(),
        other => format!("{other:?}"),
    }
}

/// An OTLP/HTTP collector on `port`: decodes every `POST /v1/traces`; while `stuck` is set it
/// takes 30 s to answer.
fn collector(port: u16, got: Arc<Mutex<Vec<Got>>>, stuck: Arc<AtomicBool>) {
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let (got, stuck) = (got.clone(), stuck.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let (got, stuck) = (got.clone(), stuck.clone());
                        async move {
                            let ok = req.method() == hyper::Method::POST
                                && req.uri().path() == "/v1/traces"
                                && req.headers().get("content-type").is_some_and(|v| v == "application/x-protobuf");
                            let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                            if stuck.load(Ordering::SeqCst) {
                                tokio::time::sleep(Duration::from_secs(30)).await;
                            }
                            let status = match ExportTraceServiceRequest::decode(body) {
                                Ok(export) if ok => {
                                    let mut got = got.lock().unwrap();
                                    for rs in export.resource_spans {
                                        let service = rs
                                            .resource
                                            .iter()
                                            .flat_map(|r| r.attributes.iter())
                                            .find(|kv| kv.key == "service.name")
                                            .map(|kv| text(&kv.value))
                                            .unwrap_or_default();
                                        for s in rs.scope_spans.into_iter().flat_map(|ss| ss.spans) {
                                            got.push(Got {
                                                service: service.clone(),
                                                trace_id: hex(&s.trace_id),
                                                span_id: hex(&s.span_id),
                                                parent: hex(&s.parent_span_id),
                                                name: s.name,
                                                kind: s.kind,
                                                attributes: s.attributes.iter().map(|kv| (kv.key.clone(), text(&kv.value))).collect(),
                                            });
                                        }
                                    }
                                    200
                                }
                                _ => 400,
                            };
                            Ok::<_, std::convert::Infallible>(
                                hyper::Response::builder().status(status).body(Full::new(Bytes::new())).unwrap(),
                            )
                        }
                    });
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
                });
            }
        });
    });
}

/// The `traceparent` main received: (trace id, parent span id, flags).
fn main_saw(body: &str) -> (String, String, String) {
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    let tp = v["traceparent"].as_str().unwrap().to_owned();
    let parts: Vec<&str> = tp.split('-').collect();
    assert_eq!(parts.len(), 4, "{tp}");
    (parts[1].into(), parts[2].into(), parts[3].into())
}

#[test]
fn a_span_per_sampled_request_reaches_the_collector() {
    let got = Arc::new(Mutex::new(Vec::new()));
    let stuck = Arc::new(AtomicBool::new(false));
    let port = free_port();
    collector(port, got.clone(), stuck.clone());
    let dir = tempfile::tempdir().unwrap();
    let extra =
        format!(r#", "tracing": {{"serviceName": "shop", "otlp": {{"endpoint": "http://127.0.0.1:{port}", "timeoutSeconds": 1}}}}"#);
    let (spec, Ports { front, admin, .. }) = two_container_spec(dir.path(), "side", &extra);
    let mut sitecar = up_until_ready(&spec, admin);
    let spans = |trace: &str| got.lock().unwrap().iter().filter(|g| g.trace_id == trace).cloned().collect::<Vec<_>>();

    // A new trace: the edge's span is the root and main's parent.
    let (status, body) = http_with(front, "GET", "/headers?x=1", &[("host", "shop.test"), ("user-agent", "trace-test")]);
    assert_eq!(status, 200);
    let (trace_a, parent_a, flags_a) = main_saw(&body);
    assert_eq!(flags_a, "01");
    // A client's sampled trace: continued, the edge's span between the client's and main's.
    let client = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let (_, body) = http_with(front, "GET", "/headers", &[("traceparent", client)]);
    let (trace_b, parent_b, _) = main_saw(&body);
    assert_eq!(trace_b, "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_ne!(parent_b, "00f067aa0ba902b7", "main's parent is the edge's span, not the client's");
    // A client's unsampled trace: passed on untouched, nothing recorded.
    let unsampled = "00-5bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
    let (_, body) = http_with(front, "GET", "/headers", &[("traceparent", unsampled)]);
    assert_eq!(main_saw(&body), ("5bf92f3577b34da6a3ce929d0e0e4736".into(), "00f067aa0ba902b7".into(), "00".into()));

    wait_until("both spans at the collector", Duration::from_secs(10), || {
        spans(&trace_a).len() == 1 && spans("4bf92f3577b34da6a3ce929d0e0e4736").len() == 1
    });
    let a = &spans(&trace_a)[0];
    assert_eq!((a.span_id.as_str(), a.parent.as_str()), (parent_a.as_str(), ""), "{a:?}");
    assert_eq!((a.service.as_str(), a.name.as_str(), a.kind), ("shop", "GET", 2), "a server span of service shop: {a:?}");
    assert_eq!(a.attr("url.path"), Some("/headers"));
    assert_eq!(a.attr("url.query"), Some("x=1"));
    assert_eq!(a.attr("http.response.status_code"), Some("200"));
    assert_eq!(a.attr("server.address"), Some("shop.test"));
    assert_eq!(a.attr("user_agent.original"), Some("trace-test"));
    assert!(a.attr("sitecar.upstream.duration").is_some(), "{a:?}");
    let b = &spans(&trace_b)[0];
    assert_eq!((b.span_id.as_str(), b.parent.as_str()), (parent_b.as_str(), "00f067aa0ba902b7"), "{b:?}");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(spans("5bf92f3577b34da6a3ce929d0e0e4736").is_empty(), "an unsampled request is not exported");

    // A stuck collector: requests go on at full speed, the export fails after its timeout.
    stuck.store(true, Ordering::SeqCst);
    let started = Instant::now();
    for _ in 0..50 {
        assert_eq!(http(front, "GET", "/").0, 200);
    }
    assert!(started.elapsed() < Duration::from_secs(5), "50 requests took {:?} with a stuck collector", started.elapsed());
    wait_until("a failed export counted", Duration::from_secs(10), || {
        sample(&http(admin, "GET", "/metrics").1, r#"sitecar_trace_spans_total{result="failed"}"#).unwrap_or(0.0) >= 1.0
    });
    stuck.store(false, Ordering::SeqCst);
    let metrics = http(admin, "GET", "/metrics").1;
    assert!(sample(&metrics, r#"sitecar_trace_spans_total{result="exported"}"#).unwrap_or(0.0) >= 2.0, "{metrics}");

    // The last spans are sent at shutdown: a request just before SIGTERM still arrives.
    let (_, body) = http(front, "GET", "/headers");
    let (trace_last, _, _) = main_saw(&body);
    std::process::Command::new("kill").args(["-TERM", &sitecar.id().to_string()]).status().unwrap();
    assert!(sitecar.wait().unwrap().success());
    wait_until("the last span", Duration::from_secs(5), || spans(&trace_last).len() == 1);
}
