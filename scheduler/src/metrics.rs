//! Prometheus metrics, named as kube-scheduler names them
//! (`pkg/scheduler/metrics/metrics.go`), so existing dashboards read them:
//!
//! * `scheduler_schedule_attempts_total{result,profile}` — attempts by
//!   result: `scheduled`, `unschedulable`, `error`;
//! * `scheduler_scheduling_attempt_duration_seconds{result,profile}` — one
//!   scheduling cycle (snapshot + filter + score + assume), by result;
//! * `scheduler_pod_scheduling_sli_duration_seconds` — end to end per pod:
//!   from first entering the queue to its binding returning (upstream's SLI
//!   metric; it includes time spent waiting in the queue and in backoff);
//! * `scheduler_pending_pods{queue}` — `active`, `backoff`, `unschedulable`;
//! * `scheduler_goroutines{operation="binding"}` — bindings in flight
//!   (upstream counts the goroutines doing them; ours are tokio tasks);
//! * `scheduler_binding_duration_seconds` — the POST `pods/binding` round trip;
//! * `scheduler_events_dropped_total` — events over `--event-qps`;
//! * `leader_election_master_status{name}` — 1 while this process leads.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::queue::QueueLengths;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: String,
    pub profile: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabel {
    pub queue: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabel {
    pub operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NameLabel {
    pub name: String,
}

/// Upstream's results.
pub const SCHEDULED: &str = "scheduled";
pub const UNSCHEDULABLE: &str = "unschedulable";
pub const ERROR: &str = "error";

fn attempt_histogram() -> Histogram {
    // Upstream: ExponentialBuckets(0.001, 2, 15) — 1 ms … 16 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

fn sli_histogram() -> Histogram {
    // Upstream: ExponentialBuckets(0.01, 2, 20) — 10 ms … ~1.5 h.
    Histogram::new(exponential_buckets(0.01, 2.0, 20))
}

pub struct Metrics {
    registry: Registry,
    profile: String,
    pub attempts: Family<ResultLabels, Counter>,
    pub attempt_duration: Family<ResultLabels, Histogram, fn() -> Histogram>,
    pub pod_scheduling_sli: Histogram,
    pub pending_pods: Family<QueueLabel, Gauge>,
    pub goroutines: Family<OperationLabel, Gauge>,
    pub binding_duration: Histogram,
    pub events_dropped: Counter,
    pub leader: Family<NameLabel, Gauge>,
}

impl Metrics {
    pub fn new(profile: &str) -> Self {
        let mut registry = Registry::default();
        let attempts = Family::<ResultLabels, Counter>::default();
        let attempt_duration = Family::<ResultLabels, Histogram, fn() -> Histogram>::new_with_constructor(attempt_histogram);
        let pod_scheduling_sli = sli_histogram();
        let pending_pods = Family::<QueueLabel, Gauge>::default();
        let goroutines = Family::<OperationLabel, Gauge>::default();
        let binding_duration = attempt_histogram();
        let events_dropped = Counter::default();
        let leader = Family::<NameLabel, Gauge>::default();
        let sched = registry.sub_registry_with_prefix("scheduler");
        sched.register("schedule_attempts", "Number of attempts to schedule pods, by the result.", attempts.clone());
        sched.register(
            "scheduling_attempt_duration_seconds",
            "Scheduling attempt latency in seconds (scheduling algorithm + assume).",
            attempt_duration.clone(),
        );
        sched.register(
            "pod_scheduling_sli_duration_seconds",
            "E2e latency for a pod being scheduled, from the time the pod enters the scheduling queue until it is bound.",
            pod_scheduling_sli.clone(),
        );
        sched.register("pending_pods", "Number of pending pods, by the queue type.", pending_pods.clone());
        sched.register("goroutines", "Number of running tasks split by the work they do such as binding.", goroutines.clone());
        sched.register("binding_duration_seconds", "Binding request latency in seconds.", binding_duration.clone());
        sched.register("events_dropped", "Events dropped over the --event-qps limit.", events_dropped.clone());
        registry.register("leader_election_master_status", "1 if this process is the leader, 0 otherwise.", leader.clone());
        for q in ["active", "backoff", "unschedulable", "gated"] {
            pending_pods.get_or_create(&QueueLabel { queue: q.into() }).set(0);
        }
        goroutines.get_or_create(&OperationLabel { operation: "binding".into() }).set(0);
        Metrics {
            registry,
            profile: profile.to_string(),
            attempts,
            attempt_duration,
            pod_scheduling_sli,
            pending_pods,
            goroutines,
            binding_duration,
            events_dropped,
            leader,
        }
    }

    /// Count one scheduling attempt of `seconds` with `result`.
    pub fn attempt(&self, result: &str, seconds: f64) {
        let l = ResultLabels { result: result.into(), profile: self.profile.clone() };
        self.attempts.get_or_create(&l).inc();
        self.attempt_duration.get_or_create(&l).observe(seconds);
    }

    pub fn set_pending(&self, l: QueueLengths) {
        for (q, n) in [("active", l.active), ("backoff", l.backoff), ("unschedulable", l.unschedulable)] {
            self.pending_pods.get_or_create(&QueueLabel { queue: q.into() }).set(n as i64);
        }
    }

    pub fn bindings_in_flight(&self) -> Gauge {
        self.goroutines.get_or_create(&OperationLabel { operation: "binding".into() }).clone()
    }

    pub fn set_leader(&self, lease: &str, leading: bool) {
        self.leader.get_or_create(&NameLabel { name: lease.into() }).set(i64::from(leading));
    }

    /// The Prometheus text format (OpenMetrics).
    pub fn encode(&self) -> String {
        let mut s = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut s, &self.registry);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposes_upstream_names() {
        let m = Metrics::new("default-scheduler");
        m.attempt(SCHEDULED, 0.002);
        m.attempt(UNSCHEDULABLE, 0.004);
        m.set_pending(QueueLengths { active: 3, backoff: 1, unschedulable: 2 });
        m.bindings_in_flight().inc();
        m.set_leader("kube-scheduler", true);
        let text = m.encode();
        for line in [
            r#"scheduler_schedule_attempts_total{result="scheduled",profile="default-scheduler"} 1"#,
            r#"scheduler_schedule_attempts_total{result="unschedulable",profile="default-scheduler"} 1"#,
            r#"scheduler_scheduling_attempt_duration_seconds_count{result="scheduled",profile="default-scheduler"} 1"#,
            r#"scheduler_pending_pods{queue="active"} 3"#,
            r#"scheduler_pending_pods{queue="unschedulable"} 2"#,
            r#"scheduler_goroutines{operation="binding"} 1"#,
            r#"leader_election_master_status{name="kube-scheduler"} 1"#,
            "# TYPE scheduler_pod_scheduling_sli_duration_seconds histogram",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
    }
}
