//! What the node API's handlers share: the state they read ([`NodeApi`]:
//! the runtime and this node's pods), the response body, plain-text
//! responses, and finding a request's pod in the runtime — its ready
//! sandbox, its container's attempts — by the labels the agent put on them
//! ([`crate::labels`]; the kubelet's `GetPodByName` and `findContainer`).
//!
//! A leaf module: [`crate::server`] serves the node API and routes each
//! request to its handler (container logs there; exec, attach and
//! port-forward in [`crate::streaming`]); both handlers import this, and
//! the streaming handlers never import the server.

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::Response;
use k8s_openapi::api::core::v1::Pod;
use machinery::informer::Store;
use proto::runtime::v1 as cri;

use crate::labels::{CONTAINER_NAME_LABEL, POD_UID_LABEL};
use crate::runtime::cri::CriClient;

/// The body of every node API response: bytes, or a stream of them.
pub type Body = BoxBody<Bytes, std::io::Error>;

/// What the node API needs: the runtime and the agent's pods.
#[derive(Clone)]
pub struct NodeApi {
    pub cri: CriClient,
    pub pods: Store<Pod>,
}

/// A plain-text response.
pub fn text(code: u16, body: impl Into<String>) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from(body.into())).map_err(|never| match never {}).boxed())
        .unwrap()
}

impl NodeApi {
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
}
