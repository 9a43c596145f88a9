//! The small HTTP server each component (all but the apiserver, whose
//! health paths are part of its request pipeline) runs for its **health
//! checks** and its **Prometheus metrics**: kube-scheduler's and
//! kube-controller-manager's `/healthz`, `/livez`, `/readyz`, `/metrics`,
//! kube-proxy's 10256 and 10249, the kubelet's healthz port 10248.
//!
//! A component lists what answers: each health path with its check (a
//! closure called per request: healthy → 200, not → 503, with the check's
//! body), and the encoder of its metrics registry for `/metrics`. Any other
//! path is Go's `404 page not found`. Health is anonymous, as upstream
//! always allows it (`/healthz`, `/livez`, `/readyz` are in the
//! `system:public-info-viewer` role), and so is `/metrics` here (plain HTTP).
//!
//! Connections are bounded in time, as upstream's secure serving bounds
//! them (`k8s.io/apiserver/pkg/server/secure_serving.go`): a request's head
//! must arrive within [`HEADER_READ_TIMEOUT`], and a connection on which no
//! byte moves either way for [`IDLE_TIMEOUT`] is closed — a client cannot
//! hold a connection (and its task) forever.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::registry::Registry;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::{Instant, Sleep};

/// Upstream's `ReadHeaderTimeout` (32 s, just under its request timeout
/// bound). hyper counts it from when the connection starts waiting for a
/// request, so it also closes a keep-alive connection idle for that long.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(32);
/// Upstream's `IdleTimeout` (90 s, the keep-alive of Go's default
/// transport): here, the longest a connection may go without a byte read
/// or written (say, a client that stopped reading its response).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// The content type of `/metrics`: the text format prometheus-client writes.
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";

/// What a health check answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Health {
    /// 200 when true, 503 (Service Unavailable) when false.
    pub healthy: bool,
    pub content_type: &'static str,
    pub body: String,
}

impl Health {
    /// Healthy, body `ok` (upstream's `healthz.PingHealthz`).
    pub fn ok() -> Health {
        Health { healthy: true, content_type: TEXT, body: "ok".into() }
    }

    /// Unhealthy, with a plain-text reason.
    pub fn unhealthy(reason: impl Into<String>) -> Health {
        Health { healthy: false, content_type: TEXT, body: reason.into() }
    }

    /// A JSON body, healthy or not (kube-proxy's healthz).
    pub fn json(healthy: bool, body: String) -> Health {
        Health { healthy, content_type: "application/json", body }
    }
}

type Check = Box<dyn Fn() -> Health + Send + Sync>;
type Encode = Box<dyn Fn() -> String + Send + Sync>;

/// The paths a component serves and how each answers; see the module docs.
pub struct HealthServer {
    checks: Vec<(String, Check)>,
    metrics: Option<Encode>,
    header_read_timeout: Duration,
    idle_timeout: Duration,
}

impl Default for HealthServer {
    fn default() -> Self {
        HealthServer { checks: Vec::new(), metrics: None, header_read_timeout: HEADER_READ_TIMEOUT, idle_timeout: IDLE_TIMEOUT }
    }
}

impl HealthServer {
    /// No path answers yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Serve the health check `check` at `path` (e.g. `/healthz`).
    pub fn check(mut self, path: &str, check: impl Fn() -> Health + Send + Sync + 'static) -> Self {
        self.checks.push((path.to_string(), Box::new(check)));
        self
    }

    /// Serve `/metrics`: `encode` writes the registry out, once per scrape
    /// (so it may first refresh gauges that are read on demand).
    pub fn metrics(mut self, encode: impl Fn() -> String + Send + Sync + 'static) -> Self {
        self.metrics = Some(Box::new(encode));
        self
    }

    /// Other connection bounds than upstream's (tests).
    pub fn timeouts(mut self, header_read: Duration, idle: Duration) -> Self {
        self.header_read_timeout = header_read;
        self.idle_timeout = idle;
        self
    }

    /// The answer to a request for `path` (any method).
    pub fn respond(&self, path: &str) -> Response<Full<Bytes>> {
        let (status, content_type, body) = match self.checks.iter().find(|(p, _)| p == path) {
            Some((_, check)) => {
                let h = check();
                (if h.healthy { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, h.content_type, h.body)
            }
            None => match &self.metrics {
                Some(encode) if path == "/metrics" => (StatusCode::OK, METRICS_CONTENT_TYPE, encode()),
                // Go's http.NotFound.
                _ => (StatusCode::NOT_FOUND, TEXT, "404 page not found\n".to_string()),
            },
        };
        Response::builder()
            .status(status)
            .header("content-type", content_type)
            .body(Full::new(Bytes::from(body)))
            .expect("static response parts")
    }

    /// Bind `host:port` and serve there on a task of its own (abort it to stop).
    pub async fn start(self: Arc<Self>, host: &str, port: u16) -> anyhow::Result<JoinHandle<()>> {
        let addr = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
        let listener = TcpListener::bind((host, port)).await.with_context(|| format!("binding {addr}"))?;
        let mut paths: Vec<&str> = self.checks.iter().map(|(p, _)| p.as_str()).collect();
        if self.metrics.is_some() {
            paths.push("/metrics");
        }
        tracing::info!(addr = %listener.local_addr()?, ?paths, "serving health checks");
        Ok(tokio::spawn(self.serve(listener)))
    }

    /// Serve connections from `listener` until the task is dropped.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, say: wait a little, as Go's
                    // http.Server does, instead of spinning.
                    tracing::warn!(error = %e, "health server: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let me = self.clone();
            tokio::spawn(async move {
                let io = TokioIo::new(IdleTimeout::new(stream, me.idle_timeout));
                let timeout = me.header_read_timeout;
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let resp = me.respond(req.uri().path());
                    async move { Ok::<_, Infallible>(resp) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(timeout)
                    .serve_connection(io, svc)
                    .await;
            });
        }
    }
}

/// Prometheus text format of `registry`.
pub fn encode(registry: &Registry) -> String {
    let mut out = String::new();
    let _ = prometheus_client::encoding::text::encode(&mut out, registry);
    out
}

/// A TCP stream that fails with `TimedOut` once no byte has moved either
/// way for `timeout`.
struct IdleTimeout {
    inner: TcpStream,
    timeout: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl IdleTimeout {
    fn new(inner: TcpStream, timeout: Duration) -> Self {
        IdleTimeout { inner, timeout, deadline: Box::pin(tokio::time::sleep(timeout)) }
    }

    /// After progress: the deadline moves on. While waiting: the deadline
    /// passed is an error; otherwise this task wakes when it passes.
    fn check<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match poll {
            Poll::Ready(r) => {
                let next = Instant::now() + self.timeout;
                self.deadline.as_mut().reset(next);
                Poll::Ready(r)
            }
            Poll::Pending => match self.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "connection idle"))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl AsyncRead for IdleTimeout {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        self.check(cx, poll)
    }
}

impl AsyncWrite for IdleTimeout {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.check(cx, poll)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.check(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    fn answer(server: &HealthServer, path: &str) -> (u16, String, String) {
        let r = server.respond(path);
        let status = r.status().as_u16();
        let ctype = r.headers()["content-type"].to_str().unwrap().to_string();
        let body = futures::executor::block_on(http_body_util::BodyExt::collect(r.into_body())).unwrap().to_bytes();
        (status, ctype, String::from_utf8(body.to_vec()).unwrap())
    }

    #[test]
    fn only_listed_paths_answer() {
        let ready = Arc::new(AtomicBool::new(false));
        let r = ready.clone();
        let server = HealthServer::new()
            .check("/healthz", Health::ok)
            .check("/readyz", move || if r.load(Ordering::Relaxed) { Health::ok() } else { Health::unhealthy("not yet\n") })
            .metrics(|| "# EOF\n".into());
        assert_eq!(answer(&server, "/healthz"), (200, TEXT.into(), "ok".into()));
        assert_eq!(answer(&server, "/readyz"), (503, TEXT.into(), "not yet\n".into()));
        ready.store(true, Ordering::Relaxed);
        assert_eq!(answer(&server, "/readyz"), (200, TEXT.into(), "ok".into()));
        assert_eq!(answer(&server, "/metrics"), (200, METRICS_CONTENT_TYPE.into(), "# EOF\n".into()));
        assert_eq!(answer(&server, "/livez"), (404, TEXT.into(), "404 page not found\n".into()));
        assert_eq!(answer(&server, "/healthz/ping"), (404, TEXT.into(), "404 page not found\n".into()));
        // No metrics listed: /metrics is not found either.
        let bare = HealthServer::new().check("/healthz", || Health::json(false, "{}".into()));
        assert_eq!(answer(&bare, "/healthz"), (503, "application/json".into(), "{}".into()));
        assert_eq!(answer(&bare, "/metrics").0, 404);
    }

    async fn get(addr: std::net::SocketAddr, path: &str) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn serves_and_bounds_connections() {
        let server = Arc::new(HealthServer::new().check("/healthz", Health::ok).timeouts(Duration::from_millis(200), Duration::from_millis(400)));
        let err = server.clone().start("256.0.0.1", 0).await.unwrap_err();
        assert_eq!(err.to_string(), "binding 256.0.0.1:0");
        let err = server.clone().start("::ffff:256.0.0.1", 0).await.unwrap_err();
        assert_eq!(err.to_string(), "binding [::ffff:256.0.0.1]:0");
        server.clone().start("127.0.0.1", 0).await.unwrap().abort();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(server.serve(listener));

        let out = get(addr, "/healthz").await;
        assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
        assert!(out.ends_with("\r\n\r\nok"), "{out}");
        assert!(get(addr, "/nope").await.starts_with("HTTP/1.1 404 Not Found\r\n"));

        // A client that sends half a request head is cut off.
        let mut slow = TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
        let mut rest = Vec::new();
        let t = Instant::now();
        let _ = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut rest)).await.expect("closed");
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());

        // So is a keep-alive connection left idle.
        let mut idle = TcpStream::connect(addr).await.unwrap();
        idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), idle.read_to_end(&mut rest)).await.expect("closed");
        assert!(String::from_utf8_lossy(&rest).starts_with("HTTP/1.1 200 OK\r\n"));
        task.abort();
    }

    /// No byte either way for the idle timeout: the stream fails; a byte
    /// moves the deadline on.
    #[tokio::test]
    async fn idle_stream_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let mut server = IdleTimeout::new(server, Duration::from_millis(300));
        let t = Instant::now();
        let mut buf = [0u8; 1];
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_millis(150)).await;
            client.write_all(b"x").await.unwrap();
            server.read_exact(&mut buf).await.unwrap();
        }
        let err = server.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(t.elapsed() >= Duration::from_millis(750), "{:?}", t.elapsed());
    }
}
