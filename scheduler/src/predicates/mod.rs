//! Phase 1 of a scheduling cycle: **predicates** (upstream: *Filter*
//! plugins). Each answers one yes/no question about one node for the pod;
//! a node is *feasible* only if every enabled predicate says yes. They run in
//! the order upstream's default profile runs them (cheap and
//! most-often-failing first), and a node's check stops at the first predicate
//! that fails, as upstream's `RunFilterPlugins` does — so a node rejected for
//! being cordoned is not also reported as short of CPU.
//!
//! This module is the [`Predicate`] trait (upstream's `FilterPlugin`
//! interface); each predicate is a child module implementing it, and
//! [`registry`] builds them by name.

use crate::cache::Snapshot;
use crate::framework::{CycleState, FilterResult};
use crate::node_info::{NodeInfo, PodInfo};

pub mod host_ports;
pub mod inter_pod_anti_affinity;
pub mod node_affinity;
pub mod node_name;
pub mod node_unschedulable;
pub mod registry;
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
