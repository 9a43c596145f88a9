//! The LimitRanger admission plugin (plugin/pkg/admission/limitranger).
//!
//! A LimitRange is a namespace's policy for compute resources. For each
//! *Container*-type item it gives defaults — `defaultRequest` (requests)
//! and `default` (limits) — which this plugin writes into containers that
//! leave them out, recording what it set in the pod annotation
//! `kubernetes.io/limit-ranger`; and bounds — `min`, `max`,
//! `maxLimitRequestRatio` — which it enforces, per container or (for
//! *Pod*-type items) over the whole pod's sum. Because defaults are filled
//! in before ResourceQuota runs, a namespace with a LimitRange can demand
//! `requests.cpu` in its quota without every pod author writing one.
//!
//! Only pod creates are admitted: containers cannot change afterwards.
//! The item defaults kube-apiserver applies when a LimitRange is stored
//! (default limit ← max, default request ← default limit ← min) are applied
//! here again, so a LimitRange behaves the same however it got stored.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{LimitRange, LimitRangeItem};
use machinery::quota::{format_milli, milli};
use serde_json::{json, Map, Value};

use super::attributes::Request;
use super::errors::AdmissionError;

pub const ANNOTATION: &str = "kubernetes.io/limit-ranger";
const PLUGIN: &str = "LimitRanger";

type List = BTreeMap<String, String>;

fn list(m: &Option<BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>) -> List {
    m.as_ref().map(|m| m.iter().map(|(k, v)| (k.clone(), v.0.clone())).collect()).unwrap_or_default()
}

/// One LimitRange item with the API defaults applied.
struct Item {
    kind: String,
    min: List,
    max: List,
    default: List,
    default_request: List,
    ratio: List,
}

fn effective(item: &LimitRangeItem) -> Item {
    let mut it = Item {
        kind: item.type_.clone(),
        min: list(&item.min),
        max: list(&item.max),
        default: list(&item.default),
        default_request: list(&item.default_request),
        ratio: list(&item.max_limit_request_ratio),
    };
    if it.kind == "Container" {
        for (k, v) in &it.max {
            it.default.entry(k.clone()).or_insert_with(|| v.clone());
        }
        for (k, v) in &it.default {
            it.default_request.entry(k.clone()).or_insert_with(|| v.clone());
        }
        for (k, v) in &it.min {
            it.default_request.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    it
}

fn items(lr: &LimitRange) -> Vec<Item> {
    lr.spec.as_ref().map(|s| s.limits.iter().map(effective).collect()).unwrap_or_default()
}

/// Mutating: fills in container defaults. Returns whether the pod changed.
pub fn admit(req: &Request<'_>, pod: &mut Value, limit_ranges: &[LimitRange]) -> bool {
    if !req.is_pod_create() {
        return false;
    }
    let mut changed = false;
    for lr in limit_ranges {
        // Defaults from every Container item of this LimitRange (later items win).
        let (mut requests, mut limits) = (List::new(), List::new());
        for it in items(lr).iter().filter(|i| i.kind == "Container") {
            requests.extend(it.default_request.clone());
            limits.extend(it.default.clone());
        }
        if requests.is_empty() && limits.is_empty() {
            continue;
        }
        let mut notes: Vec<String> = Vec::new();
        for (field, prefix) in [("containers", "container"), ("initContainers", "init container")] {
            let Some(containers) = pod.pointer_mut(&format!("/spec/{field}")).and_then(Value::as_array_mut) else { continue };
            for c in containers {
                notes.extend(merge_container(c, &requests, &limits, prefix));
            }
        }
        if !notes.is_empty() {
            changed = true;
            let meta = pod.as_object_mut().expect("pod is an object").entry("metadata").or_insert_with(|| json!({}));
            let annotations = meta.as_object_mut().expect("metadata").entry("annotations").or_insert_with(|| json!({}));
            if annotations.is_null() {
                *annotations = json!({});
            }
            annotations[ANNOTATION] = json!(format!("LimitRanger plugin set: {}", notes.join("; ")));
        }
    }
    changed
}

/// Sets absent requests/limits; returns the annotation notes
/// (`cpu, memory request for container web`).
fn merge_container(c: &mut Value, requests: &List, limits: &List, prefix: &str) -> Vec<String> {
    let name = c.get("name").and_then(Value::as_str).unwrap_or("").to_string();
    let Some(obj) = c.as_object_mut() else { return vec![] };
    let resources = obj.entry("resources").or_insert_with(|| json!({}));
    if !resources.is_object() {
        *resources = json!({});
    }
    let mut set = |key: &str, defaults: &List| -> Vec<String> {
        let r = resources.as_object_mut().expect("object");
        let slot = r.entry(key).or_insert_with(|| json!({}));
        if !slot.is_object() {
            *slot = json!({});
        }
        let m: &mut Map<String, Value> = slot.as_object_mut().expect("object");
        let mut names = Vec::new();
        for (k, v) in defaults {
            if !m.contains_key(k) {
                m.insert(k.clone(), json!(v));
                names.push(k.clone());
            }
        }
        names
    };
    let set_limits = set("limits", limits);
    let set_requests = set("requests", requests);
    let mut notes = Vec::new();
    if !set_requests.is_empty() {
        notes.push(format!("{} request for {prefix} {name}", set_requests.join(", ")));
    }
    if !set_limits.is_empty() {
        notes.push(format!("{} limit for {prefix} {name}", set_limits.join(", ")));
    }
    notes
}

/// A container's (or pod's) requests and limits in milli-units.
#[derive(Default)]
struct Amounts {
    requests: BTreeMap<String, (i128, String)>,
    limits: BTreeMap<String, (i128, String)>,
}

fn amounts_of(c: &Value) -> Amounts {
    let read = |key: &str| {
        c.pointer(&format!("/resources/{key}"))
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| v.as_str().and_then(|s| milli(s).ok().map(|n| (k.clone(), (n, s.to_string())))))
                    .collect()
            })
            .unwrap_or_default()
    };
    Amounts { requests: read("requests"), limits: read("limits") }
}

/// The pod's total: the sum over containers, but at least the largest init
/// container (they run one at a time, before the others).
fn pod_amounts(pod: &Value) -> Amounts {
    let containers = pod.pointer("/spec/containers").and_then(Value::as_array).cloned().unwrap_or_default();
    let inits = pod.pointer("/spec/initContainers").and_then(Value::as_array).cloned().unwrap_or_default();
    let mut total = Amounts::default();
    let add = |into: &mut BTreeMap<String, (i128, String)>, from: &BTreeMap<String, (i128, String)>| {
        for (k, (n, _)) in from {
            let e = into.entry(k.clone()).or_insert((0, String::new()));
            e.0 += n;
        }
    };
    for c in &containers {
        let a = amounts_of(c);
        add(&mut total.requests, &a.requests);
        add(&mut total.limits, &a.limits);
    }
    for c in &inits {
        let a = amounts_of(c);
        for (into, from) in [(&mut total.requests, &a.requests), (&mut total.limits, &a.limits)] {
            for (k, (n, _)) in from {
                let e = into.entry(k.clone()).or_insert((0, String::new()));
                e.0 = e.0.max(*n);
            }
        }
    }
    for m in [&mut total.requests, &mut total.limits] {
        for (k, v) in m.iter_mut() {
            v.1 = format_milli(k, v.0);
        }
    }
    total
}

fn min_constraint(kind: &str, res: &str, enforced: &str, a: &Amounts) -> Option<String> {
    let e = milli(enforced).ok()?;
    let Some((req, req_s)) = a.requests.get(res) else {
        return Some(format!("minimum {res} usage per {kind} is {enforced}.  No request is specified"));
    };
    if *req < e {
        return Some(format!("minimum {res} usage per {kind} is {enforced}, but request is {req_s}"));
    }
    if let Some((lim, lim_s)) = a.limits.get(res) {
        if *lim < e {
            return Some(format!("minimum {res} usage per {kind} is {enforced}, but limit is {lim_s}"));
        }
    }
    None
}

fn max_constraint(kind: &str, res: &str, enforced: &str, a: &Amounts) -> Option<String> {
    let e = milli(enforced).ok()?;
    let Some((lim, lim_s)) = a.limits.get(res) else {
        return Some(format!("maximum {res} usage per {kind} is {enforced}.  No limit is specified"));
    };
    if *lim > e {
        return Some(format!("maximum {res} usage per {kind} is {enforced}, but limit is {lim_s}"));
    }
    if let Some((req, req_s)) = a.requests.get(res) {
        if *req > e {
            return Some(format!("maximum {res} usage per {kind} is {enforced}, but request is {req_s}"));
        }
    }
    None
}

fn ratio_constraint(kind: &str, res: &str, enforced: &str, a: &Amounts) -> Option<String> {
    let e = milli(enforced).ok()?;
    let req = a.requests.get(res).map(|r| r.0).unwrap_or(0);
    let lim = a.limits.get(res).map(|l| l.0).unwrap_or(0);
    if req == 0 {
        return Some(format!("{res} max limit to request ratio per {kind} is {enforced}, but no request is specified or request is 0"));
    }
    if lim == 0 {
        return Some(format!("{res} max limit to request ratio per {kind} is {enforced}, but no limit is specified or limit is 0"));
    }
    // ratio = lim/req, compared exactly: lim/req > e/1000  <=>  lim*1000 > e*req.
    if lim * 1000 > e * req {
        return Some(format!(
            "{res} max limit to request ratio per {kind} is {enforced}, but provided ratio is {:.6}",
            lim as f64 / req as f64
        ));
    }
    None
}

fn check(kind: &str, it: &Item, a: &Amounts, errors: &mut Vec<String>) {
    for (res, v) in &it.min {
        errors.extend(min_constraint(kind, res, v, a));
    }
    for (res, v) in &it.max {
        errors.extend(max_constraint(kind, res, v, a));
    }
    for (res, v) in &it.ratio {
        errors.extend(ratio_constraint(kind, res, v, a));
    }
}

/// Validating: every container (Container items) and the pod as a whole
/// (Pod items) within the namespace's bounds.
pub fn validate(req: &Request<'_>, pod: &Value, limit_ranges: &[LimitRange]) -> Result<(), AdmissionError> {
    if !req.is_pod_create() {
        return Ok(());
    }
    for lr in limit_ranges {
        let mut errors = Vec::new();
        for it in items(lr) {
            match it.kind.as_str() {
                "Container" => {
                    for field in ["containers", "initContainers"] {
                        for c in pod.pointer(&format!("/spec/{field}")).and_then(Value::as_array).into_iter().flatten() {
                            check("Container", &it, &amounts_of(c), &mut errors);
                        }
                    }
                }
                "Pod" => check("Pod", &it, &pod_amounts(pod), &mut errors),
                _ => {}
            }
        }
        if !errors.is_empty() {
            return Err(AdmissionError::forbidden(PLUGIN, req, Some(pod), crate_aggregate(&errors)));
        }
    }
    Ok(())
}

/// apimachinery's aggregate error format (one message, or `[a, b]`).
fn crate_aggregate(errors: &[String]) -> String {
    let mut seen: Vec<&String> = Vec::new();
    for e in errors {
        if !seen.contains(&e) {
            seen.push(e);
        }
    }
    if seen.len() == 1 {
        seen[0].clone()
    } else {
        format!("[{}]", seen.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lr(limits: Value) -> LimitRange {
        serde_json::from_value(json!({"metadata": {"name": "limits", "namespace": "dev"}, "spec": {"limits": limits}})).unwrap()
    }

    fn pod(containers: Value) -> Value {
        json!({"metadata": {"name": "web"}, "spec": {"containers": containers}})
    }

    fn check_admit(ranges: &[LimitRange], input: Value, expected: Value, annotation: Option<&str>) {
        let mut p = input;
        let changed = admit(&Request::create("", "pods", "dev"), &mut p, ranges);
        assert_eq!(p["spec"], expected["spec"], "{p}");
        assert_eq!(p.pointer("/metadata/annotations/kubernetes.io~1limit-ranger").and_then(Value::as_str), annotation);
        assert_eq!(changed, annotation.is_some());
    }

    #[test]
    fn defaults() {
        let defaults = [lr(json!([{"type": "Container",
            "default": {"cpu": "500m", "memory": "128Mi"}, "defaultRequest": {"cpu": "100m", "memory": "64Mi"}}]))];
        check_admit(
            &defaults,
            pod(json!([{"name": "app", "image": "x"}])),
            pod(json!([{"name": "app", "image": "x", "resources": {
                "limits": {"cpu": "500m", "memory": "128Mi"}, "requests": {"cpu": "100m", "memory": "64Mi"}}}])),
            Some("LimitRanger plugin set: cpu, memory request for container app; cpu, memory limit for container app"),
        );
        // What the container sets is kept; only the rest is filled in.
        check_admit(
            &defaults,
            json!({"metadata": {"name": "web"}, "spec": {
                "initContainers": [{"name": "init", "resources": {"requests": {"cpu": "1"}, "limits": {"cpu": "1", "memory": "1Gi"}}}],
                "containers": [{"name": "app", "resources": {"limits": {"memory": "256Mi"}}}]}}),
            json!({"spec": {
                "initContainers": [{"name": "init", "resources": {"requests": {"cpu": "1", "memory": "64Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}}}],
                "containers": [{"name": "app", "resources": {"limits": {"cpu": "500m", "memory": "256Mi"}, "requests": {"cpu": "100m", "memory": "64Mi"}}}]}}),
            Some("LimitRanger plugin set: cpu, memory request for container app; cpu limit for container app; memory request for init container init"),
        );
        // Max only: the default limit and request become the max (API defaulting of the item).
        check_admit(
            &[lr(json!([{"type": "Container", "max": {"cpu": "2"}}]))],
            pod(json!([{"name": "app"}])),
            pod(json!([{"name": "app", "resources": {"limits": {"cpu": "2"}, "requests": {"cpu": "2"}}}])),
            Some("LimitRanger plugin set: cpu request for container app; cpu limit for container app"),
        );
        // Nothing to default, or no LimitRange: untouched.
        let full = pod(json!([{"name": "app", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1", "memory": "1Gi"}}}]));
        check_admit(&defaults, full.clone(), full.clone(), None);
        check_admit(&[], pod(json!([{"name": "app"}])), pod(json!([{"name": "app"}])), None);
        check_admit(&[lr(json!([{"type": "Pod", "max": {"cpu": "4"}}]))], pod(json!([{"name": "app"}])), pod(json!([{"name": "app"}])), None);
    }

    fn check_validate(ranges: &[LimitRange], p: Value, expected: Result<(), &str>) {
        let got = validate(&Request::create("", "pods", "dev"), &p, ranges).map_err(|e| e.message());
        assert_eq!(got, expected.map_err(str::to_string), "{p}");
    }

    fn res(req: Value, lim: Value) -> Value {
        json!({"requests": req, "limits": lim})
    }

    #[test]
    fn bounds() {
        let bounds = [lr(json!([{"type": "Container",
            "min": {"cpu": "100m"}, "max": {"cpu": "1", "memory": "1Gi"}, "maxLimitRequestRatio": {"cpu": "4"}}]))];
        let c = |r: Value| pod(json!([{"name": "app", "resources": r}]));
        check_validate(&bounds, c(res(json!({"cpu": "250m", "memory": "100Mi"}), json!({"cpu": "1", "memory": "1Gi"}))), Ok(()));
        check_validate(
            &bounds,
            c(res(json!({"cpu": "50m", "memory": "1Gi"}), json!({"cpu": "100m", "memory": "1Gi"}))),
            Err(r#"pods "web" is forbidden: minimum cpu usage per Container is 100m, but request is 50m"#),
        );
        check_validate(
            &bounds,
            c(res(json!({"cpu": "500m", "memory": "2Gi"}), json!({"cpu": "2", "memory": "2Gi"}))),
            Err(r#"pods "web" is forbidden: [maximum cpu usage per Container is 1, but limit is 2, maximum memory usage per Container is 1Gi, but limit is 2Gi]"#),
        );
        check_validate(
            &bounds,
            c(res(json!({"cpu": "200m"}), json!({"cpu": "1"}))),
            Err(r#"pods "web" is forbidden: [maximum memory usage per Container is 1Gi.  No limit is specified, cpu max limit to request ratio per Container is 4, but provided ratio is 5.000000]"#),
        );
        check_validate(
            &bounds,
            c(res(json!({"memory": "1Gi"}), json!({"cpu": "1", "memory": "1Gi"}))),
            Err(r#"pods "web" is forbidden: [minimum cpu usage per Container is 100m.  No request is specified, cpu max limit to request ratio per Container is 4, but no request is specified or request is 0]"#),
        );
    }

    #[test]
    fn pod_bounds_sum_containers() {
        let pod_max = [lr(json!([{"type": "Pod", "max": {"cpu": "1"}}]))];
        let two = |a: &str, b: &str| {
            pod(json!([{"name": "a", "resources": res(json!({"cpu": a}), json!({"cpu": a}))},
                       {"name": "b", "resources": res(json!({"cpu": b}), json!({"cpu": b}))}]))
        };
        check_validate(&pod_max, two("500m", "500m"), Ok(()));
        check_validate(&pod_max, two("600m", "500m"), Err(r#"pods "web" is forbidden: maximum cpu usage per Pod is 1, but limit is 1100m"#));
    }

    #[test]
    fn defaults_then_bounds_pass() {
        // The usual namespace policy: defaults within bounds admit a bare pod.
        let ranges = [lr(json!([{"type": "Container", "min": {"cpu": "50m"}, "max": {"cpu": "1"},
            "default": {"cpu": "500m"}, "defaultRequest": {"cpu": "100m"}}]))];
        let req = Request::create("", "pods", "dev");
        let mut p = pod(json!([{"name": "app"}]));
        assert!(admit(&req, &mut p, &ranges));
        assert_eq!(validate(&req, &p, &ranges), Ok(()));
    }
}
