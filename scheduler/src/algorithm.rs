//! The **generic scheduler**: one scheduling cycle for one pod, on one
//! snapshot. Upstream: `pkg/scheduler/schedule_one.go` (`schedulePod`,
//! `findNodesThatFitPod`, `prioritizeNodes`, `selectHost`).
//!
//! 1. **PreFilter**: each predicate precomputes per-pod state.
//! 2. **Filter** (predicates), in parallel over nodes, but only until
//!    [`num_feasible_nodes_to_find`] feasible nodes are found — the
//!    *adaptive percentageOfNodesToScore*: in a 5000-node cluster, checking
//!    all nodes for every pod costs far more than the small gain in placement
//!    quality. Each cycle **starts where the last one stopped**
//!    (`next_start_node_index`), so every node gets its turn.
//! 3. **Score** (priorities), in parallel over the feasible nodes, then
//!    normalise per priority and sum with weights.
//! 4. **selectHost**: highest total, ties round-robin.
//!
//! Where we differ from upstream: upstream filters all nodes with 16
//! goroutines and cancels once enough are found, so *which* nodes are found
//! depends on goroutine timing. We filter in **waves**: each wave checks (in
//! parallel) as many nodes as are still needed (at least [`MIN_WAVE`]), and
//! results are taken in scan order. Same idea, deterministic outcome (tests
//! and benchmarks reproduce), and at most one wave of extra work.
//!
//! Why rayon rather than `std::thread::scope`: a cycle at 10,000 pods/s
//! lasts ~100 µs; spawning OS threads per cycle costs tens of µs. Rayon keeps
//! a pool (one worker per core) and splits work with stealing.

use rayon::prelude::*;

use crate::cache::Snapshot;
use crate::config::{ConfigError, SchedulerConfig};
use crate::framework::{CycleState, FilterResult, FitError, Reason, ScheduleError};
use crate::node_info::{NodeInfo, PodInfo};
use crate::predicates::Predicate;
use crate::priorities::Priority;
use crate::select_host::HostSelector;

/// Upstream `minFeasibleNodesToFind`.
pub const MIN_FEASIBLE_NODES_TO_FIND: usize = 100;
/// Upstream `minFeasibleNodesPercentageToFind`.
pub const MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND: usize = 5;
/// Smallest filter wave.
pub const MIN_WAVE: usize = 64;
/// Below this many nodes, work is done on the calling thread: waking the
/// pool costs more than it saves.
const PARALLEL_THRESHOLD: usize = 128;
/// Nodes per rayon task.
const CHUNK: usize = 32;
/// Upper bound on enabled priorities (there are 6 built-in ones).
pub const MAX_PRIORITIES: usize = 16;

/// How many feasible nodes to look for, as upstream `numFeasibleNodesToFind`:
/// all of them below 100 nodes; otherwise `percentage` of the nodes (if 0,
/// adaptive: `max(5, 50 - nodes/125)` percent), but never fewer than 100.
pub fn num_feasible_nodes_to_find(percentage: u32, num_all_nodes: usize) -> usize {
    if num_all_nodes < MIN_FEASIBLE_NODES_TO_FIND || percentage >= 100 {
        return num_all_nodes;
    }
    let mut p = percentage as usize;
    if p == 0 {
        p = 50usize.saturating_sub(num_all_nodes / 125).max(MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND);
    }
    (num_all_nodes * p / 100).max(MIN_FEASIBLE_NODES_TO_FIND)
}

/// The outcome of a successful cycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleResult {
    pub suggested_host: String,
    /// Nodes the filters ran on.
    pub evaluated_nodes: usize,
    /// Of those, how many passed.
    pub feasible_nodes: usize,
}

fn par_map<T: Send>(len: usize, f: impl Fn(usize) -> T + Sync + Send) -> Vec<T> {
    if len < PARALLEL_THRESHOLD {
        (0..len).map(f).collect()
    } else {
        (0..len).into_par_iter().with_min_len(CHUNK).map(f).collect()
    }
}

/// The scheduling algorithm with its cross-cycle state (scan position,
/// tie-breaking counter). Pure: no I/O, no clock.
pub struct GenericScheduler {
    predicates: Vec<Box<dyn Predicate>>,
    priorities: Vec<(Box<dyn Priority>, i64)>,
    percentage_of_nodes_to_score: u32,
    next_start_node_index: usize,
    host_selector: HostSelector,
}

impl GenericScheduler {
    pub fn new(config: &SchedulerConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(GenericScheduler {
            predicates: config.build_predicates()?,
            priorities: config.build_priorities()?,
            percentage_of_nodes_to_score: config.percentage_of_nodes_to_score,
            next_start_node_index: 0,
            host_selector: HostSelector::new(),
        })
    }

    /// From explicit parts (tests, custom setups).
    pub fn from_parts(
        predicates: Vec<Box<dyn Predicate>>,
        priorities: Vec<(Box<dyn Priority>, i64)>,
        percentage_of_nodes_to_score: u32,
    ) -> Self {
        assert!(priorities.len() <= MAX_PRIORITIES, "at most {MAX_PRIORITIES} priorities");
        GenericScheduler {
            predicates,
            priorities,
            percentage_of_nodes_to_score,
            next_start_node_index: 0,
            host_selector: HostSelector::new(),
        }
    }

    pub fn next_start_node_index(&self) -> usize {
        self.next_start_node_index
    }

    fn run_filters(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> FilterResult {
        for p in &self.predicates {
            p.filter(state, pod, node)?;
        }
        Ok(())
    }

    /// One scheduling cycle: choose a node for `pod`, or explain why none fits.
    pub fn schedule(&mut self, pod: &PodInfo, snapshot: &Snapshot) -> Result<ScheduleResult, ScheduleError> {
        let n = snapshot.len();
        if n == 0 {
            return Err(ScheduleError::NoNodesAvailable);
        }
        let mut state = CycleState::default();
        for p in &self.predicates {
            p.pre_filter(&mut state, pod, snapshot);
        }

        // ---- Filter, in waves, starting where the last cycle stopped ----
        let to_find = num_feasible_nodes_to_find(self.percentage_of_nodes_to_score, n);
        let start = self.next_start_node_index % n;
        let mut feasible: Vec<usize> = Vec::with_capacity(to_find.min(n));
        let mut failed: Vec<(usize, Vec<Reason>)> = Vec::new();
        let mut scanned = 0; // nodes whose result was used
        while feasible.len() < to_find && scanned < n {
            let wave = (to_find - feasible.len()).max(MIN_WAVE).min(n - scanned);
            let base = start + scanned;
            let results = par_map(wave, |j| {
                let node = &snapshot.nodes[(base + j) % n];
                self.run_filters(&state, pod, node)
            });
            for (j, r) in results.into_iter().enumerate() {
                let idx = (base + j) % n;
                scanned += 1;
                match r {
                    Ok(()) => feasible.push(idx),
                    Err(reasons) => failed.push((idx, reasons)),
                }
                if feasible.len() == to_find {
                    break;
                }
            }
        }
        self.next_start_node_index = (start + scanned) % n;

        if feasible.is_empty() {
            return Err(ScheduleError::Fit(FitError {
                num_all_nodes: n,
                node_reasons: failed.into_iter().map(|(i, r)| (snapshot.nodes[i].name.clone(), r)).collect(),
            }));
        }
        let result = |host: usize| ScheduleResult {
            suggested_host: snapshot.nodes[host].name.clone(),
            evaluated_nodes: scanned,
            feasible_nodes: feasible.len(),
        };
        // Upstream: a single feasible node needs no scoring.
        if feasible.len() == 1 || self.priorities.is_empty() {
            let totals = vec![0i64; feasible.len()];
            let pick = self.host_selector.select(&totals).expect("non-empty");
            return Ok(result(feasible[pick]));
        }

        // ---- Score ----
        for (p, _) in &self.priorities {
            p.pre_score(&mut state, pod, snapshot);
        }
        let f = feasible.len();
        // One row of raw scores per feasible node, computed in parallel.
        // A fixed-size row keeps this allocation-free per node; the
        // configuration can name each built-in priority once, so at most
        // MAX_PRIORITIES.
        let rows: Vec<[i64; MAX_PRIORITIES]> = par_map(f, |k| {
            let node = &snapshot.nodes[feasible[k]];
            let mut row = [0i64; MAX_PRIORITIES];
            for (i, (p, _)) in self.priorities.iter().enumerate() {
                row[i] = p.score(&state, pod, node);
            }
            row
        });
        let mut totals = vec![0i64; f];
        let mut column = vec![0i64; f];
        for (i, (p, weight)) in self.priorities.iter().enumerate() {
            for k in 0..f {
                column[k] = rows[k][i];
            }
            p.normalize(&mut column);
            for k in 0..f {
                totals[k] += column[k] * weight;
            }
        }
        let pick = self.host_selector.select(&totals).expect("non-empty");
        Ok(result(feasible[pick]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::Cache;
    use crate::node_info::testutil::*;
    use k8s_openapi::api::core::v1::{Node, Pod};
    use std::sync::Arc;

    #[test]
    fn num_feasible_nodes_as_upstream() {
        let check = |pct: u32, n: usize, expected: usize| {
            assert_eq!(num_feasible_nodes_to_find(pct, n), expected, "pct {pct} nodes {n}");
        };
        check(0, 0, 0);
        check(0, 50, 50);
        check(0, 99, 99);
        check(0, 100, 100); // 48% of 100 = 48 -> at least 100
        check(0, 1000, 420); // 50 - 8 = 42%
        check(0, 5000, 500); // 50 - 40 = 10%
        check(0, 6000, 300); // 50 - 48 = 2% -> floor 5%
        check(0, 15000, 750); // 5%
        check(30, 1000, 300);
        check(1, 1000, 100); // never fewer than 100
        check(100, 5000, 5000);
    }

    fn cluster(nodes: Vec<Node>, pods: Vec<Pod>) -> Snapshot {
        let mut c = Cache::new();
        for n in nodes {
            c.add_node(Arc::new(n));
        }
        for p in pods {
            c.add_pod(Arc::new(p));
        }
        c.snapshot()
    }

    fn on(mut p: Pod, node: &str) -> Pod {
        p.spec.as_mut().unwrap().node_name = Some(node.into());
        p
    }

    fn default_scheduler() -> GenericScheduler {
        GenericScheduler::new(&SchedulerConfig::default()).unwrap()
    }

    fn check(snap: &Snapshot, pod: Pod, expected: Result<&str, &str>) {
        let got = default_scheduler().schedule(&pinfo(pod), snap);
        let got = got.as_ref().map(|r| r.suggested_host.as_str()).map_err(|e| e.to_string());
        assert_eq!(got, expected.map_err(String::from));
    }

    #[test]
    fn fit_error_message_in_upstream_form() {
        let small = |name: &str| {
            let mut n = node(name, &[("cpu", "1"), ("memory", "1Gi"), ("pods", "10")]);
            n.metadata.labels.as_mut().unwrap().insert("pool".into(), "web".into());
            n
        };
        let mut nodes: Vec<Node> = (0..3).map(|i| small(&format!("small{i}"))).collect();
        for i in 0..2 {
            let mut n = node(&format!("big{i}"), &[("cpu", "8"), ("memory", "8Gi"), ("pods", "10")]);
            n.metadata.labels.as_mut().unwrap().insert("pool".into(), "batch".into());
            nodes.push(n);
        }
        let snap = cluster(nodes, vec![]);
        let mut p = pod_req("p", &[("cpu", "2")]);
        p.spec.as_mut().unwrap().node_selector = Some([("pool".to_string(), "web".to_string())].into());
        // Filtering stops at the first failing predicate: big nodes fail on affinity only.
        check(
            &snap,
            p,
            Err("0/5 nodes are available: 2 node(s) didn't match Pod's node affinity/selector, 3 Insufficient cpu."),
        );
        check(&cluster(vec![], vec![]), pod_req("p", &[]), Err("no nodes available to schedule pods"));
    }

    #[test]
    fn picks_the_best_node() {
        let n = |name: &str| node(name, &[("cpu", "4"), ("memory", "4Gi"), ("pods", "10")]);
        // n0 is busy: least requested prefers n1.
        let snap = cluster(vec![n("n0"), n("n1")], vec![on(pod_req("a", &[("cpu", "3"), ("memory", "3Gi")]), "n0")]);
        check(&snap, pod_req("p", &[("cpu", "500m"), ("memory", "512Mi")]), Ok("n1"));
        // Only one node fits.
        check(&snap, pod_req("p", &[("cpu", "2")]), Ok("n1"));
        // Explicit node name.
        let mut p = pod_req("p", &[]);
        p.spec.as_mut().unwrap().node_name = Some("n0".into());
        check(&snap, p, Ok("n0"));
    }

    #[test]
    fn never_panics_on_odd_objects() {
        let mut odd_nodes = vec![
            Node::default(), // no name, no spec, no status
            Node { metadata: Default::default(), spec: None, status: None },
            node("no-alloc", &[]),
        ];
        odd_nodes[1].metadata.name = Some("bare".into());
        let snap = cluster(odd_nodes, vec![Pod::default()]);
        let mut s = default_scheduler();
        for p in [Pod::default(), pod("noc", vec![]), pod_req("p", &[]), pod_req("q", &[("cpu", "bogus")])] {
            let r = s.schedule(&pinfo(p), &snap);
            assert!(matches!(r, Err(ScheduleError::Fit(_))), "{r:?}");
        }
    }

    #[test]
    fn equal_nodes_share_load_round_robin() {
        let nodes: Vec<Node> = (0..4).map(|i| node(&format!("n{i}"), &[("cpu", "4"), ("memory", "4Gi"), ("pods", "10")])).collect();
        let snap = cluster(nodes, vec![]);
        let mut s = default_scheduler();
        // Same snapshot each time (nothing assumed): all nodes tie.
        let picks: Vec<String> =
            (0..8).map(|i| s.schedule(&pinfo(pod_req(&format!("p{i}"), &[])), &snap).unwrap().suggested_host).collect();
        assert_eq!(picks, ["n0", "n1", "n2", "n3", "n0", "n1", "n2", "n3"]);
    }

    #[test]
    fn partial_scan_resumes_where_it_stopped() {
        let nodes: Vec<Node> =
            (0..1000).map(|i| node(&format!("n{i:04}"), &[("cpu", "4"), ("memory", "4Gi"), ("pods", "10")])).collect();
        let snap = cluster(nodes, vec![]);
        let mut s = default_scheduler();
        let r = s.schedule(&pinfo(pod_req("p", &[])), &snap).unwrap();
        // 1000 nodes: 42% -> 420 feasible nodes wanted, all feasible.
        assert_eq!((r.evaluated_nodes, r.feasible_nodes), (420, 420));
        assert_eq!(s.next_start_node_index(), 420);
        s.schedule(&pinfo(pod_req("q", &[])), &snap).unwrap();
        assert_eq!(s.next_start_node_index(), 840);
        s.schedule(&pinfo(pod_req("r", &[])), &snap).unwrap();
        assert_eq!(s.next_start_node_index(), 260); // wrapped around
    }

    #[test]
    fn scan_skips_infeasible_nodes_in_order() {
        // 300 nodes; only every third node has room. 100 feasible wanted (300 < ... -> 50-2=48% = 144).
        let nodes: Vec<Node> = (0..300)
            .map(|i| {
                let cpu = if i % 3 == 0 { "4" } else { "0" };
                node(&format!("n{i:03}"), &[("cpu", cpu), ("memory", "4Gi"), ("pods", "10")])
            })
            .collect();
        let snap = cluster(nodes, vec![]);
        let mut s = default_scheduler();
        let r = s.schedule(&pinfo(pod_req("p", &[("cpu", "1")])), &snap).unwrap();
        assert_eq!(num_feasible_nodes_to_find(0, 300), 144);
        // Only 100 feasible nodes exist: all 300 scanned.
        assert_eq!((r.evaluated_nodes, r.feasible_nodes), (300, 100));
    }
}
