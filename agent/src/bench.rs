//! Benchmarks of the node agent (the lead wires `rkube bench agent` to these):
//!
//! * [`simulated_nodes`] — one process (this one) keeps N simulated nodes
//!   Ready: registration time, then CPU (fraction of one core) and resident
//!   memory while heartbeating for a measuring window.
//! * [`pod_startup`] — N pods bound to a real node: time from create to
//!   Running and Ready as a client sees it (p50/p99).

use std::time::{Duration, Instant};

use anyhow::Result;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client};

use crate::simulated::{self, SimConfig};

/// CPU time (user + system) of this process so far.
pub fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11).and_then(|u| u.parse::<u64>().ok()).unwrap_or(0) + f.get(12).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
    // /proc reports in USER_HZ clock ticks, which Linux fixes at 100 for user space.
    let hz = 100;
    Duration::from_millis(ticks * 1000 / hz)
}

/// Resident set size of this process, in bytes.
pub fn process_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok()).unwrap_or(0) * 1024
}

#[derive(Clone, Debug)]
pub struct SimulatedReport {
    pub nodes: usize,
    pub registration: Duration,
    pub window: Duration,
    /// CPU used during the window, as a fraction of one core.
    pub cpu_cores: f64,
    pub max_rss_bytes: u64,
    /// Nodes Ready (per the API) at the end of the window.
    pub ready_at_end: usize,
}

fn is_ready(n: &Node) -> bool {
    n.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Runs `cfg`'s simulated nodes in this process, waits until all are
/// registered and Ready, then measures for `window`.
pub async fn simulated_nodes(client: Client, cfg: SimConfig, window: Duration) -> Result<SimulatedReport> {
    let total: usize = cfg.groups.iter().map(|g| g.count).sum();
    let label = "kubernetes.io/hostname".to_string();
    let started = Instant::now();
    let sim = simulated::spawn(client.clone(), cfg.clone());
    let nodes: Api<Node> = Api::all(client.clone());
    let ours = |n: &Node| n.metadata.name.as_deref().is_some_and(|x| x.starts_with(&cfg.prefix));
    loop {
        anyhow::ensure!(!sim.is_finished(), "simulation ended early");
        let list = nodes.list(&ListParams::default().labels(&label)).await?;
        if list.items.iter().filter(|n| ours(n) && is_ready(n)).count() >= total {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let registration = started.elapsed();
    let (cpu0, t0) = (process_cpu(), Instant::now());
    let mut max_rss = process_rss();
    while t0.elapsed() < window {
        tokio::time::sleep(Duration::from_millis(500)).await;
        max_rss = max_rss.max(process_rss());
    }
    let cpu = process_cpu() - cpu0;
    let wall = t0.elapsed();
    let list = nodes.list(&ListParams::default().labels(&label)).await?;
    let ready_at_end = list.items.iter().filter(|n| ours(n) && is_ready(n)).count();
    sim.abort();
    Ok(SimulatedReport { nodes: total, registration, window: wall, cpu_cores: cpu.as_secs_f64() / wall.as_secs_f64(), max_rss_bytes: max_rss, ready_at_end })
}

#[derive(Clone, Debug)]
pub struct StartupReport {
    pub pods: usize,
    /// Create → Running and Ready, sorted.
    pub latencies: Vec<Duration>,
}

impl StartupReport {
    pub fn percentile(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let i = ((p / 100.0) * (self.latencies.len() as f64 - 1.0)).round() as usize;
        self.latencies[i.min(self.latencies.len() - 1)]
    }
}

/// Creates `n` busybox pods bound to `node` at once (as a Deployment's
/// ReplicaSet would, with the scheduler's binding already done) and
/// measures each one's time to Running and Ready. Deletes them afterwards.
pub async fn pod_startup(client: Client, node: &str, image: &str, n: usize, timeout: Duration) -> Result<StartupReport> {
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let run = format!("bench-{}", std::process::id());
    let mut created = std::collections::HashMap::new();
    for i in 0..n {
        let name = format!("{run}-{i}");
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"bench": run}},
            "spec": {"nodeName": node, "terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "c", "image": image, "imagePullPolicy": "IfNotPresent", "command": ["sleep", "3600"]}]}
        }))?;
        created.insert(name, Instant::now());
        pods.create(&PostParams::default(), &pod).await?;
    }
    let mut latencies = std::collections::HashMap::new();
    let start = Instant::now();
    while latencies.len() < n && start.elapsed() < timeout {
        let list = pods.list(&ListParams::default().labels(&format!("bench={run}"))).await?;
        for p in list.items {
            let name = p.metadata.name.clone().unwrap_or_default();
            let ready = p.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            if ready && !latencies.contains_key(&name) {
                latencies.insert(name.clone(), created[&name].elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = pods.delete_collection(&DeleteParams::default(), &ListParams::default().labels(&format!("bench={run}"))).await;
    anyhow::ensure!(latencies.len() == n, "only {} of {n} pods became Ready within {timeout:?}", latencies.len());
    let mut latencies: Vec<Duration> = latencies.into_values().collect();
    latencies.sort();
    Ok(StartupReport { pods: n, latencies })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let r = StartupReport { pods: 5, latencies: (1..=5).map(Duration::from_secs).collect() };
        assert_eq!(r.percentile(50.0), Duration::from_secs(3));
        assert_eq!(r.percentile(99.0), Duration::from_secs(5));
        assert!(process_cpu() > Duration::ZERO || process_rss() > 0);
        assert!(process_rss() > 0);
    }
}
