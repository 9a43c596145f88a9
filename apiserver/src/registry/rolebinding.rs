//! RoleBinding strategy (upstream `pkg/registry/rbac/rolebinding`): a
//! binding of subjects to a Role or ClusterRole; the role it names is fixed
//! at creation.

use serde_json::Value;

use super::strategy::Strategy;
use super::subresources::Subresource;
use super::validation::{self, NameRule};
use crate::status::FieldError;

pub struct RoleBindingStrategy;

impl Strategy for RoleBindingStrategy {
    fn name_rule(&self) -> NameRule {
        NameRule::PathSegment
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        validation::role_binding(obj)
    }

    fn validate_update(&self, _sub: Subresource, new: &Value, old: &Value) -> Vec<FieldError> {
        validation::role_ref_update(new, old)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::ApiError;
    use serde_json::json;

    #[test]
    fn role_ref_is_immutable() {
        let rb = machinery::resources::find("rbac.authorization.k8s.io", "v1", "rolebindings").unwrap();
        let b = |name: &str| {
            json!({"metadata": {"name": "b", "labels": {"x": name}},
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name}})
        };
        assert!(RoleBindingStrategy.validate_update(Subresource::Main, &b("view"), &b("view")).is_empty());
        let errs = RoleBindingStrategy.validate_update(Subresource::Main, &b("admin"), &b("view"));
        let e = ApiError::invalid(rb.group, rb.kind, "b", errs);
        assert_eq!(
            e.message,
            r#"RoleBinding.rbac.authorization.k8s.io "b" is invalid: roleRef: Invalid value: rbac.RoleRef{APIGroup:"rbac.authorization.k8s.io", Kind:"ClusterRole", Name:"admin"}: cannot change roleRef"#
        );
        assert_eq!(e.to_status()["details"]["causes"][0]["reason"], "FieldValueInvalid");
    }
}
