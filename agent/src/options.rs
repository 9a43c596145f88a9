//! Command-line flags, named as the kubelet names them.
//!
//! The kubelet reads most of its settings from a `KubeletConfiguration`
//! file; the flags below are the ones that still exist as flags (or did,
//! before being moved into the file) and mean the same thing here.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use k8s_openapi::api::core::v1::Taint;

/// Which container runtime drives the pods.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RuntimeKind {
    /// A real CRI runtime at `--container-runtime-endpoint` (containerd).
    Remote,
    /// No containers at all (like kwok): pods go Running and Ready after
    /// `--fake-pod-start-delay`, with an IP from the node's podCIDR. One
    /// process can run many simulated nodes (`--nodes`).
    Fake,
}

#[derive(Clone, Debug, Parser)]
#[command(name = "rkube-agent", version, about = "rkube's node agent (Kubernetes' kubelet): registers the node, heartbeats, and runs its pods through CRI")]
pub struct Options {
    /// The node's name (default: the host name, lower-cased).
    #[arg(long)]
    pub node_name: Option<String>,
    /// kubeconfig file for the apiserver.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// The apiserver URL (overrides the kubeconfig's server).
    #[arg(long)]
    pub master: Option<String>,
    /// The CRI endpoint (`unix:///run/containerd/containerd.sock`).
    #[arg(long, default_value = "unix:///run/containerd/containerd.sock")]
    pub container_runtime_endpoint: String,
    /// `remote` (CRI) or `fake` (simulated nodes, no containers).
    #[arg(long, value_enum, default_value = "remote")]
    pub runtime: RuntimeKind,
    /// Most pods this node accepts (status.capacity.pods).
    #[arg(long, default_value_t = 110)]
    pub max_pods: u32,
    /// Labels added on registration: `k1=v1,k2=v2`.
    #[arg(long, default_value = "")]
    pub node_labels: String,
    /// Taints added on registration: `key=value:Effect,key2:Effect`.
    #[arg(long, default_value = "")]
    pub register_with_taints: String,
    /// Port of the healthz server (0 disables it).
    #[arg(long, default_value_t = 10248)]
    pub healthz_port: u16,
    /// Address the healthz server binds.
    #[arg(long, default_value = "127.0.0.1")]
    pub healthz_bind_address: String,
    /// Port of the agent's API (container logs, exec); published as
    /// status.daemonEndpoints.kubeletEndpoint.Port.
    #[arg(long, default_value_t = 10250)]
    pub port: u16,
    /// Address the agent's API binds.
    #[arg(long, default_value = "0.0.0.0")]
    pub address: String,
    /// The node's InternalIP (default: the host's first non-loopback IPv4).
    #[arg(long)]
    pub node_ip: Option<String>,
    /// Agent state directory (pod log directories live under `<root-dir>/pods` unless `--pod-log-dir`).
    #[arg(long, default_value = "/var/lib/rkube-agent")]
    pub root_dir: PathBuf,
    /// Where pod sandboxes' log directories are created (`/var/log/pods` on a kubelet).
    #[arg(long)]
    pub pod_log_dir: Option<PathBuf>,
    /// How often the node status is computed (and posted if it changed).
    #[arg(long, default_value = "10s", value_parser = machinery::duration::parse)]
    pub node_status_update_frequency: Duration,
    /// How often the node status is posted even if unchanged.
    #[arg(long, default_value = "5m", value_parser = machinery::duration::parse)]
    pub node_status_report_frequency: Duration,
    /// Lease duration in seconds (`spec.leaseDurationSeconds`); renewed every quarter of it (10 s for 40 s).
    #[arg(long, default_value_t = 40)]
    pub node_lease_duration_seconds: i32,
    /// The node's podCIDR, if no controller assigns one (`spec.podCIDR`).
    #[arg(long)]
    pub pod_cidr: Option<String>,
    /// First crash-loop back-off delay (doubles up to `--max-container-restart-backoff`).
    #[arg(long, default_value = "10s", value_parser = machinery::duration::parse)]
    pub container_restart_backoff: Duration,
    #[arg(long, default_value = "300s", value_parser = machinery::duration::parse)]
    pub max_container_restart_backoff: Duration,
    /// Image pull back-off (ErrImagePull, then ImagePullBackOff).
    #[arg(long, default_value = "10s", value_parser = machinery::duration::parse)]
    pub image_pull_backoff: Duration,
    /// At most this many pods start (sandbox + first containers) at once;
    /// the rest wait their turn. 0: no bound (the kubelet has none). rkube's
    /// own flag: starting a pod is CPU-bound in containerd, runc and CNI, so
    /// on a small machine a bound makes most pods Running sooner.
    #[arg(long, default_value_t = 4)]
    pub max_parallel_pod_starts: usize,
    /// How often each pod worker re-syncs even without events.
    #[arg(long, default_value = "10s", value_parser = machinery::duration::parse)]
    pub sync_frequency: Duration,

    // ----- simulated nodes (--runtime fake) -----
    /// How many simulated nodes this process runs.
    #[arg(long, default_value_t = 1)]
    pub nodes: usize,
    /// Simulated node names: `<prefix><index>` (default `<node-name>-`).
    #[arg(long)]
    pub node_name_prefix: Option<String>,
    /// Simulated capacity.
    #[arg(long, default_value = "32")]
    pub node_cpu: String,
    #[arg(long, default_value = "256Gi")]
    pub node_memory: String,
    #[arg(long, default_value = "1Ti")]
    pub node_ephemeral_storage: String,
    /// YAML/JSON file listing simulated node groups (count, cpu, memory, pods, labels, taints); overrides the flags above.
    #[arg(long)]
    pub nodes_file: Option<PathBuf>,
    /// Range simulated nodes get their podCIDRs from (a /24 each).
    #[arg(long, default_value = "10.128.0.0/9")]
    pub cluster_cidr: String,
    /// How long a simulated pod takes to go Running.
    #[arg(long, default_value = "0s", value_parser = machinery::duration::parse)]
    pub fake_pod_start_delay: Duration,
    /// Most concurrent API requests of the simulated nodes' heartbeats.
    #[arg(long, default_value_t = 32)]
    pub heartbeat_concurrency: usize,
}

impl Options {
    pub fn node_name(&self) -> String {
        self.node_name.clone().unwrap_or_else(host_name)
    }

    pub fn lease_renew_interval(&self) -> Duration {
        // The kubelet renews every quarter of the lease duration (10 s for 40 s).
        Duration::from_millis((self.node_lease_duration_seconds.max(1) as u64) * 250)
    }

    pub fn pod_log_dir(&self) -> PathBuf {
        self.pod_log_dir.clone().unwrap_or_else(|| self.root_dir.join("pods"))
    }
}

/// The host name, lower-cased (the kubelet's default node name).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_lowercase()).unwrap_or_else(|_| "localhost".into())
}

/// `k1=v1,k2=v2` (as `--node-labels`).
pub fn parse_labels(s: &str) -> Result<Vec<(String, String)>> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').with_context(|| format!("invalid label {p:?}: want key=value"))?;
            Ok((k.trim().to_string(), v.trim().to_string()))
        })
        .collect()
}

/// `key=value:Effect,key:Effect` (as `--register-with-taints`).
pub fn parse_taints(s: &str) -> Result<Vec<Taint>> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (kv, effect) = p.rsplit_once(':').with_context(|| format!("invalid taint {p:?}: want key[=value]:Effect"))?;
            if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
                bail!("invalid taint effect {effect:?} in {p:?}");
            }
            let (key, value) = match kv.split_once('=') {
                Some((k, v)) => (k.to_string(), Some(v.to_string())),
                None => (kv.to_string(), None),
            };
            Ok(Taint { key, value, effect: effect.to_string(), time_added: None })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_taints(input: &str, expected: Option<Vec<(&str, Option<&str>, &str)>>) {
        let got = parse_taints(input).ok().map(|ts| ts.into_iter().map(|t| (t.key, t.value, t.effect)).collect::<Vec<_>>());
        let expected = expected.map(|v| v.into_iter().map(|(k, v, e)| (k.to_string(), v.map(String::from), e.to_string())).collect::<Vec<_>>());
        assert_eq!(got, expected, "{input:?}");
    }

    #[test]
    fn taints() {
        check_taints("", Some(vec![]));
        check_taints("a=b:NoSchedule,c:NoExecute", Some(vec![("a", Some("b"), "NoSchedule"), ("c", None, "NoExecute")]));
        check_taints("a=b", None);
        check_taints("a=b:Sometimes", None);
    }

    #[test]
    fn labels() {
        assert_eq!(parse_labels("a=1, b=2").unwrap(), vec![("a".into(), "1".into()), ("b".into(), "2".into())]);
        assert!(parse_labels("a").is_err());
        assert!(parse_labels("").unwrap().is_empty());
    }
}
