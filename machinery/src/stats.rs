//! The one definition of a percentile, of a run-series summary and of a
//! benchmark's headline figure, used by every benchmark and by the figures in
//! `docs/benchmarks.md`.
//!
//! Percentiles are **nearest rank**: the p-th percentile of n sorted samples
//! is the sample at rank `ceil(n * p / 100)` (1-based), as upstream's
//! scheduler_perf throughput collector computes it (it sorts the samples and
//! indexes at `ceil(n*p/100) - 1`). It is always one of the samples, never an
//! interpolation; with fewer than 100 samples the p99 is the maximum, which is
//! why reports state n beside it.

use serde::{Deserialize, Serialize};

/// Nearest-rank percentile of already sorted samples (`p` in 0..=100).
/// `None` for no samples.
pub fn percentile_sorted<T: Copy>(sorted: &[T], p: f64) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((sorted.len() as f64 * p / 100.0).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

/// Nearest-rank percentile of unsorted `f64` samples (NaN-safe total order).
pub fn percentile(samples: &[f64], p: f64) -> Option<f64> {
    let mut s = samples.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    percentile_sorted(&s, p)
}

/// One figure over N repeated runs: median (nearest rank, p50) and the
/// spread as min–max. This is what a benchmark table prints per figure.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub n: usize,
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Summary {
    /// `None` for no runs.
    pub fn of(runs: &[f64]) -> Option<Summary> {
        let mut s = runs.to_vec();
        s.sort_by(|a, b| a.total_cmp(b));
        Some(Summary { n: s.len(), median: percentile_sorted(&s, 50.0)?, min: s[0], max: s[s.len() - 1] })
    }
}

/// Which way a figure improves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Better {
    Higher,
    Lower,
}

/// One headline number of a benchmark run, as every `rkube bench` JSON
/// lists them under `figures`: `key` is stable across runs (so runs can be
/// set side by side and summarised by `scripts/bench-report`), `label` is
/// for people.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Figure {
    pub key: String,
    pub label: String,
    pub unit: String,
    pub value: f64,
    pub better: Better,
}

impl Figure {
    pub fn new(key: impl Into<String>, label: impl Into<String>, unit: impl Into<String>, value: f64, better: Better) -> Figure {
        Figure { key: key.into(), label: label.into(), unit: unit.into(), value, better }
    }

    pub fn higher(key: impl Into<String>, label: impl Into<String>, unit: &str, value: f64) -> Figure {
        Figure::new(key, label, unit, value, Better::Higher)
    }

    pub fn lower(key: impl Into<String>, label: impl Into<String>, unit: &str, value: f64) -> Figure {
        Figure::new(key, label, unit, value, Better::Lower)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_as_upstream() {
        // Ranks ceil(n*p/100): n = 10 → p50 is the 5th, p90 the 9th, p99 the 10th.
        let s: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(percentile(&s, 50.0), Some(5.0));
        assert_eq!(percentile(&s, 90.0), Some(9.0));
        assert_eq!(percentile(&s, 99.0), Some(10.0));
        assert_eq!(percentile(&s, 0.0), Some(1.0));
        assert_eq!(percentile(&s, 100.0), Some(10.0));
        // n = 3 (the least runs a table reports): median is the 2nd.
        assert_eq!(percentile(&[30.0, 10.0, 20.0], 50.0), Some(20.0));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn summary_of_runs() {
        let s = Summary::of(&[3.0, 1.0, 2.0, 10.0]).unwrap();
        assert_eq!((s.n, s.median, s.min, s.max), (4, 2.0, 1.0, 10.0));
        assert!(Summary::of(&[]).is_none());
    }
}
