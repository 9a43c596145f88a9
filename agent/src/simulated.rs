//! Many simulated nodes in one process (`--runtime fake --nodes N`), as kwok
//! does: each node registers, keeps its Lease fresh and its status reported,
//! and its pods go Running and Ready (with an IP from the node's podCIDR)
//! after `--fake-pod-start-delay`, then disappear when deleted. No container
//! ever runs.
//!
//! Scale is the point (5000 nodes on one core), so nothing here is per node
//! that need not be:
//!
//! * **One heartbeat task for all nodes.** The lease period is cut into
//!   100 ms slots and node *i* renews in slot *i mod slots*, so 5000 nodes
//!   with a 10 s period make a steady 50 small merge patches every 100 ms
//!   instead of 5000 at once; at most `--heartbeat-concurrency` requests are
//!   in flight. Node statuses are re-posted the same way, every
//!   `--node-status-report-frequency` (they never change on their own).
//! * **One pod watch for all nodes** (`spec.nodeName!=`), filtered by node
//!   name in memory, feeding one work queue and a few workers.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use chrono::Utc;
use futures::StreamExt;
use ipnet::Ipv4Net;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeSystemInfo, Pod, Taint};
use kube::api::{DeleteParams, Preconditions};
use kube::{Api, Client};
use machinery::informer::Informer;
use machinery::workqueue::WorkQueue;
use serde::Deserialize;

use crate::node::{self, q, NodeConfig, RuntimeHealth, LEASE_NAMESPACE};
use crate::options::{self, Options};
use crate::pods;
use crate::runtime::fake::{running_status, IpAllocator};

/// A group of identical simulated nodes (one entry of `--nodes-file`).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeGroup {
    pub count: usize,
    /// Names are `<namePrefix><index>`; defaults to the global prefix.
    #[serde(default)]
    pub name_prefix: Option<String>,
    #[serde(default = "default_cpu")]
    pub cpu: String,
    #[serde(default = "default_memory")]
    pub memory: String,
    #[serde(default = "default_storage")]
    pub ephemeral_storage: String,
    #[serde(default = "default_pods")]
    pub pods: u32,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub taints: Vec<Taint>,
}

fn default_cpu() -> String {
    "32".into()
}
fn default_memory() -> String {
    "256Gi".into()
}
fn default_storage() -> String {
    "1Ti".into()
}
fn default_pods() -> u32 {
    110
}

/// The nodes file: `{nodes: [NodeGroup...]}` in YAML or JSON.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodesFile {
    pub nodes: Vec<NodeGroup>,
}

/// Everything the simulation needs.
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub prefix: String,
    pub groups: Vec<NodeGroup>,
    pub internal_ip: String,
    pub port: i32,
    pub lease_duration_seconds: i32,
    pub renew_interval: Duration,
    pub status_report_frequency: Duration,
    pub cluster_cidr: Ipv4Net,
    pub pod_start_delay: Duration,
    pub concurrency: usize,
    /// With one node and no explicit prefix, the node is named exactly this.
    pub single_name: Option<String>,
}

impl SimConfig {
    pub fn from_options(o: &Options) -> Result<Self> {
        let groups = match &o.nodes_file {
            Some(f) => {
                let text = std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
                let file: NodesFile = serde_yaml::from_str(&text).with_context(|| format!("parsing {}", f.display()))?;
                file.nodes
            }
            None => vec![NodeGroup {
                count: o.nodes,
                name_prefix: None,
                cpu: o.node_cpu.clone(),
                memory: o.node_memory.clone(),
                ephemeral_storage: o.node_ephemeral_storage.clone(),
                pods: o.max_pods,
                labels: options::parse_labels(&o.node_labels)?.into_iter().collect(),
                taints: options::parse_taints(&o.register_with_taints)?,
            }],
        };
        let name = o.node_name();
        let single = o.nodes_file.is_none() && o.nodes == 1 && o.node_name_prefix.is_none();
        Ok(Self {
            prefix: o.node_name_prefix.clone().unwrap_or_else(|| format!("{name}-")),
            groups,
            internal_ip: o.node_ip.clone().unwrap_or_else(node::host_ip),
            port: o.port as i32,
            lease_duration_seconds: o.node_lease_duration_seconds,
            renew_interval: o.lease_renew_interval(),
            status_report_frequency: o.node_status_report_frequency,
            cluster_cidr: o.cluster_cidr.parse().with_context(|| format!("invalid --cluster-cidr {}", o.cluster_cidr))?,
            pod_start_delay: o.fake_pod_start_delay,
            concurrency: o.heartbeat_concurrency.max(1),
            single_name: single.then_some(name),
        })
    }

    /// One NodeConfig per simulated node, each with its own /24 podCIDR.
    pub fn node_configs(&self) -> Result<Vec<NodeConfig>> {
        let mut cidrs = self.cluster_cidr.subnets(24.max(self.cluster_cidr.prefix_len())).context("cluster CIDR")?;
        let info = NodeSystemInfo {
            architecture: node::go_arch().into(),
            container_runtime_version: "fake://0.1.0".into(),
            kernel_version: "fake".into(),
            kubelet_version: node::KUBELET_VERSION.into(),
            operating_system: "linux".into(),
            os_image: "rkube simulated node".into(),
            ..Default::default()
        };
        let mut out = Vec::new();
        for g in &self.groups {
            let prefix = g.name_prefix.clone().unwrap_or_else(|| self.prefix.clone());
            for i in 0..g.count {
                let name = match &self.single_name {
                    Some(n) => n.clone(),
                    None => format!("{prefix}{i}"),
                };
                let cidr = cidrs.next().context("--cluster-cidr has too few /24 subnets for this many nodes")?;
                let capacity: BTreeMap<String, _> = [
                    ("cpu".to_string(), q(g.cpu.clone())),
                    ("ephemeral-storage".to_string(), q(g.ephemeral_storage.clone())),
                    ("memory".to_string(), q(g.memory.clone())),
                    ("pods".to_string(), q(g.pods.to_string())),
                ]
                .into();
                out.push(NodeConfig {
                    name: name.clone(),
                    labels: g.labels.clone(),
                    taints: g.taints.clone(),
                    allocatable: capacity.clone(),
                    capacity,
                    internal_ip: self.internal_ip.clone(),
                    hostname: name,
                    node_info: NodeSystemInfo { machine_id: format!("{:032x}", out.len()), ..info.clone() },
                    port: self.port,
                    pod_cidr: Some(cidr.to_string()),
                });
            }
        }
        let mut names: Vec<&str> = out.iter().map(|c| c.name.as_str()).collect();
        names.sort();
        names.dedup();
        if names.len() != out.len() {
            bail!("simulated node names are not unique (check name prefixes)");
        }
        Ok(out)
    }
}

/// The slot (of `slots`) in which item `i` of `n` acts: items spread evenly.
pub fn slot_of(i: usize, n: usize, slots: usize) -> usize {
    if n == 0 {
        0
    } else {
        i * slots / n
    }
}

/// One simulated node's runtime state.
struct SimNode {
    cfg: NodeConfig,
    uid: Option<String>,
    ips: Mutex<IpAllocator>,
    status: Mutex<k8s_openapi::api::core::v1::NodeStatus>,
}

/// Running simulation: nodes and their pods.
pub struct Simulation {
    nodes: Arc<HashMap<String, Arc<SimNode>>>,
    order: Arc<Vec<Arc<SimNode>>>,
}

impl Simulation {
    pub fn node_names(&self) -> Vec<String> {
        self.order.iter().map(|n| n.cfg.name.clone()).collect()
    }
}

fn fake_health() -> RuntimeHealth {
    RuntimeHealth { ready: true, message: String::new(), images: vec![] }
}

/// Registers every node (bounded concurrency), then runs heartbeats and pod
/// workers until the future is dropped.
pub async fn run(client: Client, cfg: SimConfig) -> Result<()> {
    let sim = register_all(&client, &cfg).await?;
    tracing::info!(nodes = sim.order.len(), "simulated nodes registered");
    let hb = tokio::spawn(heartbeats(client.clone(), cfg.clone(), sim.order.clone()));
    let pods = tokio::spawn(pod_loop(client, cfg, sim.nodes.clone()));
    let (a, b) = tokio::join!(hb, pods);
    a?;
    b??;
    Ok(())
}

async fn register_all(client: &Client, cfg: &SimConfig) -> Result<Simulation> {
    let configs = cfg.node_configs()?;
    let health = fake_health();
    let results: Vec<Result<SimNode>> = futures::stream::iter(configs)
        .map(|c| {
            let health = health.clone();
            let client = client.clone();
            async move {
                let stored = node::register(&client, &c, &health).await?;
                // Use the stored podCIDR (a controller may have assigned another).
                let cidr = stored.spec.as_ref().and_then(|s| s.pod_cidr.clone()).or(c.pod_cidr.clone()).context("node without podCIDR")?;
                let net: Ipv4Net = cidr.parse().with_context(|| format!("podCIDR {cidr}"))?;
                let status = node::node_status(&c, &health, stored.status.as_ref(), Utc::now());
                let uid = stored.metadata.uid.clone();
                Ok(SimNode { cfg: NodeConfig { pod_cidr: Some(cidr), ..c }, uid, ips: Mutex::new(IpAllocator::new(net)), status: Mutex::new(status) })
            }
        })
        .buffer_unordered(cfg.concurrency)
        .collect()
        .await;
    let mut order = Vec::new();
    for r in results {
        order.push(Arc::new(r?));
    }
    order.sort_by(|a, b| a.cfg.name.cmp(&b.cfg.name));
    // Post the first status (the node may have existed with an old one) and the first lease.
    let leases: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
    let nodes_api: Api<Node> = Api::all(client.clone());
    let errors: Vec<anyhow::Error> = futures::stream::iter(order.clone())
        .map(|n| {
            let (leases, nodes_api) = (leases.clone(), nodes_api.clone());
            let d = cfg.lease_duration_seconds;
            async move {
                let status = n.status.lock().unwrap().clone();
                node::post_status(&nodes_api, &n.cfg.name, &status).await?;
                node::renew_lease(&leases, &n.cfg.name, n.uid.as_deref(), d).await
            }
        })
        .buffer_unordered(cfg.concurrency)
        .filter_map(|r| async move { r.err() })
        .collect()
        .await;
    if let Some(e) = errors.into_iter().next() {
        return Err(e.context("first heartbeat"));
    }
    let nodes = order.iter().map(|n| (n.cfg.name.clone(), n.clone())).collect();
    Ok(Simulation { nodes: Arc::new(nodes), order: Arc::new(order) })
}

/// Lease renewals and status re-posts, spread over 100 ms slots.
async fn heartbeats(client: Client, cfg: SimConfig, nodes: Arc<Vec<Arc<SimNode>>>) {
    const SLOT: Duration = Duration::from_millis(100);
    let leases: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
    let nodes_api: Api<Node> = Api::all(client);
    let lease_slots = (cfg.renew_interval.as_millis() / SLOT.as_millis()).max(1) as usize;
    let status_slots = (cfg.status_report_frequency.as_millis() / SLOT.as_millis()).max(1) as usize;
    let n = nodes.len();
    // Slot → node indexes, computed once.
    let by_slot = |slots: usize| {
        let mut v = vec![Vec::new(); slots];
        for i in 0..n {
            v[slot_of(i, n, slots)].push(i);
        }
        v
    };
    let (lease_plan, status_plan) = (by_slot(lease_slots), by_slot(status_slots));
    let mut tick = tokio::time::interval(SLOT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut k: usize = 0;
    loop {
        tick.tick().await;
        let lease_due = lease_plan[k % lease_slots].iter().map(|&i| (i, false));
        // Status re-posts start one full period after registration.
        let status_due = status_plan[k % status_slots].iter().filter(|_| k >= status_slots).map(|&i| (i, true));
        let due: Vec<(usize, bool)> = lease_due.chain(status_due).collect();
        futures::stream::iter(due)
            .for_each_concurrent(cfg.concurrency, |(i, is_status)| {
                let node = nodes[i].clone();
                let (leases, nodes_api) = (leases.clone(), nodes_api.clone());
                let d = cfg.lease_duration_seconds;
                async move {
                    let res = if is_status {
                        let status = {
                            let mut s = node.status.lock().unwrap();
                            *s = node::node_status(&node.cfg, &fake_health(), Some(&s), Utc::now());
                            s.clone()
                        };
                        node::post_status(&nodes_api, &node.cfg.name, &status).await.map(drop)
                    } else {
                        node::renew_lease(&leases, &node.cfg.name, node.uid.as_deref(), d).await
                    };
                    if let Err(e) = res {
                        tracing::warn!(node = node.cfg.name, error = %format!("{e:#}"), "simulated heartbeat failed");
                    }
                }
            })
            .await;
        k = k.wrapping_add(1);
    }
}

/// Pods bound to any simulated node: one watch, one queue, a few workers.
async fn pod_loop(client: Client, cfg: SimConfig, nodes: Arc<HashMap<String, Arc<SimNode>>>) -> Result<()> {
    let api: Api<Pod> = Api::all(client.clone());
    let queue: WorkQueue<String> = WorkQueue::new();
    let informer = Informer::new(api.clone()).fields("spec.nodeName!=");
    let ours = nodes.clone();
    let q2 = queue.clone();
    // Only pods of our nodes reach the queue.
    let filter = move |p: &Pod| p.spec.as_ref().and_then(|s| s.node_name.as_deref()).is_some_and(|n| ours.contains_key(n));
    let filter = Arc::new(filter);
    let (f1, f2, f3) = (filter.clone(), filter.clone(), filter);
    let (qa, qb, qc) = (q2.clone(), q2.clone(), q2);
    informer.add_event_handler(
        machinery::informer::HandlerFns::new()
            .on_add(move |p: &Arc<Pod>| {
                if f1(p) {
                    qa.add(machinery::informer::key_of(p.as_ref()))
                }
            })
            .on_update(move |_, p: &Arc<Pod>| {
                if f2(p) {
                    qb.add(machinery::informer::key_of(p.as_ref()))
                }
            })
            .on_delete(move |p: &Arc<Pod>| {
                if f3(p) {
                    qc.add(machinery::informer::key_of(p.as_ref()))
                }
            }),
    );
    let store = informer.store();
    let handle = informer.spawn();
    informer.wait_for_sync().await;
    // Which pod (uid) holds which IP on which node, to release on deletion.
    let owners: Arc<Mutex<HashMap<String, (String, String)>>> = Arc::default();
    let workers = (0..cfg.concurrency.clamp(1, 16)).map(|_| {
        let (queue, store, nodes, client, owners, cfg) = (queue.clone(), store.clone(), nodes.clone(), client.clone(), owners.clone(), cfg.clone());
        async move {
            while let Some(key) = queue.get().await {
                match sync_fake_pod(&client, &cfg, &nodes, store.get(&key), &key, &owners).await {
                    Ok(Some(delay)) => {
                        queue.forget(&key);
                        queue.add_after(key.clone(), delay)
                    }
                    Ok(None) => queue.forget(&key),
                    Err(e) => {
                        tracing::warn!(pod = key, error = %format!("{e:#}"), "fake pod sync failed");
                        queue.add_rate_limited(key.clone());
                    }
                }
                queue.done(&key);
            }
        }
    });
    futures::future::join_all(workers).await;
    handle.abort();
    Ok(())
}

/// One pod: start it (after the delay), or finish its deletion. Returns a
/// delay after which to look again.
async fn sync_fake_pod(
    client: &Client,
    cfg: &SimConfig,
    nodes: &HashMap<String, Arc<SimNode>>,
    pod: Option<Arc<Pod>>,
    key: &str,
    owners: &Mutex<HashMap<String, (String, String)>>,
) -> Result<Option<Duration>> {
    let release = |key: &str| {
        if let Some((node, uid)) = owners.lock().unwrap().remove(key) {
            if let Some(n) = nodes.get(&node) {
                n.ips.lock().unwrap().release(&uid);
            }
        }
    };
    let Some(pod) = pod else {
        release(key);
        return Ok(None);
    };
    let node_name = pod.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default();
    let Some(node) = nodes.get(&node_name) else { return Ok(None) };
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let (ns, name) = machinery::informer::split_key(key);
    let api: Api<Pod> = Api::namespaced(client.clone(), ns.unwrap_or("default"));
    if pod.metadata.deletion_timestamp.is_some() {
        // Nothing to stop: confirm the deletion (grace 0), as the kubelet
        // does once its containers are gone.
        let dp = DeleteParams { grace_period_seconds: Some(0), preconditions: Some(Preconditions { uid: Some(uid), resource_version: None }), ..Default::default() };
        match api.delete(name, &dp).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
        release(key);
        return Ok(None);
    }
    let status = pod.status.as_ref();
    let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("Pending");
    if matches!(phase, "Succeeded" | "Failed") {
        release(key);
        return Ok(None);
    }
    let have_ip = status.and_then(|s| s.pod_ip.as_deref()).and_then(|ip| ip.parse().ok());
    if phase == "Running" {
        if let Some(ip) = have_ip {
            // Already running (perhaps from before an agent restart): keep its IP.
            if node.ips.lock().unwrap().reserve(&uid, ip) {
                owners.lock().unwrap().insert(key.to_string(), (node_name.clone(), uid));
            }
            return Ok(None);
        }
    }
    if !cfg.pod_start_delay.is_zero() {
        let created = pod.metadata.creation_timestamp.as_ref().map(|t| t.0).unwrap_or_else(Utc::now);
        let due = created + chrono::Duration::from_std(cfg.pod_start_delay)?;
        let now = Utc::now();
        if due > now {
            return Ok(Some((due - now).to_std().unwrap_or_default()));
        }
    }
    let ip = node.ips.lock().unwrap().allocate(&uid).with_context(|| format!("node {node_name}: podCIDR exhausted"))?;
    owners.lock().unwrap().insert(key.to_string(), (node_name.clone(), uid));
    let new = running_status(&pod, &node.cfg.internal_ip, ip, Utc::now());
    pods::patch_status(&api, name, &new).await?;
    Ok(None)
}

/// Reads `--nodes-file` contents (for tests and the benchmark).
pub fn parse_nodes_file(text: &str) -> Result<Vec<NodeGroup>> {
    Ok(serde_yaml::from_str::<NodesFile>(text)?.nodes)
}

/// Convenience for tests: the simulation of `cfg` in the background.
pub fn spawn(client: Client, cfg: SimConfig) -> tokio::task::JoinHandle<Result<()>> {
    tokio::spawn(run(client, cfg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_spread_evenly() {
        let n = 5000;
        let slots = 100;
        let mut count = vec![0; slots];
        for i in 0..n {
            count[slot_of(i, n, slots)] += 1;
        }
        assert!(count.iter().all(|&c| c == 50), "{count:?}");
        // Fewer nodes than slots: one node in some slots, none in others.
        let used: std::collections::BTreeSet<usize> = (0..3).map(|i| slot_of(i, 3, 100)).collect();
        assert_eq!(used.into_iter().collect::<Vec<_>>(), vec![0, 33, 66]);
    }

    fn sim(groups: Vec<NodeGroup>) -> SimConfig {
        SimConfig {
            prefix: "sim-".into(),
            groups,
            internal_ip: "192.0.2.1".into(),
            port: 10250,
            lease_duration_seconds: 40,
            renew_interval: Duration::from_secs(10),
            status_report_frequency: Duration::from_secs(300),
            cluster_cidr: "10.128.0.0/9".parse().unwrap(),
            pod_start_delay: Duration::ZERO,
            concurrency: 4,
            single_name: None,
        }
    }

    #[test]
    fn nodes_file_groups() {
        let groups = parse_nodes_file(
            "nodes:\n- count: 2\n  cpu: '4'\n  labels: {zone: a}\n- count: 1\n  namePrefix: big-\n  memory: 1Ti\n  taints: [{key: gpu, effect: NoSchedule}]\n",
        )
        .unwrap();
        let cfgs = sim(groups).node_configs().unwrap();
        let names: Vec<&str> = cfgs.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["sim-0", "sim-1", "big-0"]);
        assert_eq!(cfgs[0].capacity["cpu"].0, "4");
        assert_eq!(cfgs[0].labels["zone"], "a");
        assert_eq!(cfgs[2].capacity["memory"].0, "1Ti");
        assert_eq!(cfgs[2].taints[0].key, "gpu");
        let cidrs: Vec<&str> = cfgs.iter().map(|c| c.pod_cidr.as_deref().unwrap()).collect();
        assert_eq!(cidrs, ["10.128.0.0/24", "10.128.1.0/24", "10.128.2.0/24"]);
        assert!(parse_nodes_file("nodes: [{count: 1, colour: red}]").is_err());
    }

    #[test]
    fn duplicate_names_rejected() {
        let g = NodeGroup { count: 1, name_prefix: None, cpu: "1".into(), memory: "1Gi".into(), ephemeral_storage: "1Gi".into(), pods: 10, labels: Default::default(), taints: vec![] };
        assert!(sim(vec![g.clone(), g]).node_configs().is_err());
    }
}
