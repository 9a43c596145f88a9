//! Predicate **TaintToleration**: a node's *taints* repel pods; a pod's
//! *tolerations* let it in anyway. Only `NoSchedule` and `NoExecute` taints
//! block scheduling (`PreferNoSchedule` is a soft preference, scored by the
//! TaintToleration priority). Upstream plugin `TaintToleration`; the
//! rejection names the first untolerated taint, as upstream does.

use k8s_openapi::api::core::v1::{Taint, Toleration};

use super::Predicate;
use crate::framework::{CycleState, FilterResult, Reason};
use crate::node_info::{NodeInfo, PodInfo};

pub const NAME: &str = "TaintToleration";

/// Upstream `Toleration.ToleratesTaint`:
/// * an empty toleration effect matches every effect;
/// * an empty key with `Exists` matches every taint;
/// * `Equal` (the default operator) needs the same value, `Exists` ignores it.
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    let effect = t.effect.as_deref().unwrap_or("");
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = t.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match t.operator.as_deref().unwrap_or("") {
        "" | "Equal" => t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        "Exists" => true,
        _ => false,
    }
}

pub struct TaintToleration;

impl Predicate for TaintToleration {
    fn name(&self) -> &'static str {
        NAME
    }
    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> FilterResult {
        let tolerations = pod.tolerations();
        for taint in node.taints() {
            if taint.effect != "NoSchedule" && taint.effect != "NoExecute" {
                continue;
            }
            if !tolerations.iter().any(|t| tolerates(t, taint)) {
                return Err(vec![Reason::UntoleratedTaint {
                    key: taint.key.clone(),
                    value: taint.value.clone().unwrap_or_default(),
                }]);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node_info::testutil::*;

    pub fn taint(key: &str, value: &str, effect: &str) -> Taint {
        Taint { key: key.into(), value: (!value.is_empty()).then(|| value.into()), effect: effect.into(), time_added: None }
    }
    pub fn tol(key: &str, op: &str, value: &str, effect: &str) -> Toleration {
        Toleration {
            key: (!key.is_empty()).then(|| key.into()),
            operator: (!op.is_empty()).then(|| op.into()),
            value: (!value.is_empty()).then(|| value.into()),
            effect: (!effect.is_empty()).then(|| effect.into()),
            toleration_seconds: None,
        }
    }

    fn check(taints: Vec<Taint>, tolerations: Vec<Toleration>, expected: FilterResult) {
        let mut n = node("n", &[]);
        n.spec.as_mut().unwrap().taints = Some(taints);
        let mut p = pod_req("p", &[]);
        p.spec.as_mut().unwrap().tolerations = Some(tolerations);
        assert_eq!(TaintToleration.filter(&CycleState::default(), &pinfo(p), &node_info(n, vec![])), expected);
    }

    fn untolerated(key: &str, value: &str) -> FilterResult {
        Err(vec![Reason::UntoleratedTaint { key: key.into(), value: value.into() }])
    }

    #[test]
    fn taint_effects() {
        check(vec![], vec![], Ok(()));
        check(vec![taint("k", "v", "NoSchedule")], vec![], untolerated("k", "v"));
        check(vec![taint("k", "v", "NoExecute")], vec![], untolerated("k", "v"));
        // PreferNoSchedule never blocks.
        check(vec![taint("k", "v", "PreferNoSchedule")], vec![], Ok(()));
        // The first untolerated taint is reported.
        check(
            vec![taint("a", "1", "NoSchedule"), taint("b", "2", "NoSchedule")],
            vec![tol("a", "Equal", "1", "NoSchedule")],
            untolerated("b", "2"),
        );
    }

    #[test]
    fn toleration_matching() {
        let t = || vec![taint("k", "v", "NoSchedule")];
        check(t(), vec![tol("k", "Equal", "v", "NoSchedule")], Ok(()));
        check(t(), vec![tol("k", "", "v", "NoSchedule")], Ok(())); // default operator is Equal
        check(t(), vec![tol("k", "Equal", "w", "NoSchedule")], untolerated("k", "v"));
        check(t(), vec![tol("k", "Exists", "", "NoSchedule")], Ok(()));
        check(t(), vec![tol("k", "Exists", "", "")], Ok(())); // empty effect = all effects
        check(t(), vec![tol("k", "Exists", "", "NoExecute")], untolerated("k", "v"));
        check(t(), vec![tol("", "Exists", "", "")], Ok(())); // tolerates everything
        check(t(), vec![tol("other", "Exists", "", "")], untolerated("k", "v"));
        check(t(), vec![tol("k", "Bogus", "v", "NoSchedule")], untolerated("k", "v"));
        // A taint with no value is matched by Equal with no value.
        check(vec![taint("k", "", "NoSchedule")], vec![tol("k", "Equal", "", "NoSchedule")], Ok(()));
    }
}
