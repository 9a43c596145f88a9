//! Role strategy (upstream `pkg/registry/rbac/role`): names are path
//! segments (`system:controller:...`). Escalation prevention — a Role may
//! grant only what its writer holds — is checked with the requester
//! (`security.rs`, `auth/escalation.rs`), not here.

use super::strategy::Strategy;
use super::validation::NameRule;

pub struct RoleStrategy;

impl Strategy for RoleStrategy {
    fn name_rule(&self) -> NameRule {
        NameRule::PathSegment
    }
}
