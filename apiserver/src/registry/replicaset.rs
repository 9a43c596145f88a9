//! ReplicaSet strategy (upstream `pkg/registry/apps/replicaset/strategy.go`):
//! like a Deployment's — no status at creation, an immutable selector —
//! and `status.replicas` is a field selector.

use serde_json::Value;

use super::defaults;
use super::strategy::Strategy;
use super::subresources::Subresource;
use super::validation;
use crate::status::FieldError;

pub struct ReplicaSetStrategy;

impl Strategy for ReplicaSetStrategy {
    fn selectable_fields(&self) -> &'static [&'static str] {
        &["status.replicas"]
    }

    fn tracks_generation(&self) -> bool {
        true
    }

    fn set_defaults(&self, obj: &mut Value) {
        defaults::replica_set(obj);
    }

    /// The status is the controller's to write.
    fn prepare_for_create(&self, obj: &mut Value) {
        if let Some(m) = obj.as_object_mut() {
            m.remove("status");
        }
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        validation::workload(obj)
    }

    fn validate_update(&self, _sub: Subresource, new: &Value, old: &Value) -> Vec<FieldError> {
        validation::selector_update(new, old)
    }
}
