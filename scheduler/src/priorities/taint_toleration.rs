//! Priority **TaintToleration** (PreferNoSchedule): a `PreferNoSchedule`
//! taint is a soft "please avoid". Count the node's PreferNoSchedule taints
//! the pod does not tolerate; fewer is better (reverse normalisation: the
//! node with the most gets 0, untainted nodes 100). Upstream plugin
//! `TaintToleration` Score; only tolerations with effect PreferNoSchedule
//! or empty count, as upstream.

use super::{default_normalize, Priority};
use crate::framework::CycleState;
use crate::node_info::{NodeInfo, PodInfo};
use crate::predicates::taint_toleration::tolerates;

pub const NAME: &str = "TaintToleration";

pub struct PreferNoScheduleTaints;

impl Priority for PreferNoScheduleTaints {
    fn name(&self) -> &'static str {
        NAME
    }
    fn score(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64 {
        let tolerations = pod.tolerations();
        node.taints()
            .iter()
            .filter(|t| t.effect == "PreferNoSchedule")
            .filter(|taint| {
                !tolerations.iter().any(|t| {
                    matches!(t.effect.as_deref(), None | Some("") | Some("PreferNoSchedule")) && tolerates(t, taint)
                })
            })
            .count() as i64
    }
    fn normalize(&self, scores: &mut [i64]) {
        default_normalize(scores, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node_info::testutil::*;
    use k8s_openapi::api::core::v1::{Taint, Toleration};

    fn taint(key: &str, effect: &str) -> Taint {
        Taint { key: key.into(), value: None, effect: effect.into(), time_added: None }
    }

    fn check(nodes: Vec<Vec<Taint>>, tolerations: Vec<Toleration>, expected: &[i64]) {
        let mut p = pod_req("p", &[]);
        p.spec.as_mut().unwrap().tolerations = Some(tolerations);
        let pi = pinfo(p);
        let mut scores: Vec<i64> = nodes
            .into_iter()
            .enumerate()
            .map(|(i, taints)| {
                let mut n = node(&format!("n{i}"), &[]);
                n.spec.as_mut().unwrap().taints = Some(taints);
                PreferNoScheduleTaints.score(&CycleState::default(), &pi, &node_info(n, vec![]))
            })
            .collect();
        PreferNoScheduleTaints.normalize(&mut scores);
        assert_eq!(scores, expected);
    }

    #[test]
    fn prefer_no_schedule() {
        let pns = |k| taint(k, "PreferNoSchedule");
        check(vec![vec![], vec![]], vec![], &[100, 100]);
        check(vec![vec![], vec![pns("a")]], vec![], &[100, 0]);
        check(vec![vec![pns("a")], vec![pns("a"), pns("b")], vec![]], vec![], &[50, 0, 100]);
        // NoSchedule taints are the predicate's business, not scored here.
        check(vec![vec![taint("a", "NoSchedule")], vec![]], vec![], &[100, 100]);
        // A toleration for it removes the penalty.
        let tol = Toleration { key: Some("a".into()), operator: Some("Exists".into()), ..Default::default() };
        check(vec![vec![pns("a")], vec![]], vec![tol], &[100, 100]);
        // A NoSchedule-only toleration does not count for PreferNoSchedule.
        let tol = Toleration {
            key: Some("a".into()),
            operator: Some("Exists".into()),
            effect: Some("NoSchedule".into()),
            ..Default::default()
        };
        check(vec![vec![pns("a")], vec![]], vec![tol], &[0, 100]);
    }
}
