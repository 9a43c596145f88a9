//! Shared by the `scheduler_*` integration tests: an rkube-scheduler
//! process (killed on drop), object builders, and polling helpers.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::Duration;

use e2e::Cluster;
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::api::{Api, ListParams, PostParams};
use kube::Client;
use serde_json::{json, Value};

/// A running rkube-scheduler, logging to a file in the cluster's temp dir.
pub struct SchedulerProc {
    pub child: Child,
    pub metrics_url: String,
    pub log: PathBuf,
}

impl SchedulerProc {
    pub fn start(c: &Cluster, extra: &[&str]) -> Self {
        let port = e2e::free_port();
        let log = c.dir.path().join(format!("scheduler-{port}.log"));
        let mut cmd = Command::new(e2e::bin("rkube-scheduler"));
        cmd.arg(format!("--master={}", c.api.url))
            .arg(format!("--secure-port={port}"))
            .arg("--bind-address=127.0.0.1")
            .args(extra)
            .env("RUST_LOG", "info");
        let child = e2e::spawn_logged(cmd, &log);
        SchedulerProc { child, metrics_url: format!("http://127.0.0.1:{port}"), log }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `/metrics` text, or None if not serving (yet).
    pub fn metrics(&self) -> Option<String> {
        let hp = self.metrics_url.trim_start_matches("http://");
        std::net::TcpStream::connect(hp).ok()?;
        let r = e2e::http(&self.metrics_url, "GET", "/metrics", None, b"");
        (r.status == 200).then(|| r.text())
    }

    /// Ready (informers synced)?
    pub fn ready(&self) -> bool {
        let hp = self.metrics_url.trim_start_matches("http://");
        std::net::TcpStream::connect(hp).is_ok() && e2e::http(&self.metrics_url, "GET", "/readyz", None, b"").status == 200
    }

    pub async fn wait_ready(&mut self) {
        for _ in 0..600 {
            if self.ready() {
                return;
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("scheduler exited with {st}:\n{}", self.log_text());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("scheduler not ready:\n{}", self.log_text());
    }

    /// Still running?
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for SchedulerProc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A Node with allocatable resources, labels, taints and a Ready condition.
pub fn node(name: &str, alloc: &[(&str, &str)], labels: &[(&str, &str)], taints: Value) -> Node {
    let mut l: serde_json::Map<String, Value> = labels.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
    l.insert("kubernetes.io/hostname".into(), json!(name));
    let alloc: serde_json::Map<String, Value> = alloc.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": l},
        "spec": {"taints": taints},
        "status": {
            "capacity": alloc, "allocatable": alloc,
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "simulated"}],
        },
    }))
    .unwrap()
}

/// A pod from a JSON spec fragment merged into a one-container default.
pub fn pod(name: &str, requests: &[(&str, &str)], spec_extra: Value) -> Pod {
    let req: serde_json::Map<String, Value> = requests.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
    let mut spec = json!({"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10", "resources": {"requests": req}}]});
    if let (Some(s), Some(extra)) = (spec.as_object_mut(), spec_extra.as_object()) {
        for (k, v) in extra {
            s.insert(k.clone(), v.clone());
        }
    }
    serde_json::from_value(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"}, "spec": spec})).unwrap()
}

pub async fn create_nodes(client: &Client, nodes: Vec<Node>) {
    let api: Api<Node> = Api::all(client.clone());
    for n in nodes {
        api.create(&PostParams::default(), &n).await.unwrap();
    }
}

pub async fn create_pod(client: &Client, p: Pod) {
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    api.create(&PostParams::default(), &p).await.unwrap();
}

#[allow(unused_imports)]
pub use e2e::eventually;

/// The node a pod is bound to ("" if none).
pub async fn node_of(client: &Client, name: &str) -> String {
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    api.get(name).await.unwrap().spec.and_then(|s| s.node_name).unwrap_or_default()
}

pub async fn wait_bound(client: &Client, name: &str, timeout: Duration) -> String {
    eventually(&format!("pod {name} bound"), timeout, || async {
        Some(node_of(client, name).await).filter(|n| !n.is_empty())
    })
    .await
}

/// Events about pod `name`: (reason, message, count).
pub async fn events_of(client: &Client, name: &str) -> Vec<(String, String, i32)> {
    let api: Api<Event> = Api::namespaced(client.clone(), "default");
    let list = api.list(&ListParams::default().fields(&format!("involvedObject.name={name}"))).await.unwrap();
    list.items
        .into_iter()
        .map(|e| (e.reason.unwrap_or_default(), e.message.unwrap_or_default(), e.count.unwrap_or(0)))
        .collect()
}
