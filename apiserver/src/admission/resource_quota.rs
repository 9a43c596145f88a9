//! The ResourceQuota admission plugin (plugin/pkg/admission/resourcequota).
//!
//! A ResourceQuota caps what a namespace may hold: object counts
//! (`pods`, `services`, `count/deployments.apps`) and compute
//! (`requests.cpu`, `limits.memory`, …). Admission is where a quota bites:
//! each create is *charged* — the object's usage is added to the quota's
//! current usage — and refused with 403 if any tracked resource would go
//! over its hard limit:
//!
//! `exceeded quota: compute, requested: requests.cpu=500m, used: requests.cpu=1800m, limited: requests.cpu=2`
//!
//! Only the resources the quota tracks are checked, and only those the
//! object actually uses. A quota on `requests.cpu` also demands that every
//! container *state* a CPU request (`must specify requests.cpu for: app`) —
//! which is why LimitRanger, which fills in defaults, runs first.
//!
//! Usage is given by the caller: the quota's `status.used`, or a count the
//! apiserver makes from its cache with [`compute_usage`]. [`check`] is the
//! pure core: (quota, usage, new object) → new usage, or the refusal.
//!
//! Not implemented: quota scopes (`scopes`, `scopeSelector`: such quotas
//! are skipped), charging updates (only creates are charged), and the
//! "status unknown" refusal for quotas the controller has not counted yet.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceQuota;
use serde_json::Value;

use super::attributes::{Operation, Request};
use super::errors::AdmissionError;
// The usage computation is shared with the resourcequota controller.
use machinery::quota::{compute_names, container_list, format_milli, hard_of, is_terminal};
pub use machinery::quota::{compute_usage, qualified, usage_from_status, usage_of, Usage};

const PLUGIN: &str = "ResourceQuota";

/// A quota with its current usage (what the quota's `status.used` says, or
/// what the apiserver counted from its cache).
#[derive(Debug, Clone)]
pub struct QuotaState {
    pub quota: ResourceQuota,
    pub used: Usage,
}

/// Why a quota refused an object (403).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuotaError {
    /// `exceeded quota: <name>, requested: ..., used: ..., limited: ...`
    Exceeded(String),
    /// `failed quota: <name>: must specify requests.cpu for: app`
    Constraint(String),
}

impl QuotaError {
    pub fn message(&self) -> &str {
        match self {
            QuotaError::Exceeded(m) | QuotaError::Constraint(m) => m,
        }
    }
}

fn pretty(list: &BTreeMap<String, i128>, keys: &[String]) -> String {
    keys.iter().map(|k| format!("{k}={}", format_milli(k, list.get(k).copied().unwrap_or(0)))).collect::<Vec<_>>().join(",")
}

/// Charges `object` (of qualified plural `resource`) to `quota` with current
/// usage `used`. Returns the new usage, or why the object does not fit.
pub fn check(quota: &ResourceQuota, used: &Usage, resource: &str, object: &Value) -> Result<Usage, QuotaError> {
    let name = quota.metadata.name.as_deref().unwrap_or("");
    let hard = hard_of(quota);

    // A quota on compute demands that every container state it.
    if resource == "pods" {
        const VALIDATION: &[&str] = &["cpu", "memory", "requests.cpu", "requests.memory", "limits.cpu", "limits.memory"];
        let required: Vec<&str> = VALIDATION.iter().copied().filter(|r| hard.contains_key(*r)).collect();
        let mut missing: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for field in ["containers", "initContainers"] {
            for c in object.pointer(&format!("/spec/{field}")).and_then(Value::as_array).into_iter().flatten() {
                let names = compute_names(&container_list(c, "requests"), &container_list(c, "limits"));
                for r in &required {
                    if !names.iter().any(|n| n == r) {
                        let cname = c.get("name").and_then(Value::as_str).unwrap_or("").to_string();
                        let list = missing.entry(r).or_default();
                        if !list.contains(&cname) {
                            list.push(cname);
                        }
                    }
                }
            }
        }
        if !missing.is_empty() && !is_terminal(object) {
            let parts: Vec<String> = missing
                .iter_mut()
                .map(|(r, cs)| {
                    cs.sort();
                    format!("{r} for: {}", cs.join(","))
                })
                .collect();
            return Err(QuotaError::Constraint(format!("failed quota: {name}: must specify {}", parts.join("; "))));
        }
    }

    let requested: Usage = usage_of(resource, object).into_iter().filter(|(k, _)| hard.contains_key(k)).collect();
    let mut new_used = used.clone();
    for (k, v) in &requested {
        *new_used.entry(k.clone()).or_default() += v;
    }
    let exceeded: Vec<String> =
        requested.keys().filter(|k| new_used.get(*k).copied().unwrap_or(0) > hard[*k]).cloned().collect();
    if !exceeded.is_empty() {
        return Err(QuotaError::Exceeded(format!(
            "exceeded quota: {name}, requested: {}, used: {}, limited: {}",
            pretty(&requested, &exceeded),
            pretty(used, &exceeded),
            pretty(&hard, &exceeded)
        )));
    }
    Ok(new_used)
}

/// The validating plugin: charges a create to every (unscoped) quota of the
/// namespace; returns each quota's name and new usage.
pub fn validate(req: &Request<'_>, object: &Value, quotas: &[QuotaState]) -> Result<Vec<(String, Usage)>, AdmissionError> {
    if req.operation != Operation::Create || !req.subresource.is_empty() {
        return Ok(Vec::new());
    }
    let resource = qualified(req.group, req.resource);
    let mut out = Vec::new();
    for q in quotas {
        let scoped = q.quota.spec.as_ref().is_some_and(|s| {
            s.scopes.as_ref().is_some_and(|v| !v.is_empty()) || s.scope_selector.is_some()
        });
        if scoped {
            continue;
        }
        match check(&q.quota, &q.used, &resource, object) {
            Ok(used) => out.push((q.quota.metadata.name.clone().unwrap_or_default(), used)),
            Err(e) => return Err(AdmissionError::forbidden(PLUGIN, req, Some(object), e.message().to_string())),
        }
    }
    Ok(out)
}

/// The charge re-made against a quota as stored right now (its
/// `status.used`), when the apiserver writes the charge: the new usage, or
/// the 403 if the object no longer fits.
pub fn recheck(req: &Request<'_>, quota: &ResourceQuota, object: &Value) -> Result<Usage, AdmissionError> {
    let resource = qualified(req.group, req.resource);
    check(quota, &usage_from_status(quota), &resource, object)
        .map_err(|e| AdmissionError::forbidden(PLUGIN, req, Some(object), e.message().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::milli;
    use serde_json::json;

    fn quota(name: &str, hard: Value) -> ResourceQuota {
        serde_json::from_value(json!({"metadata": {"name": name, "namespace": "dev"}, "spec": {"hard": hard}})).unwrap()
    }

    fn usage(pairs: &[(&str, &str)]) -> Usage {
        pairs.iter().map(|(k, v)| (k.to_string(), milli(v).unwrap())).collect()
    }

    fn pod(name: &str, containers: Value) -> Value {
        json!({"metadata": {"name": name}, "spec": {"containers": containers}})
    }

    fn app(cpu: &str, mem: &str) -> Value {
        json!({"name": "app", "resources": {"requests": {"cpu": cpu, "memory": mem}, "limits": {"cpu": cpu, "memory": mem}}})
    }

    fn check_case(q: &ResourceQuota, used: &[(&str, &str)], resource: &str, obj: Value, expected: Result<&[(&str, &str)], &str>) {
        let got = check(q, &usage(used), resource, &obj);
        match (got, expected) {
            (Ok(u), Ok(want)) => assert_eq!(u, usage(want), "{obj}"),
            (Err(e), Err(want)) => assert_eq!(e.message(), want),
            (got, want) => panic!("{obj}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn counts() {
        let q = quota("counts", json!({"pods": "2", "count/deployments.apps": "1", "services.nodeports": "1"}));
        check_case(&q, &[("pods", "1")], "pods", pod("p", json!([])), Ok(&[("pods", "2")]));
        check_case(
            &q,
            &[("pods", "2")],
            "pods",
            pod("p", json!([])),
            Err("exceeded quota: counts, requested: pods=1, used: pods=2, limited: pods=2"),
        );
        check_case(&q, &[], "deployments.apps", json!({}), Ok(&[("count/deployments.apps", "1")]));
        check_case(
            &q,
            &[("count/deployments.apps", "1")],
            "deployments.apps",
            json!({}),
            Err("exceeded quota: counts, requested: count/deployments.apps=1, used: count/deployments.apps=1, limited: count/deployments.apps=1"),
        );
        // Objects the quota does not track pass and change nothing.
        check_case(&q, &[("pods", "2")], "configmaps", json!({}), Ok(&[("pods", "2")]));
        // Two node ports where one is allowed.
        check_case(
            &q,
            &[],
            "services",
            json!({"spec": {"type": "NodePort", "ports": [{"port": 80}, {"port": 443}]}}),
            Err("exceeded quota: counts, requested: services.nodeports=2, used: services.nodeports=0, limited: services.nodeports=1"),
        );
    }

    #[test]
    fn compute() {
        let q = quota("compute", json!({"requests.cpu": "2", "requests.memory": "1Gi", "limits.cpu": "4"}));
        check_case(
            &q,
            &[("requests.cpu", "1"), ("requests.memory", "512Mi"), ("limits.cpu", "1")],
            "pods",
            pod("p", json!([app("500m", "256Mi")])),
            Ok(&[("requests.cpu", "1500m"), ("requests.memory", "768Mi"), ("limits.cpu", "1500m")]),
        );
        check_case(
            &q,
            &[("requests.cpu", "1800m"), ("requests.memory", "900Mi"), ("limits.cpu", "1800m")],
            "pods",
            pod("p", json!([app("500m", "256Mi")])),
            Err("exceeded quota: compute, requested: requests.cpu=500m,requests.memory=256Mi, used: requests.cpu=1800m,requests.memory=900Mi, limited: requests.cpu=2,requests.memory=1Gi"),
        );
        // Containers must state what the quota tracks.
        check_case(
            &q,
            &[],
            "pods",
            pod("p", json!([{"name": "app", "resources": {"requests": {"cpu": "100m"}}}, {"name": "side"}])),
            Err("failed quota: compute: must specify limits.cpu for: app,side; requests.cpu for: side; requests.memory for: app,side"),
        );
    }

    #[test]
    fn usage_of_objects() {
        let p = json!({"spec": {
            "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "2"}}}],
            "containers": [app("500m", "64Mi"), app("500m", "64Mi")],
            "overhead": {"cpu": "100m"}}});
        let u = usage_of("pods", &p);
        assert_eq!(u["requests.cpu"], 2100, "the init container's 2 CPUs dominate; plus overhead");
        assert_eq!(u["cpu"], 2100);
        assert_eq!(u["requests.memory"], milli("128Mi").unwrap());
        assert_eq!(u["limits.cpu"], 1100);
        assert_eq!(u["pods"], 1000);
        let done = json!({"spec": {"containers": [app("1", "1Gi")]}, "status": {"phase": "Succeeded"}});
        assert_eq!(usage_of("pods", &done), usage(&[("count/pods", "1")]));

        let q = quota("q", json!({"pods": "10", "requests.cpu": "10", "services": "5"}));
        let objs = [("pods", p.clone()), ("pods", done), ("services", json!({"spec": {}})), ("configmaps", json!({}))];
        let used = compute_usage(&q, objs.iter().map(|(r, o)| (*r, o)));
        assert_eq!(used, usage(&[("pods", "1"), ("requests.cpu", "2100m"), ("services", "1")]));
    }

    #[test]
    fn plugin_charges_every_quota_and_names_the_pod() {
        let qs = vec![
            QuotaState { quota: quota("a", json!({"pods": "5"})), used: usage(&[("pods", "1")]) },
            QuotaState { quota: quota("b", json!({"pods": "1"})), used: usage(&[("pods", "1")]) },
        ];
        let req = Request::create("", "pods", "dev");
        let err = validate(&req, &pod("web", json!([])), &qs).unwrap_err();
        assert_eq!(err.message(), r#"pods "web" is forbidden: exceeded quota: b, requested: pods=1, used: pods=1, limited: pods=1"#);
        let ok = validate(&req, &pod("web", json!([])), &qs[..1]).unwrap();
        assert_eq!(ok, vec![("a".to_string(), usage(&[("pods", "2")]))]);
        // Updates are not charged.
        let mut update = req;
        update.operation = Operation::Update;
        assert_eq!(validate(&update, &pod("web", json!([])), &qs), Ok(vec![]));
    }
}
