//! Predicate **NodeAffinity**: the pod's `nodeSelector` (every label must be
//! on the node) **and** its *required* node affinity
//! (`requiredDuringSchedulingIgnoredDuringExecution`): the node must match at
//! least one `nodeSelectorTerm`; within a term, every `matchExpressions`
//! requirement (`In`, `NotIn`, `Exists`, `DoesNotExist`, `Gt`, `Lt`) and
//! every `matchFields` requirement (`metadata.name` only) must hold.
//! Upstream plugin `NodeAffinity` (component-helpers `nodeaffinity`).
//!
//! Edge cases, as upstream:
//! * an empty `nodeSelectorTerms` list matches **no** node;
//! * an empty term (no expressions, no fields) matches no node;
//! * a malformed term (unknown operator, `Gt` with a non-integer, `In`
//!   without values) never matches, but the other terms still can;
//! * `NotIn` and `DoesNotExist` hold on a node without the label.
//!
//! The terms are compiled once per pod per cycle (PreFilter), not per node.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{NodeSelectorRequirement, NodeSelectorTerm, Pod};
use machinery::selector::{Op, Requirement};

use super::Predicate;
use crate::cache::Snapshot;
use crate::framework::{CycleState, FilterResult, Reason};
use crate::node_info::{NodeInfo, PodInfo};

pub const NAME: &str = "NodeAffinity";

/// One compiled `NodeSelectorTerm`.
#[derive(Debug, Clone)]
pub struct Term {
    exprs: Vec<Requirement>,
    /// `metadata.name` In/NotIn values.
    name_in: Vec<(bool, Vec<String>)>,
    /// Empty or malformed: matches nothing.
    never: bool,
}

fn compile_req(r: &NodeSelectorRequirement) -> Option<Requirement> {
    let values = r.values.clone().unwrap_or_default();
    let op = match r.operator.as_str() {
        "In" if !values.is_empty() => Op::In,
        "NotIn" if !values.is_empty() => Op::NotIn,
        "Exists" if values.is_empty() => Op::Exists,
        "DoesNotExist" if values.is_empty() => Op::DoesNotExist,
        "Gt" if values.len() == 1 && values[0].parse::<i64>().is_ok() => Op::GreaterThan,
        "Lt" if values.len() == 1 && values[0].parse::<i64>().is_ok() => Op::LessThan,
        _ => return None,
    };
    Some(Requirement { key: r.key.clone(), op, values })
}

impl Term {
    pub fn compile(t: &NodeSelectorTerm) -> Term {
        let mut term = Term { exprs: Vec::new(), name_in: Vec::new(), never: false };
        let exprs = t.match_expressions.as_deref().unwrap_or(&[]);
        let fields = t.match_fields.as_deref().unwrap_or(&[]);
        if exprs.is_empty() && fields.is_empty() {
            term.never = true;
        }
        for e in exprs {
            match compile_req(e) {
                Some(r) => term.exprs.push(r),
                None => term.never = true,
            }
        }
        for f in fields {
            let values = f.values.clone().unwrap_or_default();
            match (f.key.as_str(), f.operator.as_str()) {
                ("metadata.name", "In") if !values.is_empty() => term.name_in.push((true, values)),
                ("metadata.name", "NotIn") if !values.is_empty() => term.name_in.push((false, values)),
                _ => term.never = true,
            }
        }
        term
    }

    pub fn matches(&self, node_name: &str, labels: &BTreeMap<String, String>) -> bool {
        !self.never
            && self.exprs.iter().all(|r| r.matches(labels))
            && self.name_in.iter().all(|(is_in, vals)| vals.iter().any(|v| v == node_name) == *is_in)
    }
}

/// The compiled hard constraints of a pod on node labels.
#[derive(Debug, Clone, Default)]
pub struct RequiredNodeAffinity {
    node_selector: Vec<(String, String)>,
    /// `None`: no required node affinity. `Some(vec![])`: matches nothing.
    terms: Option<Vec<Term>>,
}

impl RequiredNodeAffinity {
    pub fn new(pod: &Pod) -> Self {
        let spec = pod.spec.as_ref();
        let node_selector = spec
            .and_then(|s| s.node_selector.as_ref())
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        let terms = spec
            .and_then(|s| s.affinity.as_ref())
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|na| na.required_during_scheduling_ignored_during_execution.as_ref())
            .map(|ns| ns.node_selector_terms.iter().map(Term::compile).collect());
        RequiredNodeAffinity { node_selector, terms }
    }

    pub fn is_empty(&self) -> bool {
        self.node_selector.is_empty() && self.terms.is_none()
    }

    pub fn matches(&self, node: &NodeInfo) -> bool {
        self.node_selector.iter().all(|(k, v)| node.labels.get(k) == Some(v))
            && self.terms.as_ref().is_none_or(|ts| ts.iter().any(|t| t.matches(&node.name, &node.labels)))
    }
}

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
    use k8s_openapi::api::core::v1::{Affinity, NodeSelector};

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
