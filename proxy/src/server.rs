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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::conntrack::{Cleanup, Conntrack};
    use crate::iptables::{Iptables, RestoreError};
    use crate::proxier::ProxierConfig;

    /// No kernel: this test never syncs (the informers never report synced).
    struct Nothing;
    impl Iptables for Nothing {
        fn restore(&self, _: &str) -> Result<(), RestoreError> {
            unreachable!("no sync in this test")
        }
        fn save(&self, _: &str) -> anyhow::Result<String> {
            unreachable!("no sync in this test")
        }
    }
    impl Conntrack for Nothing {
        fn clear(&self, _: &Cleanup) -> anyhow::Result<u64> {
            unreachable!("no sync in this test")
        }
    }

    async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        let code = out.split(' ').nth(1).unwrap().parse().unwrap();
        (code, out.split_once("\r\n\r\n").unwrap().1.to_string())
    }

    /// kube-proxy's healthz: a change the proxy has not applied within the
    /// health timeout makes the node unhealthy (503), so a load balancer
    /// health-checking 10256 stops sending it NodePort traffic.
    #[tokio::test]
    async fn healthz_fails_when_a_change_waits_past_the_timeout() {
        let cfg = ProxierConfig { health_timeout: Duration::from_millis(100), ..Default::default() };
        let p = Proxier::new(cfg, Arc::new(Nothing), Arc::new(Nothing));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(serve(listener, p.clone()));

        assert_eq!(get(addr, "/healthz").await.0, 200, "nothing pending");
        let svc = serde_json::from_value(serde_json::json!({"metadata":{"namespace":"a","name":"s"},
            "spec":{"clusterIP":"10.96.0.1","ports":[{"port":80}]}}))
        .unwrap();
        p.on_service_update(&svc);
        assert_eq!(get(addr, "/healthz").await.0, 200, "pending, within the timeout");
        tokio::time::sleep(Duration::from_millis(250)).await;
        let (code, body) = get(addr, "/healthz").await;
        assert_eq!(code, 503, "{body}");
        assert!(body.contains("\"nodeHealthy\":false"), "{body}");
        let (code, metrics) = get(addr, "/metrics").await;
        assert_eq!(code, 200);
        assert!(metrics.contains("kubeproxy_sync_proxy_rules_duration_seconds_count 0"), "{metrics}");
        server.abort();
    }
}
