//! Predicate **NodeResourcesFit** (a.k.a. PodFitsResources): the pod's
//! requests must fit in what is left of the node's *allocatable*:
//! `allocatable - sum(requests of pods already there)`. Checks pod count,
//! CPU, memory, ephemeral storage and extended resources, and reports
//! **every** shortfall (a node short of CPU and memory counts in both lines
//! of the FailedScheduling message), as upstream `fitsRequest`.
//!
//! Limits are ignored, as upstream: scheduling is by requests only. The
//! pod's request counts init containers as Kubernetes does (see
//! [`crate::node_info::compute_pod_requests`]).

use super::Predicate;
use crate::framework::{CycleState, FilterResult, Reason};
use crate::node_info::{NodeInfo, PodInfo};

pub const NAME: &str = "NodeResourcesFit";

pub struct NodeResourcesFit;

impl Predicate for NodeResourcesFit {
    fn name(&self) -> &'static str {
        NAME
    }
    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> FilterResult {
        let mut reasons = Vec::new();
        let alloc = &node.allocatable;
        let used = &node.requested;
        if node.pods.len() as i64 + 1 > alloc.allowed_pods {
            reasons.push(Reason::TooManyPods);
        }
        let req = &pod.requests;
        // Upstream: a pod requesting nothing only needs a pod slot.
        if req.is_zero() {
            return if reasons.is_empty() { Ok(()) } else { Err(reasons) };
        }
        if req.milli_cpu > 0 && req.milli_cpu > alloc.milli_cpu - used.milli_cpu {
            reasons.push(Reason::Insufficient("cpu".into()));
        }
        if req.memory > 0 && req.memory > alloc.memory - used.memory {
            reasons.push(Reason::Insufficient("memory".into()));
        }
        if req.ephemeral_storage > 0 && req.ephemeral_storage > alloc.ephemeral_storage - used.ephemeral_storage {
            reasons.push(Reason::Insufficient("ephemeral-storage".into()));
        }
        for (name, want) in &req.scalar {
            if *want > 0 && *want > alloc.scalar(name) - used.scalar(name) {
                reasons.push(Reason::Insufficient(name.clone().into()));
            }
        }
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(reasons)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node_info::testutil::*;
    use k8s_openapi::api::core::v1::{Container, Pod};

    const NODE: &[(&str, &str)] =
        &[("cpu", "4"), ("memory", "8Gi"), ("ephemeral-storage", "10Gi"), ("pods", "3"), ("nvidia.com/gpu", "1")];

    fn check(existing: Vec<Pod>, alloc: &[(&str, &str)], pod: Pod, expected: &[Reason]) {
        let ni = node_info(node("n", alloc), existing);
        let got = NodeResourcesFit.filter(&CycleState::default(), &pinfo(pod), &ni);
        let expected = if expected.is_empty() { Ok(()) } else { Err(expected.to_vec()) };
        assert_eq!(got, expected);
    }

    fn ins(r: &str) -> Reason {
        Reason::Insufficient(r.to_string().into())
    }

    #[test]
    fn resources_fit() {
        let used = || vec![pod_req("a", &[("cpu", "3"), ("memory", "6Gi")])];
        // Zero requests: fits anywhere with a free pod slot.
        check(used(), NODE, pod_req("p", &[]), &[]);
        // Exact fit is a fit.
        check(used(), NODE, pod_req("p", &[("cpu", "1"), ("memory", "2Gi")]), &[]);
        // One milli-core over.
        check(used(), NODE, pod_req("p", &[("cpu", "1001m")]), &[ins("cpu")]);
        // Both short: both reported.
        check(used(), NODE, pod_req("p", &[("cpu", "2"), ("memory", "3Gi")]), &[ins("cpu"), ins("memory")]);
        check(vec![], NODE, pod_req("p", &[("ephemeral-storage", "11Gi")]), &[ins("ephemeral-storage")]);
        // Extended resources.
        check(vec![], NODE, pod_req("p", &[("nvidia.com/gpu", "1")]), &[]);
        check(vec![], NODE, pod_req("p", &[("nvidia.com/gpu", "2")]), &[ins("nvidia.com/gpu")]);
        // Pod count: 3 allowed, 3 there.
        check(vec![pod_req("a", &[]), pod_req("b", &[]), pod_req("c", &[])], NODE, pod_req("p", &[]), &[Reason::TooManyPods]);
        check(
            vec![pod_req("a", &[]), pod_req("b", &[]), pod_req("c", &[])],
            NODE,
            pod_req("p", &[("cpu", "5")]),
            &[Reason::TooManyPods, ins("cpu")],
        );
        // A node with no allocatable at all: no pod slot, nothing fits, no panic.
        check(vec![], &[], pod_req("p", &[]), &[Reason::TooManyPods]);
        check(vec![], &[], pod_req("p", &[("cpu", "1m")]), &[Reason::TooManyPods, ins("cpu")]);
    }

    #[test]
    fn init_containers_count_as_kubernetes_does() {
        // Containers need 1 cpu, an init container needs 4: the pod needs 4 (max), not 5 (sum).
        let mut p = pod_req("p", &[("cpu", "1")]);
        p.spec.as_mut().unwrap().init_containers = Some(vec![container(&[("cpu", "4")])]);
        check(vec![], NODE, p.clone(), &[]);
        check(vec![pod_req("a", &[("cpu", "1m")])], NODE, p, &[ins("cpu")]);
        // Sidecar init container adds up with the containers: 3 + 2 = 5 > 4.
        let mut p = pod_req("p", &[("cpu", "3")]);
        let mut side: Container = container(&[("cpu", "2")]);
        side.restart_policy = Some("Always".into());
        p.spec.as_mut().unwrap().init_containers = Some(vec![side]);
        check(vec![], NODE, p, &[ins("cpu")]);
    }
}
