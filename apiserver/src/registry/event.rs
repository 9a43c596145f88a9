//! Event strategy (upstream `pkg/registry/core/event`): defaults, and the
//! fields `kubectl describe` and `kubectl get events` select events by.

use serde_json::Value;

use super::defaults;
use super::strategy::Strategy;

pub struct EventStrategy;

impl Strategy for EventStrategy {
    fn selectable_fields(&self) -> &'static [&'static str] {
        &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ]
    }

    fn set_defaults(&self, obj: &mut Value) {
        defaults::event(obj);
    }
}
