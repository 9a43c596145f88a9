//! Predicate **NodeAffinity**: the pod's `nodeSelector` (every label must be
//! on the node) **and** its *required* node affinity
//! (`requiredDuringSchedulingIgnoredDuringExecution`): the node must match at
//! least one `nodeSelectorTerm`; within a term, every `matchExpressions`
//! requirement (`In`, `NotIn`, `Exists`, `DoesNotExist`, `Gt`, `Lt`) and
//! every `matchFields` requirement (`metadata.name` only) must hold.
//! Upstream plugin `NodeAffinity`; the matching itself, edge cases
//! included, is [`crate::node_selector`] (component-helpers `nodeaffinity`).
//!
//! The terms are compiled once per pod per cycle (PreFilter), not per node.

use super::Predicate;
use crate::cache::Snapshot;
use crate::framework::{CycleState, FilterResult, Reason};
use crate::node_info::{NodeInfo, PodInfo};
use crate::node_selector::RequiredNodeAffinity;

pub const NAME: &str = "NodeAffinity";

pub struct NodeAffinity;

impl Predicate for NodeAffinity {
    fn name(&self) -> &'static str {
        NAME
    }
    fn pre_filter(&self, state: &mut CycleState, pod: &PodInfo, _: &Snapshot) {
        state.required_node_affinity = RequiredNodeAffinity::new(&pod.pod);
    }
    fn filter(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> FilterResult {
        if state.required_node_affinity.matches(node) {
            Ok(())
        } else {
            Err(vec![Reason::NodeAffinityMismatch])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node_info::testutil::*;
    use k8s_openapi::api::core::v1::{Affinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm};

    fn req(key: &str, op: &str, values: &[&str]) -> NodeSelectorRequirement {
        NodeSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: (!values.is_empty()).then(|| values.iter().map(|v| v.to_string()).collect()),
        }
    }

    fn term(exprs: Vec<NodeSelectorRequirement>) -> NodeSelectorTerm {
        NodeSelectorTerm { match_expressions: Some(exprs), match_fields: None }
    }

    fn check(node_selector: &[(&str, &str)], terms: Option<Vec<NodeSelectorTerm>>, fits: bool) {
        let mut n = node("node-1", &[]);
        n.metadata.labels.as_mut().unwrap().extend(
            [("zone", "a"), ("disk", "ssd"), ("cores", "8")].iter().map(|(k, v)| (k.to_string(), v.to_string())),
        );
        let mut p = pod_req("p", &[]);
        let spec = p.spec.as_mut().unwrap();
        if !node_selector.is_empty() {
            spec.node_selector = Some(node_selector.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
        }
        if let Some(terms) = terms.clone() {
            spec.affinity = Some(Affinity {
                node_affinity: Some(k8s_openapi::api::core::v1::NodeAffinity {
                    required_during_scheduling_ignored_during_execution: Some(NodeSelector { node_selector_terms: terms }),
                    ..Default::default()
                }),
                ..Default::default()
            });
        }
        let pi = pinfo(p);
        let mut state = CycleState::default();
        NodeAffinity.pre_filter(&mut state, &pi, &Snapshot::default());
        let got = NodeAffinity.filter(&state, &pi, &node_info(n, vec![]));
        let expected = if fits { Ok(()) } else { Err(vec![Reason::NodeAffinityMismatch]) };
        assert_eq!(got, expected, "selector {node_selector:?} terms {terms:?}");
    }

    #[test]
    fn node_selector() {
        check(&[], None, true);
        check(&[("zone", "a")], None, true);
        check(&[("zone", "a"), ("disk", "ssd")], None, true);
        check(&[("zone", "b")], None, false);
        check(&[("zone", "a"), ("gpu", "yes")], None, false);
    }

    #[test]
    fn required_node_affinity_operators() {
        let one = |r| Some(vec![term(vec![r])]);
        check(&[], one(req("zone", "In", &["a", "b"])), true);
        check(&[], one(req("zone", "In", &["b"])), false);
        check(&[], one(req("zone", "NotIn", &["b"])), true);
        check(&[], one(req("zone", "NotIn", &["a"])), false);
        check(&[], one(req("missing", "NotIn", &["a"])), true);
        check(&[], one(req("disk", "Exists", &[])), true);
        check(&[], one(req("gpu", "Exists", &[])), false);
        check(&[], one(req("gpu", "DoesNotExist", &[])), true);
        check(&[], one(req("disk", "DoesNotExist", &[])), false);
        check(&[], one(req("cores", "Gt", &["4"])), true);
        check(&[], one(req("cores", "Gt", &["8"])), false);
        check(&[], one(req("cores", "Lt", &["16"])), true);
        check(&[], one(req("cores", "Lt", &["8"])), false);
        // Gt on a non-integer label or bound: no match.
        check(&[], one(req("zone", "Gt", &["1"])), false);
        check(&[], one(req("cores", "Gt", &["x"])), false);
        // Malformed: unknown operator, In without values.
        check(&[], one(req("zone", "Like", &["a"])), false);
        check(&[], one(req("zone", "In", &[])), false);
    }

    #[test]
    fn terms_are_ored_expressions_anded() {
        // Within a term: AND.
        check(&[], Some(vec![term(vec![req("zone", "In", &["a"]), req("disk", "In", &["hdd"])])]), false);
        // Across terms: OR.
        check(&[], Some(vec![term(vec![req("zone", "In", &["b"])]), term(vec![req("disk", "In", &["ssd"])])]), true);
        // A malformed term does not spoil a good one.
        check(&[], Some(vec![term(vec![req("zone", "Bad", &[])]), term(vec![req("zone", "In", &["a"])])]), true);
        // Empty term list, empty term: match nothing.
        check(&[], Some(vec![]), false);
        check(&[], Some(vec![term(vec![])]), false);
        check(&[], Some(vec![NodeSelectorTerm::default()]), false);
        // nodeSelector and affinity must both hold.
        check(&[("zone", "b")], Some(vec![term(vec![req("zone", "In", &["a"])])]), false);
    }

    #[test]
    fn match_fields_on_node_name() {
        let f = |op: &str, v: &[&str]| {
            Some(vec![NodeSelectorTerm {
                match_expressions: None,
                match_fields: Some(vec![req("metadata.name", op, v)]),
            }])
        };
        check(&[], f("In", &["node-1"]), true);
        check(&[], f("In", &["node-2"]), false);
        check(&[], f("NotIn", &["node-2"]), true);
        check(&[], f("Exists", &[]), false);
    }
}
