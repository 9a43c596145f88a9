//! Command-line flags, named as kube-scheduler names them
//! (`cmd/kube-scheduler/app/options`). Durations are Go duration strings
//! (`15s`, `500ms`, `1m30s`) as upstream takes them.

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Parser};

/// The profile name pods ask for in `spec.schedulerName` by default.
pub const DEFAULT_SCHEDULER_NAME: &str = "default-scheduler";

#[derive(Debug, Clone, Parser)]
#[command(name = "rkube-scheduler", version, about = "Assigns pending pods to nodes (kube-scheduler).")]
pub struct Options {
    /// Path to a kubeconfig file with the apiserver's address and credentials.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,

    /// The address of the apiserver (overrides the kubeconfig's server).
    #[arg(long)]
    pub master: Option<String>,

    /// The scheduler configuration file (YAML, see `config`).
    #[arg(long)]
    pub config: Option<PathBuf>,

    /// Only pods whose `spec.schedulerName` is this are scheduled by us.
    /// (Upstream has deprecated it in favour of profiles in the config file.)
    #[arg(long, default_value = DEFAULT_SCHEDULER_NAME)]
    pub scheduler_name: String,

    /// Campaign for a Lease and schedule only while holding it, so several
    /// copies can run and one acts. `--leader-elect=false` to disable.
    #[arg(long, default_value_t = true, action = ArgAction::Set, num_args = 0..=1,
          default_missing_value = "true", require_equals = false)]
    pub leader_elect: bool,

    /// How long a standby waits, after last seeing the lease renewed, before taking over.
    #[arg(long, default_value = "15s", value_parser = machinery::duration::parse)]
    pub leader_elect_lease_duration: Duration,

    /// How long the leader keeps trying to renew before it gives up leading.
    #[arg(long, default_value = "10s", value_parser = machinery::duration::parse)]
    pub leader_elect_renew_deadline: Duration,

    /// How often candidates try to acquire and the leader renews.
    #[arg(long, default_value = "2s", value_parser = machinery::duration::parse)]
    pub leader_elect_retry_period: Duration,

    /// Namespace of the Lease object.
    #[arg(long, default_value = "kube-system")]
    pub leader_elect_resource_namespace: String,

    /// Name of the Lease object.
    #[arg(long, default_value = "kube-scheduler")]
    pub leader_elect_resource_name: String,

    /// Port for /healthz and /metrics. Upstream serves HTTPS here; rkube
    /// serves plain HTTP. 0 disables.
    #[arg(long, default_value_t = 10259)]
    pub secure_port: u16,

    /// The old insecure port (upstream removed it in 1.23): plain HTTP
    /// /healthz and /metrics as well. 0 (default) disables.
    #[arg(long, default_value_t = 0)]
    pub port: u16,

    /// Address to serve on. Loopback by default (upstream: 0.0.0.0) because
    /// the port is plain HTTP for now.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind_address: String,

    /// Events written per second at most; more are dropped (upstream's
    /// events share the client's `--kube-api-qps` 50 limit and the
    /// broadcaster drops when its queue is full). The name is kubelet's.
    #[arg(long, default_value_t = 50.0)]
    pub event_qps: f64,

    /// Burst of events allowed above `--event-qps`.
    #[arg(long, default_value_t = 100)]
    pub event_burst: u32,

    /// Binding requests in flight at most (upstream: one goroutine per
    /// binding, throttled by the client's QPS limit).
    #[arg(long, default_value_t = 64)]
    pub parallel_bindings: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_as_kube_scheduler() {
        let check = |args: &[&str], expected: (bool, &str, u16, Duration)| {
            let o = Options::try_parse_from(std::iter::once("rkube-scheduler").chain(args.iter().copied())).unwrap();
            assert_eq!((o.leader_elect, o.scheduler_name.as_str(), o.secure_port, o.leader_elect_lease_duration), expected, "{args:?}");
        };
        let s = Duration::from_secs;
        check(&[], (true, "default-scheduler", 10259, s(15)));
        check(&["--leader-elect=false"], (false, "default-scheduler", 10259, s(15)));
        check(&["--leader-elect", "--scheduler-name=mine"], (true, "mine", 10259, s(15)));
        check(&["--leader-elect=true", "--leader-elect-lease-duration=2s", "--secure-port=0"], (true, "default-scheduler", 0, s(2)));
        assert!(Options::try_parse_from(["x", "--leader-elect-lease-duration=2"]).is_err());
    }
}
