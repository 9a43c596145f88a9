//! The in-process runner: drives the real [`SchedulingQueue`], [`Cache`]
//! (with assume + finish-binding, as the real scheduler does right after
//! choosing a node) and [`GenericScheduler`] over generated objects.
//! Binding always "succeeds" instantly (there is no API).
//!
//! A workload that schedules in well under a second measures nothing
//! stable, so the runner repeats it, each time on fresh state (new cache,
//! queue and algorithm, nodes and init pods set up again, none of it
//! timed), until the measured phases add up to [`RunOptions::min_seconds`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::algorithm::GenericScheduler;
use crate::cache::{Cache, Snapshot};
use crate::config::SchedulerConfig;
use crate::node_info::PodInfo;
use crate::perf::report::{Repetitions, Report};
use crate::perf::workload::{Workload, WorkloadError};
use crate::queue::SchedulingQueue;

#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Throughput window (1 s as upstream's throughput collector).
    pub window: Duration,
    /// Overrides the workload's own `config`.
    pub config: Option<SchedulerConfig>,
    /// Repeat the workload until the measured time of all repetitions adds
    /// up to at least this much (zero: run it once).
    pub min_seconds: Duration,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions { window: Duration::from_secs(1), config: None, min_seconds: Duration::ZERO }
    }
}

/// What one scheduling loop produced.
struct LoopOutcome {
    /// (completion offset from start, attempt latency) per scheduled pod.
    scheduled: Vec<(Duration, Duration)>,
    unschedulable: usize,
    first_failure: Option<String>,
}

fn schedule_all(
    pods: Vec<Arc<PodInfo>>,
    queue: &mut SchedulingQueue,
    cache: &mut Cache,
    snapshot: &mut Snapshot,
    algo: &mut GenericScheduler,
    start: Instant,
) -> LoopOutcome {
    for p in pods {
        queue.add(p);
    }
    let mut out = LoopOutcome { scheduled: Vec::new(), unschedulable: 0, first_failure: None };
    while let Some(qp) = queue.pop() {
        let t0 = Instant::now();
        cache.update_snapshot(snapshot);
        match algo.schedule(&qp.info, snapshot) {
            Ok(r) => {
                let key = qp.info.key();
                cache.assume_pod(qp.info.clone(), &r.suggested_host).expect("pod not yet in cache");
                queue.done(&key);
                // Binding "succeeds" at once (in-process: no API).
                cache.finish_binding(&key).expect("just assumed");
                let t1 = Instant::now();
                out.scheduled.push((t1 - start, t1 - t0));
            }
            Err(e) => {
                if out.first_failure.is_none() {
                    out.first_failure = Some(e.to_string());
                }
                out.unschedulable += 1;
                queue.add_unschedulable(qp);
            }
        }
    }
    // Pods still parked at the end are the unschedulable ones; count each once.
    out.unschedulable = queue.lengths().unschedulable + queue.lengths().backoff;
    out
}

/// One repetition: set-up (not timed), then the measured pods.
struct Repetition {
    nodes: usize,
    init_pods: usize,
    measured_pods: usize,
    out: LoopOutcome,
    elapsed: Duration,
}

fn run_once(workload: &Workload, config: &SchedulerConfig) -> Result<Repetition, WorkloadError> {
    let mut algo = GenericScheduler::new(config).map_err(|e| WorkloadError::Template {
        what: "config",
        index: 0,
        err: e.to_string(),
    })?;
    let mut queue = SchedulingQueue::with_real_clock(config);
    let mut cache = Cache::new();
    let nodes = workload.generate_nodes()?;
    let num_nodes = nodes.len();
    for n in nodes {
        cache.add_node(Arc::new(n));
    }
    for s in &workload.services {
        cache.set_service(&s.namespace, &s.name, Some(&s.selector));
    }
    let mut snapshot = Snapshot::default();

    // Init pods: same path, not measured.
    let init: Vec<Arc<PodInfo>> =
        workload.generate_init_pods()?.into_iter().map(|p| Arc::new(PodInfo::new(Arc::new(p)))).collect();
    let num_init = init.len();
    let init_out = schedule_all(init, &mut queue, &mut cache, &mut snapshot, &mut algo, Instant::now());
    // Forget the init pods that did not fit (they would distort the measure).
    let mut q2 = SchedulingQueue::with_real_clock(config);
    std::mem::swap(&mut queue, &mut q2);

    // Measured pods: PodInfo built up front, as the informer would have.
    let measured: Vec<Arc<PodInfo>> =
        workload.generate_measure_pods()?.into_iter().map(|p| Arc::new(PodInfo::new(Arc::new(p)))).collect();
    let num_measured = measured.len();
    let start = Instant::now();
    let out = schedule_all(measured, &mut queue, &mut cache, &mut snapshot, &mut algo, start);
    let elapsed = start.elapsed();
    Ok(Repetition { nodes: num_nodes, init_pods: num_init - init_out.unschedulable, measured_pods: num_measured, out, elapsed })
}

/// Run `workload` in-process and measure the measured pods, repeated on
/// fresh state until `opts.min_seconds` of measured time. The report's
/// throughput is over all the measured time (the repetitions' measured
/// phases laid end to end), its pod counts are totals over the
/// repetitions, and `repetitions` gives their count and per-repetition
/// spread.
pub fn run_in_process(workload: &Workload, opts: &RunOptions) -> Result<Report, WorkloadError> {
    let config = opts.config.clone().or_else(|| workload.config.clone()).unwrap_or_default();
    let mut first: Option<Repetition> = None;
    let mut scheduled: Vec<(Duration, Duration)> = Vec::new();
    let mut per_rep: Vec<(usize, Duration)> = Vec::new();
    let (mut total, mut measured_pods, mut unschedulable) = (Duration::ZERO, 0, 0);
    let mut first_failure = None;
    loop {
        let mut rep = run_once(workload, &config)?;
        scheduled.extend(rep.out.scheduled.iter().map(|(t, l)| (total + *t, *l)));
        total += rep.elapsed;
        measured_pods += rep.measured_pods;
        unschedulable += rep.out.unschedulable;
        per_rep.push((rep.out.scheduled.len(), rep.elapsed));
        if first_failure.is_none() {
            first_failure = rep.out.first_failure.take();
        }
        // A repetition that scheduled nothing would only repeat itself.
        let idle = rep.out.scheduled.is_empty() || rep.elapsed.is_zero();
        if first.is_none() {
            first = Some(rep);
        }
        if total >= opts.min_seconds || idle {
            break;
        }
    }
    let first = first.expect("at least one repetition");
    let mut report = Report::build(
        &workload.name,
        "in-process",
        first.nodes,
        first.init_pods,
        measured_pods,
        &scheduled,
        unschedulable,
        first_failure,
        total,
        opts.window,
    );
    report.repetitions = Repetitions::of(&per_rep).expect("at least one repetition");
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_workload_schedules_everything_it_can() {
        let w = Workload::from_yaml(
            r#"
name: tiny
nodes:
  - count: 10
    template:
      metadata: {name: "n-$(i)", labels: {kubernetes.io/hostname: "n-$(i)"}}
      status: {allocatable: {cpu: "2", memory: "4Gi", pods: "110"}}
initPods:
  - count: 5
    template:
      metadata: {name: "init-$(i)", namespace: default}
      spec: {containers: [{name: c, image: pause, resources: {requests: {cpu: "1"}}}]}
measurePods:
  - count: 20
    template:
      metadata: {name: "m-$(i)", namespace: default}
      spec: {containers: [{name: c, image: pause, resources: {requests: {cpu: "1"}}}]}
"#,
        )
        .unwrap();
        let r = run_in_process(&w, &RunOptions::default()).unwrap();
        // 10 nodes × 2 cpu = 20 slots, 5 used by init pods: 15 of 20 fit.
        assert_eq!((r.nodes, r.init_pods, r.measured_pods), (10, 5, 20));
        assert_eq!((r.scheduled, r.unschedulable), (15, 5));
        assert_eq!(r.first_failure.as_deref(), Some("0/10 nodes are available: 10 Insufficient cpu."));
        assert!(r.throughput.average > 0.0);
        assert!(r.latency_ms.p50 <= r.latency_ms.p90);
        assert_eq!(r.repetitions.count, 1);
    }

    #[test]
    fn repeats_until_min_seconds_on_fresh_state() {
        let w = Workload::from_yaml(
            r#"
name: tiny
nodes:
  - count: 2
    template:
      metadata: {name: "n-$(i)", labels: {kubernetes.io/hostname: "n-$(i)"}}
      status: {allocatable: {cpu: "2", memory: "4Gi", pods: "110"}}
measurePods:
  - count: 5
    template:
      metadata: {name: "m-$(i)", namespace: default}
      spec: {containers: [{name: c, image: pause, resources: {requests: {cpu: "1"}}}]}
"#,
        )
        .unwrap();
        let min = Duration::from_millis(50);
        let r = run_in_process(&w, &RunOptions { min_seconds: min, ..Default::default() }).unwrap();
        let n = r.repetitions.count;
        assert!(n > 1, "{n}");
        assert!(r.duration_seconds >= min.as_secs_f64(), "{}", r.duration_seconds);
        // Fresh state each time: every repetition fits 4 of the 5 pods again.
        assert_eq!((r.measured_pods, r.scheduled, r.unschedulable), (5 * n, 4 * n, n));
        assert_eq!(r.repetitions.throughput.n, n);
        assert!(r.repetitions.throughput.min <= r.repetitions.throughput.max);
        let avg = r.scheduled as f64 / r.duration_seconds;
        assert!((r.throughput.average - avg).abs() < 1e-6 * avg);
    }
}
