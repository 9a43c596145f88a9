//! Priority **SelectorSpreading** (upstream `SelectorSpread`, the classic
//! "spread pods of the same Service / ReplicaSet across nodes"): count, on
//! each node, the pods in the same group as the incoming pod; fewer is
//! better: `score = 100 × (max - count) / max`.
//!
//! "Same group", where we differ from upstream: upstream merges the
//! selectors of every Service, ReplicationController, ReplicaSet and
//! StatefulSet selecting the pod into one selector. The pure algorithm has
//! no controller objects, so a pod is in the group if it is in the same
//! namespace and **either** has the same controlling owner (ownerReference
//! with `controller: true` — same ReplicaSet/StatefulSet) **or** is selected
//! by a Service that selects the incoming pod. Zone weighting (upstream
//! gives zones 2/3 of the score) is not implemented. Like upstream, pods
//! with `topologySpreadConstraints` are left to PodTopologySpread (skipped).

use super::{Priority, MAX_NODE_SCORE};
use crate::cache::Snapshot;
use crate::framework::CycleState;
use crate::node_info::{NodeInfo, PodInfo};

pub const NAME: &str = "SelectorSpread";

pub struct SelectorSpread;

fn skip(pod: &PodInfo) -> bool {
    pod.pod.spec.as_ref().and_then(|s| s.topology_spread_constraints.as_ref()).is_some_and(|c| !c.is_empty())
}

impl Priority for SelectorSpread {
    fn name(&self) -> &'static str {
        NAME
    }
    fn pre_score(&self, state: &mut CycleState, pod: &PodInfo, snapshot: &Snapshot) {
        state.spread_selectors = snapshot
            .service_selectors
            .iter()
            .filter(|(ns, sel)| *ns == pod.namespace && sel.matches(&pod.labels))
            .map(|(_, sel)| sel.clone())
            .collect();
    }
    fn score(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64 {
        if skip(pod) || (pod.controller_uid.is_none() && state.spread_selectors.is_empty()) {
            return 0;
        }
        node.pods
            .iter()
            .filter(|p| {
                p.namespace == pod.namespace
                    && p.pod.metadata.deletion_timestamp.is_none()
                    && ((pod.controller_uid.is_some() && p.controller_uid == pod.controller_uid)
                        || state.spread_selectors.iter().any(|s| s.matches(&p.labels)))
            })
            .count() as i64
    }
    fn normalize(&self, scores: &mut [i64]) {
        let max = scores.iter().copied().max().unwrap_or(0);
        for s in scores.iter_mut() {
            *s = if max > 0 { MAX_NODE_SCORE * (max - *s) / max } else { MAX_NODE_SCORE };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::Cache;
    use crate::node_info::testutil::*;
    use k8s_openapi::api::core::v1::Pod;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    use std::sync::Arc;

    fn member(name: &str, owner: Option<&str>, app: &str) -> Pod {
        let mut p = pod_req(name, &[]);
        p.metadata.labels = Some([("app".to_string(), app.to_string())].into());
        p.metadata.owner_references = owner.map(|o| {
            vec![OwnerReference {
                api_version: "apps/v1".into(),
                kind: "ReplicaSet".into(),
                name: o.into(),
                uid: format!("uid-{o}"),
                controller: Some(true),
                ..Default::default()
            }]
        });
        p
    }

    /// Pods per node (3 nodes), optional service selecting app=<svc>; returns normalized scores.
    fn check(per_node: Vec<Vec<Pod>>, service_app: Option<&str>, incoming: Pod, expected: &[i64]) {
        let mut cache = Cache::new();
        for (i, pods) in per_node.into_iter().enumerate() {
            let name = format!("n{i}");
            cache.add_node(Arc::new(node(&name, &[("pods", "10")])));
            for mut p in pods {
                p.spec.as_mut().unwrap().node_name = Some(name.clone());
                cache.add_pod(Arc::new(p));
            }
        }
        if let Some(app) = service_app {
            cache.set_service("default", "svc", Some(&[("app".to_string(), app.to_string())].into()));
        }
        let snap = cache.snapshot();
        let pi = pinfo(incoming);
        let mut state = CycleState::default();
        SelectorSpread.pre_score(&mut state, &pi, &snap);
        let mut scores: Vec<i64> = snap.nodes.iter().map(|n| SelectorSpread.score(&state, &pi, n)).collect();
        SelectorSpread.normalize(&mut scores);
        assert_eq!(scores, expected);
    }

    #[test]
    fn spreads_replicaset_members() {
        let rs = |n: &str| member(n, Some("rs1"), "web");
        check(vec![vec![rs("a"), rs("b")], vec![rs("c")], vec![]], None, rs("p"), &[0, 50, 100]);
        // Pods of another ReplicaSet do not count.
        check(vec![vec![member("a", Some("rs2"), "web")], vec![], vec![]], None, rs("p"), &[100, 100, 100]);
        // No group at all: every node equal.
        check(vec![vec![member("a", None, "web")], vec![], vec![]], None, member("p", None, "web"), &[100, 100, 100]);
    }

    #[test]
    fn spreads_service_members() {
        let plain = |n: &str, app: &str| member(n, None, app);
        check(
            vec![vec![plain("a", "web")], vec![plain("b", "db"), plain("c", "db")], vec![]],
            Some("web"),
            plain("p", "web"),
            &[0, 100, 100],
        );
        // Service does not select the incoming pod: no spreading.
        check(vec![vec![plain("a", "web")], vec![], vec![]], Some("web"), plain("p", "db"), &[100, 100, 100]);
    }
}
