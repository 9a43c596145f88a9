//! The health and metrics endpoint (upstream serves it on `--secure-port`
//! 10259 over HTTPS; rkube serves plain HTTP):
//!
//! * `/healthz`, `/livez` — `ok` while the process runs;
//! * `/readyz` — `ok` once the informers have synced (503 before);
//! * `/metrics` — Prometheus text format, see [`crate::metrics`].

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

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

fn respond(status: &Status, path: &str) -> Response<Full<Bytes>> {
    let (code, ctype, body) = match path {
        "/healthz" | "/livez" => (StatusCode::OK, "text/plain; charset=utf-8", "ok".to_string()),
        "/readyz" => {
            if status.ready.load(Ordering::Relaxed) {
                (StatusCode::OK, "text/plain; charset=utf-8", "ok".to_string())
            } else {
                (StatusCode::SERVICE_UNAVAILABLE, "text/plain; charset=utf-8", "informers not synced\n".to_string())
            }
        }
        "/metrics" => {
            (status.refresh)();
            (StatusCode::OK, "application/openmetrics-text; version=1.0.0; charset=utf-8", status.metrics.encode())
        }
        _ => (StatusCode::NOT_FOUND, "text/plain", "404 page not found\n".to_string()),
    };
    Response::builder()
        .status(code)
        .header("content-type", ctype)
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts")
}

/// Serve on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, status: Arc<Status>) -> anyhow::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        let status = status.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let resp = respond(&status, req.uri().path());
                async move { Ok::<_, Infallible>(resp) }
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let st = Status { metrics: Arc::new(Metrics::new("default-scheduler")), ready: AtomicBool::new(false), refresh: Box::new(|| {}) };
        let check = |st: &Status, path: &str, expected: u16| assert_eq!(respond(st, path).status().as_u16(), expected, "{path}");
        check(&st, "/healthz", 200);
        check(&st, "/readyz", 503);
        check(&st, "/metrics", 200);
        check(&st, "/nope", 404);
        st.ready.store(true, Ordering::Relaxed);
        check(&st, "/readyz", 200);
    }
}
