//! Shared by the `controller_*` integration tests: start rkube-controller
//! against an `e2e::Cluster`, play the node agent (bind pods, report them
//! Running/Ready, finish graceful deletions), and poll.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::{Api, Client};
use serde_json::json;

pub const WAIT: Duration = Duration::from_secs(60);

/// A running rkube-controller, killed on drop.
pub struct Controller {
    pub child: Child,
    pub log: std::path::PathBuf,
    pub health_url: String,
}

impl Controller {
    pub fn start(cluster: &e2e::Cluster, flags: &[&str]) -> Controller {
        let port = e2e::free_port();
        let log = cluster.dir.path().join(format!("controller-{port}.log"));
        let mut cmd = Command::new(e2e::bin("rkube-controller"));
        cmd.arg(format!("--master={}", cluster.api.url))
            .arg(format!("--secure-port={port}"))
            .args(flags)
            .env("RUST_LOG", "info");
        if !flags.iter().any(|f| f.starts_with("--leader-elect")) {
            cmd.arg("--leader-elect=false");
        }
        let child = e2e::spawn_logged(cmd, &log);
        Controller { child, log, health_url: format!("http://127.0.0.1:{port}") }
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Its `/metrics` text, or None while it does not answer.
    pub fn metrics(&self) -> Option<String> {
        e2e::try_http(&self.health_url, "GET", "/metrics", None, b"").ok().filter(|r| r.status == 200).map(|r| r.text())
    }

    /// Adds so far to the work queue `queue` (0 before the queue exists).
    pub fn queue_adds(&self, queue: &str) -> f64 {
        self.metrics().and_then(|m| e2e::metric(&m, &format!("workqueue_adds_total{{name=\"{queue}\"}}"))).unwrap_or(0.0)
    }

    /// Waits until the work queue `queue` has taken more than `adds_before`
    /// keys and has processed every key it took (see
    /// [`e2e::work_queue_drained`]): proof that the controller looked at
    /// what changed since `adds_before` was read, and finished acting on it.
    pub async fn wait_drained(&self, queue: &str, adds_before: f64) {
        eventually(&format!("the {queue} work queue to take new keys and drain"), WAIT, || async {
            self.metrics().and_then(|m| e2e::work_queue_drained(&m, queue)).filter(|adds| *adds > adds_before)
        })
        .await;
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- controller log ({}) ----\n{}", self.log.display(), self.logs());
        }
        self.kill();
    }
}

#[allow(unused_imports)]
pub use e2e::eventually;

pub async fn active_pods(client: &Client, ns: &str) -> Vec<Pod> {
    let pods = Api::<Pod>::namespaced(client.clone(), ns).list(&Default::default()).await.unwrap();
    pods.items.into_iter().filter(|p| p.metadata.deletion_timestamp.is_none()).collect()
}

pub fn pod_name(p: &Pod) -> String {
    p.metadata.name.clone().unwrap()
}

pub fn names(pods: &[Pod]) -> BTreeSet<String> {
    pods.iter().map(pod_name).collect()
}

pub fn is_ready(p: &Pod) -> bool {
    p.status.as_ref().and_then(|s| s.conditions.as_ref()).into_iter().flatten().any(|c| c.type_ == "Ready" && c.status == "True")
}

/// Binds `pod` to `node` (POST pods/<name>/binding), as a scheduler would.
pub async fn bind(client: &Client, ns: &str, pod: &str, node: &str) {
    try_bind(client, ns, pod, node).await.unwrap();
}

pub async fn try_bind(client: &Client, ns: &str, pod: &str, node: &str) -> Result<(), kube::Error> {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": pod}, "target": {"apiVersion": "v1", "kind": "Node", "name": node}});
    api.create_subresource::<serde_json::Value>("binding", pod, &PostParams::default(), serde_json::to_vec(&binding).unwrap()).await.map(|_| ())
}

/// Reports `pod` Running with Ready=`ready` and `ip`, as a node agent would.
pub async fn set_ready(client: &Client, ns: &str, pod: &str, ready: bool, ip: &str) {
    try_set_ready(client, ns, pod, ready, ip).await.unwrap();
}

pub async fn try_set_ready(client: &Client, ns: &str, pod: &str, ready: bool, ip: &str) -> Result<(), kube::Error> {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let status = if ready { "True" } else { "False" };
    let now = k8s_openapi::chrono::Utc::now().to_rfc3339_opts(k8s_openapi::chrono::SecondsFormat::Secs, true);
    let patch = json!({"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
        "conditions": [{"type": "Ready", "status": status, "lastTransitionTime": now}]}});
    api.patch_status(pod, &PatchParams::default(), &Patch::Merge(&patch)).await.map(|_| ())
}

/// Plays the node agent for one namespace: every new pod is bound to
/// `node` and reported Running and Ready with a unique IP; pods being
/// deleted gracefully are finished off (deleted with grace 0). Returns the
/// task; abort it to stop. `ready` can be switched off to leave new pods
/// pending.
pub struct FakeKubelet {
    pub task: tokio::task::JoinHandle<()>,
    pub ready: Arc<Mutex<bool>>,
}

impl Drop for FakeKubelet {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn fake_kubelet(client: Client, ns: &str, node: &str) -> FakeKubelet {
    let ready = Arc::new(Mutex::new(true));
    let (ns, node, r) = (ns.to_string(), node.to_string(), ready.clone());
    let task = tokio::spawn(async move {
        let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let mut n = 0u32;
        let mut seen = BTreeSet::new();
        let stream = watcher(api.clone(), watcher::Config::default());
        futures::pin_mut!(stream);
        while let Some(ev) = stream.next().await {
            let pods = match ev {
                Ok(watcher::Event::Apply(p)) | Ok(watcher::Event::InitApply(p)) => vec![p],
                Err(e) => {
                    eprintln!("fake kubelet: watch: {e}");
                    continue;
                }
                _ => continue,
            };
            for p in pods {
                let name = pod_name(&p);
                if p.metadata.deletion_timestamp.is_some() {
                    let _ = api.delete(&name, &DeleteParams { grace_period_seconds: Some(0), ..Default::default() }).await;
                    continue;
                }
                if !*r.lock().unwrap() || seen.contains(&name) {
                    continue;
                }
                let unbound = p.spec.as_ref().and_then(|s| s.node_name.as_deref()).is_none_or(|n| n.is_empty());
                if unbound {
                    seen.insert(name.clone());
                    n += 1;
                    let ip = format!("10.244.{}.{}", n / 250, n % 250 + 2);
                    if let Err(e) = try_bind(&client, &ns, &name, &node).await {
                        eprintln!("fake kubelet: binding {name}: {e}");
                        continue;
                    }
                    if let Err(e) = try_set_ready(&client, &ns, &name, true, &ip).await {
                        eprintln!("fake kubelet: status of {name}: {e}");
                    }
                }
            }
        }
    });
    FakeKubelet { task, ready }
}

pub async fn create_namespace(client: &Client, ns: &str) {
    let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    api.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap()).await.unwrap();
}
