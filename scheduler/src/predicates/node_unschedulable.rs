//! Predicate **NodeUnschedulable**: a cordoned node (`spec.unschedulable:
//! true`, what `kubectl cordon` sets) takes no new pods — unless the pod
//! tolerates the `node.kubernetes.io/unschedulable:NoSchedule` taint, as
//! DaemonSet pods do. Upstream plugin `NodeUnschedulable`.

use k8s_openapi::api::core::v1::Taint;

use super::taint_toleration::tolerates;
use super::Predicate;
use crate::framework::{CycleState, FilterResult, Reason};
use crate::node_info::{NodeInfo, PodInfo};

pub const NAME: &str = "NodeUnschedulable";

pub struct NodeUnschedulable;

impl Predicate for NodeUnschedulable {
    fn name(&self) -> &'static str {
        NAME
    }
    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> FilterResult {
        if !node.unschedulable() {
            return Ok(());
        }
        let taint = Taint {
            key: "node.kubernetes.io/unschedulable".into(),
            effect: "NoSchedule".into(),
            ..Default::default()
        };
        if pod.tolerations().iter().any(|t| tolerates(t, &taint)) {
            Ok(())
        } else {
            Err(vec![Reason::Unschedulable])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node_info::testutil::*;
    use k8s_openapi::api::core::v1::Toleration;

    fn check(unschedulable: Option<bool>, tolerations: Vec<Toleration>, expected: FilterResult) {
        let mut n = node("n", &[]);
        n.spec.as_mut().unwrap().unschedulable = unschedulable;
        let mut p = pod_req("p", &[]);
        p.spec.as_mut().unwrap().tolerations = Some(tolerations);
        assert_eq!(NodeUnschedulable.filter(&CycleState::default(), &pinfo(p), &node_info(n, vec![])), expected);
    }

    #[test]
    fn node_unschedulable() {
        let tol = |key: &str, op: &str, effect: &str| Toleration {
            key: Some(key.into()),
            operator: Some(op.into()),
            effect: Some(effect.into()),
            ..Default::default()
        };
        check(None, vec![], Ok(()));
        check(Some(false), vec![], Ok(()));
        check(Some(true), vec![], Err(vec![Reason::Unschedulable]));
        check(Some(true), vec![tol("node.kubernetes.io/unschedulable", "Exists", "NoSchedule")], Ok(()));
        // Tolerating everything (empty key, Exists) also tolerates cordoning.
        check(Some(true), vec![tol("", "Exists", "")], Ok(()));
        check(Some(true), vec![tol("node.kubernetes.io/unschedulable", "Exists", "NoExecute")], Err(vec![Reason::Unschedulable]));
    }
}
