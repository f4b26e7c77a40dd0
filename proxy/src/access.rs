//! The access log: one line per request, in common log format or JSON. The request path only
//! hands a record to a bounded channel; a writer task formats and writes, so a slow log never
//! slows a response (when the channel is full, the record is dropped and counted).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// One finished request.
#[derive(Debug, Clone)]
pub struct Record {
    pub at: SystemTime,
    pub client: std::net::IpAddr,
    pub method: http::Method,
    pub target: String,
    pub version: http::Version,
    /// `http` or `https`.
    pub scheme: &'static str,
    /// The request's host, when the edge recorded a span (only spans need it).
    pub host: Option<String>,
    pub status: u16,
    /// Response body bytes when known from Content-Length.
    pub bytes: Option<u64>,
    pub duration: Duration,
    /// Time until main's response head, when main was asked.
    pub upstream: Option<Duration>,
    pub request_id: String,
    pub trace_id: String,
    /// The edge's own span, when it records one.
    pub span: Option<crate::headers::EdgeSpan>,
    pub user_agent: Option<String>,
    pub referer: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Common,
    Json,
}

/// Takes each formatted access-log line.
pub type LineSink = Box<dyn FnMut(&str) + Send>;
/// Takes each finished request's record (the span exporter).
pub type RecordSink = Box<dyn FnMut(&Record) + Send>;

/// Where finished requests go: formatted lines to a sink, and whatever else wants each record.
pub struct Consumers {
    pub lines: Option<(Format, LineSink)>,
    pub records: Option<RecordSink>,
}

/// Handle for the request path.
#[derive(Debug, Clone)]
pub struct AccessLog {
    tx: mpsc::Sender<Record>,
    pub dropped: Arc<AtomicU64>,
}

/// Ends the writer task once the front door has drained.
#[derive(Debug)]
pub struct Finish {
    closing: CancellationToken,
    task: JoinHandle<()>,
}

impl Finish {
    /// Writes what is queued, drops the consumers (so the span exporter sends its last batch),
    /// and waits for the writer, at most `within`.
    pub async fn finish(self, within: Duration) {
        self.closing.cancel();
        let _ = tokio::time::timeout(within, self.task).await;
    }
}

impl AccessLog {
    /// Starts the writer task; `sink` receives each formatted line.
    pub fn spawn(format: Format, sink: impl FnMut(&str) + Send + 'static) -> Self {
        Self::start(Consumers { lines: Some((format, Box::new(sink))), records: None }).0
    }

    /// Starts the writer task for `consumers`.
    pub fn start(mut consumers: Consumers) -> (Self, Finish) {
        let (tx, mut rx) = mpsc::channel::<Record>(8192);
        let closing = CancellationToken::new();
        let stop = closing.clone();
        let task = tokio::spawn(async move {
            let mut take = |r: Record| {
                if let Some((format, sink)) = &mut consumers.lines {
                    let line = match format {
                        Format::Common => common(&r),
                        Format::Json => json(&r),
                    };
                    sink(&line);
                }
                if let Some(f) = &mut consumers.records {
                    f(&r);
                }
            };
            loop {
                tokio::select! {
                    r = rx.recv() => match r {
                        Some(r) => take(r),
                        None => break,
                    },
                    _ = stop.cancelled() => {
                        while let Ok(r) = rx.try_recv() {
                            take(r);
                        }
                        break;
                    }
                }
            }
        });
        (Self { tx, dropped: Arc::default() }, Finish { closing, task })
    }

    pub fn log(&self, record: Record) {
        if self.tx.try_send(record).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn version(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2.0",
        _ => "HTTP/1.1",
    }
}

/// `ip - - [22/Nov/2026:01:02:03 +0000] "GET /x HTTP/1.1" 200 123 "ref" "ua" 0.004 0.003 <rid> <trace>`
pub fn common(r: &Record) -> String {
    format!(
        "{} - - [{}] \"{} {} {}\" {} {} \"{}\" \"{}\" {:.3} {} {} {}",
        r.client,
        clf_time(r.at),
        r.method,
        r.target.escape_debug(),
        version(r.version),
        r.status,
        r.bytes.map_or("-".to_string(), |b| b.to_string()),
        r.referer.as_deref().unwrap_or("-").escape_debug(),
        r.user_agent.as_deref().unwrap_or("-").escape_debug(),
        r.duration.as_secs_f64(),
        r.upstream.map_or("-".to_string(), |u| format!("{:.3}", u.as_secs_f64())),
        r.request_id,
        r.trace_id
    )
}

/// `22/Nov/2026:01:02:03 +0000`, from the RFC 3339 form.
fn clf_time(t: SystemTime) -> String {
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let iso = humantime::format_rfc3339_seconds(t).to_string(); // 2026-11-22T01:02:03Z
    let month = iso[5..7].parse::<usize>().unwrap_or(1).clamp(1, 12);
    format!("{}/{}/{}:{} +0000", &iso[8..10], MONTHS[month - 1], &iso[0..4], &iso[11..19])
}

pub fn json(r: &Record) -> String {
    let ms = r.at.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    serde_json::json!({
        "time_ms": ms,
        "client": r.client.to_string(),
        "method": r.method.as_str(),
        "target": r.target,
        "protocol": version(r.version),
        "status": r.status,
        "bytes": r.bytes,
        "duration_s": r.duration.as_secs_f64(),
        "upstream_s": r.upstream.map(|u| u.as_secs_f64()),
        "request_id": r.request_id,
        "trace_id": r.trace_id,
        "user_agent": r.user_agent,
        "referer": r.referer,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_log_line() {
        let r = Record {
            at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_392_123),
            client: "203.0.113.7".parse().unwrap(),
            method: http::Method::GET,
            target: "/a?b=\"c\"".into(),
            version: http::Version::HTTP_11,
            scheme: "http",
            host: None,
            status: 200,
            bytes: Some(12),
            duration: Duration::from_millis(4),
            upstream: Some(Duration::from_millis(3)),
            request_id: "rid".into(),
            trace_id: "tid".into(),
            span: None,
            user_agent: Some("curl/8".into()),
            referer: None,
        };
        assert_eq!(
            common(&r),
            "203.0.113.7 - - [23/Nov/2026:00:02:03 +0000] \"GET /a?b=\\\"c\\\" HTTP/1.1\" 200 12 \"-\" \"curl/8\" 0.004 0.003 rid tid"
        );
        let v: serde_json::Value = serde_json::from_str(&json(&r)).unwrap();
        assert_eq!(v["status"], 200);
        assert_eq!(v["trace_id"], "tid");
    }
}
