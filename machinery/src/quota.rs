//! Resource quota usage (upstream `pkg/quota/v1/evaluator/core`), pure:
//! what an object counts against a ResourceQuota, and the usage of a set
//! of objects. Shared by the apiserver's ResourceQuota admission plugin,
//! which *charges* each create, and the resourcequota controller, which
//! *recounts* `status.used` (releasing what deleted or finished objects
//! held).
//!
//! Amounts are exact integers in milli-units (1 pod = 1000, `100m` CPU =
//! 100).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceQuota;
use serde_json::Value;

/// Resource name → amount in milli-units (1 pod = 1000).
pub type Usage = BTreeMap<String, i128>;

const ONE: i128 = 1000;

/// Quantities as exact integers in milli-units (i128, so `1Ei` of memory
/// fits): `"100m"` → 100, `"1"` → 1000, `"1Ki"` → 1_024_000.
pub fn milli(q: &str) -> Result<i128, String> {
    match crate::quantity::parse_milli(q) {
        Ok(v) => Ok(v as i128),
        Err(_) => crate::quantity::parse_value(q).map(|v| v as i128 * 1000).map_err(|e| e.to_string()),
    }
}

/// A milli-unit amount written back as a quantity the way Kubernetes
/// prints one: CPU as `500m` or `2`; memory-like amounts with the largest
/// exact binary suffix (`64Mi`); counts with the largest exact decimal
/// suffix (`10`, `1k`).
pub fn format_milli(resource: &str, m: i128) -> String {
    if m % 1000 != 0 {
        return format!("{m}m");
    }
    let v = m / 1000;
    if v == 0 {
        return "0".into();
    }
    let binary = resource.contains("memory") || resource.contains("storage");
    if binary {
        for (i, suffix) in ["Ei", "Pi", "Ti", "Gi", "Mi", "Ki"].iter().enumerate() {
            let unit = 1i128 << (10 * (6 - i));
            if v % unit == 0 {
                return format!("{}{suffix}", v / unit);
            }
        }
    }
    for (i, suffix) in ["E", "P", "T", "G", "M", "k"].iter().enumerate() {
        let unit = 10i128.pow(3 * (6 - i as u32));
        if v % unit == 0 {
            return format!("{}{suffix}", v / unit);
        }
    }
    v.to_string()
}

/// `pods` or `deployments.apps`: how quotas name a resource in `count/…`.
pub fn qualified(group: &str, resource: &str) -> String {
    if group.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}.{group}")
    }
}

pub fn is_terminal(pod: &Value) -> bool {
    matches!(pod.pointer("/status/phase").and_then(Value::as_str), Some("Succeeded" | "Failed"))
}

/// `requests`/`limits` of one container, in milli-units.
pub fn container_list(c: &Value, key: &str) -> BTreeMap<String, i128> {
    c.pointer(&format!("/resources/{key}"))
        .and_then(Value::as_object)
        .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), milli(v.as_str()?).ok()?))).collect())
        .unwrap_or_default()
}

/// Pod total for requests or limits: sum over containers, at least the
/// largest init container, plus `spec.overhead`.
fn pod_list(pod: &Value, key: &str) -> BTreeMap<String, i128> {
    let mut total: BTreeMap<String, i128> = BTreeMap::new();
    for c in pod.pointer("/spec/containers").and_then(Value::as_array).into_iter().flatten() {
        for (k, v) in container_list(c, key) {
            *total.entry(k).or_default() += v;
        }
    }
    for c in pod.pointer("/spec/initContainers").and_then(Value::as_array).into_iter().flatten() {
        for (k, v) in container_list(c, key) {
            let e = total.entry(k).or_default();
            *e = (*e).max(v);
        }
    }
    if let Some(overhead) = pod.pointer("/spec/overhead").and_then(Value::as_object) {
        for (k, v) in overhead {
            if let Some(n) = v.as_str().and_then(|s| milli(s).ok()) {
                // Overhead counts only for resources the pod already uses.
                if let Some(e) = total.get_mut(k) {
                    *e += n;
                }
            }
        }
    }
    total
}

/// Compute-resource names a container's requests/limits count under.
pub fn compute_names(requests: &BTreeMap<String, i128>, limits: &BTreeMap<String, i128>) -> Vec<String> {
    let mut out = Vec::new();
    for k in requests.keys() {
        out.push(format!("requests.{k}"));
        if matches!(k.as_str(), "cpu" | "memory" | "ephemeral-storage") {
            out.push(k.clone());
        }
    }
    for k in limits.keys() {
        out.push(format!("limits.{k}"));
    }
    out
}

/// What one object counts against quotas (the upstream evaluators).
/// `resource` is the qualified plural (`pods`, `deployments.apps`).
pub fn usage_of(resource: &str, obj: &Value) -> Usage {
    let mut u = Usage::new();
    // Every stored object counts under count/<resource>.
    u.insert(format!("count/{resource}"), ONE);
    match resource {
        "pods" => {
            // Terminated pods hold no compute and do not count as `pods`.
            if is_terminal(obj) {
                return u;
            }
            u.insert("pods".into(), ONE);
            let requests = pod_list(obj, "requests");
            let limits = pod_list(obj, "limits");
            for (k, v) in &requests {
                u.insert(format!("requests.{k}"), *v);
                if matches!(k.as_str(), "cpu" | "memory" | "ephemeral-storage") {
                    u.insert(k.clone(), *v);
                }
            }
            for (k, v) in &limits {
                u.insert(format!("limits.{k}"), *v);
            }
        }
        "services" => {
            u.insert("services".into(), ONE);
            let ty = obj.pointer("/spec/type").and_then(Value::as_str).unwrap_or("ClusterIP");
            if ty == "NodePort" || ty == "LoadBalancer" {
                let ports = obj.pointer("/spec/ports").and_then(Value::as_array).map_or(0, |p| p.len());
                u.insert("services.nodeports".into(), ports as i128 * ONE);
            }
            if ty == "LoadBalancer" {
                u.insert("services.loadbalancers".into(), ONE);
            }
        }
        // The legacy object-count names.
        "configmaps" | "secrets" | "persistentvolumeclaims" | "replicationcontrollers" | "resourcequotas" => {
            u.insert(resource.to_string(), ONE);
        }
        _ => {}
    }
    u
}

/// The usage of a set of existing objects against one quota's tracked
/// resources: what the resourcequota controller writes to `status.used`.
pub fn compute_usage<'a>(quota: &ResourceQuota, objects: impl IntoIterator<Item = (&'a str, &'a Value)>) -> Usage {
    let hard = hard_of(quota);
    let mut used: Usage = hard.keys().map(|k| (k.clone(), 0)).collect();
    for (resource, obj) in objects {
        for (k, v) in usage_of(resource, obj) {
            if let Some(e) = used.get_mut(&k) {
                *e += v;
            }
        }
    }
    used
}

pub fn hard_of(quota: &ResourceQuota) -> BTreeMap<String, i128> {
    quota
        .spec
        .as_ref()
        .and_then(|s| s.hard.as_ref())
        .map(|h| h.iter().filter_map(|(k, q)| Some((k.clone(), milli(&q.0).ok()?))).collect())
        .unwrap_or_default()
}

/// `status.used` of a quota as a [`Usage`].
pub fn usage_from_status(quota: &ResourceQuota) -> Usage {
    quota
        .status
        .as_ref()
        .and_then(|s| s.used.as_ref())
        .map(|h| h.iter().filter_map(|(k, q)| Some((k.clone(), milli(&q.0).ok()?))).collect())
        .unwrap_or_default()
}


/// The resource whose objects a quota's hard key counts (qualified plural):
/// `requests.cpu` and `pods` → pods, `services.nodeports` → services,
/// `count/deployments.apps` → deployments.apps. None for keys no object
/// counts under here.
pub fn counted_resource(key: &str) -> Option<String> {
    if let Some(r) = key.strip_prefix("count/") {
        return Some(r.to_string());
    }
    let r = match key {
        "pods" | "cpu" | "memory" | "ephemeral-storage" => "pods",
        k if k.starts_with("requests.") || k.starts_with("limits.") => "pods",
        "services" | "services.nodeports" | "services.loadbalancers" => "services",
        "configmaps" | "secrets" | "persistentvolumeclaims" | "replicationcontrollers" | "resourcequotas" => key,
        _ => return None,
    };
    Some(r.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hard_keys_name_the_resources_they_count() {
        for (key, want) in [
            ("pods", Some("pods")),
            ("requests.cpu", Some("pods")),
            ("limits.memory", Some("pods")),
            ("memory", Some("pods")),
            ("services.nodeports", Some("services")),
            ("secrets", Some("secrets")),
            ("count/deployments.apps", Some("deployments.apps")),
            ("count/configmaps", Some("configmaps")),
            ("requests.storage", Some("pods")),
            ("nonsense", None),
        ] {
            assert_eq!(counted_resource(key).as_deref(), want, "{key}");
        }
    }

    #[test]
    fn quantities_round_trip() {
        assert_eq!(milli("100m"), Ok(100));
        assert_eq!(milli("1Ki"), Ok(1_024_000));
        assert_eq!(format_milli("requests.memory", milli("64Mi").unwrap()), "64Mi");
        assert_eq!(format_milli("pods", 2000), "2");
        assert_eq!(format_milli("requests.cpu", 1500), "1500m");
    }
}
