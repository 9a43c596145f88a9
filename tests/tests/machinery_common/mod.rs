//! Shared by the `machinery_*` integration tests: clients, polling, and a
//! TCP proxy that can cut a client off or send it to another apiserver.
//! Each test starts its own etcd + apiserver with `e2e::Cluster`.
#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use kube::Client;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

pub async fn client_for(url: &str) -> Client {
    machinery::client::connect_as("machinery-test", Some(url), None).await.unwrap()
}

#[allow(unused_imports)]
pub use e2e::eventually;

/// One request a [`recording_client`] sent: method, path, when it was
/// sent and when its answer (headers) came back.
#[derive(Debug, Clone)]
pub struct Sent {
    pub method: http::Method,
    pub path: String,
    pub sent: std::time::Instant,
    pub answered: Option<std::time::Instant>,
}

pub type SentLog = Arc<Mutex<Vec<Sent>>>;

/// A client for `url` that records every request it sends: what a
/// component *tried* (and when), which the server's state alone cannot
/// show — a candidate that looked at a lease and left it alone writes
/// nothing.
pub async fn recording_client(url: &str) -> (Client, SentLog) {
    let log: SentLog = Arc::default();
    let config = machinery::client::config(Some(url), None).await.unwrap();
    let client = kube::client::ClientBuilder::try_from(config).unwrap().with_layer(&Recorder(log.clone())).build();
    (client, log)
}

struct Recorder(SentLog);

impl<S> tower::Layer<S> for Recorder {
    type Service = Recording<S>;
    fn layer(&self, inner: S) -> Recording<S> {
        Recording { inner, log: self.0.clone() }
    }
}

pub struct Recording<S> {
    inner: S,
    log: SentLog,
}

impl<S, B> tower::Service<http::Request<B>> for Recording<S>
where
    S: tower::Service<http::Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let entry = Sent { method: req.method().clone(), path: req.uri().path().to_string(), sent: std::time::Instant::now(), answered: None };
        let i = {
            let mut log = self.log.lock().unwrap();
            log.push(entry);
            log.len() - 1
        };
        let (log, answer) = (self.log.clone(), self.inner.call(req));
        Box::pin(async move {
            let r = answer.await;
            log.lock().unwrap()[i].answered = Some(std::time::Instant::now());
            r
        })
    }
}

/// A loopback TCP proxy in front of the apiserver. `cut()` closes every
/// connection through it and refuses new ones (the client sees the
/// apiserver vanish); `restore()` lets connections through again, to the
/// apiserver set by `set_upstream` (an apiserver restart or fail-over).
pub struct Proxy {
    pub url: String,
    up: Arc<AtomicBool>,
    /// Connections refused while cut: a client that tried to reconnect.
    refused: Arc<AtomicUsize>,
    upstream: Arc<Mutex<String>>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
    acceptor: JoinHandle<()>,
}

impl Proxy {
    pub async fn start(upstream_url: &str) -> Proxy {
        let upstream = Arc::new(Mutex::new(host_port(upstream_url)));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let refused = Arc::new(AtomicUsize::new(0));
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let acceptor = tokio::spawn({
            let (up, refused, conns, upstream) = (up.clone(), refused.clone(), conns.clone(), upstream.clone());
            async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    if !up.load(Ordering::SeqCst) {
                        refused.fetch_add(1, Ordering::SeqCst);
                        drop(inbound); // refuse: close at once
                        continue;
                    }
                    let upstream_addr = upstream.lock().unwrap().clone();
                    let task = tokio::spawn(async move {
                        if let Ok(mut outbound) = TcpStream::connect(&upstream_addr).await {
                            let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                    conns.lock().unwrap().push(task);
                }
            }
        });
        Proxy { url: format!("http://{addr}"), up, refused, upstream, conns, acceptor }
    }

    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for task in self.conns.lock().unwrap().drain(..) {
            task.abort();
        }
    }

    /// How many connections were refused while cut.
    pub fn refused(&self) -> usize {
        self.refused.load(Ordering::SeqCst)
    }

    /// Send new connections to another apiserver.
    pub fn set_upstream(&self, url: &str) {
        *self.upstream.lock().unwrap() = host_port(url);
    }

    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.acceptor.abort();
    }
}

/// http://host:port[/…] → host:port
fn host_port(url: &str) -> String {
    let rest = url.strip_prefix("http://").expect("the proxy handles plain http only");
    let hp = rest.split('/').next().unwrap();
    if hp.contains(':') { hp.to_string() } else { format!("{hp}:80") }
}
