//! `sitecar proxy`: the front door alone, in front of an app someone else runs (ready by
//! definition), with the cache and, when asked, an admin API of its own (metrics, status, purge).

use std::net::SocketAddr;
use std::sync::Arc;

use sitecar_config::standalone::Standalone;
use tokio_util::sync::CancellationToken;

use crate::admin::{Admin, ProxyOnly};
use crate::cache::Cache;
use crate::front::{AtEdge, FrontDoor, Listeners, Recording, Sink};
use crate::metrics::HttpMetrics;

/// Serves `listeners` until `stop`, forwarding to `to`; access lines go to `access`. `admin`:
/// where the admin API listens, if anywhere. The error says what could not be set up.
pub async fn run(
    settings: Standalone,
    to: SocketAddr,
    admin: Option<&str>,
    listeners: Listeners,
    access: Sink,
    stop: CancellationToken,
) -> Result<(), String> {
    // Metrics (the cache's among them) live in a registry only when the admin API serves them.
    let registry = admin.map(|_| prometheus::Registry::new());
    let cache =
        settings.cache.enabled.then(|| Cache::new(&settings.cache, registry.as_ref())).transpose().map_err(|e| format!("cache: {e}"))?;
    let mut metrics = None;
    if let (Some(addr), Some(registry)) = (admin, &registry) {
        let http = Arc::new(HttpMetrics::new(registry).map_err(|e| format!("metrics: {e}"))?);
        let _ = registry.register(Box::new(prometheus::process_collector::ProcessCollector::for_self()));
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| format!("cannot listen on {addr} for the admin API: {e}"))?;
        let view = ProxyOnly { listeners: listeners.urls(), upstream: to.to_string() };
        let admin = Arc::new(Admin {
            registry: registry.clone(),
            token: None,
            stack: Arc::new(view),
            http: Some(http.clone()),
            cache: cache.clone(),
        });
        tracing::info!(%addr, "admin API listening");
        tokio::spawn(crate::admin::serve(listener, admin, stop.clone()));
        metrics = Some(http);
    }
    let (_ready_tx, ready) = tokio::sync::watch::channel(true);
    let at_edge = AtEdge { cache, offload: settings.offload };
    let recording = Recording { access: Some(access), metrics, tracing: settings.tracing, registry };
    FrontDoor::new(settings.proxy, at_edge, to, ready, recording).run(listeners, stop, None).await;
    Ok(())
}
