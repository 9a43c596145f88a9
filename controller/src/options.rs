//! Command-line flags, named as kube-controller-manager names them.
//!
//! Durations take Go-style values (`40s`, `5m`, `300ms`, `1h`), as the
//! upstream flags do.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// Every controller this manager knows, in start order. `--controllers=*`
/// enables all of them (upstream has a few disabled-by-default ones, such
/// as `bootstrapsigner`; rkube has none).
pub const ALL_CONTROLLERS: &[&str] = &[
    "replicaset",
    "deployment",
    "endpoint",
    "garbagecollector",
    "namespace",
    "nodelifecycle",
    "nodeipam",
    "podgc",
    "serviceaccount",
    "resourcequota",
];

#[derive(Parser, Debug, Clone)]
#[command(name = "rkube-controller", version, about = "The rkube controller manager: one process, many control loops.")]
pub struct Options {
    /// The address of the apiserver (overrides the kubeconfig's server).
    #[arg(long)]
    pub master: Option<String>,
    /// Path to a kubeconfig file with authorization and master location.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Controllers to enable: `*` enables all, `foo` enables foo, `-foo`
    /// disables foo (e.g. `*,-podgc`).
    #[arg(long, value_delimiter = ',', default_value = "*")]
    pub controllers: Vec<String>,

    /// Campaign for the `kube-system/kube-controller-manager` Lease and run
    /// the controllers only while leading.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub leader_elect: bool,
    #[arg(long, default_value = "15s", value_parser = machinery::duration::parse)]
    pub leader_elect_lease_duration: Duration,
    #[arg(long, default_value = "10s", value_parser = machinery::duration::parse)]
    pub leader_elect_renew_deadline: Duration,
    #[arg(long, default_value = "2s", value_parser = machinery::duration::parse)]
    pub leader_elect_retry_period: Duration,
    #[arg(long, default_value = "kube-system")]
    pub leader_elect_resource_namespace: String,
    #[arg(long, default_value = "kube-controller-manager")]
    pub leader_elect_resource_name: String,

    #[arg(long, default_value_t = 5)]
    pub concurrent_replicaset_syncs: usize,
    #[arg(long, default_value_t = 5)]
    pub concurrent_deployment_syncs: usize,
    #[arg(long, default_value_t = 5)]
    pub concurrent_endpoint_syncs: usize,
    #[arg(long, default_value_t = 20)]
    pub concurrent_gc_syncs: usize,
    #[arg(long, default_value_t = 10)]
    pub concurrent_namespace_syncs: usize,
    #[arg(long, default_value_t = 5)]
    pub concurrent_resource_quota_syncs: usize,
    /// How often every ResourceQuota's usage is recounted in full.
    #[arg(long, default_value = "5m", value_parser = machinery::duration::parse)]
    pub resource_quota_sync_period: Duration,

    /// How often the node lifecycle controller checks node heartbeats.
    #[arg(long, default_value = "5s", value_parser = machinery::duration::parse)]
    pub node_monitor_period: Duration,
    /// A node whose heartbeat is older than this is marked Ready=Unknown.
    #[arg(long, default_value = "40s", value_parser = machinery::duration::parse)]
    pub node_monitor_grace_period: Duration,
    /// How long a pod without its own toleration for the
    /// not-ready/unreachable taints stays on such a node (the value the
    /// apiserver's DefaultTolerationSeconds plugin would have put there).
    #[arg(long, default_value = "5m", value_parser = machinery::duration::parse)]
    pub pod_eviction_timeout: Duration,

    #[arg(long, default_value = "10.244.0.0/16")]
    pub cluster_cidr: ipnet::Ipv4Net,
    #[arg(long, default_value_t = 24)]
    pub node_cidr_mask_size: u8,
    /// Allocate pod CIDRs to nodes (upstream's default is false; rkube's
    /// single-box demo relies on it).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub allocate_node_cidrs: bool,

    /// Terminated pods kept before the pod GC deletes the oldest; 0 disables.
    #[arg(long, default_value_t = 12500)]
    pub terminated_pod_gc_threshold: usize,
    /// How often the pod GC runs (upstream: a 20 s constant, here a hidden
    /// flag so tests need not wait).
    #[arg(long, default_value = "20s", value_parser = machinery::duration::parse, hide = true)]
    pub pod_gc_period: Duration,

    /// Informer resync period (upstream `--min-resync-period`, 12 h,
    /// randomised; rkube uses a fixed value).
    #[arg(long, default_value = "12h", value_parser = machinery::duration::parse)]
    pub min_resync_period: Duration,

    /// Address and port of the /healthz and /metrics server (plain HTTP
    /// until TLS lands); port 0 disables it.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind_address: String,
    #[arg(long, default_value_t = 10257)]
    pub secure_port: u16,
}

impl Options {
    /// Whether `name` runs, by kube-controller-manager's rules: an explicit
    /// `-name` wins, then an explicit `name`, then `*`.
    pub fn is_enabled(&self, name: &str) -> bool {
        let mut star = false;
        for c in &self.controllers {
            let c = c.trim();
            if c == format!("-{name}") {
                return false;
            }
            if c == name {
                return true;
            }
            star |= c == "*";
        }
        star
    }

    /// Names in `--controllers` that are no controller (a typo): an error
    /// upstream too.
    pub fn unknown_controllers(&self) -> Vec<String> {
        self.controllers
            .iter()
            .map(|c| c.trim().trim_start_matches('-').to_string())
            .filter(|c| c != "*" && !c.is_empty() && !ALL_CONTROLLERS.contains(&c.as_str()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(controllers: &str, expect_enabled: &[&str]) {
        let o = Options::parse_from(["rkube-controller", &format!("--controllers={controllers}")]);
        let got: Vec<&str> = ALL_CONTROLLERS.iter().copied().filter(|c| o.is_enabled(c)).collect();
        assert_eq!(got, expect_enabled, "--controllers={controllers}");
    }

    #[test]
    fn controllers_flag() {
        check("*", ALL_CONTROLLERS);
        check("replicaset,deployment", &["replicaset", "deployment"]);
        check("*,-podgc,-nodeipam", &["replicaset", "deployment", "endpoint", "garbagecollector", "namespace", "nodelifecycle", "serviceaccount", "resourcequota"]);
        check("-podgc,*", &["replicaset", "deployment", "endpoint", "garbagecollector", "namespace", "nodelifecycle", "nodeipam", "serviceaccount", "resourcequota"]);
        check("*,-resourcequota", &["replicaset", "deployment", "endpoint", "garbagecollector", "namespace", "nodelifecycle", "nodeipam", "podgc", "serviceaccount"]);
        check("serviceaccount", &["serviceaccount"]);
        check("endpoint", &["endpoint"]);
        let o = Options::parse_from(["x", "--controllers=*,replicaset,bogus"]);
        assert_eq!(o.unknown_controllers(), vec!["bogus".to_string()]);
    }

    #[test]
    fn defaults_match_kube_controller_manager() {
        let o = Options::parse_from(["rkube-controller"]);
        assert_eq!(o.node_monitor_grace_period, Duration::from_secs(40));
        assert_eq!(o.pod_eviction_timeout, Duration::from_secs(300));
        assert_eq!(o.cluster_cidr.to_string(), "10.244.0.0/16");
        assert_eq!(o.node_cidr_mask_size, 24);
        assert_eq!(o.terminated_pod_gc_threshold, 12500);
        assert_eq!(o.resource_quota_sync_period, Duration::from_secs(300));
        assert!(o.leader_elect);
        let o = Options::parse_from(["rkube-controller", "--leader-elect=false"]);
        assert!(!o.leader_elect);
    }
}
