//! ClusterRole strategy (upstream `pkg/registry/rbac/clusterrole`): names
//! are path segments (`system:node`). Escalation prevention is checked with
//! the requester (`security.rs`, `auth/escalation.rs`), not here.

use super::strategy::Strategy;
use super::validation::NameRule;

pub struct ClusterRoleStrategy;

impl Strategy for ClusterRoleStrategy {
    fn name_rule(&self) -> NameRule {
        NameRule::PathSegment
    }
}
