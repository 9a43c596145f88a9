//! Shared by the `machinery_*` integration tests: where the apiserver is,
//! a private namespace per test, and a TCP proxy that can cut a client off.
//!
//! Until `e2e::Cluster` exists these tests run against an apiserver you
//! started yourself:
//!
//! ```text
//! RKUBE_TEST_APISERVER=http://127.0.0.1:8080 \
//! RKUBE_TEST_ETCD=http://127.0.0.1:2379 \
//!   cargo test -p rkube-tests --test machinery_informer -- --ignored
//! ```
//!
//! `RKUBE_TEST_ETCD` (the apiserver's etcd) is needed only by the test that
//! compacts etcd to force a 410.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use kube::{Api, Client};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

pub fn apiserver_url() -> String {
    std::env::var("RKUBE_TEST_APISERVER")
        .expect("set RKUBE_TEST_APISERVER to a running rkube-apiserver URL (see machinery_common/mod.rs)")
}

pub fn etcd_endpoint() -> String {
    std::env::var("RKUBE_TEST_ETCD").expect("set RKUBE_TEST_ETCD to the apiserver's etcd endpoint")
}

pub async fn client_for(url: &str) -> Client {
    machinery::client::connect_as("machinery-test", Some(url), None).await.unwrap()
}

pub async fn client() -> Client {
    client_for(&apiserver_url()).await
}

/// Unique across tests running in parallel and across runs.
pub fn unique_suffix() -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{:x}{:x}{}", std::process::id(), nanos, N.fetch_add(1, Ordering::SeqCst))
}

/// A namespace unique to one test, deleted when dropped (even on panic).
pub struct TestNamespace {
    pub name: String,
    url: String,
}

impl TestNamespace {
    pub async fn new(prefix: &str) -> Self {
        let name = format!("{prefix}-{}", unique_suffix());
        let api: Api<Namespace> = Api::all(client().await);
        let ns = Namespace { metadata: ObjectMeta { name: Some(name.clone()), ..Default::default() }, ..Default::default() };
        api.create(&PostParams::default(), &ns).await.expect("creating the test namespace");
        TestNamespace { name, url: apiserver_url() }
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        let (name, url) = (self.name.clone(), self.url.clone());
        // Drop cannot await, and may run inside a runtime: use a thread.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let api: Api<Namespace> = Api::all(client_for(&url).await);
                let _ = api.delete(&name, &DeleteParams::default()).await;
            });
        })
        .join();
    }
}

/// Poll `f` every 20 ms until it returns Some, or panic after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A loopback TCP proxy in front of the apiserver. `cut()` closes every
/// connection through it and refuses new ones (the client sees the
/// apiserver vanish); `restore()` lets connections through again.
pub struct Proxy {
    pub url: String,
    up: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
    acceptor: JoinHandle<()>,
}

impl Proxy {
    pub async fn start(upstream_url: &str) -> Proxy {
        // http://host:port[/…] → host:port
        let rest = upstream_url.strip_prefix("http://").expect("the proxy handles plain http only");
        let host_port = rest.split('/').next().unwrap();
        let upstream_addr =
            if host_port.contains(':') { host_port.to_string() } else { format!("{host_port}:80") };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let acceptor = tokio::spawn({
            let (up, conns) = (up.clone(), conns.clone());
            async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    if !up.load(Ordering::SeqCst) {
                        drop(inbound); // refuse: close at once
                        continue;
                    }
                    let upstream_addr = upstream_addr.clone();
                    let task = tokio::spawn(async move {
                        if let Ok(mut outbound) = TcpStream::connect(&upstream_addr).await {
                            let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                    conns.lock().unwrap().push(task);
                }
            }
        });
        Proxy { url: format!("http://{addr}"), up, conns, acceptor }
    }

    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for task in self.conns.lock().unwrap().drain(..) {
            task.abort();
        }
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

/// Compact the apiserver's etcd up to its current revision, so every older
/// resourceVersion is gone and a watch from one gets 410 Gone.
pub async fn compact_etcd() {
    let mut etcd = etcd_client::Client::connect([etcd_endpoint()], None).await.unwrap();
    let rev = etcd.get("/", None).await.unwrap().header().unwrap().revision();
    etcd.compact(rev, Some(etcd_client::CompactionOptions::new().with_physical())).await.unwrap();
}
