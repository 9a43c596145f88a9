//! Phase 3: **selectHost** — pick the node with the highest total score.
//! Ties are broken **round-robin**: a counter (`last_node_index`) advances on
//! every decision and picks among the tied nodes in turn, so a row of
//! identical empty nodes is filled evenly rather than always the first one.
//! This is the classic `genericScheduler.selectHost` with `lastNodeIndex`;
//! modern upstream picks uniformly at random among ties (reservoir
//! sampling) instead — round-robin is deterministic, which tests and
//! benchmarks like.

/// Round-robin tie breaker state, kept across cycles.
#[derive(Debug, Default, Clone)]
pub struct HostSelector {
    last_node_index: u64,
}

impl HostSelector {
    pub fn new() -> Self {
        Self::default()
    }

    /// Index (into `scores`) of the chosen node, or `None` if `scores` is empty.
    pub fn select(&mut self, scores: &[i64]) -> Option<usize> {
        let max = *scores.iter().max()?;
        let ties = scores.iter().filter(|&&s| s == max).count();
        let pick = (self.last_node_index % ties as u64) as usize;
        self.last_node_index = self.last_node_index.wrapping_add(1);
        scores.iter().enumerate().filter(|(_, &s)| s == max).nth(pick).map(|(i, _)| i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `select` once per expected pick, with the same scores.
    fn check(scores: &[i64], expected_picks: &[Option<usize>]) {
        let mut h = HostSelector::new();
        let got: Vec<Option<usize>> = expected_picks.iter().map(|_| h.select(scores)).collect();
        assert_eq!(got, expected_picks, "scores {scores:?}");
    }

    #[test]
    fn select_host() {
        check(&[], &[None]);
        check(&[5], &[Some(0), Some(0)]);
        // A higher score always wins.
        check(&[1, 9, 3], &[Some(1), Some(1), Some(1)]);
        check(&[0, 0, 0, 1], &[Some(3), Some(3), Some(3)]);
        // Ties are spread round-robin.
        check(&[7, 7, 7], &[Some(0), Some(1), Some(2), Some(0)]);
        check(&[7, 1, 7], &[Some(0), Some(2), Some(0), Some(2)]);
        check(&[-5, -5], &[Some(0), Some(1)]);
    }
}
