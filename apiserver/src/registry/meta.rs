//! Small readers and writers of object metadata and status that the store,
//! the strategies and the subresources share.

use serde_json::{json, Value};

/// The current time as Kubernetes writes timestamps (RFC 3339, seconds).
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The object has a `deletionTimestamp`: it is being deleted.
pub fn is_deleting(obj: &Value) -> bool {
    !obj["metadata"]["deletionTimestamp"].is_null()
}

/// No `metadata.finalizers` left.
pub fn finalizers_empty(obj: &Value) -> bool {
    obj["metadata"]["finalizers"].as_array().is_none_or(|a| a.is_empty())
}

/// Sets or updates one entry of `status.conditions`.
pub fn set_condition(obj: &mut Value, ty: &str, status: &str, reason: Option<&str>, message: Option<&str>) {
    if !obj["status"].is_object() {
        obj["status"] = json!({});
    }
    if !obj["status"]["conditions"].is_array() {
        obj["status"]["conditions"] = json!([]);
    }
    let conds = obj["status"]["conditions"].as_array_mut().unwrap();
    let mut c = json!({"type": ty, "status": status, "lastProbeTime": null, "lastTransitionTime": now()});
    if let Some(r) = reason {
        c["reason"] = json!(r);
    }
    if let Some(m) = message {
        c["message"] = json!(m);
    }
    match conds.iter_mut().find(|c| c["type"] == ty) {
        Some(existing) if existing["status"] == status => {}
        Some(existing) => *existing = c,
        None => conds.push(c),
    }
}
