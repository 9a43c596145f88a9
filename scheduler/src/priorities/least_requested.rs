//! Priority **LeastRequested** (upstream `NodeResourcesFit` with the
//! `LeastAllocated` strategy): prefer nodes with the most free CPU and
//! memory, spreading load. Per resource:
//! `(allocatable - requested) × 100 / allocatable`, averaged over CPU and
//! memory (weight 1 each), integer arithmetic as upstream.
//!
//! "Requested" here uses the **non-zero** requests (100m / 200Mi for a
//! container that sets none), including the incoming pod's: otherwise
//! best-effort pods would all look free and pile onto one node.

use super::{Priority, MAX_NODE_SCORE};
use crate::framework::CycleState;
use crate::node_info::{NodeInfo, PodInfo};

pub const NAME: &str = "NodeResourcesLeastAllocated";

/// Upstream `leastRequestedScore`.
pub fn least_requested_score(requested: i64, capacity: i64) -> i64 {
    if capacity <= 0 || requested > capacity {
        return 0;
    }
    (capacity - requested) * MAX_NODE_SCORE / capacity
}

pub struct LeastRequested;

impl Priority for LeastRequested {
    fn name(&self) -> &'static str {
        NAME
    }
    fn score(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64 {
        let cpu = least_requested_score(
            node.non_zero_requested.milli_cpu + pod.non_zero.milli_cpu,
            node.allocatable.milli_cpu,
        );
        let mem = least_requested_score(node.non_zero_requested.memory + pod.non_zero.memory, node.allocatable.memory);
        (cpu + mem) / 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node_info::testutil::*;
    use k8s_openapi::api::core::v1::Pod;

    fn check(alloc: &[(&str, &str)], existing: Vec<Pod>, pod: Pod, expected: i64) {
        let ni = node_info(node("n", alloc), existing);
        assert_eq!(LeastRequested.score(&CycleState::default(), &pinfo(pod), &ni), expected);
    }

    #[test]
    fn least_requested() {
        let alloc = &[("cpu", "4"), ("memory", "10000")];
        // Empty node, pod asks cpu 1 of 4 (75) and memory 5000 of 10000 (50): (75+50)/2.
        check(alloc, vec![], pod_req("p", &[("cpu", "1"), ("memory", "5000")]), 62);
        // Existing use counts.
        check(alloc, vec![pod_req("a", &[("cpu", "2"), ("memory", "5000")])], pod_req("p", &[("cpu", "1"), ("memory", "0")]), 37);
        // Exact fit scores 0 for that resource.
        check(alloc, vec![], pod_req("p", &[("cpu", "4"), ("memory", "10000")]), 0);
        // Over capacity: 0, not negative.
        check(alloc, vec![], pod_req("p", &[("cpu", "8"), ("memory", "20000")]), 0);
        // Zero requests use the 100m / 200Mi scoring defaults: cpu (4000-100)/4000 -> 97, memory over -> 0.
        check(alloc, vec![], pod_req("p", &[]), 48);
        // No allocatable at all: 0, no division by zero.
        check(&[], vec![], pod_req("p", &[("cpu", "1")]), 0);
    }
}
