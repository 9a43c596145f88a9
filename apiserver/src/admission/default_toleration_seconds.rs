//! The DefaultTolerationSeconds admission plugin
//! (plugin/pkg/admission/defaulttolerationseconds).
//!
//! When a node stops reporting, the node lifecycle controller taints it
//! `node.kubernetes.io/not-ready` or `node.kubernetes.io/unreachable` with
//! effect NoExecute, which evicts every pod that does not tolerate the
//! taint. This plugin gives each new pod a 300-second toleration of both,
//! so a short network blip does not evict everything at once — pods are
//! evicted five minutes after their node is lost, unless they say
//! otherwise (any toleration of the taint, or a toleration of every key).

use serde_json::{json, Value};

use super::attributes::Request;

pub const TAINT_NODE_NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const TAINT_NODE_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
/// `--default-not-ready-toleration-seconds` / `--default-unreachable-toleration-seconds`.
pub const DEFAULT_TOLERATION_SECONDS: i64 = 300;

/// Mutating: adds the two tolerations the pod lacks, for the given seconds
/// (`--default-not-ready-toleration-seconds`, `--default-unreachable-…`).
/// Returns whether the pod changed.
pub fn admit(req: &Request<'_>, pod: &mut Value, not_ready_seconds: i64, unreachable_seconds: i64) -> bool {
    if !req.is_pod_create() {
        return false;
    }
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else { return false };
    let tolerations = spec.entry("tolerations").or_insert_with(|| json!([]));
    if tolerations.is_null() {
        *tolerations = json!([]);
    }
    let Some(list) = tolerations.as_array_mut() else { return false };
    // A toleration covers the taint if its key is the taint's or empty (all
    // keys), and its effect is NoExecute or empty (all effects).
    let covers = |t: &Value, key: &str| {
        let k = t.get("key").and_then(Value::as_str).unwrap_or("");
        let e = t.get("effect").and_then(Value::as_str).unwrap_or("");
        (k == key || k.is_empty()) && (e == "NoExecute" || e.is_empty())
    };
    let mut changed = false;
    for (key, seconds) in [(TAINT_NODE_NOT_READY, not_ready_seconds), (TAINT_NODE_UNREACHABLE, unreachable_seconds)] {
        if !list.iter().any(|t| covers(t, key)) {
            list.push(json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": seconds}));
            changed = true;
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn not_ready() -> Value {
        json!({"key": TAINT_NODE_NOT_READY, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300})
    }
    fn unreachable() -> Value {
        json!({"key": TAINT_NODE_UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300})
    }

    fn check(tolerations: Option<Value>, expected: Value) {
        let mut pod = json!({"spec": {"containers": []}});
        if let Some(t) = tolerations {
            pod["spec"]["tolerations"] = t;
        }
        let before = pod.clone();
        let changed = admit(&Request::create("", "pods", "dev"), &mut pod, 300, 300);
        assert_eq!(pod["spec"]["tolerations"], expected, "{before}");
        assert_eq!(changed, before["spec"]["tolerations"] != expected);
    }

    #[test]
    fn adds_missing_tolerations() {
        check(None, json!([not_ready(), unreachable()]));
        check(Some(Value::Null), json!([not_ready(), unreachable()]));
        let own = json!({"key": TAINT_NODE_NOT_READY, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60});
        check(Some(json!([own.clone()])), json!([own, unreachable()]));
        // Effect left empty = all effects: covers NoExecute.
        let any_effect = json!({"key": TAINT_NODE_UNREACHABLE, "operator": "Exists"});
        check(Some(json!([any_effect.clone()])), json!([any_effect, not_ready()]));
        // Empty key with Exists tolerates everything.
        let all = json!({"operator": "Exists"});
        check(Some(json!([all.clone()])), json!([all]));
        // A NoSchedule toleration of the key does not cover NoExecute.
        let no_schedule = json!({"key": TAINT_NODE_NOT_READY, "operator": "Exists", "effect": "NoSchedule"});
        check(Some(json!([no_schedule.clone()])), json!([no_schedule, not_ready(), unreachable()]));
    }

    #[test]
    fn only_pod_creates() {
        let mut pod = json!({"spec": {}});
        let mut req = Request::create("", "pods", "dev");
        req.operation = super::super::attributes::Operation::Update;
        assert!(!admit(&req, &mut pod, 300, 300));
        assert!(!admit(&Request::create("apps", "deployments", "dev"), &mut pod, 300, 300));
        assert_eq!(pod, json!({"spec": {}}));
    }
}
