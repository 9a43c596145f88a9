//! `kubectl exec`: `POST|GET /exec/<ns>/<pod>/<container>?command=…&stdin=…&stdout=…&stderr=…&tty=…`.
//!
//! The kubelet does not run the process itself. It asks the runtime (CRI
//! `Exec`) for a one-time URL on the runtime's *streaming server*, then
//! proxies the client's upgrade request (SPDY/3.1 or WebSocket, with the
//! remotecommand sub-protocols in `X-Stream-Protocol-Version` /
//! `Sec-WebSocket-Protocol`) to that URL and splices the two connections
//! once both sides switched protocols. The stream framing (stdin, stdout,
//! stderr, error and resize channels) is between kubectl and the runtime;
//! the agent (and the apiserver before it) only copy bytes.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use proto::runtime::v1 as cri;

use crate::logs::percent_decode;
use crate::server::{Body, NodeApi};

/// The exec request's parameters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecParams {
    pub command: Vec<String>,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

pub fn parse_query(q: &str) -> ExecParams {
    let mut p = ExecParams::default();
    for (k, v) in q.split('&').filter(|s| !s.is_empty()).map(|s| s.split_once('=').unwrap_or((s, ""))) {
        let v = percent_decode(v);
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

fn text(code: u16, body: String) -> Response<Body> {
    Response::builder().status(code).header("content-type", "text/plain; charset=utf-8").body(http_body_util::Full::new(Bytes::from(body)).map_err(|n| match n {}).boxed()).unwrap()
}

pub async fn exec(api: &NodeApi, ns: &str, pod: &str, container: &str, req: Request<Incoming>) -> Response<Body> {
    let params = parse_query(req.uri().query().unwrap_or(""));
    if params.command.is_empty() {
        return text(400, "you must specify at least 1 command".into());
    }
    let list = match api.container_ids(ns, pod, container).await {
        Ok(l) => l,
        Err(r) => return r,
    };
    let Some(ctr) = list.iter().rev().find(|c| c.state == cri::ContainerState::ContainerRunning as i32) else {
        return text(400, format!("container {container} is not running"));
    };
    let mut c = api.cri.clone();
    let resp = c
        .runtime
        .exec(cri::ExecRequest {
            container_id: ctr.id.clone(),
            cmd: params.command.clone(),
            tty: params.tty,
            stdin: params.stdin,
            stdout: params.stdout,
            // With a TTY, stderr is merged into stdout.
            stderr: params.stderr && !params.tty,
        })
        .await;
    let url = match resp {
        Ok(r) => r.into_inner().url,
        Err(e) => return text(500, format!("CRI Exec: {}", e.message())),
    };
    match proxy_upgrade(&url, req).await {
        Ok(r) => r,
        Err(e) => text(502, format!("proxying exec to the runtime: {e:#}")),
    }
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
                Err(e) => tracing::warn!(error = %e, "exec upgrade failed"),
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
        assert_eq!(p, ExecParams { command: vec!["sh".into(), "-c".into(), "echo hi".into()], stdin: true, stdout: true, stderr: false, tty: false });
        assert!(parse_query("error=1&tty=1").stderr);
    }
}
