//! The `status` subresource: the spec/status split. A controller or node
//! agent reports what it observed through `<resource>/<name>/status`,
//! which changes nothing else; a user's write to the resource itself
//! cannot change the status (upstream: each strategy's `PrepareForUpdate`
//! copies the old status, its status strategy copies the old spec).

use machinery::resources::ResourceInfo;
use serde_json::Value;

/// A status write: the stored object with the new `status`.
pub fn keep_only_status(new: &mut Value, old: &Value) {
    let status = new.get("status").cloned();
    *new = old.clone();
    match status {
        Some(s) => new["status"] = s,
        None => {
            new.as_object_mut().expect("a copy of a stored object").remove("status");
        }
    }
}

/// A write to the resource itself keeps the stored `status`, when the
/// resource has a `status` subresource (else status is ordinary data).
pub fn keep_stored_status(r: &ResourceInfo, new: &mut Value, old: &Value) {
    if !r.has_subresource("status") {
        return;
    }
    match old.get("status") {
        Some(s) => new["status"] = s.clone(),
        None => {
            if let Some(m) = new.as_object_mut() {
                m.remove("status");
            }
        }
    }
}
