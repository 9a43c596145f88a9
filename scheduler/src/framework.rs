//! The vocabulary shared by predicates, priorities and the algorithm:
//! why a node was rejected ([`Reason`]), the per-cycle state computed once
//! per pod ([`CycleState`], upstream's PreFilter/PreScore state), and the
//! error when no node fits ([`FitError`]) with its message in exactly the
//! form `kubectl describe pod` shows for the FailedScheduling event.

use std::collections::HashMap;
use std::fmt;

/// Why one node cannot take the pod. The `Display` strings are upstream's,
/// word for word, because users grep for them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Reason {
    /// NodeResourcesFit: `Insufficient cpu`, `Insufficient memory`,
    /// `Insufficient ephemeral-storage`, `Insufficient nvidia.com/gpu`.
    Insufficient(std::borrow::Cow<'static, str>),
    /// NodeResourcesFit, pod count.
    TooManyPods,
    /// NodePorts.
    PortsInUse,
    /// NodeName.
    NodeNameMismatch,
    /// NodeAffinity (node selector and required node affinity).
    NodeAffinityMismatch,
    /// TaintToleration: the first taint the pod does not tolerate.
    UntoleratedTaint { key: String, value: String },
    /// NodeUnschedulable (`spec.unschedulable`, i.e. cordoned).
    Unschedulable,
    /// InterPodAffinity: the pod's own required anti-affinity.
    AntiAffinityRulesNotMatch,
    /// InterPodAffinity: an existing pod's required anti-affinity selects this pod.
    ExistingAntiAffinityRulesNotMatch,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Insufficient(r) => write!(f, "Insufficient {r}"),
            Reason::TooManyPods => f.write_str("Too many pods"),
            Reason::PortsInUse => f.write_str("node(s) didn't have free ports for the requested pod ports"),
            Reason::NodeNameMismatch => f.write_str("node(s) didn't match the requested node name"),
            Reason::NodeAffinityMismatch => f.write_str("node(s) didn't match Pod's node affinity/selector"),
            // v1.32 wording (later releases shortened it to "untolerated taint(s)").
            Reason::UntoleratedTaint { key, value } => write!(f, "node(s) had untolerated taint {{{key}: {value}}}"),
            Reason::Unschedulable => f.write_str("node(s) were unschedulable"),
            Reason::AntiAffinityRulesNotMatch => f.write_str("node(s) didn't match pod anti-affinity rules"),
            Reason::ExistingAntiAffinityRulesNotMatch => {
                f.write_str("node(s) didn't satisfy existing pods anti-affinity rules")
            }
        }
    }
}

/// The result of one predicate on one node. `Err` carries every reason the
/// predicate found (resources fit can report cpu *and* memory).
pub type FilterResult = Result<(), Vec<Reason>>;

/// Per-pod, per-cycle state (upstream `CycleState`): computed once in the
/// PreFilter/PreScore phase, read by every Filter/Score call. Plain fields
/// rather than a type-erased map: there are few plugins and this is faster.
#[derive(Debug, Default)]
pub struct CycleState {
    /// InterPodAffinity PreFilter: topology pair → number of existing pods
    /// whose required anti-affinity term selects the incoming pod.
    pub existing_anti_affinity: crate::anti_affinity_index::TopologyCounts,
    /// InterPodAffinity PreFilter: topology pair → number of existing pods
    /// selected by the incoming pod's required anti-affinity terms.
    pub incoming_anti_affinity: crate::anti_affinity_index::TopologyCounts,
    /// Selector spreading PreScore: the selectors of the Services that select
    /// the pod (its ReplicaSet is matched by controller UID).
    pub spread_selectors: Vec<machinery::selector::Selector>,
    /// Image locality PreScore: total number of nodes.
    pub total_nodes: usize,
    /// Image locality PreScore: nodes per image, and the pod's images (normalized).
    pub image_num_nodes: std::sync::Arc<HashMap<String, usize>>,
    pub pod_images: Vec<String>,
    /// NodeAffinity PreFilter: compiled nodeSelector + required node affinity.
    pub required_node_affinity: crate::node_selector::RequiredNodeAffinity,
    /// NodeAffinity PreScore: (weight, compiled preferred term).
    pub preferred_node_affinity: Vec<(i64, crate::node_selector::Term)>,
}

/// No node can take the pod. Upstream `framework.FitError`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FitError {
    pub num_all_nodes: usize,
    /// Node name → the reasons it was rejected.
    pub node_reasons: Vec<(String, Vec<Reason>)>,
}

impl FitError {
    /// Reason → number of nodes rejected for it.
    pub fn histogram(&self) -> HashMap<String, usize> {
        let mut h: HashMap<String, usize> = HashMap::new();
        for (_, reasons) in &self.node_reasons {
            for r in reasons {
                *h.entry(r.to_string()).or_default() += 1;
            }
        }
        h
    }
}

impl fmt::Display for FitError {
    /// `0/5 nodes are available: 2 node(s) didn't match Pod's node
    /// affinity/selector, 3 Insufficient cpu.` — upstream formats each
    /// entry as `"<count> <reason>"` and sorts those **strings**
    /// (`sort.Strings`), so the order is lexicographic on the count's digits
    /// first (`"10 …"` sorts before `"2 …"`); we do the same.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0/{} nodes are available:", self.num_all_nodes)?;
        let mut entries: Vec<String> = self.histogram().into_iter().map(|(r, n)| format!("{n} {r}")).collect();
        entries.sort();
        if !entries.is_empty() {
            write!(f, " {}.", entries.join(", "))?;
        }
        Ok(())
    }
}

impl std::error::Error for FitError {}

/// Why a scheduling attempt failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// Upstream `ErrNoNodesAvailable`.
    #[error("no nodes available to schedule pods")]
    NoNodesAvailable,
    #[error("{0}")]
    Fit(#[from] FitError),
}

impl ScheduleError {
    /// The PodScheduled=False condition reason to write (upstream uses
    /// `Unschedulable` for fit errors and `SchedulerError` otherwise; no nodes
    /// at all is also reported as Unschedulable).
    pub fn condition_reason(&self) -> &'static str {
        "Unschedulable"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(num_all: usize, node_reasons: Vec<Vec<Reason>>, expected: &str) {
        let e = FitError {
            num_all_nodes: num_all,
            node_reasons: node_reasons.into_iter().enumerate().map(|(i, r)| (format!("n{i}"), r)).collect(),
        };
        assert_eq!(e.to_string(), expected);
    }

    #[test]
    fn fit_error_message_as_upstream() {
        let cpu = || Reason::Insufficient("cpu".into());
        let aff = || Reason::NodeAffinityMismatch;
        check(
            5,
            vec![vec![cpu()], vec![cpu()], vec![cpu()], vec![aff()], vec![aff()]],
            "0/5 nodes are available: 2 node(s) didn't match Pod's node affinity/selector, 3 Insufficient cpu.",
        );
        // One node short of both cpu and memory counts in both.
        check(
            1,
            vec![vec![cpu(), Reason::Insufficient("memory".into())]],
            "0/1 nodes are available: 1 Insufficient cpu, 1 Insufficient memory.",
        );
        // Lexicographic, as Go's sort.Strings: "10 …" before "2 …".
        let mut many = vec![vec![Reason::Unschedulable]; 10];
        many.push(vec![Reason::TooManyPods]);
        many.push(vec![Reason::TooManyPods]);
        check(12, many, "0/12 nodes are available: 10 node(s) were unschedulable, 2 Too many pods.");
        check(
            2,
            vec![
                vec![Reason::UntoleratedTaint { key: "dedicated".into(), value: "gpu".into() }],
                vec![Reason::UntoleratedTaint { key: "node-role.kubernetes.io/control-plane".into(), value: "".into() }],
            ],
            "0/2 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }.",
        );
        check(0, vec![], "0/0 nodes are available:");
    }
}
