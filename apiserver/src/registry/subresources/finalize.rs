//! The `namespaces/<name>/finalize` subresource: the namespace controller
//! removes the `kubernetes` finalizer from `spec.finalizers` once it has
//! emptied a terminating namespace (upstream `namespaceFinalizeStrategy`).
//! Nothing else changes; with no finalizers left, the namespace goes.

use serde_json::{json, Value};

/// The stored namespace with the new `spec.finalizers`.
pub fn keep_only_finalizers(new: &mut Value, old: &Value) {
    let fin = new["spec"]["finalizers"].clone();
    *new = old.clone();
    new["spec"]["finalizers"] = if fin.is_null() { json!([]) } else { fin };
}
