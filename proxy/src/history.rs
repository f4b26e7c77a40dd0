//! The front door's recent traffic, kept in sitecar so a status page opened now shows the last
//! five minutes: a ring of 5-second buckets (requests, 5xx answers, latency distribution), each
//! the difference between two readings of the metrics' totals.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

/// One bucket's width.
pub const BUCKET: Duration = Duration::from_secs(5);
/// Buckets kept: five minutes.
const KEPT: usize = 60;

#[derive(Debug, Clone)]
struct Bucket {
    /// When the bucket ended, ms since the epoch.
    end_ms: u64,
    requests: u64,
    server_errors: u64,
    /// Requests at or below each latency boundary (cumulative, as the histogram has them).
    latency: Vec<(f64, u64)>,
}

/// The totals at the last reading, and the buckets since.
#[derive(Debug, Default)]
pub struct History {
    inner: Mutex<(Option<Totals>, VecDeque<Bucket>)>,
}

#[derive(Debug, Clone)]
struct Totals {
    requests: u64,
    server_errors: u64,
    latency: Vec<(f64, u64)>,
}

fn totals(s: &serde_json::Value) -> Totals {
    Totals {
        requests: s["requests"].as_u64().unwrap_or(0),
        server_errors: s["server_errors"].as_u64().unwrap_or(0),
        latency: s["latency_buckets"]
            .as_array()
            .map(|a| a.iter().map(|b| (b[0].as_f64().unwrap_or(0.0), b[1].as_u64().unwrap_or(0))).collect())
            .unwrap_or_default(),
    }
}

/// The latency at quantile `q` of a cumulative distribution: the first boundary holding `q` of
/// the requests (None without requests; beyond the last boundary is `f64::INFINITY`).
fn quantile(latency: &[(f64, u64)], requests: u64, q: f64) -> Option<f64> {
    if requests == 0 {
        return None;
    }
    let want = (q * requests as f64).ceil() as u64;
    Some(latency.iter().find(|(_, n)| *n >= want).map_or(f64::INFINITY, |(le, _)| *le))
}

fn json_seconds(s: Option<f64>) -> serde_json::Value {
    match s {
        Some(x) if x.is_finite() => serde_json::json!(x),
        Some(_) => serde_json::json!("+Inf"),
        None => serde_json::Value::Null,
    }
}

impl History {
    /// Reads the metrics' totals and closes a bucket (the first reading only sets the start).
    pub fn tick(&self, summary: &serde_json::Value, now_ms: u64) {
        let now = totals(summary);
        let Ok(mut inner) = self.inner.lock() else { return };
        let (last, ring) = &mut *inner;
        if let Some(prev) = last.as_ref() {
            let latency = now.latency.iter().zip(&prev.latency).map(|((le, n), (_, p))| (*le, n.saturating_sub(*p))).collect();
            if ring.len() == KEPT {
                ring.pop_front();
            }
            ring.push_back(Bucket {
                end_ms: now_ms,
                requests: now.requests.saturating_sub(prev.requests),
                server_errors: now.server_errors.saturating_sub(prev.server_errors),
                latency,
            });
        }
        *last = Some(now);
    }

    /// The buckets, oldest first, and the last minute summed: `{bucket_seconds, buckets:
    /// [{end_ms, requests, server_errors, p50, p99}], last_minute: {seconds, requests,
    /// server_errors, p50, p99}}` (latencies in seconds).
    pub fn json(&self) -> serde_json::Value {
        let Ok(inner) = self.inner.lock() else { return serde_json::Value::Null };
        let ring = &inner.1;
        let buckets: Vec<serde_json::Value> = ring
            .iter()
            .map(|b| {
                serde_json::json!({
                    "end_ms": b.end_ms, "requests": b.requests, "server_errors": b.server_errors,
                    "p50": json_seconds(quantile(&b.latency, b.requests, 0.5)),
                    "p99": json_seconds(quantile(&b.latency, b.requests, 0.99)),
                })
            })
            .collect();
        let minute: Vec<&Bucket> = ring.iter().rev().take((60 / BUCKET.as_secs()) as usize).collect();
        let requests: u64 = minute.iter().map(|b| b.requests).sum();
        let server_errors: u64 = minute.iter().map(|b| b.server_errors).sum();
        let mut latency: Vec<(f64, u64)> = minute.first().map(|b| b.latency.iter().map(|(le, _)| (*le, 0)).collect()).unwrap_or_default();
        for b in &minute {
            for (slot, (_, n)) in latency.iter_mut().zip(&b.latency) {
                slot.1 += n;
            }
        }
        serde_json::json!({
            "bucket_seconds": BUCKET.as_secs(),
            "buckets": buckets,
            "last_minute": {
                "seconds": minute.len() as u64 * BUCKET.as_secs(),
                "requests": requests,
                "server_errors": server_errors,
                "p50": json_seconds(quantile(&latency, requests, 0.5)),
                "p99": json_seconds(quantile(&latency, requests, 0.99)),
            },
        })
    }
}
