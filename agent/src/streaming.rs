//! The streaming endpoints of the node API: `kubectl exec`, `kubectl attach`
//! (and `kubectl run -i`) and `kubectl port-forward`.
//!
//! * `POST|GET /exec/<ns>/<pod>/<container>?command=…&stdin=…&stdout=…&stderr=…&tty=…`
//! * `POST|GET /attach/<ns>/<pod>/<container>?stdin=…&stdout=…&stderr=…&tty=…`
//! * `POST|GET /portForward/<ns>/<pod>[/<uid>]?ports=…`
//!
//! The kubelet does not run processes or open sockets itself for these. It
//! asks the runtime (CRI `Exec`, `Attach`, `PortForward`) for a one-time URL
//! on the runtime's *streaming server*, then proxies the client's upgrade
//! request (SPDY/3.1 or WebSocket, with the sub-protocols in
//! `X-Stream-Protocol-Version` / `Sec-WebSocket-Protocol`) to that URL and
//! splices the two connections once both sides switched protocols. The
//! stream framing (stdin, stdout, stderr, error and resize channels for
//! exec and attach; a data and an error stream per forwarded connection for
//! port-forward) is between kubectl and the runtime; the agent (and the
//! apiserver before it) only copy bytes.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use proto::runtime::v1 as cri;

use crate::logs::percent_decode;
use crate::node_api::{text, Body, NodeApi};

/// The parameters of an exec or attach request (attach has no command).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamParams {
    pub command: Vec<String>,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

impl StreamParams {
    /// At least one stream, as the kubelet's remotecommand server requires.
    fn check_streams(&self) -> Result<(), String> {
        if self.stdin || self.stdout || self.stderr {
            Ok(())
        } else {
            Err("you must specify at least 1 of stdin, stdout, stderr".into())
        }
    }
}

fn query_pairs(q: &str) -> impl Iterator<Item = (&str, String)> {
    q.split('&').filter(|s| !s.is_empty()).map(|s| s.split_once('=').unwrap_or((s, ""))).map(|(k, v)| (k, percent_decode(v)))
}

pub fn parse_query(q: &str) -> StreamParams {
    let mut p = StreamParams::default();
    for (k, v) in query_pairs(q) {
        let on = v == "true" || v == "1";
        match k {
            "command" => p.command.push(v),
            "input" | "stdin" => p.stdin = on,
            "output" | "stdout" => p.stdout = on,
            "error" | "stderr" => p.stderr = on,
            "tty" => p.tty = on,
            _ => {}
        }
    }
    p
}

/// The `ports` of a port-forward request (repeated, or comma-separated as
/// kubectl's WebSocket dialer sends them). Empty is fine: over SPDY the
/// ports come later, in each stream's headers.
pub fn parse_ports(q: &str) -> Result<Vec<i32>, String> {
    let mut ports = Vec::new();
    for (k, v) in query_pairs(q) {
        if k != "ports" {
            continue;
        }
        for p in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match p.parse::<u16>() {
                Ok(0) => return Err(format!("\"{p}\" is not a valid port")),
                Ok(n) => ports.push(n as i32),
                Err(e) => return Err(format!("unable to parse \"{p}\" as a port: {e}")),
            }
        }
    }
    Ok(ports)
}

/// The running attempt of `container`, or the response that says why there is none.
async fn running_container(api: &NodeApi, ns: &str, pod: &str, container: &str) -> Result<cri::Container, Response<Body>> {
    let list = api.container_ids(ns, pod, container).await?;
    list.into_iter()
        .rev()
        .find(|c| c.state == cri::ContainerState::ContainerRunning as i32)
        .ok_or_else(|| text(400, format!("container {container} is not running")))
}

/// Sends the client to the runtime's streaming `url`, or says what failed.
async fn proxy_to(what: &str, url: Result<String, tonic::Status>, req: Request<Incoming>) -> Response<Body> {
    let url = match url {
        Ok(u) => u,
        Err(e) => return text(500, format!("CRI {what}: {}", e.message())),
    };
    match proxy_upgrade(&url, req).await {
        Ok(r) => r,
        Err(e) => text(502, format!("proxying {what} to the runtime: {e:#}")),
    }
}

/// The request's stream parameters and the running container they are for,
/// or the response that says what is wrong.
async fn prepare(api: &NodeApi, ns: &str, pod: &str, container: &str, req: &Request<Incoming>, exec: bool) -> Result<(StreamParams, cri::Container), Response<Body>> {
    let params = parse_query(req.uri().query().unwrap_or(""));
    if exec && params.command.is_empty() {
        return Err(text(400, "you must specify at least 1 command"));
    }
    params.check_streams().map_err(|e| text(400, e))?;
    let ctr = running_container(api, ns, pod, container).await?;
    Ok((params, ctr))
}

pub async fn exec(api: &NodeApi, ns: &str, pod: &str, container: &str, req: Request<Incoming>) -> Response<Body> {
    let (p, ctr) = match prepare(api, ns, pod, container, &req, true).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    // With a TTY, stderr is merged into stdout.
    let r = cri::ExecRequest { container_id: ctr.id, cmd: p.command, tty: p.tty, stdin: p.stdin, stdout: p.stdout, stderr: p.stderr && !p.tty };
    let url = api.cri.clone().runtime.exec(r).await.map(|r| r.into_inner().url);
    proxy_to("Exec", url, req).await
}

/// `kubectl attach` (and `kubectl run -i`): the container's own stdin,
/// stdout and stderr, not a new process. Stdin reaches the container only
/// if its spec asked for it (`stdin: true`, which CreateContainer passed
/// on); with `stdinOnce`, the runtime closes it when the first attach ends.
pub async fn attach(api: &NodeApi, ns: &str, pod: &str, container: &str, req: Request<Incoming>) -> Response<Body> {
    let (p, ctr) = match prepare(api, ns, pod, container, &req, false).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let r = cri::AttachRequest { container_id: ctr.id, stdin: p.stdin, tty: p.tty, stdout: p.stdout, stderr: p.stderr && !p.tty };
    let url = api.cri.clone().runtime.attach(r).await.map(|r| r.into_inner().url);
    proxy_to("Attach", url, req).await
}

/// `kubectl port-forward`: connections to a port of the pod's network
/// namespace. The runtime dials them from inside the sandbox, so the port
/// needs no hostPort and the pod IP need not be reachable from the client.
pub async fn port_forward(api: &NodeApi, ns: &str, pod: &str, uid: Option<&str>, req: Request<Incoming>) -> Response<Body> {
    let ports = match parse_ports(req.uri().query().unwrap_or("")) {
        Ok(p) => p,
        Err(e) => return text(400, e),
    };
    let sandbox = match api.ready_sandbox(ns, pod, uid).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let mut c = api.cri.clone();
    let url = c.runtime.port_forward(cri::PortForwardRequest { pod_sandbox_id: sandbox, port: ports }).await.map(|r| r.into_inner().url);
    proxy_to("PortForward", url, req).await
}

/// Headers a protocol upgrade needs forwarded.
fn forwarded(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n == "upgrade" || n == "connection" || n.starts_with("x-stream-protocol") || n.starts_with("sec-websocket") || n == "origin" || n == "content-type"
}

/// Sends `req`'s method and upgrade headers to `url` (http only) and, when
/// the target switches protocols, splices the client and the target.
pub async fn proxy_upgrade(url: &str, mut req: Request<Incoming>) -> anyhow::Result<Response<Body>> {
    let uri: http::Uri = url.parse()?;
    anyhow::ensure!(uri.scheme_str() == Some("http"), "only http:// streaming URLs are supported: {url}");
    let host = uri.host().unwrap_or("127.0.0.1").trim_matches(['[', ']']).to_string();
    let port = uri.port_u16().unwrap_or(80);
    let stream = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream)).await?;
    tokio::spawn(conn.with_upgrades());
    let mut up = Request::builder().method(req.method().clone()).uri(uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")).header("host", format!("{host}:{port}"));
    for (k, v) in req.headers() {
        if forwarded(k.as_str()) {
            up = up.header(k, v);
        }
    }
    let client_upgrade = hyper::upgrade::on(&mut req);
    let resp = sender.send_request(up.body(Empty::new())?).await?;
    let status = resp.status();
    let mut builder = Response::builder().status(status);
    for (k, v) in resp.headers() {
        builder = builder.header(k, v);
    }
    if status == http::StatusCode::SWITCHING_PROTOCOLS {
        let upstream_upgrade = hyper::upgrade::on(resp);
        tokio::spawn(async move {
            match tokio::try_join!(client_upgrade, upstream_upgrade) {
                Ok((c, u)) => {
                    let _ = tokio::io::copy_bidirectional(&mut TokioIo::new(c), &mut TokioIo::new(u)).await;
                }
                Err(e) => tracing::warn!(error = %e, "streaming upgrade failed"),
            }
        });
        return Ok(builder.body(Empty::new().map_err(|n| match n {}).boxed())?);
    }
    let body = resp.into_body().collect().await?.to_bytes();
    Ok(builder.body(http_body_util::Full::new(body).map_err(|n| match n {}).boxed())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query() {
        let p = parse_query("command=sh&command=-c&command=echo%20hi&stdin=true&stdout=true&tty=false");
        assert_eq!(p, StreamParams { command: vec!["sh".into(), "-c".into(), "echo hi".into()], stdin: true, stdout: true, stderr: false, tty: false });
        assert!(parse_query("error=1&tty=1").stderr);
        assert!(parse_query("tty=true").check_streams().is_err());
        assert!(parse_query("stdout=true").check_streams().is_ok());
    }

    fn check_ports(q: &str, expected: Result<&[i32], &str>) {
        assert_eq!(parse_ports(q).as_deref().map_err(|e| e.as_str()), expected, "{q}");
    }

    #[test]
    fn ports() {
        check_ports("", Ok(&[]));
        check_ports("ports=8080", Ok(&[8080]));
        check_ports("ports=80&ports=443", Ok(&[80, 443]));
        check_ports("ports=80%2C443", Ok(&[80, 443]));
        check_ports("ports=0", Err("\"0\" is not a valid port"));
        check_ports("ports=http", Err("unable to parse \"http\" as a port: invalid digit found in string"));
        check_ports("ports=70000", Err("unable to parse \"70000\" as a port: number too large to fit in target type"));
    }
}
