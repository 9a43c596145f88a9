//! Namespace strategy (upstream `pkg/registry/core/namespace`): a
//! namespace is Active from birth; deleting one is two-phase — it turns
//! Terminating and stays until the namespace controller has emptied it and
//! removed the `kubernetes` finalizer from `spec.finalizers` (through the
//! `finalize` subresource).

use serde_json::{json, Value};

use super::defaults;
use super::options::DeleteOptions;
use super::strategy::{BeforeDelete, Strategy};
use super::validation::NameRule;

/// Namespaces that exist from the start (the apiserver creates them).
pub const SYSTEM_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];

/// Namespaces NamespaceLifecycle refuses to delete. Upstream's immortal set
/// is `default`, `kube-system` and `kube-public`; rkube also keeps
/// `kube-node-lease`, because it has no system-namespaces controller to make
/// it again at once, and without it no node can renew its heartbeat Lease.
pub const IMMORTAL_NAMESPACES: &[&str] = SYSTEM_NAMESPACES;

pub struct NamespaceStrategy;

impl Strategy for NamespaceStrategy {
    /// A namespace's name is a DNS label: it becomes part of DNS names.
    fn name_rule(&self) -> NameRule {
        NameRule::Label
    }

    fn selectable_fields(&self) -> &'static [&'static str] {
        &["status.phase"]
    }

    fn set_defaults(&self, obj: &mut Value) {
        defaults::namespace(obj);
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        obj["status"] = json!({"phase": "Active"});
    }

    /// The first delete of a namespace with finalizers turns it Terminating.
    fn before_delete(&self, obj: &mut Value, _opts: &DeleteOptions) -> BeforeDelete {
        let has_spec_finalizers = obj["spec"]["finalizers"].as_array().is_some_and(|a| !a.is_empty());
        if has_spec_finalizers && obj["status"]["phase"] != "Terminating" {
            obj["status"]["phase"] = json!("Terminating");
            return BeforeDelete::Changed;
        }
        BeforeDelete::Nothing
    }

    /// Both kinds of finalizer hold a namespace: `metadata.finalizers` and
    /// the namespace controller's `spec.finalizers`.
    fn finalizers_empty(&self, obj: &Value) -> bool {
        super::meta::finalizers_empty(obj) && obj["spec"]["finalizers"].as_array().is_none_or(|a| a.is_empty())
    }
}
