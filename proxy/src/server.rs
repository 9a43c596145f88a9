//! `/healthz` and `/livez` (kube-proxy serves them on 10256) and `/metrics`
//! (Prometheus text format; upstream serves it on 10249). One server
//! answers all three paths; bind it once or twice as you like.

use std::sync::Arc;

use machinery::health_server::{Health, HealthServer};
use tokio::net::TcpListener;

use crate::proxier::Proxier;

/// kube-proxy's health: JSON (`lastUpdated`, `currentTime`, `nodeHealthy`),
/// 503 while a change waits longer than the health timeout.
pub fn health_server(proxier: Arc<Proxier>) -> HealthServer {
    let p = proxier.clone();
    let healthz = move || {
        let (ok, body) = p.healthz();
        Health::json(ok, body)
    };
    HealthServer::new().check("/healthz", healthz.clone()).check("/livez", healthz).metrics(move || proxier.metrics.encode())
}

/// Serve until the task is dropped.
pub async fn serve(listener: TcpListener, proxier: Arc<Proxier>) {
    Arc::new(health_server(proxier)).serve(listener).await
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
