//! Node strategy (upstream `pkg/registry/core/node`): nodes register
//! themselves, status included; what `kubectl` filters them by is
//! `spec.unschedulable` (cordoned or not).

use super::strategy::Strategy;

pub struct NodeStrategy;

impl Strategy for NodeStrategy {
    fn selectable_fields(&self) -> &'static [&'static str] {
        &["spec.unschedulable"]
    }
}
