//! ClusterRoleBinding strategy (upstream
//! `pkg/registry/rbac/clusterrolebinding`): a cluster-wide binding of
//! subjects to a ClusterRole; the role it names is fixed at creation.

use serde_json::Value;

use super::strategy::Strategy;
use super::subresources::Subresource;
use super::validation::{self, NameRule};
use crate::status::FieldError;

pub struct ClusterRoleBindingStrategy;

impl Strategy for ClusterRoleBindingStrategy {
    fn name_rule(&self) -> NameRule {
        NameRule::PathSegment
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        validation::cluster_role_binding(obj)
    }

    fn validate_update(&self, _sub: Subresource, new: &Value, old: &Value) -> Vec<FieldError> {
        validation::role_ref_update(new, old)
    }
}
