//! Phase 2 of a scheduling cycle: **priorities** (upstream: *Score*
//! plugins). Each ranks every feasible node from 0 to
//! [`MAX_NODE_SCORE`] (100), after its own normalisation over all feasible
//! nodes (upstream `NormalizeScore`); the node's total is
//! `Σ weight × score`. The weights come from the configuration.

use crate::cache::Snapshot;
use crate::framework::CycleState;
use crate::node_info::{NodeInfo, PodInfo};

pub mod balanced_allocation;
pub mod image_locality;
pub mod least_requested;
pub mod node_affinity;
pub mod selector_spreading;
pub mod taint_toleration;

/// Upstream `framework.MaxNodeScore`.
pub const MAX_NODE_SCORE: i64 = 100;

pub trait Priority: Send + Sync {
    /// The name used in the configuration file.
    fn name(&self) -> &'static str;
    /// PreScore: per-pod state, once per cycle.
    fn pre_score(&self, _state: &mut CycleState, _pod: &PodInfo, _snapshot: &Snapshot) {}
    /// Raw score of one node (already 0..=100 unless `normalize` maps it).
    fn score(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64;
    /// Map raw scores of all feasible nodes to 0..=100.
    fn normalize(&self, _scores: &mut [i64]) {}
}

/// Upstream `helper.DefaultNormalizeScore`: scale so the highest raw score
/// becomes 100 (`reverse`: the highest becomes 0, and all-zero becomes 100).
pub fn default_normalize(scores: &mut [i64], reverse: bool) {
    let max = scores.iter().copied().max().unwrap_or(0);
    if max == 0 {
        if reverse {
            scores.iter_mut().for_each(|s| *s = MAX_NODE_SCORE);
        }
        return;
    }
    for s in scores.iter_mut() {
        let v = MAX_NODE_SCORE * *s / max;
        *s = if reverse { MAX_NODE_SCORE - v } else { v };
    }
}

/// Every priority with upstream's default weight (v1.32 default profile;
/// SelectorSpread, which the default profile replaced by
/// PodTopologySpread's system defaults, gets PodTopologySpread's weight 2).
pub const DEFAULT_WEIGHTS: &[(&str, i64)] = &[
    (least_requested::NAME, 1),
    (balanced_allocation::NAME, 1),
    (image_locality::NAME, 1),
    (node_affinity::NAME, 2),
    (taint_toleration::NAME, 3),
    (selector_spreading::NAME, 2),
];

pub fn by_name(name: &str) -> Option<Box<dyn Priority>> {
    Some(match name {
        least_requested::NAME => Box::new(least_requested::LeastRequested),
        balanced_allocation::NAME => Box::new(balanced_allocation::BalancedAllocation),
        image_locality::NAME => Box::new(image_locality::ImageLocality),
        node_affinity::NAME => Box::new(node_affinity::PreferredNodeAffinity),
        taint_toleration::NAME => Box::new(taint_toleration::PreferNoScheduleTaints),
        selector_spreading::NAME => Box::new(selector_spreading::SelectorSpread),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &[i64], reverse: bool, expected: &[i64]) {
        let mut s = input.to_vec();
        default_normalize(&mut s, reverse);
        assert_eq!(s, expected, "{input:?} reverse={reverse}");
    }

    #[test]
    fn default_normalize_as_upstream() {
        check(&[], false, &[]);
        check(&[0, 0], false, &[0, 0]);
        check(&[0, 0], true, &[100, 100]);
        check(&[1, 2, 4], false, &[25, 50, 100]);
        check(&[1, 2, 4], true, &[75, 50, 0]);
        check(&[3, 3], false, &[100, 100]);
        check(&[1, 3], false, &[33, 100]);
    }
}
