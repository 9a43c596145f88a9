//! `/healthz` (kube-proxy serves it on 10256) and `/metrics` (Prometheus
//! text format; upstream serves it on 10249). One handler answers both
//! paths; bind it once or twice as you like.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::proxier::Proxier;

fn respond(proxier: &Proxier, path: &str) -> Response<Full<Bytes>> {
    let (status, ctype, body) = match path {
        "/healthz" | "/livez" => {
            let (ok, body) = proxier.healthz();
            let status = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
            (status, "application/json", body)
        }
        "/metrics" => (StatusCode::OK, "application/openmetrics-text; version=1.0.0; charset=utf-8", proxier.metrics.encode()),
        _ => (StatusCode::NOT_FOUND, "text/plain", "404 page not found\n".to_string()),
    };
    Response::builder()
        .status(status)
        .header("content-type", ctype)
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts")
}

/// Serve until the task is dropped.
pub async fn serve(listener: TcpListener, proxier: Arc<Proxier>) -> anyhow::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        let proxier = proxier.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let resp = respond(&proxier, req.uri().path());
                async move { Ok::<_, Infallible>(resp) }
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}
