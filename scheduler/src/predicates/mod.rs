//! Phase 1 of a scheduling cycle: **predicates** (upstream: *Filter*
//! plugins). Each answers one yes/no question about one node for the pod;
//! a node is *feasible* only if every enabled predicate says yes. They run in
//! the order upstream's default profile runs them (cheap and
//! most-often-failing first), and a node's check stops at the first predicate
//! that fails, as upstream's `RunFilterPlugins` does — so a node rejected for
//! being cordoned is not also reported as short of CPU.

use crate::cache::Snapshot;
use crate::framework::{CycleState, FilterResult};
use crate::node_info::{NodeInfo, PodInfo};

pub mod host_ports;
pub mod inter_pod_anti_affinity;
pub mod node_affinity;
pub mod node_name;
pub mod node_unschedulable;
pub mod resources_fit;
pub mod taint_toleration;

/// A filter. Implementations must be cheap and allocation-free on success:
/// they run for hundreds of nodes per pod.
pub trait Predicate: Send + Sync {
    /// The name used in the configuration file (upstream plugin name).
    fn name(&self) -> &'static str;
    /// PreFilter: compute per-pod state once per cycle.
    fn pre_filter(&self, _state: &mut CycleState, _pod: &PodInfo, _snapshot: &Snapshot) {}
    /// Filter: can `node` take `pod`?
    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> FilterResult;
}

/// Every predicate by name, in upstream's default order.
pub const DEFAULT_ORDER: &[&str] = &[
    node_unschedulable::NAME,
    node_name::NAME,
    taint_toleration::NAME,
    node_affinity::NAME,
    host_ports::NAME,
    resources_fit::NAME,
    inter_pod_anti_affinity::NAME,
];

/// Build a predicate from its configured name.
pub fn by_name(name: &str) -> Option<Box<dyn Predicate>> {
    Some(match name {
        node_unschedulable::NAME => Box::new(node_unschedulable::NodeUnschedulable),
        node_name::NAME => Box::new(node_name::NodeName),
        taint_toleration::NAME => Box::new(taint_toleration::TaintToleration),
        node_affinity::NAME => Box::new(node_affinity::NodeAffinity),
        host_ports::NAME => Box::new(host_ports::NodePorts),
        resources_fit::NAME => Box::new(resources_fit::NodeResourcesFit),
        inter_pod_anti_affinity::NAME => Box::new(inter_pod_anti_affinity::InterPodAntiAffinity),
        _ => return None,
    })
}
