//! Phase 2 of a scheduling cycle: **priorities** (upstream: *Score*
//! plugins). Each ranks every feasible node from 0 to
//! [`MAX_NODE_SCORE`] (100), after its own normalisation over all feasible
//! nodes (upstream `NormalizeScore`); the node's total is
//! `Σ weight × score`. The weights come from the configuration.
//!
//! This module is the [`Priority`] trait (upstream's `ScorePlugin`
//! interface) and the normalisation most priorities share; each priority is
//! a child module implementing it, and [`registry`] builds them by name.

use crate::cache::Snapshot;
use crate::framework::CycleState;
use crate::node_info::{NodeInfo, PodInfo};

pub mod balanced_allocation;
pub mod image_locality;
pub mod least_requested;
pub mod node_affinity;
pub mod registry;
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
