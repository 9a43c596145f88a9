//! Matching a node against a pod's node constraints: its `nodeSelector`
//! (every label must be on the node) and `NodeSelectorTerm`s (upstream
//! `k8s.io/component-helpers/scheduling/corev1/nodeaffinity`). A node
//! matches a list of terms when it matches at least one; within a term,
//! every `matchExpressions` requirement (`In`, `NotIn`, `Exists`,
//! `DoesNotExist`, `Gt`, `Lt`) and every `matchFields` requirement
//! (`metadata.name` only) must hold.
//!
//! Edge cases, as upstream:
//! * an empty `nodeSelectorTerms` list matches **no** node;
//! * an empty term (no expressions, no fields) matches no node;
//! * a malformed term (unknown operator, `Gt` with a non-integer, `In`
//!   without values) never matches, but the other terms still can;
//! * `NotIn` and `DoesNotExist` hold on a node without the label.
//!
//! A leaf module: the NodeAffinity predicate compiles the required
//! constraints, the NodeAffinity priority the preferred terms, and the
//! [`CycleState`](crate::framework::CycleState) holds both for the cycle.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{NodeSelectorRequirement, NodeSelectorTerm, Pod};
use machinery::selector::{Op, Requirement};

use crate::node_info::NodeInfo;

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
