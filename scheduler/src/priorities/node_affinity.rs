//! Priority **NodeAffinity** (preferred): for each
//! `preferredDuringSchedulingIgnoredDuringExecution` term the node matches,
//! add the term's weight; then scale so the best node gets 100 (upstream
//! plugin `NodeAffinity`, Score + `DefaultNormalizeScore`). Terms with
//! weight 0 and empty or malformed terms never count.

use super::{default_normalize, Priority};
use crate::cache::Snapshot;
use crate::framework::CycleState;
use crate::node_info::{NodeInfo, PodInfo};
use crate::node_selector::Term;

pub const NAME: &str = "NodeAffinity";

pub struct PreferredNodeAffinity;

impl Priority for PreferredNodeAffinity {
    fn name(&self) -> &'static str {
        NAME
    }
    fn pre_score(&self, state: &mut CycleState, pod: &PodInfo, _: &Snapshot) {
        state.preferred_node_affinity = pod
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.affinity.as_ref())
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|na| na.preferred_during_scheduling_ignored_during_execution.as_ref())
            .map(|terms| {
                terms.iter().filter(|t| t.weight != 0).map(|t| (t.weight as i64, Term::compile(&t.preference))).collect()
            })
            .unwrap_or_default();
    }
    fn score(&self, state: &CycleState, _: &PodInfo, node: &NodeInfo) -> i64 {
        state
            .preferred_node_affinity
            .iter()
            .filter(|(_, t)| t.matches(&node.name, &node.labels))
            .map(|(w, _)| *w)
            .sum()
    }
    fn normalize(&self, scores: &mut [i64]) {
        default_normalize(scores, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node_info::testutil::*;
    use k8s_openapi::api::core::v1::{
        Affinity, NodeAffinity, NodeSelectorRequirement, NodeSelectorTerm, PreferredSchedulingTerm,
    };

    fn pref(weight: i32, key: &str, value: &str) -> PreferredSchedulingTerm {
        PreferredSchedulingTerm {
            weight,
            preference: NodeSelectorTerm {
                match_expressions: Some(vec![NodeSelectorRequirement {
                    key: key.into(),
                    operator: "In".into(),
                    values: Some(vec![value.into()]),
                }]),
                match_fields: None,
            },
        }
    }

    /// Node labels per node → normalized scores.
    fn check(nodes: &[&[(&str, &str)]], terms: Vec<PreferredSchedulingTerm>, expected: &[i64]) {
        let mut p = pod_req("p", &[]);
        p.spec.as_mut().unwrap().affinity = Some(Affinity {
            node_affinity: Some(NodeAffinity {
                preferred_during_scheduling_ignored_during_execution: Some(terms),
                ..Default::default()
            }),
            ..Default::default()
        });
        let pi = pinfo(p);
        let mut state = CycleState::default();
        PreferredNodeAffinity.pre_score(&mut state, &pi, &Snapshot::default());
        let mut scores: Vec<i64> = nodes
            .iter()
            .enumerate()
            .map(|(i, labels)| {
                let mut n = node(&format!("n{i}"), &[]);
                n.metadata.labels = Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
                PreferredNodeAffinity.score(&state, &pi, &node_info(n, vec![]))
            })
            .collect();
        PreferredNodeAffinity.normalize(&mut scores);
        assert_eq!(scores, expected);
    }

    #[test]
    fn preferred_node_affinity() {
        let nodes: &[&[(&str, &str)]] = &[&[("zone", "a")], &[("zone", "b"), ("disk", "ssd")], &[]];
        check(nodes, vec![], &[0, 0, 0]);
        check(nodes, vec![pref(10, "zone", "a")], &[100, 0, 0]);
        // Weights add up; best node gets 100, others scaled.
        check(nodes, vec![pref(10, "zone", "a"), pref(20, "disk", "ssd"), pref(10, "zone", "b")], &[33, 100, 0]);
        // Weight 0 ignored.
        check(nodes, vec![pref(0, "zone", "a")], &[0, 0, 0]);
    }
}
