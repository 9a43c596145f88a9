//! The health and metrics endpoint (upstream serves it on `--secure-port`
//! 10259 over HTTPS; rkube serves plain HTTP):
//!
//! * `/healthz`, `/livez` — `ok` while the process runs;
//! * `/readyz` — `ok` once the informers have synced (503 before);
//! * `/metrics` — Prometheus text format, see [`crate::metrics`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use machinery::health_server::{Health, HealthServer};

use crate::metrics::Metrics;

/// What the endpoint reports on.
pub struct Status {
    pub metrics: Arc<Metrics>,
    /// Informers synced.
    pub ready: AtomicBool,
    /// Called before `/metrics` is encoded, to refresh gauges read on demand
    /// (queue lengths).
    pub refresh: Box<dyn Fn() + Send + Sync>,
}

/// The scheduler's health and metrics paths, reporting on `status`.
pub fn health_server(status: Arc<Status>) -> HealthServer {
    let st = status.clone();
    let readyz = move || if st.ready.load(Ordering::Relaxed) { Health::ok() } else { Health::unhealthy("informers not synced\n") };
    HealthServer::new().check("/healthz", Health::ok).check("/livez", Health::ok).check("/readyz", readyz).metrics(move || {
        (status.refresh)();
        status.metrics.encode()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let st = Arc::new(Status { metrics: Arc::new(Metrics::new("default-scheduler")), ready: AtomicBool::new(false), refresh: Box::new(|| {}) });
        let server = health_server(st.clone());
        let check = |path: &str, expected: u16| assert_eq!(server.respond(path).status().as_u16(), expected, "{path}");
        check("/healthz", 200);
        check("/readyz", 503);
        check("/metrics", 200);
        check("/nope", 404);
        st.ready.store(true, Ordering::Relaxed);
        check("/readyz", 200);
    }
}
