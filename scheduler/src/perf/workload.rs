//! Workload files and the node/pod generators.
//!
//! ```yaml
//! name: SchedulingBasic
//! description: ...
//! nodes:                      # groups of identical nodes
//!   - count: 5000
//!     template: { ... a Node ... }
//! initPods:                   # scheduled first, not measured
//!   - count: 1000
//!     template: { ... a Pod ... }
//! measurePods:                # scheduled and measured; groups interleaved
//!   - count: 10000
//!     template: { ... a Pod ... }
//! services:                   # optional, for selector spreading
//!   - {namespace: default, name: web, selector: {app: web}}
//! config: { ... }             # optional SchedulerConfiguration
//! ```
//!
//! In every string of a template, `$(i)` is replaced by the object's index
//! in its group, `$(i%N)` by the index modulo N and `$(i/N)` by the index
//! divided by N (e.g. `zone-$(i%3)`, `rs-$(i/100)`). Templates are real
//! Kubernetes objects (k8s-openapi), so anything the scheduler reads can be
//! set.

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::api::core::v1::{Node, Pod};
use serde::{Deserialize, Serialize};
use serde_yaml::Value;

use crate::config::SchedulerConfig;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Group {
    pub count: usize,
    pub template: Value,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceSpec {
    #[serde(default = "default_ns")]
    pub namespace: String,
    pub name: String,
    pub selector: BTreeMap<String, String>,
}

fn default_ns() -> String {
    "default".into()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Workload {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub nodes: Vec<Group>,
    #[serde(default)]
    pub init_pods: Vec<Group>,
    pub measure_pods: Vec<Group>,
    #[serde(default)]
    pub services: Vec<ServiceSpec>,
    #[serde(default)]
    pub config: Option<SchedulerConfig>,
}

#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    #[error("reading {0}: {1}")]
    Io(String, std::io::Error),
    #[error("parsing workload: {0}")]
    Yaml(#[from] serde_yaml::Error),
    #[error("template of {what} #{index}: {err}")]
    Template { what: &'static str, index: usize, err: String },
}

/// Substitute `$(i)`, `$(i%N)`, `$(i/N)` in one string.
pub fn substitute(s: &str, i: usize) -> String {
    if !s.contains("$(") {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 8);
    let mut rest = s;
    while let Some(pos) = rest.find("$(") {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 2..];
        let Some(end) = after.find(')') else {
            out.push_str(&rest[pos..]);
            return out;
        };
        let expr = &after[..end];
        let v = if expr == "i" {
            Some(i)
        } else if let Some(n) = expr.strip_prefix("i%").and_then(|n| n.parse::<usize>().ok()).filter(|n| *n > 0) {
            Some(i % n)
        } else if let Some(n) = expr.strip_prefix("i/").and_then(|n| n.parse::<usize>().ok()).filter(|n| *n > 0) {
            Some(i / n)
        } else {
            None
        };
        match v {
            Some(v) => out.push_str(&v.to_string()),
            None => out.push_str(&rest[pos..pos + 2 + end + 1]),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

fn expand(v: &Value, i: usize) -> Value {
    match v {
        Value::String(s) => Value::String(substitute(s, i)),
        Value::Sequence(seq) => Value::Sequence(seq.iter().map(|x| expand(x, i)).collect()),
        Value::Mapping(m) => Value::Mapping(m.iter().map(|(k, x)| (expand(k, i), expand(x, i))).collect()),
        Value::Tagged(t) => Value::Tagged(Box::new(serde_yaml::value::TaggedValue { tag: t.tag.clone(), value: expand(&t.value, i) })),
        other => other.clone(),
    }
}

fn generate<T: serde::de::DeserializeOwned>(groups: &[Group], what: &'static str) -> Result<Vec<Vec<T>>, WorkloadError> {
    groups
        .iter()
        .map(|g| {
            (0..g.count)
                .map(|i| {
                    serde_yaml::from_value(expand(&g.template, i))
                        .map_err(|e| WorkloadError::Template { what, index: i, err: e.to_string() })
                })
                .collect()
        })
        .collect()
}

/// Round-robin over groups so different pod shapes are interleaved.
fn interleave<T>(groups: Vec<Vec<T>>) -> Vec<T> {
    let total = groups.iter().map(Vec::len).sum();
    let mut iters: Vec<_> = groups.into_iter().map(|g| g.into_iter()).collect();
    let mut out = Vec::with_capacity(total);
    while out.len() < total {
        for it in iters.iter_mut() {
            if let Some(x) = it.next() {
                out.push(x);
            }
        }
    }
    out
}

impl Workload {
    pub fn from_yaml(s: &str) -> Result<Self, WorkloadError> {
        Ok(serde_yaml::from_str(s)?)
    }

    pub fn load(path: &Path) -> Result<Self, WorkloadError> {
        let s = std::fs::read_to_string(path).map_err(|e| WorkloadError::Io(path.display().to_string(), e))?;
        Self::from_yaml(&s)
    }

    pub fn generate_nodes(&self) -> Result<Vec<Node>, WorkloadError> {
        Ok(generate::<Node>(&self.nodes, "node")?.into_iter().flatten().collect())
    }

    /// Init pods, groups in order.
    pub fn generate_init_pods(&self) -> Result<Vec<Pod>, WorkloadError> {
        Ok(generate::<Pod>(&self.init_pods, "init pod")?.into_iter().flatten().collect())
    }

    /// Measured pods, groups interleaved round-robin.
    pub fn generate_measure_pods(&self) -> Result<Vec<Pod>, WorkloadError> {
        Ok(interleave(generate::<Pod>(&self.measure_pods, "measured pod")?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitution() {
        let check = |s: &str, i: usize, expected: &str| assert_eq!(substitute(s, i), expected, "{s} @ {i}");
        check("node-$(i)", 7, "node-7");
        check("zone-$(i%3)", 7, "zone-1");
        check("rs-$(i/100)", 250, "rs-2");
        check("$(i)-$(i%2)", 5, "5-1");
        check("plain", 5, "plain");
        check("$(j)", 5, "$(j)");
        check("$(i%0)", 5, "$(i%0)");
        check("broken $(i", 5, "broken $(i");
    }

    #[test]
    fn generates_objects_from_templates() {
        let w = Workload::from_yaml(
            r#"
name: t
nodes:
  - count: 3
    template:
      metadata: {name: "n-$(i)", labels: {zone: "z$(i%2)"}}
      status: {allocatable: {cpu: "4", pods: "110"}}
measurePods:
  - count: 2
    template: {metadata: {name: "a-$(i)"}, spec: {containers: [{name: c, image: pause}]}}
  - count: 1
    template: {metadata: {name: "b-$(i)"}, spec: {containers: [{name: c, image: pause}]}}
"#,
        )
        .unwrap();
        let nodes = w.generate_nodes().unwrap();
        let names: Vec<_> = nodes.iter().map(|n| n.metadata.name.clone().unwrap()).collect();
        assert_eq!(names, ["n-0", "n-1", "n-2"]);
        assert_eq!(nodes[1].metadata.labels.as_ref().unwrap()["zone"], "z1");
        let pods: Vec<_> = w.generate_measure_pods().unwrap().iter().map(|p| p.metadata.name.clone().unwrap()).collect();
        assert_eq!(pods, ["a-0", "b-0", "a-1"]);
    }

    #[test]
    fn every_shipped_workload_loads() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("workloads");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "yaml") {
                let w = Workload::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                assert!(!w.generate_nodes().unwrap().is_empty());
                // Templates must expand into valid objects (first of each group).
                for g in w.init_pods.iter().chain(&w.measure_pods) {
                    serde_yaml::from_value::<Pod>(expand(&g.template, 0)).unwrap();
                }
                n += 1;
            }
        }
        assert!(n >= 6, "expected the 6 shipped workloads, found {n}");
    }
}
