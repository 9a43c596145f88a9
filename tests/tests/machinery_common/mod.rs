//! Shared by the `machinery_*` integration tests: clients, polling, and a
//! TCP proxy that can cut a client off or send it to another apiserver.
//! Each test starts its own etcd + apiserver with `e2e::Cluster`.
#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use kube::Client;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

pub async fn client_for(url: &str) -> Client {
    machinery::client::connect_as("machinery-test", Some(url), None).await.unwrap()
}

#[allow(unused_imports)]
pub use e2e::eventually;

/// A loopback TCP proxy in front of the apiserver. `cut()` closes every
/// connection through it and refuses new ones (the client sees the
/// apiserver vanish); `restore()` lets connections through again, to the
/// apiserver set by `set_upstream` (an apiserver restart or fail-over).
pub struct Proxy {
    pub url: String,
    up: Arc<AtomicBool>,
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
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let acceptor = tokio::spawn({
            let (up, conns, upstream) = (up.clone(), conns.clone(), upstream.clone());
            async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    if !up.load(Ordering::SeqCst) {
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
        Proxy { url: format!("http://{addr}"), up, upstream, conns, acceptor }
    }

    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for task in self.conns.lock().unwrap().drain(..) {
            task.abort();
        }
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
