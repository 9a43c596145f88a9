//! Predicate **InterPodAffinity**, the *required anti-affinity* half: "do
//! not put me in the same topology domain (node, zone…) as pods matching this
//! selector" — and, symmetrically, "do not put me next to a pod whose own
//! required anti-affinity selects me". Upstream plugin `InterPodAffinity`
//! (`filtering.go`).
//!
//! As upstream, the expensive part is done once per pod in PreFilter, so
//! Filter is a couple of hash lookups per node. PreFilter computes two maps
//! *topology pair (key, value) → count*:
//! * `incoming` (upstream `antiAffinityCounts`): pods selected by the
//!   incoming pod's terms, per domain;
//! * `existing` (upstream `existingAntiAffinityCounts`): pods whose terms
//!   select the incoming pod, per domain.
//!
//! Upstream builds both by scanning the snapshot (the nodes of
//! `HavePodsWithRequiredAntiAffinityList` for `existing`, every pod for
//! `incoming`). We read them off the snapshot's
//! [`AntiAffinityIndex`](crate::anti_affinity_index), which keeps the counts
//! per distinct term: PreFilter costs O(distinct terms), with the same maps.
//!
//! Differs from upstream: required pod *affinity* (the attracting half) is
//! not implemented; namespaceSelector other than `{}` is not evaluated (see
//! [`crate::node_info::AffinityTerm`]).

use super::Predicate;
use crate::anti_affinity_index::TopologyCounts;
use crate::cache::Snapshot;
use crate::framework::{CycleState, FilterResult, Reason};
use crate::node_info::{NodeInfo, PodInfo};

pub const NAME: &str = "InterPodAffinity";

fn count(m: &TopologyCounts, key: &str, value: &str) -> u32 {
    m.get(key).and_then(|v| v.get(value)).copied().unwrap_or(0)
}

pub struct InterPodAntiAffinity;

impl Predicate for InterPodAntiAffinity {
    fn name(&self) -> &'static str {
        NAME
    }

    fn pre_filter(&self, state: &mut CycleState, pod: &PodInfo, snapshot: &Snapshot) {
        state.existing_anti_affinity = snapshot.anti_affinity.existing_counts(pod);
        state.incoming_anti_affinity = snapshot.anti_affinity.incoming_counts(pod, &snapshot.nodes);
    }

    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> FilterResult {
        if !state.incoming_anti_affinity.is_empty() {
            for term in &pod.required_anti_affinity {
                if let Some(v) = node.labels.get(&term.topology_key) {
                    if count(&state.incoming_anti_affinity, &term.topology_key, v) > 0 {
                        return Err(vec![Reason::AntiAffinityRulesNotMatch]);
                    }
                }
            }
        }
        // The counts name few topology keys (usually one): look each up in
        // the node's labels rather than every label up in the counts.
        for (key, values) in &state.existing_anti_affinity {
            if let Some(v) = node.labels.get(key) {
                if values.get(v).is_some_and(|c| *c > 0) {
                    return Err(vec![Reason::ExistingAntiAffinityRulesNotMatch]);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::Cache;
    use crate::node_info::testutil::*;
    use k8s_openapi::api::core::v1::{Affinity, Pod, PodAffinityTerm, PodAntiAffinity};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
    use std::sync::Arc;

    fn labelled(name: &str, app: &str) -> Pod {
        let mut p = pod_req(name, &[]);
        p.metadata.labels = Some([("app".to_string(), app.to_string())].into());
        p
    }

    fn anti(mut p: Pod, app: Option<&str>, key: &str) -> Pod {
        p.spec.as_mut().unwrap().affinity = Some(Affinity {
            pod_anti_affinity: Some(PodAntiAffinity {
                required_during_scheduling_ignored_during_execution: Some(vec![PodAffinityTerm {
                    label_selector: app.map(|a| LabelSelector {
                        match_labels: Some([("app".to_string(), a.to_string())].into()),
                        ..Default::default()
                    }),
                    topology_key: key.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        });
        p
    }

    /// Nodes n0 (zone a), n1 (zone a), n2 (zone b); `existing` pods go on n0.
    /// Returns the filter result on each node.
    fn check(existing: Vec<Pod>, incoming: Pod, expected: [FilterResult; 3]) {
        let mut cache = Cache::new();
        for (i, zone) in ["a", "a", "b"].iter().enumerate() {
            let mut n = node(&format!("n{i}"), &[("pods", "10")]);
            n.metadata.labels.as_mut().unwrap().insert("zone".into(), zone.to_string());
            cache.add_node(Arc::new(n));
        }
        for mut p in existing {
            p.spec.as_mut().unwrap().node_name = Some("n0".into());
            cache.add_pod(Arc::new(p));
        }
        let mut snap = Snapshot::default();
        cache.update_snapshot(&mut snap);
        let pi = pinfo(incoming);
        let mut state = CycleState::default();
        InterPodAntiAffinity.pre_filter(&mut state, &pi, &snap);
        for (i, exp) in expected.iter().enumerate() {
            let node = snap.get(&format!("n{i}")).unwrap();
            assert_eq!(&InterPodAntiAffinity.filter(&state, &pi, node), exp, "node n{i}");
        }
    }

    const OK: FilterResult = Ok(());
    fn own() -> FilterResult {
        Err(vec![Reason::AntiAffinityRulesNotMatch])
    }
    fn theirs() -> FilterResult {
        Err(vec![Reason::ExistingAntiAffinityRulesNotMatch])
    }

    #[test]
    fn incoming_pod_anti_affinity() {
        let host = "kubernetes.io/hostname";
        // No rules anywhere.
        check(vec![labelled("a", "web")], labelled("p", "web"), [OK, OK, OK]);
        // Hostname: only the node with a matching pod is excluded.
        check(vec![labelled("a", "web")], anti(labelled("p", "web"), Some("web"), host), [own(), OK, OK]);
        // Selector that matches nothing there.
        check(vec![labelled("a", "db")], anti(labelled("p", "web"), Some("web"), host), [OK, OK, OK]);
        // Zone: the whole zone a is excluded.
        check(vec![labelled("a", "web")], anti(labelled("p", "web"), Some("web"), "zone"), [own(), own(), OK]);
        // Topology key no node has: nothing excluded.
        check(vec![labelled("a", "web")], anti(labelled("p", "web"), Some("web"), "rack"), [OK, OK, OK]);
        // Nil label selector matches no pod.
        check(vec![labelled("a", "web")], anti(labelled("p", "web"), None, host), [OK, OK, OK]);
    }

    #[test]
    fn existing_pods_anti_affinity_is_symmetric() {
        let host = "kubernetes.io/hostname";
        // The existing pod refuses "web" neighbours on its node.
        check(vec![anti(labelled("a", "db"), Some("web"), host)], labelled("p", "web"), [theirs(), OK, OK]);
        check(vec![anti(labelled("a", "db"), Some("web"), "zone")], labelled("p", "web"), [theirs(), theirs(), OK]);
        // It does not select "cache" pods.
        check(vec![anti(labelled("a", "db"), Some("web"), host)], labelled("p", "cache"), [OK, OK, OK]);
    }
}
