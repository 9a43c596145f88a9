//! The `pods/<name>/ephemeralcontainers` subresource (`kubectl debug`):
//! the one way to add containers to a running pod. Only
//! `spec.ephemeralContainers` changes (upstream
//! `dropNonEphemeralContainerUpdates`); the pod strategy then checks that
//! existing ones were neither changed nor removed.

use serde_json::Value;

/// The stored pod with the new `spec.ephemeralContainers`.
pub fn keep_only_ephemeral_containers(new: &mut Value, old: &Value) {
    let eph = new["spec"].get("ephemeralContainers").cloned();
    *new = old.clone();
    match eph {
        Some(e) if !e.is_null() => new["spec"]["ephemeralContainers"] = e,
        _ => {
            new["spec"].as_object_mut().map(|m| m.remove("ephemeralContainers"));
        }
    }
}
