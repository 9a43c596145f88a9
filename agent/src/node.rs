//! The Node object: registration, status, and the lease heartbeat.
//!
//! A kubelet announces its machine to the cluster by creating a `Node`
//! (*node registration*), then keeps two signals fresh so the node lifecycle
//! controller knows it is alive:
//!
//! * a **Lease** `kube-node-lease/<node>` whose `spec.renewTime` it bumps
//!   every 10 s (a quarter of the 40 s lease duration). A lease update is a
//!   tiny write, so thousands of nodes can heartbeat cheaply; this is the
//!   *node heartbeat* since Kubernetes 1.17.
//! * the **node status** (`nodes/<node>/status`): capacity, allocatable,
//!   conditions, addresses, images… computed every
//!   `--node-status-update-frequency` (10 s) but only *posted* when it
//!   changed or when `--node-status-report-frequency` (5 min) has passed.
//!   Each condition carries a `lastHeartbeatTime` (when it was last posted)
//!   and a `lastTransitionTime` (when its status last flipped).
//!
//! Everything that builds objects here is a pure function of its inputs
//! (easy to test and reused by the simulated nodes); the IO is in
//! [`register`], [`renew_lease`], [`post_status`] and [`Heartbeat`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    ContainerImage, DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus, NodeSystemInfo, Taint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference, Time};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

/// The namespace node leases live in.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";

/// The version this agent reports as `nodeInfo.kubeletVersion` (the API level it implements).
pub const KUBELET_VERSION: &str = concat!("v1.32.0-rkube-", env!("CARGO_PKG_VERSION"));

/// The kubelet keeps at most this many images in `status.images`.
pub const MAX_IMAGES_IN_STATUS: usize = 50;

/// Everything the agent knows about its node, to build the Node object.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeConfig {
    pub name: String,
    /// Labels beyond the well-known ones the agent always sets.
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    pub capacity: BTreeMap<String, Quantity>,
    pub allocatable: BTreeMap<String, Quantity>,
    pub internal_ip: String,
    pub hostname: String,
    pub node_info: NodeSystemInfo,
    /// The agent's API port (`daemonEndpoints.kubeletEndpoint.Port`).
    pub port: i32,
    /// `spec.podCIDR` to register with, if no controller assigns one.
    pub pod_cidr: Option<String>,
}

/// What the runtime says about itself, at each status update.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RuntimeHealth {
    pub ready: bool,
    /// Why the node is not ready (Ready=False message).
    pub message: String,
    pub images: Vec<ContainerImage>,
}

pub fn q(s: impl Into<String>) -> Quantity {
    Quantity(s.into())
}

/// Go's `runtime.GOARCH` for this machine.
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path).map(|s| s.trim().to_string()).unwrap_or_default()
}

/// `PRETTY_NAME` from an os-release text.
pub fn os_image(os_release: &str) -> String {
    os_release
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim().trim_matches('"').to_string())
        .unwrap_or_else(|| "Linux".into())
}

/// `nodeInfo` of this host; `runtime` is `<runtimeName>://<runtimeVersion>` from CRI Version.
pub fn host_info(runtime: &str) -> NodeSystemInfo {
    NodeSystemInfo {
        architecture: go_arch().into(),
        boot_id: read_trimmed("/proc/sys/kernel/random/boot_id"),
        container_runtime_version: runtime.into(),
        kernel_version: read_trimmed("/proc/sys/kernel/osrelease"),
        kube_proxy_version: String::new(),
        kubelet_version: KUBELET_VERSION.into(),
        machine_id: read_trimmed("/etc/machine-id"),
        operating_system: "linux".into(),
        os_image: os_image(&std::fs::read_to_string("/etc/os-release").unwrap_or_default()),
        system_uuid: read_trimmed("/sys/class/dmi/id/product_uuid"),
    }
}

/// `MemTotal` from /proc/meminfo, in bytes.
pub fn mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The host's capacity as the kubelet reports it (cadvisor's machine info):
/// cpu = online CPUs, memory and ephemeral-storage in `Ki`, pods = `--max-pods`.
/// Allocatable subtracts the kubelet's default hard eviction thresholds
/// (`memory.available<100Mi`, `nodefs.available<10%`); no reservations.
pub fn host_capacity(root_dir: &std::path::Path, max_pods: u32) -> (BTreeMap<String, Quantity>, BTreeMap<String, Quantity>) {
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let mem = mem_total(&std::fs::read_to_string("/proc/meminfo").unwrap_or_default()).unwrap_or(0);
    let dir = std::iter::successors(Some(root_dir), |p| p.parent()).find(|p| p.exists()).unwrap_or(std::path::Path::new("/"));
    let disk = nix::sys::statvfs::statvfs(dir).map(|s| s.blocks() as u64 * s.fragment_size() as u64).unwrap_or(0);
    let capacity: BTreeMap<String, Quantity> = [
        ("cpu".to_string(), q(cpus.to_string())),
        ("ephemeral-storage".to_string(), q(format!("{}Ki", disk / 1024))),
        ("memory".to_string(), q(format!("{}Ki", mem / 1024))),
        ("pods".to_string(), q(max_pods.to_string())),
    ]
    .into();
    let mut allocatable = capacity.clone();
    allocatable.insert("memory".into(), q(format!("{}Ki", mem.saturating_sub(100 << 20) / 1024)));
    allocatable.insert("ephemeral-storage".into(), q(format!("{}", disk - disk / 10)));
    (capacity, allocatable)
}

/// The host's first non-loopback IPv4 address not on a pod bridge.
pub fn host_ip() -> String {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else { return "127.0.0.1".into() };
    for a in addrs {
        let name = a.interface_name.as_str();
        if name == "lo" || name.starts_with("rkb") || name.starts_with("cni") || name.starts_with("veth") {
            continue;
        }
        if let Some(sin) = a.address.as_ref().and_then(|s| s.as_sockaddr_in()) {
            let ip = std::net::Ipv4Addr::from(sin.ip());
            if !ip.is_loopback() {
                return ip.to_string();
            }
        }
    }
    "127.0.0.1".into()
}

/// The well-known labels a kubelet puts on its node.
pub fn node_labels(cfg: &NodeConfig) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = [
        ("beta.kubernetes.io/arch".to_string(), cfg.node_info.architecture.clone()),
        ("beta.kubernetes.io/os".to_string(), "linux".to_string()),
        ("kubernetes.io/arch".to_string(), cfg.node_info.architecture.clone()),
        ("kubernetes.io/hostname".to_string(), cfg.hostname.clone()),
        ("kubernetes.io/os".to_string(), "linux".to_string()),
    ]
    .into();
    labels.extend(cfg.labels.clone());
    labels
}

/// The kubelet's four conditions, carrying over transition times from `prev`
/// when a condition's status did not change.
pub fn conditions(prev: &[NodeCondition], health: &RuntimeHealth, now: DateTime<Utc>) -> Vec<NodeCondition> {
    let ready = if health.ready {
        ("True", "KubeletReady", "kubelet is posting ready status".to_string())
    } else {
        ("False", "KubeletNotReady", health.message.clone())
    };
    let wanted = [
        ("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available".to_string()),
        ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure".to_string()),
        ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available".to_string()),
        ("Ready", ready.0, ready.1, ready.2),
    ];
    wanted
        .into_iter()
        .map(|(ty, status, reason, message)| {
            let old = prev.iter().find(|c| c.type_ == ty);
            let transition = match old {
                Some(o) if o.status == status => o.last_transition_time.clone(),
                _ => Some(Time(now)),
            };
            NodeCondition {
                type_: ty.into(),
                status: status.into(),
                reason: Some(reason.into()),
                message: Some(message),
                last_heartbeat_time: Some(Time(now)),
                last_transition_time: transition,
            }
        })
        .collect()
}

/// The full node status.
pub fn node_status(cfg: &NodeConfig, health: &RuntimeHealth, prev: Option<&NodeStatus>, now: DateTime<Utc>) -> NodeStatus {
    let prev_conditions = prev.and_then(|p| p.conditions.as_deref()).unwrap_or(&[]);
    let mut images = health.images.clone();
    images.sort_by(|a, b| b.size_bytes.cmp(&a.size_bytes));
    images.truncate(MAX_IMAGES_IN_STATUS);
    NodeStatus {
        addresses: Some(vec![
            NodeAddress { type_: "InternalIP".into(), address: cfg.internal_ip.clone() },
            NodeAddress { type_: "Hostname".into(), address: cfg.hostname.clone() },
        ]),
        allocatable: Some(cfg.allocatable.clone()),
        capacity: Some(cfg.capacity.clone()),
        conditions: Some(conditions(prev_conditions, health, now)),
        daemon_endpoints: Some(NodeDaemonEndpoints { kubelet_endpoint: Some(DaemonEndpoint { port: cfg.port }) }),
        images: Some(images),
        node_info: Some(cfg.node_info.clone()),
        ..Default::default()
    }
}

/// Do two statuses differ in anything but heartbeat times?
pub fn status_changed(old: &NodeStatus, new: &NodeStatus) -> bool {
    let strip = |s: &NodeStatus| {
        let mut s = s.clone();
        for c in s.conditions.iter_mut().flatten() {
            c.last_heartbeat_time = None;
        }
        s
    };
    strip(old) != strip(new)
}

/// The Node a kubelet registers.
pub fn registration(cfg: &NodeConfig, health: &RuntimeHealth, now: DateTime<Utc>) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(cfg.name.clone()),
            labels: Some(node_labels(cfg)),
            annotations: Some([("node.alpha.kubernetes.io/ttl".to_string(), "0".to_string())].into()),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            pod_cidr: cfg.pod_cidr.clone(),
            pod_cidrs: cfg.pod_cidr.clone().map(|c| vec![c]),
            taints: Some(cfg.taints.clone()).filter(|t| !t.is_empty()),
            ..Default::default()
        }),
        status: Some(node_status(cfg, health, None, now)),
    }
}

/// The node's Lease, owned by the Node so it goes when the node goes.
pub fn lease(node: &str, node_uid: Option<&str>, duration_seconds: i32, now: DateTime<Utc>) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some(node.into()),
            namespace: Some(LEASE_NAMESPACE.into()),
            owner_references: node_uid.map(|uid| {
                vec![OwnerReference { api_version: "v1".into(), kind: "Node".into(), name: node.into(), uid: uid.into(), ..Default::default() }]
            }),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(node.into()),
            lease_duration_seconds: Some(duration_seconds),
            renew_time: Some(MicroTime(now)),
            ..Default::default()
        }),
    }
}

fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

/// Creates the Node, or adopts the one already there (an agent restart).
/// Returns the node as stored (its podCIDR may come from a controller).
pub async fn register(client: &Client, cfg: &NodeConfig, health: &RuntimeHealth) -> Result<Node> {
    let api: Api<Node> = Api::all(client.clone());
    let node = registration(cfg, health, Utc::now());
    match api.create(&PostParams::default(), &node).await {
        Ok(n) => Ok(n),
        Err(e) if is_status(&e, 409) => {
            // Already registered: make sure labels and podCIDR are there; status follows.
            let existing = api.get(&cfg.name).await.with_context(|| format!("getting node {}", cfg.name))?;
            let mut patch = json!({"metadata": {"labels": node_labels(cfg)}});
            let has_cidr = existing.spec.as_ref().and_then(|s| s.pod_cidr.as_ref()).is_some();
            if let (Some(cidr), false) = (&cfg.pod_cidr, has_cidr) {
                patch["spec"] = json!({"podCIDR": cidr, "podCIDRs": [cidr]});
            }
            api.patch(&cfg.name, &PatchParams::default(), &Patch::Merge(&patch)).await.context("updating node on re-registration")
        }
        Err(e) => Err(e).with_context(|| format!("registering node {}", cfg.name)),
    }
}

/// Bumps the lease's renewTime (a merge patch: one request, no conflicts);
/// creates it if it is missing.
pub async fn renew_lease(api: &Api<Lease>, node: &str, node_uid: Option<&str>, duration_seconds: i32) -> Result<()> {
    let now = Utc::now();
    let patch = json!({"spec": {"holderIdentity": node, "leaseDurationSeconds": duration_seconds, "renewTime": MicroTime(now)}});
    match api.patch(node, &PatchParams::default(), &Patch::Merge(&patch)).await {
        Ok(_) => Ok(()),
        Err(e) if is_status(&e, 404) => {
            match api.create(&PostParams::default(), &lease(node, node_uid, duration_seconds, now)).await {
                Ok(_) => Ok(()),
                Err(e) if is_status(&e, 409) => Ok(()),
                Err(e) => Err(e).context("creating node lease"),
            }
        }
        Err(e) => Err(e).context("renewing node lease"),
    }
}

/// Posts the node status (a merge patch: lists such as conditions and
/// images are replaced whole, as the kubelet's patch does).
pub async fn post_status(api: &Api<Node>, node: &str, status: &NodeStatus) -> Result<Node> {
    let patch = json!({"status": status});
    api.patch_status(node, &PatchParams::default(), &Patch::Merge(&patch)).await.context("posting node status")
}

/// How the heartbeat asks the runtime for its health.
pub type HealthFn = Arc<dyn Fn() -> BoxFuture<'static, RuntimeHealth> + Send + Sync>;

/// One node's heartbeat: the lease loop and the status loop.
pub struct Heartbeat {
    pub client: Client,
    pub cfg: NodeConfig,
    pub lease_duration_seconds: i32,
    pub renew_interval: Duration,
    pub status_update_frequency: Duration,
    pub status_report_frequency: Duration,
    pub health: HealthFn,
}

impl Heartbeat {
    /// Runs forever (until the task is aborted).
    pub async fn run(self, mut last: NodeStatus, node_uid: Option<String>) {
        let leases: Api<Lease> = Api::namespaced(self.client.clone(), LEASE_NAMESPACE);
        let nodes: Api<Node> = Api::all(self.client.clone());
        let mut lease_tick = tokio::time::interval(self.renew_interval);
        let mut status_tick = tokio::time::interval(self.status_update_frequency);
        status_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        lease_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_post = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = lease_tick.tick() => {
                    if let Err(e) = renew_lease(&leases, &self.cfg.name, node_uid.as_deref(), self.lease_duration_seconds).await {
                        tracing::warn!(error = %format!("{e:#}"), "lease renewal failed");
                    }
                }
                _ = status_tick.tick() => {
                    let health = (self.health)().await;
                    let status = node_status(&self.cfg, &health, Some(&last), Utc::now());
                    if status_changed(&last, &status) || last_post.elapsed() >= self.status_report_frequency {
                        match post_status(&nodes, &self.cfg.name, &status).await {
                            Ok(_) => { last = status; last_post = tokio::time::Instant::now(); }
                            Err(e) => tracing::warn!(error = %format!("{e:#}"), "node status update failed"),
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> NodeConfig {
        NodeConfig {
            name: "n1".into(),
            labels: [("zone".to_string(), "a".to_string())].into(),
            capacity: [("cpu".to_string(), q("2"))].into(),
            allocatable: [("cpu".to_string(), q("2"))].into(),
            internal_ip: "192.0.2.1".into(),
            hostname: "n1".into(),
            node_info: NodeSystemInfo { architecture: "amd64".into(), kubelet_version: KUBELET_VERSION.into(), ..Default::default() },
            port: 10250,
            ..Default::default()
        }
    }

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap()
    }

    fn check_conditions(prev_ready: Option<(&str, i64)>, ready: bool, expected_ready: (&str, &str, i64)) {
        let prev: Vec<NodeCondition> = prev_ready
            .map(|(status, at)| NodeCondition { type_: "Ready".into(), status: status.into(), last_transition_time: Some(Time(t(at))), ..Default::default() })
            .into_iter()
            .collect();
        let health = RuntimeHealth { ready, message: "runtime down".into(), images: vec![] };
        let got = conditions(&prev, &health, t(100));
        let types: Vec<&str> = got.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, ["MemoryPressure", "DiskPressure", "PIDPressure", "Ready"]);
        let r = &got[3];
        assert_eq!((r.status.as_str(), r.reason.as_deref().unwrap()), (expected_ready.0, expected_ready.1));
        assert_eq!(r.last_transition_time, Some(Time(t(expected_ready.2))));
        assert_eq!(r.last_heartbeat_time, Some(Time(t(100))));
    }

    #[test]
    fn condition_transitions() {
        // First status: every transition is now.
        check_conditions(None, true, ("True", "KubeletReady", 100));
        // Unchanged status keeps its transition time.
        check_conditions(Some(("True", 5)), true, ("True", "KubeletReady", 5));
        // A flip moves it.
        check_conditions(Some(("True", 5)), false, ("False", "KubeletNotReady", 100));
    }

    #[test]
    fn registration_object() {
        let node = registration(&cfg(), &RuntimeHealth { ready: true, ..Default::default() }, t(0));
        let v = serde_json::to_value(&node).unwrap();
        assert_eq!(v["metadata"]["labels"]["kubernetes.io/hostname"], "n1");
        assert_eq!(v["metadata"]["labels"]["kubernetes.io/os"], "linux");
        assert_eq!(v["metadata"]["labels"]["zone"], "a");
        assert_eq!(v["status"]["addresses"], json!([{"type": "InternalIP", "address": "192.0.2.1"}, {"type": "Hostname", "address": "n1"}]));
        assert_eq!(v["status"]["daemonEndpoints"], json!({"kubeletEndpoint": {"Port": 10250}}));
        assert_eq!(v["status"]["conditions"][3]["type"], "Ready");
        assert_eq!(v["status"]["nodeInfo"]["kubeletVersion"], KUBELET_VERSION);
    }

    #[test]
    fn heartbeat_alone_is_no_change() {
        let h = RuntimeHealth { ready: true, ..Default::default() };
        let a = node_status(&cfg(), &h, None, t(0));
        let b = node_status(&cfg(), &h, Some(&a), t(10));
        assert!(!status_changed(&a, &b));
        let c = node_status(&cfg(), &RuntimeHealth { ready: false, ..Default::default() }, Some(&b), t(20));
        assert!(status_changed(&b, &c));
    }

    #[test]
    fn lease_object() {
        let v = serde_json::to_value(lease("n1", Some("u1"), 40, t(0))).unwrap();
        assert_eq!(v["metadata"]["namespace"], "kube-node-lease");
        assert_eq!(v["metadata"]["ownerReferences"][0]["kind"], "Node");
        assert_eq!(v["spec"]["holderIdentity"], "n1");
        assert_eq!(v["spec"]["leaseDurationSeconds"], 40);
        assert_eq!(v["spec"]["renewTime"], "2023-11-14T22:13:20.000000Z");
    }

    #[test]
    fn host_facts() {
        assert_eq!(mem_total("MemTotal:       16384 kB\nMemFree: 1 kB\n"), Some(16384 * 1024));
        assert_eq!(os_image("NAME=x\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n"), "Debian GNU/Linux 12 (bookworm)");
    }
}
