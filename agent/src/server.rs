//! The agent's HTTP endpoints: `/healthz` (on `--healthz-port`), and on
//! `--port` the node API the apiserver proxies to: container logs
//! (`/containerLogs/<ns>/<pod>/<container>`), and the streaming endpoints
//! exec, attach and port-forward (`/exec/...`, `/attach/...`,
//! `/portForward/...`, in `streaming.rs`).

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use machinery::health_server::{Health, HealthServer};

/// The kubelet's healthz port (10248): `GET /healthz` → `ok`, nothing else.
pub fn healthz_server() -> HealthServer {
    HealthServer::new().check("/healthz", Health::ok)
}

use std::sync::Arc;

use http_body_util::{combinators::BoxBody, BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use k8s_openapi::api::core::v1::Pod;
use machinery::informer::Store;
use proto::runtime::v1 as cri;

use crate::logs::{self, LogOptions};
use crate::pods::config::{CONTAINER_NAME_LABEL, POD_UID_LABEL};
use crate::runtime::cri::CriClient;

pub type Body = BoxBody<Bytes, std::io::Error>;

/// What the node API needs: the runtime and the agent's pods.
#[derive(Clone)]
pub struct NodeApi {
    pub cri: CriClient,
    pub pods: Store<Pod>,
}

fn text(code: u16, body: impl Into<String>) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from(body.into())).map_err(|never| match never {}).boxed())
        .unwrap()
}

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

    /// The ready CRI sandbox of `pod` (of that `uid`, if one is given).
    pub async fn ready_sandbox(&self, ns: &str, pod: &str, uid: Option<&str>) -> Result<String, Response<Body>> {
        let p = self.pods.get_named(Some(ns), pod).filter(|p| uid.is_none_or(|u| p.metadata.uid.as_deref() == Some(u)));
        let Some(p) = p else {
            return Err(text(404, format!("pod {ns}/{pod} not found on this node")));
        };
        let filter = cri::PodSandboxFilter {
            label_selector: [(POD_UID_LABEL.to_string(), p.metadata.uid.clone().unwrap_or_default())].into(),
            state: Some(cri::PodSandboxStateValue { state: cri::PodSandboxState::SandboxReady as i32 }),
            ..Default::default()
        };
        let mut c = self.cri.clone();
        match c.runtime.list_pod_sandbox(cri::ListPodSandboxRequest { filter: Some(filter) }).await {
            Ok(r) => r.into_inner().items.into_iter().max_by_key(|s| s.created_at).map(|s| s.id).ok_or_else(|| text(400, format!("pod {pod} has no running sandbox"))),
            Err(e) => Err(text(500, format!("ListPodSandbox: {}", e.message()))),
        }
    }

    /// The CRI container attempts of `pod`'s `container`, oldest first.
    pub async fn container_ids(&self, ns: &str, pod: &str, container: &str) -> Result<Vec<cri::Container>, Response<Body>> {
        let Some(p) = self.pods.get_named(Some(ns), pod) else {
            return Err(text(404, format!("pod {ns}/{pod} not found on this node")));
        };
        let uid = p.metadata.uid.clone().unwrap_or_default();
        let known = p.spec.as_ref().is_some_and(|s| {
            s.containers.iter().chain(s.init_containers.iter().flatten()).any(|c| c.name == container)
                || s.ephemeral_containers.iter().flatten().any(|c| c.name == container)
        });
        if !known {
            return Err(text(400, format!("container {container} is not valid for pod {pod}")));
        }
        let filter = cri::ContainerFilter {
            label_selector: [(POD_UID_LABEL.to_string(), uid), (CONTAINER_NAME_LABEL.to_string(), container.to_string())].into(),
            ..Default::default()
        };
        let mut c = self.cri.clone();
        let mut list = match c.runtime.list_containers(cri::ListContainersRequest { filter: Some(filter) }).await {
            Ok(r) => r.into_inner().containers,
            Err(e) => return Err(text(500, format!("ListContainers: {}", e.message()))),
        };
        list.sort_by_key(|c| (c.metadata.as_ref().map(|m| m.attempt).unwrap_or(0), c.created_at));
        Ok(list)
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
