//! `pods/<name>/log`, `pods/<name>/exec`, `pods/<name>/attach` and
//! `pods/<name>/portforward`: the apiserver as a proxy to the node agent
//! (kube-apiserver's `LogREST`, `ExecREST`, `AttachREST`, `PortForwardREST`).
//!
//! Neither is stored anywhere: the apiserver looks up the pod's node, finds
//! the node agent's address in the Node object (`status.addresses`
//! InternalIP and `status.daemonEndpoints.kubeletEndpoint.Port`), and
//! forwards the request:
//!
//! * `GET pods/<name>/log?container=&follow=&tailLines=&sinceSeconds=&sinceTime=&timestamps=&previous=&limitBytes=`
//!   → `GET /containerLogs/<ns>/<pod>/<container>?…`, streamed back as is
//!   (so `kubectl logs -f` sees lines as the container prints them);
//! * `POST|GET pods/<name>/exec?container=&command=…&stdin=&stdout=&stderr=&tty=`
//!   → `/exec/<ns>/<pod>/<container>?…` with the client's upgrade headers
//!   (SPDY or WebSocket); once the agent (really: the runtime's streaming
//!   server behind it) switches protocols, the two connections are spliced
//!   and the apiserver only copies bytes;
//! * `POST|GET pods/<name>/attach?container=&stdin=&stdout=&stderr=&tty=`
//!   → `/attach/<ns>/<pod>/<container>?…`, the same way (`kubectl attach`,
//!   `kubectl run -i`);
//! * `POST|GET pods/<name>/portforward?ports=` → `/portForward/<ns>/<pod>?…`,
//!   the same way (`kubectl port-forward`; no container: a pod's containers
//!   share its network namespace).
//!
//! And `pods/<name[:port]>/proxy/<path>` and
//! `services/<[scheme:]name[:port]>/proxy/<path>` (what `kubectl proxy`
//! users open): plain HTTP to the pod's IP, or to a ready endpoint of the
//! Service picked at random, with the request's method, rest of the path,
//! query, body and headers (kube-apiserver's `ProxyREST` for pods and
//! services; it dials pods directly, not through the kubelet).
//!
//! Safety on a single machine: the apiserver only dials node addresses that
//! belong to this machine (simulated nodes carry made-up addresses, and
//! nothing here must send traffic off the box).

use std::convert::Infallible;
use std::net::IpAddr;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::{Body as _, Frame, Incoming};
use hyper_util::rt::TokioIo;
use machinery::resources;
use serde_json::Value;

use crate::registry::Registry;
use crate::request::RequestInfo;
use crate::body::Body;
use crate::status::ApiError;

/// Query parameters passed on to the node, per subresource.
const LOG_PARAMS: &[&str] = &["follow", "tailLines", "sinceSeconds", "sinceTime", "timestamps", "previous", "limitBytes"];
const EXEC_PARAMS: &[&str] = &["command", "stdin", "stdout", "stderr", "tty", "input", "output", "error"];
const ATTACH_PARAMS: &[&str] = &["stdin", "stdout", "stderr", "tty"];
const PORTFORWARD_PARAMS: &[&str] = &["ports"];

/// The subresources proxied to the pod's node.
pub fn is_node_subresource(sub: Option<&str>) -> bool {
    matches!(sub, Some("log" | "exec" | "attach" | "portforward"))
}

/// The subresources that switch protocols (SPDY or WebSocket streams).
fn is_streaming(sub: Option<&str>) -> bool {
    matches!(sub, Some("exec" | "attach" | "portforward"))
}

fn query_pairs(q: Option<&str>) -> Vec<(String, String)> {
    q.unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_string(), v.to_string())
        })
        .collect()
}

/// The container a request names, defaulting to the only one (or the
/// `kubectl.kubernetes.io/default-container` annotation).
pub fn container_name(pod: &Value, asked: Option<&str>) -> Result<String, ApiError> {
    let name = pod["metadata"]["name"].as_str().unwrap_or("");
    let names: Vec<&str> = pod["spec"]["containers"].as_array().into_iter().flatten().filter_map(|c| c["name"].as_str()).collect();
    let init: Vec<&str> = ["initContainers", "ephemeralContainers"].iter().flat_map(|k| pod["spec"][*k].as_array().into_iter().flatten()).filter_map(|c| c["name"].as_str()).collect();
    match asked.filter(|a| !a.is_empty()) {
        Some(c) if names.contains(&c) || init.contains(&c) => Ok(c.to_string()),
        Some(c) => Err(ApiError::bad_request(format!("container {c} is not valid for pod {name}"))),
        None => {
            if let Some(d) = pod["metadata"]["annotations"]["kubectl.kubernetes.io/default-container"].as_str() {
                return Ok(d.to_string());
            }
            match names.as_slice() {
                [one] => Ok(one.to_string()),
                _ => Err(ApiError::bad_request(format!(
                    "a container name must be specified for pod {name}, choose one of: [{}]",
                    names.join(" ")
                ))),
            }
        }
    }
}

/// The node agent's `host:port` from a Node object.
pub fn node_endpoint(node: &Value) -> Result<(IpAddr, u16), ApiError> {
    let name = node["metadata"]["name"].as_str().unwrap_or("");
    let addrs = node["status"]["addresses"].as_array().cloned().unwrap_or_default();
    let ip = ["InternalIP", "ExternalIP"]
        .iter()
        .find_map(|t| addrs.iter().find(|a| a["type"] == *t).and_then(|a| a["address"].as_str()))
        .and_then(|a| a.parse::<IpAddr>().ok())
        .ok_or_else(|| ApiError::bad_request(format!("node {name} has no usable address")))?;
    let port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"].as_u64().filter(|p| *p > 0 && *p < 65536).unwrap_or(10250) as u16;
    Ok((ip, port))
}

/// Is `ip` this machine's, or on one of its own networks? An address of
/// this network namespace (binding a socket to it succeeds; nothing is
/// sent), or one `machinery::routes` finds on a local network (`rkube up`'s
/// nodes live in namespaces of their own, on a bridge of the host's).
pub fn is_local(ip: IpAddr) -> bool {
    ip.is_loopback()
        || std::net::UdpSocket::bind((ip, 0)).is_ok()
        || matches!(ip, IpAddr::V4(v4) if machinery::routes::local_route_exists(v4))
}

/// The path and query on the node agent for `ri` (see the module docs);
/// `container` is `None` for `portforward`.
pub fn node_path(ri: &RequestInfo, container: Option<&str>, query: Option<&str>) -> Result<String, ApiError> {
    let ns = ri.namespace.as_deref().unwrap_or("default");
    let pod = ri.name.as_deref().unwrap_or("");
    let (base, allowed) = match ri.subresource.as_deref() {
        Some("log") => ("containerLogs", LOG_PARAMS),
        Some("exec") => ("exec", EXEC_PARAMS),
        Some("attach") => ("attach", ATTACH_PARAMS),
        Some("portforward") => ("portForward", PORTFORWARD_PARAMS),
        other => return Err(ApiError::bad_request(format!("subresource {other:?} is not proxied to nodes"))),
    };
    let kept: Vec<String> = query_pairs(query).into_iter().filter(|(k, _)| allowed.contains(&k.as_str())).map(|(k, v)| format!("{k}={v}")).collect();
    let mut path = format!("/{base}/{ns}/{pod}");
    if let Some(c) = container {
        path.push('/');
        path.push_str(c);
    }
    if !kept.is_empty() {
        path.push('?');
        path.push_str(&kept.join("&"));
    }
    Ok(path)
}

fn bad_gateway(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(502, "InternalError", format!("error dialing backend: {e}"))
}

/// Proxies GET `pods/<name>/log` and the exec, attach and portforward
/// upgrades to the pod's node agent.
pub async fn proxy_pod_subresource(registry: &Registry, ri: &RequestInfo, mut req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let name = ri.name.as_deref().ok_or_else(|| ApiError::bad_request("a pod name is required"))?;
    let (pod, _) = registry.read(ri.resource, ri.namespace.as_deref(), name).await?;
    let node_name = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()).ok_or_else(|| ApiError::bad_request(format!("pod {name} does not have a host assigned")))?;
    let sub = ri.subresource.as_deref();
    let container = if sub == Some("portforward") {
        None
    } else {
        let asked = query_pairs(req.uri().query()).into_iter().find(|(k, _)| k == "container").map(|(_, v)| v);
        Some(container_name(&pod, asked.as_deref())?)
    };
    let nodes = resources::find("", "v1", "nodes").expect("nodes are served");
    let (node, _) = registry.read(nodes, None, node_name).await?;
    let (ip, port) = node_endpoint(&node)?;
    if !is_local(ip) {
        return Err(ApiError::bad_request(format!("node {node_name} address {ip} is not on this machine; refusing to dial it")));
    }
    let path = node_path(ri, container.as_deref(), req.uri().query())?;
    let stream = tokio::net::TcpStream::connect((ip, port)).await.map_err(bad_gateway)?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream)).await.map_err(bad_gateway)?;
    tokio::spawn(conn.with_upgrades());
    let mut up = Request::builder().method(req.method().clone()).uri(&path).header("host", format!("{ip}:{port}"));
    if is_streaming(sub) {
        for (k, v) in req.headers() {
            let n = k.as_str();
            if n == "upgrade" || n == "connection" || n.starts_with("x-stream-protocol") || n.starts_with("sec-websocket") || n == "origin" {
                up = up.header(k, v);
            }
        }
    }
    let client_upgrade = hyper::upgrade::on(&mut req);
    let resp = sender.send_request(up.body(Empty::new()).map_err(internal)?).await.map_err(bad_gateway)?;
    let status = resp.status();
    if status == http::StatusCode::SWITCHING_PROTOCOLS {
        let mut builder = Response::builder().status(status);
        for (k, v) in resp.headers() {
            builder = builder.header(k, v);
        }
        let node_upgrade = hyper::upgrade::on(resp);
        tokio::spawn(async move {
            if let Ok((c, n)) = tokio::try_join!(client_upgrade, node_upgrade) {
                let _ = tokio::io::copy_bidirectional(&mut TokioIo::new(c), &mut TokioIo::new(n)).await;
            }
        });
        return builder.body(Empty::new().map_err(|n| match n {}).boxed()).map_err(internal);
    }
    if !status.is_success() {
        let text = resp.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let msg = String::from_utf8_lossy(&text).trim().to_string();
        return Err(match status.as_u16() {
            404 => ApiError::new(404, "NotFound", msg),
            400 => ApiError::bad_request(msg),
            _ => ApiError::new(500, "InternalError", msg),
        });
    }
    // Stream the log body through (errors from the node end the stream).
    let content_type = resp.headers().get(http::header::CONTENT_TYPE).cloned();
    let stream = passthrough(resp.into_body());
    let mut builder = Response::builder().status(200);
    if let Some(ct) = content_type {
        builder = builder.header(http::header::CONTENT_TYPE, ct);
    }
    builder.header("cache-control", "no-cache").body(StreamBody::new(stream).boxed()).map_err(internal)
}

/// `[scheme:]name[:port]` as in a proxy URL (`SplitSchemeNamePort`).
pub fn split_scheme_name_port(id: &str) -> Option<(&str, &str, &str)> {
    let parts: Vec<&str> = id.split(':').collect();
    let (scheme, name, port) = match parts.as_slice() {
        [n] => ("", *n, ""),
        [n, p] => ("", *n, *p),
        [s, n, p] if matches!(*s, "http" | "https") => (*s, *n, *p),
        _ => return None,
    };
    (!name.is_empty()).then_some((scheme, name, port))
}

/// Where a `pods/.../proxy` or `services/.../proxy` request goes.
async fn proxy_target(registry: &Registry, ri: &RequestInfo) -> Result<(String, std::net::SocketAddr), ApiError> {
    let id = ri.name.as_deref().unwrap_or("");
    let (scheme, name, port) = split_scheme_name_port(id).ok_or_else(|| ApiError::bad_request(format!("invalid request {id:?}")))?;
    if scheme == "https" {
        return Err(ApiError::bad_request("rkube-apiserver proxies plain HTTP only"));
    }
    let ns = ri.namespace.as_deref();
    let unavailable = |m: String| ApiError::new(503, "ServiceUnavailable", m);
    let (ip, port): (String, u16) = if ri.resource.kind == "Pod" {
        let (pod, _) = registry.read(ri.resource, ns, name).await?;
        let ip = pod["status"]["podIP"].as_str().filter(|s| !s.is_empty()).ok_or_else(|| unavailable(format!("pod {name} has no IP yet")))?.to_string();
        // No port: the first port of the first container that declares one, else 80.
        let port = if port.is_empty() {
            pod["spec"]["containers"].as_array().into_iter().flatten().find_map(|c| c["ports"][0]["containerPort"].as_u64()).unwrap_or(80).to_string()
        } else {
            port.to_string()
        };
        (ip, port.parse().map_err(|_| ApiError::bad_request(format!("invalid port {port:?} for pod {name}")))?)
    } else {
        let (svc, _) = registry.read(ri.resource, ns, name).await?;
        // A port number names the service port whose name the endpoints use.
        let mut port_name = port.to_string();
        if let Ok(n) = port.parse::<u64>() {
            let p = svc["spec"]["ports"].as_array().into_iter().flatten().find(|p| p["port"].as_u64() == Some(n));
            port_name = p.ok_or_else(|| unavailable(format!("no service port {n} found for service {name:?}")))?["name"].as_str().unwrap_or("").to_string();
        }
        let endpoints = resources::find("", "v1", "endpoints").expect("endpoints are served");
        let (eps, _) = registry.read(endpoints, ns, name).await.map_err(|_| unavailable(format!("no endpoints available for service {name:?}")))?;
        let mut candidates = Vec::new();
        for ss in eps["subsets"].as_array().into_iter().flatten() {
            let Some(p) = ss["ports"].as_array().into_iter().flatten().find(|p| p["name"].as_str().unwrap_or("") == port_name) else { continue };
            for a in ss["addresses"].as_array().into_iter().flatten() {
                if let (Some(ip), Some(port)) = (a["ip"].as_str(), p["port"].as_u64()) {
                    candidates.push((ip.to_string(), port as u16));
                }
            }
        }
        if candidates.is_empty() {
            return Err(unavailable(format!("no endpoints available for service {id:?}")));
        }
        candidates.swap_remove(rand_index(candidates.len()))
    };
    let ip: IpAddr = ip.parse().map_err(|_| unavailable(format!("invalid address {ip}")))?;
    if !is_local(ip) {
        return Err(unavailable(format!("{ip} is not on a network of this machine; refusing to dial it")));
    }
    Ok((name.to_string(), std::net::SocketAddr::new(ip, port)))
}

fn rand_index(n: usize) -> usize {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    nanos as usize % n.max(1)
}

/// Headers not passed on (hop-by-hop, and the client's credentials for the
/// apiserver, which are not the backend's business).
fn hop_by_hop(name: &str) -> bool {
    matches!(name, "connection" | "keep-alive" | "proxy-connection" | "transfer-encoding" | "te" | "trailer" | "upgrade" | "host" | "authorization" | "content-length")
}

/// Proxies one HTTP request to a pod or a Service's endpoint.
pub async fn proxy_http(registry: &Registry, ri: &RequestInfo, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let (_, addr) = proxy_target(registry, ri).await?;
    // The part of the path after `/proxy`, and the query as sent.
    let path = req.uri().path();
    let rest = path.split_once("/proxy").map(|(_, r)| r).unwrap_or("");
    let mut target = if rest.is_empty() { "/".to_string() } else { rest.to_string() };
    if let Some(q) = req.uri().query() {
        target.push('?');
        target.push_str(q);
    }
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map_err(|e| ApiError::bad_request(format!("reading the request body: {e}")))?.to_bytes();
    let stream = tokio::time::timeout(std::time::Duration::from_secs(10), tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| bad_gateway(format!("dial tcp {addr}: timed out")))?
        .map_err(|e| bad_gateway(format!("dial tcp {addr}: {e}")))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake::<_, http_body_util::Full<Bytes>>(TokioIo::new(stream)).await.map_err(bad_gateway)?;
    tokio::spawn(conn);
    let mut up = Request::builder().method(parts.method).uri(&target).header("host", addr.to_string());
    for (k, v) in &parts.headers {
        if !hop_by_hop(k.as_str()) {
            up = up.header(k, v);
        }
    }
    let resp = sender.send_request(up.body(http_body_util::Full::new(body)).map_err(internal)?).await.map_err(bad_gateway)?;
    let (rparts, rbody) = resp.into_parts();
    let mut builder = Response::builder().status(rparts.status);
    for (k, v) in &rparts.headers {
        if !hop_by_hop(k.as_str()) {
            builder = builder.header(k, v);
        }
    }
    builder.body(StreamBody::new(passthrough(rbody)).map_err(|n| match n {}).boxed()).map_err(internal)
}

/// A backend's response body as a stream of data frames, passed on as they
/// arrive (an error from the backend ends the stream).
fn passthrough(mut body: Incoming) -> impl futures::Stream<Item = Result<Frame<Bytes>, Infallible>> + Send + Sync + 'static {
    futures::stream::poll_fn(move |cx| loop {
        match std::pin::Pin::new(&mut body).poll_frame(cx) {
            std::task::Poll::Ready(Some(Ok(f))) => match f.into_data() {
                Ok(d) => return std::task::Poll::Ready(Some(Ok(Frame::data(d)))),
                Err(_) => continue,
            },
            std::task::Poll::Ready(_) => return std::task::Poll::Ready(None),
            std::task::Poll::Pending => return std::task::Poll::Pending,
        }
    })
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::internal(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(containers: &[&str], default: Option<&str>) -> Value {
        let mut p = json!({"metadata": {"name": "p"}, "spec": {"containers": containers.iter().map(|c| json!({"name": c})).collect::<Vec<_>>(), "initContainers": [{"name": "init"}]}});
        if let Some(d) = default {
            p["metadata"]["annotations"] = json!({"kubectl.kubernetes.io/default-container": d});
        }
        p
    }

    fn check(p: Value, asked: Option<&str>, expected: Result<&str, &str>) {
        let got = container_name(&p, asked).map_err(|e| e.message);
        assert_eq!(got.as_deref().map_err(|e| e.as_str()), expected, "{asked:?}");
    }

    #[test]
    fn containers() {
        check(pod(&["a"], None), None, Ok("a"));
        check(pod(&["a", "b"], None), Some("b"), Ok("b"));
        check(pod(&["a", "b"], None), Some("init"), Ok("init"));
        check(pod(&["a", "b"], None), None, Err("a container name must be specified for pod p, choose one of: [a b]"));
        check(pod(&["a", "b"], Some("b")), None, Ok("b"));
        check(pod(&["a"], None), Some("zz"), Err("container zz is not valid for pod p"));
    }

    #[test]
    fn endpoints() {
        let node = json!({"metadata": {"name": "n"}, "status": {"addresses": [{"type": "Hostname", "address": "n"}, {"type": "InternalIP", "address": "127.0.0.1"}], "daemonEndpoints": {"kubeletEndpoint": {"Port": 10555}}}});
        assert_eq!(node_endpoint(&node).unwrap(), ("127.0.0.1".parse().unwrap(), 10555));
        assert!(node_endpoint(&json!({"status": {}})).is_err());
        assert!(is_local("127.0.0.1".parse().unwrap()));
        assert!(!is_local("192.0.2.77".parse().unwrap()));
    }

    #[test]
    fn scheme_name_port() {
        assert_eq!(split_scheme_name_port("web"), Some(("", "web", "")));
        assert_eq!(split_scheme_name_port("web:80"), Some(("", "web", "80")));
        assert_eq!(split_scheme_name_port("web:http"), Some(("", "web", "http")));
        assert_eq!(split_scheme_name_port("https:web:443"), Some(("https", "web", "443")));
        assert_eq!(split_scheme_name_port("ftp:web:21"), None);
        assert_eq!(split_scheme_name_port(":80"), None);
    }

    #[test]
    fn paths() {
        let pods = resources::find("", "v1", "pods").unwrap();
        let ri = |sub: &str| RequestInfo { verb: crate::request::Verb::Get, resource: pods, namespace: Some("ns".into()), name: Some("p".into()), subresource: Some(sub.into()) };
        assert_eq!(node_path(&ri("log"), Some("c"), Some("container=c&follow=true&tailLines=3&pretty=1")).unwrap(), "/containerLogs/ns/p/c?follow=true&tailLines=3");
        assert_eq!(node_path(&ri("exec"), Some("c"), Some("command=ls&command=-l&stdout=true&container=c")).unwrap(), "/exec/ns/p/c?command=ls&command=-l&stdout=true");
        assert_eq!(node_path(&ri("attach"), Some("c"), Some("container=c&stdin=true&stdout=true&tty=true&command=x")).unwrap(), "/attach/ns/p/c?stdin=true&stdout=true&tty=true");
        assert_eq!(node_path(&ri("portforward"), None, Some("ports=8080&ports=9090&container=c")).unwrap(), "/portForward/ns/p?ports=8080&ports=9090");
        assert_eq!(node_path(&ri("portforward"), None, None).unwrap(), "/portForward/ns/p");
        assert!(node_path(&ri("status"), Some("c"), None).is_err());
    }
}
