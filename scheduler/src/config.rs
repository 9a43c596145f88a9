//! Scheduler configuration file, in the spirit of upstream's
//! `KubeSchedulerConfiguration`: which predicates (Filter plugins) and
//! priorities (Score plugins) run, the priorities' weights, the node
//! sampling percentage and the queue's backoff timings. Every field is
//! optional; without a file the defaults are upstream's.
//!
//! ```yaml
//! apiVersion: rkube.io/v1alpha1
//! kind: SchedulerConfiguration
//! percentageOfNodesToScore: 0      # 0 = adaptive, as upstream
//! podInitialBackoffSeconds: 1
//! podMaxBackoffSeconds: 10
//! podMaxInUnschedulablePodsSeconds: 60
//! predicates:
//!   disabled: [NodePorts]          # "*" disables every default
//!   enabled: []                    # added after the remaining defaults
//! priorities:
//!   disabled: [ImageLocality]
//!   enabled:                       # adds, or changes a default's weight
//!     - {name: NodeResourcesBalancedAllocation, weight: 5}
//! ```
//!
//! Like upstream's plugin sets: `disabled` removes defaults (`"*"` all of
//! them), `enabled` appends (or re-weights). Unknown names are an error,
//! not silently ignored.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::predicates::{self, Predicate};
use crate::priorities::{self, Priority};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PredicateSet {
    #[serde(default)]
    pub enabled: Vec<String>,
    #[serde(default)]
    pub disabled: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WeightedPriority {
    pub name: String,
    #[serde(default = "one")]
    pub weight: i64,
}

fn one() -> i64 {
    1
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrioritySet {
    #[serde(default)]
    pub enabled: Vec<WeightedPriority>,
    #[serde(default)]
    pub disabled: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SchedulerConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// 0 = adaptive (upstream default); 1..=100 a fixed percentage.
    #[serde(default)]
    pub percentage_of_nodes_to_score: u32,
    #[serde(default = "default_initial_backoff")]
    pub pod_initial_backoff_seconds: f64,
    #[serde(default = "default_max_backoff")]
    pub pod_max_backoff_seconds: f64,
    #[serde(default = "default_max_unschedulable")]
    pub pod_max_in_unschedulable_pods_seconds: f64,
    #[serde(default)]
    pub predicates: PredicateSet,
    #[serde(default)]
    pub priorities: PrioritySet,
}

fn default_initial_backoff() -> f64 {
    1.0
}
fn default_max_backoff() -> f64 {
    10.0
}
fn default_max_unschedulable() -> f64 {
    60.0
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        serde_yaml::from_str("{}").expect("empty config parses")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {0}: {1}")]
    Io(String, std::io::Error),
    #[error("parsing scheduler configuration: {0}")]
    Yaml(#[from] serde_yaml::Error),
    #[error("unknown predicate {0:?} (known: {1})")]
    UnknownPredicate(String, String),
    #[error("unknown priority {0:?} (known: {1})")]
    UnknownPriority(String, String),
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl SchedulerConfig {
    pub fn from_yaml(s: &str) -> Result<Self, ConfigError> {
        let c: SchedulerConfig = serde_yaml::from_str(s)?;
        c.validate()?;
        Ok(c)
    }

    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let s = std::fs::read_to_string(path).map_err(|e| ConfigError::Io(path.display().to_string(), e))?;
        Self::from_yaml(&s)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.percentage_of_nodes_to_score > 100 {
            return Err(ConfigError::Invalid("percentageOfNodesToScore must be 0..=100".into()));
        }
        if !(self.pod_initial_backoff_seconds > 0.0 && self.pod_max_backoff_seconds >= self.pod_initial_backoff_seconds) {
            return Err(ConfigError::Invalid("need 0 < podInitialBackoffSeconds <= podMaxBackoffSeconds".into()));
        }
        if self.pod_max_in_unschedulable_pods_seconds <= 0.0 {
            return Err(ConfigError::Invalid("podMaxInUnschedulablePodsSeconds must be > 0".into()));
        }
        for w in &self.priorities.enabled {
            if !(1..=100).contains(&w.weight) {
                return Err(ConfigError::Invalid(format!("weight of {} must be 1..=100, got {}", w.name, w.weight)));
            }
        }
        self.predicate_names()?;
        self.priority_weights()?;
        Ok(())
    }

    /// Enabled predicate names, in run order.
    pub fn predicate_names(&self) -> Result<Vec<String>, ConfigError> {
        let known = || predicates::registry::DEFAULT_ORDER.join(", ");
        for n in self.predicates.disabled.iter().chain(&self.predicates.enabled) {
            if n != "*" && !predicates::registry::DEFAULT_ORDER.contains(&n.as_str()) {
                return Err(ConfigError::UnknownPredicate(n.clone(), known()));
            }
        }
        let all_off = self.predicates.disabled.iter().any(|d| d == "*");
        let mut names: Vec<String> = predicates::registry::DEFAULT_ORDER
            .iter()
            .filter(|n| !all_off && !self.predicates.disabled.iter().any(|d| d == *n))
            .map(|n| n.to_string())
            .collect();
        for n in &self.predicates.enabled {
            if !names.contains(n) {
                names.push(n.clone());
            }
        }
        Ok(names)
    }

    /// Enabled priorities with their weights.
    pub fn priority_weights(&self) -> Result<Vec<(String, i64)>, ConfigError> {
        let known = || priorities::registry::DEFAULT_WEIGHTS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ");
        for n in self.priorities.disabled.iter().chain(self.priorities.enabled.iter().map(|w| &w.name)) {
            if n != "*" && !priorities::registry::DEFAULT_WEIGHTS.iter().any(|(k, _)| k == n) {
                return Err(ConfigError::UnknownPriority(n.clone(), known()));
            }
        }
        let all_off = self.priorities.disabled.iter().any(|d| d == "*");
        let mut out: Vec<(String, i64)> = priorities::registry::DEFAULT_WEIGHTS
            .iter()
            .filter(|(n, _)| !all_off && !self.priorities.disabled.iter().any(|d| d == n))
            .map(|(n, w)| (n.to_string(), *w))
            .collect();
        for w in &self.priorities.enabled {
            match out.iter_mut().find(|(n, _)| *n == w.name) {
                Some(e) => e.1 = w.weight,
                None => out.push((w.name.clone(), w.weight)),
            }
        }
        Ok(out)
    }

    pub fn build_predicates(&self) -> Result<Vec<Box<dyn Predicate>>, ConfigError> {
        Ok(self.predicate_names()?.iter().filter_map(|n| predicates::registry::by_name(n)).collect())
    }

    pub fn build_priorities(&self) -> Result<Vec<(Box<dyn Priority>, i64)>, ConfigError> {
        Ok(self.priority_weights()?.iter().filter_map(|(n, w)| priorities::registry::by_name(n).map(|p| (p, *w))).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(yaml: &str, expected_predicates: &[&str], expected_priorities: &[(&str, i64)]) {
        let c = SchedulerConfig::from_yaml(yaml).unwrap();
        assert_eq!(c.predicate_names().unwrap(), expected_predicates);
        let w = c.priority_weights().unwrap();
        let w: Vec<(&str, i64)> = w.iter().map(|(n, w)| (n.as_str(), *w)).collect();
        assert_eq!(w, expected_priorities);
    }

    #[test]
    fn defaults_and_overrides() {
        let all_p = predicates::registry::DEFAULT_ORDER;
        check("{}", all_p, priorities::registry::DEFAULT_WEIGHTS);
        check(
            "predicates: {disabled: [NodePorts, InterPodAffinity]}",
            &["NodeUnschedulable", "NodeName", "TaintToleration", "NodeAffinity", "NodeResourcesFit"],
            priorities::registry::DEFAULT_WEIGHTS,
        );
        check(
            "predicates: {disabled: ['*'], enabled: [NodeResourcesFit]}\npriorities: {disabled: ['*'], enabled: [{name: NodeResourcesBalancedAllocation, weight: 5}]}",
            &["NodeResourcesFit"],
            &[("NodeResourcesBalancedAllocation", 5)],
        );
        check(
            "priorities:\n  enabled:\n    - name: TaintToleration\n      weight: 10\n",
            all_p,
            &[
                ("NodeResourcesLeastAllocated", 1),
                ("NodeResourcesBalancedAllocation", 1),
                ("ImageLocality", 1),
                ("NodeAffinity", 2),
                ("TaintToleration", 10),
                ("SelectorSpread", 2),
            ],
        );
        let c = SchedulerConfig::default();
        assert_eq!(c.pod_initial_backoff_seconds, 1.0);
        assert_eq!(c.pod_max_backoff_seconds, 10.0);
        assert_eq!(c.pod_max_in_unschedulable_pods_seconds, 60.0);
        assert_eq!(c.percentage_of_nodes_to_score, 0);
    }

    #[test]
    fn rejects_bad_config() {
        for bad in [
            "predicates: {disabled: [NoSuchThing]}",
            "priorities: {enabled: [{name: Nope, weight: 1}]}",
            "priorities: {enabled: [{name: ImageLocality, weight: 0}]}",
            "percentageOfNodesToScore: 101",
            "podInitialBackoffSeconds: 0",
            "podInitialBackoffSeconds: 20",
            "unknownField: 1",
        ] {
            assert!(SchedulerConfig::from_yaml(bad).is_err(), "{bad} should be rejected");
        }
    }
}
