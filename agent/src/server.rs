//! The agent's HTTP endpoints: `/healthz` (on `--healthz-port`), and on
//! `--port` the node API the apiserver proxies to: container logs
//! (`/containerLogs/<ns>/<pod>/<container>`), and the streaming endpoints
//! exec, attach and port-forward (`/exec/...`, `/attach/...`,
//! `/portForward/...`, in `streaming.rs`). What the handlers share — the
//! pods and the runtime, finding a pod's containers — is [`crate::node_api`].

use std::convert::Infallible;

use bytes::Bytes;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use machinery::health_server::{Health, HealthServer};

/// The kubelet's healthz port (10248): `GET /healthz` → `ok`, nothing else.
pub fn healthz_server() -> HealthServer {
    HealthServer::new().check("/healthz", Health::ok)
}

use std::sync::Arc;

use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use proto::runtime::v1 as cri;

use crate::logs::{self, LogOptions};
use crate::node_api::{text, Body, NodeApi};

/// Serves the node API on `listener` forever.
pub async fn serve_node_api(listener: tokio::net::TcpListener, api: NodeApi) {
    let api = Arc::new(api);
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let api = api.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let api = api.clone();
                async move { Ok::<_, Infallible>(api.handle(req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).with_upgrades().await;
        });
    }
}

impl NodeApi {
    async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        let path = req.uri().path().to_string();
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        match parts.as_slice() {
            ["healthz"] => text(200, "ok"),
            ["containerLogs", ns, pod, container] if req.method() == hyper::Method::GET => {
                let query = req.uri().query().unwrap_or("").to_string();
                self.container_logs(ns, pod, container, &query).await
            }
            ["exec", ns, pod, container] => crate::streaming::exec(self, ns, pod, container, req).await,
            ["attach", ns, pod, container] => crate::streaming::attach(self, ns, pod, container, req).await,
            ["portForward", ns, pod] => crate::streaming::port_forward(self, ns, pod, None, req).await,
            ["portForward", ns, pod, uid] => crate::streaming::port_forward(self, ns, pod, Some(uid), req).await,
            _ => text(404, "404 page not found\n"),
        }
    }

    async fn container_logs(&self, ns: &str, pod: &str, container: &str, query: &str) -> Response<Body> {
        let o = match LogOptions::from_query(query, chrono::Utc::now()) {
            Ok(o) => o,
            Err(e) => return text(400, e),
        };
        let list = match self.container_ids(ns, pod, container).await {
            Ok(l) => l,
            Err(r) => return r,
        };
        let chosen = if o.previous { list.len().checked_sub(2).map(|i| &list[i]) } else { list.last() };
        let Some(chosen) = chosen else {
            let msg = if o.previous {
                format!("previous terminated container \"{container}\" in pod \"{pod}\" not found")
            } else {
                format!("container \"{container}\" in pod \"{pod}\" is waiting to start: ContainerCreating")
            };
            return text(400, msg);
        };
        let mut c = self.cri.clone();
        let status = match c.runtime.container_status(cri::ContainerStatusRequest { container_id: chosen.id.clone(), verbose: false }).await {
            Ok(s) => s.into_inner().status.unwrap_or_default(),
            Err(e) => return text(500, format!("ContainerStatus: {}", e.message())),
        };
        let path = std::path::PathBuf::from(&status.log_path);
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
        let id = chosen.id.clone();
        let cri = self.cri.clone();
        let running = move || -> futures::future::BoxFuture<'static, bool> {
            let (mut cri, id) = (cri.clone(), id.clone());
            Box::pin(async move {
                cri.runtime
                    .container_status(cri::ContainerStatusRequest { container_id: id, verbose: false })
                    .await
                    .ok()
                    .and_then(|s| s.into_inner().status)
                    .is_some_and(|s| s.state == cri::ContainerState::ContainerRunning as i32)
            })
        };
        let follow = o.follow;
        tokio::spawn(async move {
            if let Err(e) = logs::stream_file(path, o, tx, running).await {
                tracing::warn!(error = %e, "reading container log");
            }
        });
        let stream = tokio_stream_from(rx);
        let body = StreamBody::new(stream).boxed();
        let mut resp = Response::builder().status(200).header("content-type", "text/plain");
        if follow {
            resp = resp.header("cache-control", "no-cache");
        }
        resp.body(body).unwrap()
    }
}

/// An mpsc receiver as a body stream of data frames.
fn tokio_stream_from(mut rx: tokio::sync::mpsc::Receiver<Bytes>) -> impl futures::Stream<Item = Result<Frame<Bytes>, std::io::Error>> + Send + Sync {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b)))))
}
