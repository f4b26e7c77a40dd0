//! Metrics of the front door in one explicit Prometheus registry, named after OpenTelemetry's
//! HTTP conventions. A labelled series exists once it is first observed (an idle `/metrics` is not
//! hundreds of zero lines); its handle is resolved then and kept, so a request costs a few atomic
//! operations and no lookups.

use std::sync::OnceLock;
use std::time::Duration;

use http::{Method, StatusCode};
use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

use crate::error::ProxyError;

/// OpenTelemetry's default boundaries for `http.server.request.duration`.
const DURATION_BUCKETS: [f64; 14] = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0];
const SIZE_BUCKETS: [f64; 8] = [0.0, 100.0, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8];
const METHODS: [&str; 9] = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "_OTHER"];
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// The front door's metrics; cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct HttpMetrics {
    duration_vec: HistogramVec,
    /// `[method][status class]`, each resolved at its first request.
    duration: Vec<Vec<OnceLock<Histogram>>>,
    pub active: IntGauge,
    request_size: Histogram,
    response_size: Histogram,
    errors_vec: IntCounterVec,
    errors: Vec<OnceLock<IntCounter>>,
    /// Requests that had to wait for main to become ready.
    pub held: IntCounter,
    retries: IntCounterVec,
    /// Requests sent to main a second time: a new connection refused while main restarted (sent
    /// again once main was ready), and an idempotent bodiless request whose connection main
    /// dropped before answering.
    retried: [OnceLock<IntCounter>; 2],
    /// The last failed requests, for `/status`: written only on the error path.
    recent_errors: std::sync::Mutex<std::collections::VecDeque<serde_json::Value>>,
    /// The last five minutes, read every 5 s off the request path ([`HttpMetrics::record_history`]).
    pub history: crate::history::History,
}

/// Failed requests kept for `/status`.
const RECENT_ERRORS: usize = 20;

impl HttpMetrics {
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let duration = HistogramVec::new(
            HistogramOpts::new("http_server_request_duration_seconds", "Time until the response head, by method and status class")
                .buckets(DURATION_BUCKETS.to_vec()),
            &["http_request_method", "http_response_status_class"],
        )?;
        let active = IntGauge::new("http_server_active_requests", "Requests in flight")?;
        let request_size = Histogram::with_opts(
            HistogramOpts::new("http_server_request_body_size_bytes", "Request body sizes (from Content-Length)")
                .buckets(SIZE_BUCKETS.to_vec()),
        )?;
        let response_size = Histogram::with_opts(
            HistogramOpts::new("http_server_response_body_size_bytes", "Response body sizes (from Content-Length)")
                .buckets(SIZE_BUCKETS.to_vec()),
        )?;
        let errors = IntCounterVec::new(Opts::new("sitecar_upstream_errors_total", "Requests main did not answer, by cause"), &["kind"])?;
        let held = IntCounter::new("sitecar_proxy_held_requests_total", "Requests that waited for main to become ready")?;
        let retries =
            IntCounterVec::new(Opts::new("sitecar_upstream_retries_total", "Requests sent to main a second time, by why"), &["reason"])?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(active.clone()))?;
        registry.register(Box::new(request_size.clone()))?;
        registry.register(Box::new(response_size.clone()))?;
        registry.register(Box::new(errors.clone()))?;
        registry.register(Box::new(held.clone()))?;
        registry.register(Box::new(retries.clone()))?;
        Ok(Self {
            duration_vec: duration,
            duration: METHODS.iter().map(|_| CLASSES.iter().map(|_| OnceLock::new()).collect()).collect(),
            active,
            request_size,
            response_size,
            errors_vec: errors,
            errors: ProxyError::KINDS.iter().map(|_| OnceLock::new()).collect(),
            held,
            retries,
            retried: Default::default(),
            recent_errors: Default::default(),
            history: Default::default(),
        })
    }

    /// A request sent to main again after main refused a new connection while restarting.
    pub fn retried_refused(&self) {
        self.retried[0].get_or_init(|| self.retries.with_label_values(&["refused"])).inc();
    }

    /// Requests sent again so far: (after a refused connection, after a dropped one).
    pub fn retries(&self) -> (u64, u64) {
        let n = |c: &OnceLock<IntCounter>| c.get().map_or(0, IntCounter::get);
        (n(&self.retried[0]), n(&self.retried[1]))
    }

    /// An idempotent bodiless request sent again after main dropped its connection unanswered.
    pub fn retried_dropped(&self) {
        self.retried[1].get_or_init(|| self.retries.with_label_values(&["dropped"])).inc();
    }

    pub fn observe(&self, method: &Method, status: StatusCode, took: Duration, request_bytes: Option<u64>, response_bytes: Option<u64>) {
        let m = match *method {
            Method::GET => 0,
            Method::HEAD => 1,
            Method::POST => 2,
            Method::PUT => 3,
            Method::DELETE => 4,
            Method::PATCH => 5,
            Method::OPTIONS => 6,
            Method::CONNECT => 7,
            _ => 8,
        };
        let c = (status.as_u16() / 100).clamp(1, 5) as usize - 1;
        if let Some(cell) = self.duration.get(m).and_then(|row| row.get(c)) {
            cell.get_or_init(|| self.duration_vec.with_label_values(&[METHODS[m], CLASSES[c]])).observe(took.as_secs_f64());
        }
        if let Some(b) = request_bytes {
            self.request_size.observe(b as f64);
        }
        if let Some(b) = response_bytes {
            self.response_size.observe(b as f64);
        }
    }

    /// Totals for a status page: requests, 5xx answers, and cumulative latency buckets
    /// `[upper bound in seconds, requests at or below it]` over every method and status.
    pub fn summary(&self) -> serde_json::Value {
        use prometheus::core::Metric;
        let mut requests = 0;
        let mut server_errors = 0;
        let mut buckets: Vec<(f64, u64)> = DURATION_BUCKETS.iter().map(|b| (*b, 0)).collect();
        for row in &self.duration {
            for (class, h) in row.iter().enumerate().filter_map(|(c, cell)| Some((c, cell.get()?))) {
                let n = h.get_sample_count();
                requests += n;
                if class == 4 {
                    server_errors += n;
                }
                if n == 0 {
                    continue;
                }
                for (i, b) in h.metric().get_histogram().get_bucket().iter().enumerate() {
                    if let Some(slot) = buckets.get_mut(i) {
                        slot.1 += b.cumulative_count();
                    }
                }
            }
        }
        serde_json::json!({"requests": requests, "server_errors": server_errors, "active": self.active.get(), "latency_buckets": buckets})
    }

    /// Reads the totals into [`HttpMetrics::history`] every 5 s until `stop`.
    pub async fn record_history(self: std::sync::Arc<Self>, stop: tokio_util::sync::CancellationToken) {
        let mut every = tokio::time::interval(crate::history::BUCKET);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = every.tick() => {
                    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
                    self.history.tick(&self.summary(), now);
                }
            }
        }
    }

    /// Counts a failed request and keeps it, with its ids, among the recent errors.
    pub fn error(&self, e: &ProxyError, request_id: &str, trace_id: &str, target: &str) {
        // sitecar_upstream_errors_total counts requests main did not answer (main's failures and
        // sitecar's own shortages, each by its cause), not a client's bad requests.
        let index = ProxyError::KINDS.iter().position(|k| *k == e.kind()).filter(|_| e.blame() != crate::error::Blame::Client);
        if let Some(i) = index {
            self.errors[i].get_or_init(|| self.errors_vec.with_label_values(&[ProxyError::KINDS[i]])).inc();
        }
        let at_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        if let Ok(mut recent) = self.recent_errors.lock() {
            if recent.len() == RECENT_ERRORS {
                recent.pop_front();
            }
            recent.push_back(serde_json::json!({
                "at_ms": at_ms, "status": e.status().as_u16(), "kind": e.kind(), "error": e.to_string(),
                "target": target, "request_id": request_id, "trace_id": trace_id,
            }));
        }
    }

    /// The last failed requests, newest last.
    pub fn recent_errors(&self) -> Vec<serde_json::Value> {
        self.recent_errors.lock().map(|r| r.iter().cloned().collect()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_and_labels() {
        let registry = Registry::new();
        let m = HttpMetrics::new(&registry).unwrap();
        m.observe(&Method::GET, StatusCode::OK, Duration::from_millis(3), None, Some(10));
        m.observe(&Method::from_bytes(b"PROPFIND").unwrap(), StatusCode::BAD_GATEWAY, Duration::from_millis(3), Some(5), None);
        m.error(&ProxyError::Refused(std::io::Error::other("x")), "rid", "tid", "/a");
        let text = prometheus::TextEncoder::new().encode_to_string(&registry.gather()).unwrap();
        assert!(!text.contains(r#"http_request_method="POST""#), "no series before its first request: {text}");
        assert!(!text.contains(r#"kind="timeout""#), "{text}");
        assert!(
            text.contains(r#"http_server_request_duration_seconds_count{http_request_method="GET",http_response_status_class="2xx"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"http_server_request_duration_seconds_count{http_request_method="_OTHER",http_response_status_class="5xx"} 1"#)
        );
        assert!(text.contains(r#"sitecar_upstream_errors_total{kind="refused"} 1"#));
        assert!(text.contains("http_server_response_body_size_bytes_count 1"));
        let s = m.summary();
        assert_eq!(s["requests"], 2);
        assert_eq!(s["server_errors"], 1);
        assert_eq!(s["latency_buckets"][0], serde_json::json!([0.005, 2]));
        let recent = m.recent_errors();
        assert_eq!(recent.len(), 1);
        assert_eq!(recent[0]["trace_id"], "tid");
        assert_eq!(recent[0]["status"], 502);
    }

    use crate::history::History;

    #[test]
    fn buckets_hold_what_happened_between_readings_and_the_last_minute_sums_them() {
        let registry = prometheus::Registry::new();
        let m = HttpMetrics::new(&registry).unwrap();
        let h = History::default();
        h.tick(&m.summary(), 0);
        for _ in 0..9 {
            m.observe(&Method::GET, StatusCode::OK, Duration::from_millis(3), None, None);
        }
        m.observe(&Method::GET, StatusCode::BAD_GATEWAY, Duration::from_millis(700), None, None);
        h.tick(&m.summary(), 5_000);
        h.tick(&m.summary(), 10_000);
        let v = h.json();
        let b = v["buckets"].as_array().unwrap();
        assert_eq!(b.len(), 2);
        assert_eq!((b[0]["requests"].as_u64(), b[0]["server_errors"].as_u64()), (Some(10), Some(1)));
        assert_eq!(b[0]["p50"], 0.005);
        assert_eq!(b[0]["p99"], 0.75);
        assert_eq!(b[1]["requests"], 0);
        assert!(b[1]["p50"].is_null());
        assert_eq!(v["last_minute"]["requests"], 10);
        assert_eq!(v["last_minute"]["server_errors"], 1);
        assert_eq!(v["last_minute"]["seconds"], 10);
        for i in 0..70 {
            h.tick(&m.summary(), 15_000 + i * 5_000);
        }
        assert_eq!(h.json()["buckets"].as_array().unwrap().len(), 60, "five minutes kept");
    }
}
