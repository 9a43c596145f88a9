//! A pod's Quality of Service class (upstream `pkg/apis/core/helper/qos`):
//! the one computation the apiserver stamps into `status.qosClass` when a
//! pod is created and the node agent reports back.
//!
//! - **Guaranteed**: every container has cpu and memory limits, and the
//!   pod's requests equal its limits, resource by resource;
//! - **BestEffort**: no container requests or limits any cpu or memory;
//! - **Burstable**: everything in between.
//!
//! Amounts are compared by value, as `Quantity.Cmp` does: `1000m` is `1`,
//! `1Gi` is `1024Mi`. Only cpu and memory count, and only amounts above
//! zero. A request left out defaults to the container's limit (upstream
//! `SetDefaults_Pod`), so the answer is the same before or after defaulting.
//! Like upstream's `ComputePodQOS`, requests and limits are summed over the
//! containers and init containers before they are compared.
//!
//! Sans-IO and allocation-free: the apiserver calls it on a JSON pod spec
//! ([`compute_json`]), the agent on a typed `k8s_openapi` pod
//! ([`pod_qos_class`]).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde_json::Value;

/// The three classes, as `status.qosClass` spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QosClass {
    Guaranteed,
    Burstable,
    BestEffort,
}

impl QosClass {
    pub fn as_str(self) -> &'static str {
        match self {
            QosClass::Guaranteed => "Guaranteed",
            QosClass::Burstable => "Burstable",
            QosClass::BestEffort => "BestEffort",
        }
    }
}

/// The resources a QoS class looks at (`supportedQoSComputeResources`).
const RESOURCES: [&str; 2] = ["cpu", "memory"];

/// Upstream `ComputePodQOS`, over each container's `(requests, limits)`,
/// each a list of `(resource name, quantity)`. An amount that does not
/// parse counts as unset (the apiserver refuses such pods before storing
/// them).
pub fn compute<'a, C, L>(containers: C) -> QosClass
where
    C: IntoIterator<Item = (L, L)>,
    L: IntoIterator<Item = (&'a str, &'a str)>,
{
    // Per resource (cpu, memory): the sums of the positive amounts, and
    // whether any was seen (an empty sum is not a zero one).
    let mut requests: [Option<i128>; 2] = [None; 2];
    let mut limits: [Option<i128>; 2] = [None; 2];
    let mut guaranteed = true;
    for (container_requests, container_limits) in containers {
        let (req, lim) = (amounts(container_requests), amounts(container_limits));
        for i in 0..RESOURCES.len() {
            // A missing request is the limit (defaulting); a zero one is not.
            let request = req[i].or(lim[i]).filter(|v| *v > 0);
            let limit = lim[i].filter(|v| *v > 0);
            if let Some(v) = request {
                *requests[i].get_or_insert(0) += v;
            }
            match limit {
                Some(v) => *limits[i].get_or_insert(0) += v,
                // Every container needs both limits for Guaranteed.
                None => guaranteed = false,
            }
        }
    }
    if requests.iter().chain(&limits).all(Option::is_none) {
        return QosClass::BestEffort;
    }
    // Requests equal limits for every resource requested, and nothing is
    // limited without being requested.
    if guaranteed && requests == limits {
        QosClass::Guaranteed
    } else {
        QosClass::Burstable
    }
}

/// The cpu and memory amounts (milli-units) of one requests or limits list.
fn amounts<'a>(list: impl IntoIterator<Item = (&'a str, &'a str)>) -> [Option<i128>; 2] {
    let mut out = [None; 2];
    for (name, quantity) in list {
        if let Some(i) = RESOURCES.iter().position(|r| *r == name) {
            out[i] = crate::quota::milli(quantity).ok();
        }
    }
    out
}

/// The class of a pod spec in JSON (what the apiserver stores).
pub fn compute_json(spec: &Value) -> QosClass {
    let containers = ["containers", "initContainers"].into_iter().flat_map(|key| spec[key].as_array().into_iter().flatten());
    compute(containers.map(|c| (json_list(&c["resources"]["requests"]), json_list(&c["resources"]["limits"]))))
}

fn json_list(list: &Value) -> impl Iterator<Item = (&str, &str)> {
    list.as_object().into_iter().flatten().filter_map(|(k, v)| Some((k.as_str(), v.as_str()?)))
}

/// The class of a typed pod spec.
pub fn compute_spec(spec: &PodSpec) -> QosClass {
    let containers = spec.containers.iter().chain(spec.init_containers.iter().flatten());
    compute(containers.map(|c: &Container| {
        let r = c.resources.as_ref();
        (typed_list(r.and_then(|r| r.requests.as_ref())), typed_list(r.and_then(|r| r.limits.as_ref())))
    }))
}

fn typed_list(list: Option<&BTreeMap<String, Quantity>>) -> impl Iterator<Item = (&str, &str)> {
    list.into_iter().flatten().map(|(k, q)| (k.as_str(), q.0.as_str()))
}

/// Upstream `GetPodQOS`: the class the apiserver recorded in
/// `status.qosClass` (fixed for the pod's life), or, for a pod that has
/// none, the class its spec computes to. What the node agent reports.
pub fn pod_qos_class(pod: &Pod) -> &str {
    if let Some(class) = pod.status.as_ref().and_then(|s| s.qos_class.as_deref()).filter(|c| !c.is_empty()) {
        return class;
    }
    pod.spec.as_ref().map_or(QosClass::BestEffort, compute_spec).as_str()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn class(resources: &[Value]) -> &'static str {
        let containers: Vec<Value> = resources.iter().enumerate().map(|(i, r)| json!({"name": format!("c{i}"), "resources": r})).collect();
        let spec = json!({"containers": containers});
        let by_json = compute_json(&spec);
        let typed: PodSpec = serde_json::from_value(spec).unwrap();
        assert_eq!(compute_spec(&typed), by_json, "typed and JSON disagree on {resources:?}");
        by_json.as_str()
    }

    #[test]
    fn quantities_compare_by_value() {
        let both = |req: Value, lim: Value| json!({"requests": req, "limits": lim});
        for (resources, expected) in [
            (vec![json!({})], "BestEffort"),
            (vec![json!({"requests": {"cpu": "1"}})], "Burstable"),
            (vec![both(json!({"cpu": "1", "memory": "1Gi"}), json!({"cpu": "1", "memory": "1Gi"}))], "Guaranteed"),
            (vec![both(json!({"cpu": "1"}), json!({"cpu": "2", "memory": "1Gi"}))], "Burstable"),
            // The same amount written differently is the same amount.
            (vec![both(json!({"cpu": "1000m", "memory": "1Gi"}), json!({"cpu": "1", "memory": "1Gi"}))], "Guaranteed"),
            (vec![both(json!({"cpu": "1", "memory": "1Gi"}), json!({"cpu": "1", "memory": "1024Mi"}))], "Guaranteed"),
            (vec![both(json!({"cpu": "0.5", "memory": "64Mi"}), json!({"cpu": "500m", "memory": "64Mi"}))], "Guaranteed"),
            (vec![both(json!({"cpu": "999m", "memory": "1Gi"}), json!({"cpu": "1", "memory": "1Gi"}))], "Burstable"),
            // Requests left out are the limits (SetDefaults_Pod).
            (vec![json!({"limits": {"cpu": "1", "memory": "1Gi"}})], "Guaranteed"),
            (vec![both(json!({"memory": "1Gi"}), json!({"cpu": "2", "memory": "1Gi"}))], "Guaranteed"),
            // Every container needs both limits.
            (vec![json!({"limits": {"cpu": "1", "memory": "1Gi"}}), json!({})], "Burstable"),
            (vec![json!({"limits": {"cpu": "1"}})], "Burstable"),
            // Only cpu and memory count; zero amounts are no amounts.
            (vec![json!({"requests": {"ephemeral-storage": "1Gi"}})], "BestEffort"),
            (vec![json!({"requests": {"cpu": "0"}})], "BestEffort"),
            (vec![both(json!({"cpu": "0", "memory": "1Gi"}), json!({"cpu": "1", "memory": "1Gi"}))], "Burstable"),
        ] {
            assert_eq!(class(&resources), expected, "{resources:?}");
        }
    }

    #[test]
    fn init_containers_count() {
        let spec = json!({
            "containers": [{"name": "a", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}],
            "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "100m"}}}],
        });
        assert_eq!(compute_json(&spec), QosClass::Burstable);
    }

    #[test]
    fn a_recorded_class_is_kept() {
        let pod: Pod = serde_json::from_value(json!({
            "spec": {"containers": [{"name": "c", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]},
            "status": {"qosClass": "Burstable"},
        }))
        .unwrap();
        assert_eq!(pod_qos_class(&pod), "Burstable");
        let fresh = Pod { status: None, ..pod };
        assert_eq!(pod_qos_class(&fresh), "Guaranteed");
    }
}
