//! Probes over localhost, built on pingora-load-balancing's `TcpHealthCheck` and
//! `HttpHealthCheck`; the scheduling around them (fast startup probing, periods, jitter,
//! thresholds) is ours, in the runner and the core.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use pingora_error::{Error as PError, ErrorType};
use pingora_http::RequestHeader;
use pingora_load_balancing::health_check::{HealthCheck, HttpHealthCheck, TcpHealthCheck};
use pingora_load_balancing::Backend;

/// Which responses an HTTP probe accepts.
#[derive(Debug, Clone)]
pub enum Accept {
    /// Any HTTP response at all (App Service's warmup with no `WEBSITE_WARMUP_STATUSES`).
    Any,
    /// One of these codes (`WEBSITE_WARMUP_STATUSES`).
    Codes(Vec<u16>),
    /// 200-399, as Kubernetes' httpGet probes.
    Success,
}

/// One kind of check against one address.
pub struct Probe {
    check: Arc<dyn HealthCheck + Send + Sync>,
    backend: Option<Backend>,
    timeout: Duration,
    /// Where its sockets are made: a runtime inside the stack's network namespace, or here.
    place: Option<tokio::runtime::Handle>,
}

impl std::fmt::Debug for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Probe({:?})", self.backend.as_ref().map(|b| &b.addr))
    }
}

impl Probe {
    pub fn tcp(addr: SocketAddr, timeout: Duration) -> Self {
        let mut check = TcpHealthCheck::new();
        check.peer_template.options.connection_timeout = Some(timeout);
        let check: Arc<TcpHealthCheck> = Arc::from(check);
        Self { check, backend: backend(addr), timeout, place: None }
    }

    pub fn http(addr: SocketAddr, path: &str, accept: Accept, timeout: Duration) -> Self {
        let mut check = HttpHealthCheck::new("localhost", false);
        if let Ok(mut req) = RequestHeader::build("GET", path.as_bytes(), None) {
            let _ = req.append_header("Host", "localhost");
            let _ = req.append_header("User-Agent", "sitecar-probe");
            check.req = req;
        }
        check.peer_template.options.connection_timeout = Some(timeout);
        check.peer_template.options.read_timeout = Some(timeout);
        check.peer_template.options.total_connection_timeout = Some(timeout);
        check.validator = Some(Box::new(move |resp| {
            let code = resp.status.as_u16();
            let ok = match &accept {
                Accept::Any => true,
                Accept::Codes(codes) => codes.contains(&code),
                Accept::Success => (200..400).contains(&code),
            };
            if ok {
                Ok(())
            } else {
                PError::e_explain(ErrorType::CustomCode("unexpected status", code), "probe")
            }
        }));
        Self { check: Arc::new(check), backend: backend(addr), timeout, place: None }
    }

    /// The same probe, made from inside a network namespace (see [`crate::runtime::Namespace`]).
    pub fn inside(mut self, namespace: Option<tokio::runtime::Handle>) -> Self {
        self.place = namespace;
        self
    }

    /// One check, bounded by the timeout whatever the check does.
    pub async fn check(&self) -> bool {
        let Some(backend) = self.backend.clone() else { return false };
        let bound = self.timeout + Duration::from_millis(100);
        match &self.place {
            None => matches!(tokio::time::timeout(bound, self.check.check(&backend)).await, Ok(Ok(()))),
            Some(place) => {
                let check = self.check.clone();
                let run = place.spawn(async move { matches!(tokio::time::timeout(bound, check.check(&backend)).await, Ok(Ok(()))) });
                matches!(run.await, Ok(true))
            }
        }
    }
}

/// A formatted socket address always parses; `None` would only make every check fail.
fn backend(addr: SocketAddr) -> Option<Backend> {
    Backend::new(&addr.to_string()).ok()
}
