//! Priority **BalancedAllocation** (upstream
//! `NodeResourcesBalancedAllocation`): prefer nodes where, after placing the
//! pod, CPU and memory are used in similar *fractions*, so no node ends up
//! with free CPU but no memory (stranded capacity). With two resources the
//! standard deviation of the fractions is `|f_cpu - f_mem| / 2`; the score
//! is `(1 - std) × 100`. Fractions are capped at 1; a resource the node has
//! none of is left out. Uses plain requests (not the scoring defaults), as
//! upstream; a pod requesting neither CPU nor memory scores 0 everywhere
//! (upstream skips the plugin for such pods — same ranking).

use super::{Priority, MAX_NODE_SCORE};
use crate::framework::CycleState;
use crate::node_info::{NodeInfo, PodInfo};

pub const NAME: &str = "NodeResourcesBalancedAllocation";

pub struct BalancedAllocation;

impl Priority for BalancedAllocation {
    fn name(&self) -> &'static str {
        NAME
    }
    fn score(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64 {
        if pod.requests.milli_cpu == 0 && pod.requests.memory == 0 {
            return 0;
        }
        let mut fractions = [0f64; 2];
        let mut n = 0;
        for (req, alloc) in [
            (node.requested.milli_cpu + pod.requests.milli_cpu, node.allocatable.milli_cpu),
            (node.requested.memory + pod.requests.memory, node.allocatable.memory),
        ] {
            if alloc <= 0 {
                continue;
            }
            fractions[n] = (req as f64 / alloc as f64).min(1.0);
            n += 1;
        }
        let std = if n == 2 { ((fractions[0] - fractions[1]) / 2.0).abs() } else { 0.0 };
        ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node_info::testutil::*;
    use k8s_openapi::api::core::v1::Pod;

    fn check(alloc: &[(&str, &str)], existing: Vec<Pod>, pod: Pod, expected: i64) {
        let ni = node_info(node("n", alloc), existing);
        assert_eq!(BalancedAllocation.score(&CycleState::default(), &pinfo(pod), &ni), expected);
    }

    #[test]
    fn balanced_allocation() {
        let alloc = &[("cpu", "4"), ("memory", "4000")];
        // Same fraction of both: perfectly balanced.
        check(alloc, vec![], pod_req("p", &[("cpu", "2"), ("memory", "2000")]), 100);
        // cpu 1/4 = 0.25, memory 3000/4000 = 0.75: std 0.25 -> 75.
        check(alloc, vec![], pod_req("p", &[("cpu", "1"), ("memory", "3000")]), 75);
        // Existing pods count: cpu (2+1)/4 = .75, mem (0+1000)/4000 = .25.
        check(alloc, vec![pod_req("a", &[("cpu", "2")])], pod_req("p", &[("cpu", "1"), ("memory", "1000")]), 75);
        // Fractions capped at 1: cpu 8/4 -> 1, memory 0 -> std .5.
        check(alloc, vec![], pod_req("p", &[("cpu", "8")]), 50);
        // Best-effort pod: 0 everywhere.
        check(alloc, vec![], pod_req("p", &[]), 0);
        // Node with no memory allocatable: only cpu counts, std 0.
        check(&[("cpu", "4")], vec![], pod_req("p", &[("cpu", "1"), ("memory", "1")]), 100);
        // No allocatable at all: no panic.
        check(&[], vec![], pod_req("p", &[("cpu", "1")]), 100);
    }
}
