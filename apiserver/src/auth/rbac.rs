//! Role-based access control: the RBAC authorizer (plugin/pkg/auth/authorizer/rbac).
//!
//! RBAC is additive and deny-by-default. A *Role* (namespaced) or
//! *ClusterRole* is a list of rules — verbs on resources in API groups, or
//! verbs on non-resource URLs. A *RoleBinding* grants a role's rules to
//! subjects (users, groups, service accounts) inside one namespace; a
//! *ClusterRoleBinding* grants a ClusterRole everywhere. A request is allowed
//! as soon as one rule reachable from a binding that names the user allows
//! it; there are no deny rules.
//!
//! Evaluation order is upstream's (`DefaultRuleResolver.VisitRulesFor`):
//! ClusterRoleBindings first, then the RoleBindings of the request's
//! namespace. A binding whose role does not exist is not an error for the
//! request — other bindings may still allow it — but the missing role is
//! named in the 403 (`RBAC: clusterrole.rbac.authorization.k8s.io "x" not found`).
//!
//! *Aggregated* ClusterRoles (`aggregationRule`) take the union of the rules
//! of every ClusterRole whose labels match their selectors; Kubernetes'
//! clusterrole-aggregation controller writes that union into `rules`, rkube
//! computes it here whenever ClusterRoles change.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject};
use machinery::selector::Selector;
use serde_json::Value;

use super::aggregate::aggregate_errors;
use super::attributes::{Attributes, Decision};
use super::{user, UserInfo};

/// The RBAC objects the authorizer evaluates: a snapshot the apiserver keeps
/// up to date from its watch cache.
#[derive(Debug, Clone, Default)]
pub struct RbacData {
    /// (namespace, name) → Role.
    roles: HashMap<(String, String), Role>,
    cluster_roles: HashMap<String, ClusterRole>,
    /// namespace → name → RoleBinding (sorted by name, so evaluation order
    /// and reasons are deterministic).
    role_bindings: HashMap<String, BTreeMap<String, RoleBinding>>,
    cluster_role_bindings: BTreeMap<String, ClusterRoleBinding>,
    /// Effective rules of aggregated ClusterRoles (recomputed on change).
    aggregated: HashMap<String, Vec<PolicyRule>>,
}

impl RbacData {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn upsert_role(&mut self, role: Role) {
        let key = (role.metadata.namespace.clone().unwrap_or_default(), role.metadata.name.clone().unwrap_or_default());
        self.roles.insert(key, role);
    }

    pub fn upsert_cluster_role(&mut self, role: ClusterRole) {
        self.cluster_roles.insert(role.metadata.name.clone().unwrap_or_default(), role);
        self.reaggregate();
    }

    pub fn upsert_role_binding(&mut self, binding: RoleBinding) {
        let ns = binding.metadata.namespace.clone().unwrap_or_default();
        let name = binding.metadata.name.clone().unwrap_or_default();
        self.role_bindings.entry(ns).or_default().insert(name, binding);
    }

    pub fn upsert_cluster_role_binding(&mut self, binding: ClusterRoleBinding) {
        self.cluster_role_bindings.insert(binding.metadata.name.clone().unwrap_or_default(), binding);
    }

    /// Adds or replaces an object given as JSON, by its `kind`
    /// (Role, ClusterRole, RoleBinding, ClusterRoleBinding) — what the
    /// watch cache holds.
    pub fn upsert_json(&mut self, obj: &Value) -> Result<(), String> {
        let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
        let de = |e: serde_json::Error| format!("decoding {kind}: {e}");
        match kind {
            "Role" => self.upsert_role(serde_json::from_value(obj.clone()).map_err(de)?),
            "ClusterRole" => self.upsert_cluster_role(serde_json::from_value(obj.clone()).map_err(de)?),
            "RoleBinding" => self.upsert_role_binding(serde_json::from_value(obj.clone()).map_err(de)?),
            "ClusterRoleBinding" => self.upsert_cluster_role_binding(serde_json::from_value(obj.clone()).map_err(de)?),
            other => return Err(format!("not an RBAC kind: {other:?}")),
        }
        Ok(())
    }

    /// Removes an object by kind, namespace ("" for cluster objects) and name.
    pub fn remove(&mut self, kind: &str, namespace: &str, name: &str) {
        match kind {
            "Role" => {
                self.roles.remove(&(namespace.to_string(), name.to_string()));
            }
            "ClusterRole" => {
                self.cluster_roles.remove(name);
                self.reaggregate();
            }
            "RoleBinding" => {
                if let Some(m) = self.role_bindings.get_mut(namespace) {
                    m.remove(name);
                }
            }
            "ClusterRoleBinding" => {
                self.cluster_role_bindings.remove(name);
            }
            _ => {}
        }
    }

    /// The rules a ClusterRole grants: its own, or for an aggregated role the
    /// union of the roles it selects.
    pub fn cluster_role_rules(&self, name: &str) -> Option<&[PolicyRule]> {
        if let Some(rules) = self.aggregated.get(name) {
            return Some(rules);
        }
        self.cluster_roles.get(name).map(|r| r.rules.as_deref().unwrap_or(&[]))
    }

    /// The rules of the Role `namespace/name`, if it exists.
    pub fn role_rules(&self, namespace: &str, name: &str) -> Option<&[PolicyRule]> {
        self.roles.get(&(namespace.to_string(), name.to_string())).map(|r| r.rules.as_deref().unwrap_or(&[]))
    }

    /// Recomputes every aggregated ClusterRole (transitively: `admin`
    /// selects `edit`, which itself aggregates `view`).
    fn reaggregate(&mut self) {
        let mut out = HashMap::new();
        for name in self.cluster_roles.keys() {
            if self.selectors_of(name).is_some() {
                let mut rules = Vec::new();
                let mut visiting = vec![name.clone()];
                self.collect_aggregated(name, &mut visiting, &mut rules);
                out.insert(name.clone(), rules);
            }
        }
        self.aggregated = out;
    }

    fn selectors_of(&self, name: &str) -> Option<Vec<Selector>> {
        let rule = self.cluster_roles.get(name)?.aggregation_rule.as_ref()?;
        let selectors = rule.cluster_role_selectors.as_ref()?;
        // An invalid selector selects nothing (the controller would report it).
        Some(selectors.iter().filter_map(|s| Selector::from_label_selector(s).ok()).collect())
    }

    fn collect_aggregated(&self, name: &str, visiting: &mut Vec<String>, out: &mut Vec<PolicyRule>) {
        let Some(selectors) = self.selectors_of(name) else { return };
        let mut names: Vec<&String> = self.cluster_roles.keys().collect();
        names.sort();
        for other in names {
            if visiting.contains(other) {
                continue;
            }
            let role = &self.cluster_roles[other];
            let labels = role.metadata.labels.as_ref();
            // As upstream, an empty selector selects every ClusterRole.
            if !selectors.iter().any(|s| s.matches_opt(labels)) {
                continue;
            }
            if self.selectors_of(other).is_some() {
                visiting.push(other.clone());
                self.collect_aggregated(other, visiting, out);
                visiting.pop();
            } else {
                for r in role.rules.as_deref().unwrap_or(&[]) {
                    if !out.contains(r) {
                        out.push(r.clone());
                    }
                }
            }
        }
    }

    fn role_ref_rules(&self, role_ref: &RoleRef, binding_namespace: &str) -> Result<&[PolicyRule], String> {
        match role_ref.kind.as_str() {
            "Role" => self
                .roles
                .get(&(binding_namespace.to_string(), role_ref.name.clone()))
                .map(|r| r.rules.as_deref().unwrap_or(&[]))
                .ok_or_else(|| format!("role.rbac.authorization.k8s.io {:?} not found", role_ref.name)),
            "ClusterRole" => self
                .cluster_role_rules(&role_ref.name)
                .ok_or_else(|| format!("clusterrole.rbac.authorization.k8s.io {:?} not found", role_ref.name)),
            other => Err(format!("unsupported role reference kind: {other:?}")),
        }
    }

    /// Visits each rule that applies to `user` in `namespace`, with a
    /// description of where it came from; stops when `visit` returns false.
    /// Resolution errors (missing roles) are collected in `errors`.
    fn visit_rules(
        &self,
        user: &UserInfo,
        namespace: &str,
        errors: &mut Vec<String>,
        visit: &mut dyn FnMut(&dyn Fn() -> String, &PolicyRule) -> bool,
    ) {
        for b in self.cluster_role_bindings.values() {
            let subjects = b.subjects.as_deref().unwrap_or(&[]);
            let Some(subject) = subjects.iter().find(|s| applies_to(user, s, "")) else { continue };
            match self.role_ref_rules(&b.role_ref, "") {
                Err(e) => errors.push(e),
                Ok(rules) => {
                    let describe = || {
                        format!(
                            "ClusterRoleBinding {:?} of {} {:?} to {}",
                            b.metadata.name.as_deref().unwrap_or(""),
                            b.role_ref.kind,
                            b.role_ref.name,
                            describe_subject(subject, "")
                        )
                    };
                    for r in rules {
                        if !visit(&describe, r) {
                            return;
                        }
                    }
                }
            }
        }
        if namespace.is_empty() {
            return;
        }
        let Some(bindings) = self.role_bindings.get(namespace) else { return };
        for b in bindings.values() {
            let subjects = b.subjects.as_deref().unwrap_or(&[]);
            let Some(subject) = subjects.iter().find(|s| applies_to(user, s, namespace)) else { continue };
            match self.role_ref_rules(&b.role_ref, namespace) {
                Err(e) => errors.push(e),
                Ok(rules) => {
                    let describe = || {
                        format!(
                            "RoleBinding {:?} of {} {:?} to {}",
                            format!("{}/{}", b.metadata.name.as_deref().unwrap_or(""), namespace),
                            b.role_ref.kind,
                            b.role_ref.name,
                            describe_subject(subject, namespace)
                        )
                    };
                    for r in rules {
                        if !visit(&describe, r) {
                            return;
                        }
                    }
                }
            }
        }
    }

    /// Every rule granted to `user` in `namespace` (cluster-wide rules
    /// included), and the resolution errors met — what
    /// SelfSubjectRulesReview and `kubectl auth can-i --list` show.
    pub fn rules_for(&self, user: &UserInfo, namespace: &str) -> (Vec<PolicyRule>, Vec<String>) {
        let mut rules = Vec::new();
        let mut errors = Vec::new();
        self.visit_rules(user, namespace, &mut errors, &mut |_, r| {
            rules.push(r.clone());
            true
        });
        (rules, errors)
    }
}

/// The RBAC authorizer: allowed by the first matching rule, otherwise no
/// opinion (with the resolution errors, if any, as the reason).
pub fn authorize(user: &UserInfo, attrs: &Attributes, data: &RbacData) -> Decision {
    let mut errors = Vec::new();
    let mut allowed_by: Option<String> = None;
    data.visit_rules(user, &attrs.namespace, &mut errors, &mut |describe, rule| {
        if rule_allows(attrs, rule) {
            allowed_by = Some(describe());
            false
        } else {
            true
        }
    });
    if let Some(source) = allowed_by {
        return Decision::Allow(format!("RBAC: allowed by {source}"));
    }
    if errors.is_empty() {
        Decision::NoOpinion(String::new())
    } else {
        Decision::NoOpinion(format!("RBAC: {}", aggregate_errors(&errors)))
    }
}

/// Does one binding subject name this user? A ServiceAccount subject with no
/// namespace means the binding's own namespace.
fn applies_to(user: &UserInfo, subject: &Subject, binding_namespace: &str) -> bool {
    match subject.kind.as_str() {
        "User" => user.name == subject.name,
        "Group" => user.in_group(&subject.name),
        "ServiceAccount" => {
            let ns = match subject.namespace.as_deref() {
                Some(ns) if !ns.is_empty() => ns,
                _ => binding_namespace,
            };
            !ns.is_empty() && user.name == user::service_account_username(ns, &subject.name)
        }
        _ => false,
    }
}

fn describe_subject(s: &Subject, binding_namespace: &str) -> String {
    if s.kind == "ServiceAccount" {
        let ns = s.namespace.as_deref().filter(|n| !n.is_empty()).unwrap_or(binding_namespace);
        format!("{} {:?}", s.kind, format!("{}/{}", s.name, ns))
    } else {
        format!("{} {:?}", s.kind, s.name)
    }
}

/// Does this rule allow the request? (`rbac.RuleAllows`.)
pub fn rule_allows(attrs: &Attributes, rule: &PolicyRule) -> bool {
    if !verb_matches(rule, &attrs.verb) {
        return false;
    }
    if attrs.resource_request {
        api_group_matches(rule, &attrs.api_group)
            && resource_matches(rule, &attrs.combined_resource(), &attrs.subresource)
            && resource_name_matches(rule, &attrs.name)
    } else {
        non_resource_url_matches(rule, &attrs.path)
    }
}

pub fn rules_allow(attrs: &Attributes, rules: &[PolicyRule]) -> bool {
    rules.iter().any(|r| rule_allows(attrs, r))
}

fn verb_matches(rule: &PolicyRule, verb: &str) -> bool {
    rule.verbs.iter().any(|v| v == "*" || v == verb)
}

fn api_group_matches(rule: &PolicyRule, group: &str) -> bool {
    rule.api_groups.as_deref().unwrap_or(&[]).iter().any(|g| g == "*" || g == group)
}

/// `*` matches everything (subresources included); `pods` matches only
/// `pods` — never `pods/log`; `*/scale` matches the `scale` subresource of
/// any resource.
fn resource_matches(rule: &PolicyRule, combined: &str, subresource: &str) -> bool {
    rule.resources.as_deref().unwrap_or(&[]).iter().any(|r| {
        r == "*"
            || r == combined
            || (!subresource.is_empty()
                && r.len() == subresource.len() + 2
                && r.starts_with("*/")
                && r.ends_with(subresource))
    })
}

/// No resourceNames means every name; otherwise the request must name one
/// of them (so a list, which names nothing, is not allowed by such a rule).
fn resource_name_matches(rule: &PolicyRule, name: &str) -> bool {
    match rule.resource_names.as_deref() {
        None | Some([]) => true,
        Some(names) => names.iter().any(|n| n == name),
    }
}

/// `*` matches every path, `/apis/*` every path under `/apis/`, otherwise exact.
fn non_resource_url_matches(rule: &PolicyRule, path: &str) -> bool {
    rule.non_resource_urls.as_deref().unwrap_or(&[]).iter().any(|u| {
        u == "*" || u == path || (u.ends_with('*') && path.starts_with(u.trim_end_matches('*')))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn data(objects: Vec<Value>) -> RbacData {
        let mut d = RbacData::new();
        for o in objects {
            d.upsert_json(&o).unwrap();
        }
        d
    }

    fn role(ns: &str, name: &str, rules: Value) -> Value {
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
               "metadata": {"namespace": ns, "name": name}, "rules": rules})
    }

    fn cluster_role(name: &str, rules: Value) -> Value {
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
               "metadata": {"name": name}, "rules": rules})
    }

    fn role_binding(ns: &str, name: &str, kind: &str, role: &str, subjects: Value) -> Value {
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
               "metadata": {"namespace": ns, "name": name},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role},
               "subjects": subjects})
    }

    fn cluster_binding(name: &str, role: &str, subjects: Value) -> Value {
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
               "metadata": {"name": name},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
               "subjects": subjects})
    }

    /// The fixture every case runs against.
    fn fixture() -> RbacData {
        data(vec![
            // The seed: a pod reader in namespace dev, bound to user jane.
            role("dev", "pod-reader", json!([
                {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}])),
            role_binding("dev", "read-pods", "Role", "pod-reader", json!([{"kind": "User", "name": "jane"}])),
            // Logs only, by subresource.
            role("dev", "log-reader", json!([
                {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]}])),
            role_binding("dev", "read-logs", "Role", "log-reader", json!([{"kind": "Group", "name": "support"}])),
            // One named configmap.
            role("dev", "one-cm", json!([
                {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["app-config"], "verbs": ["get", "update"]}])),
            role_binding("dev", "one-cm", "Role", "one-cm", json!([{"kind": "ServiceAccount", "name": "app"}])),
            // A ClusterRole used through a RoleBinding: namespaced grant.
            cluster_role("deployer", json!([
                {"apiGroups": ["apps"], "resources": ["deployments", "deployments/scale"], "verbs": ["*"]}])),
            role_binding("dev", "ci-deploys", "ClusterRole", "deployer",
                json!([{"kind": "ServiceAccount", "name": "ci", "namespace": "build"}])),
            // Cluster-wide node reader for a group; wildcard scale reader.
            cluster_role("node-reader", json!([
                {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list"]},
                {"apiGroups": ["*"], "resources": ["*/scale"], "verbs": ["get"]}])),
            cluster_binding("ops-nodes", "node-reader", json!([{"kind": "Group", "name": "ops"}])),
            // Non-resource URLs.
            cluster_role("metrics", json!([
                {"nonResourceURLs": ["/metrics", "/logs/*"], "verbs": ["get"]}])),
            cluster_binding("metrics", "metrics", json!([{"kind": "User", "name": "prom"}])),
            // Everything, for a user.
            cluster_role("all", json!([
                {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
                {"nonResourceURLs": ["*"], "verbs": ["*"]}])),
            cluster_binding("root", "all", json!([{"kind": "User", "name": "root"}])),
        ])
    }

    fn check(user: UserInfo, attrs: Attributes, allowed: bool) {
        let d = authorize(&user, &attrs, &fixture());
        assert_eq!(d.is_allowed(), allowed, "{} {:?}: {:?}", user.name, attrs, d);
    }

    fn u(name: &str) -> UserInfo {
        UserInfo::new(name, &["system:authenticated"])
    }

    fn res(verb: &str, group: &str, resource: &str, ns: &str, name: &str) -> Attributes {
        Attributes::resource(verb, group, resource, ns, name)
    }

    #[test]
    fn verbs_and_namespaces() {
        check(u("jane"), res("get", "", "pods", "dev", "web"), true);
        check(u("jane"), res("list", "", "pods", "dev", ""), true);
        check(u("jane"), res("watch", "", "pods", "dev", ""), true);
        check(u("jane"), res("delete", "", "pods", "dev", "web"), false);
        check(u("jane"), res("create", "", "pods", "dev", ""), false);
        // A RoleBinding grants nothing outside its namespace, nor cluster-wide.
        check(u("jane"), res("get", "", "pods", "prod", "web"), false);
        check(u("jane"), res("list", "", "pods", "", ""), false);
        // Other resources and groups.
        check(u("jane"), res("get", "", "secrets", "dev", "s"), false);
        check(u("jane"), res("get", "apps", "pods", "dev", "web"), false);
        check(u("bob"), res("get", "", "pods", "dev", "web"), false);
    }

    #[test]
    fn subresources() {
        let support = UserInfo::new("sam", &["support"]);
        check(support.clone(), res("get", "", "pods", "dev", "web").with_subresource("log"), true);
        // pods/log does not give pods, and pods does not give pods/log.
        check(support, res("get", "", "pods", "dev", "web"), false);
        check(u("jane"), res("get", "", "pods", "dev", "web").with_subresource("log"), false);
        // `*/scale` matches any resource's scale subresource, nothing else.
        let ops = UserInfo::new("olga", &["ops"]);
        check(ops.clone(), res("get", "apps", "deployments", "dev", "d").with_subresource("scale"), true);
        check(ops.clone(), res("get", "apps", "deployments", "dev", "d").with_subresource("status"), false);
        check(ops, res("get", "apps", "deployments", "dev", "d"), false);
    }

    #[test]
    fn resource_names() {
        let app = UserInfo::service_account("dev", "app");
        check(app.clone(), res("get", "", "configmaps", "dev", "app-config"), true);
        check(app.clone(), res("update", "", "configmaps", "dev", "app-config"), true);
        check(app.clone(), res("get", "", "configmaps", "dev", "other"), false);
        // A list names no object, so a resourceNames rule cannot allow it.
        check(app, res("list", "", "configmaps", "dev", ""), false);
    }

    #[test]
    fn service_accounts_and_cluster_roles_in_namespaces() {
        let ci = UserInfo::service_account("build", "ci");
        check(ci.clone(), res("create", "apps", "deployments", "dev", ""), true);
        check(ci.clone(), res("patch", "apps", "deployments", "dev", "d").with_subresource("scale"), true);
        check(ci.clone(), res("create", "apps", "deployments", "build", ""), false);
        check(ci, res("create", "apps", "deployments", "", ""), false);
        // The same SA name in another namespace is another identity.
        check(UserInfo::service_account("other", "ci"), res("create", "apps", "deployments", "dev", ""), false);
        // Subject without namespace in a RoleBinding = the binding's namespace.
        check(UserInfo::service_account("build", "app"), res("get", "", "configmaps", "dev", "app-config"), false);
    }

    #[test]
    fn groups_and_cluster_bindings() {
        let ops = UserInfo::new("olga", &["ops"]);
        check(ops.clone(), res("list", "", "nodes", "", ""), true);
        check(ops.clone(), res("get", "", "nodes", "", "n1"), true);
        check(ops.clone(), res("delete", "", "nodes", "", "n1"), false);
        // A cluster binding applies in every namespace too.
        check(u("root"), res("delete", "", "secrets", "kube-system", "s"), true);
        check(u("root"), Attributes::non_resource("post", "/anything"), true);
        check(UserInfo::new("someone", &["opsx"]), res("list", "", "nodes", "", ""), false);
    }

    #[test]
    fn non_resource_urls() {
        check(u("prom"), Attributes::non_resource("get", "/metrics"), true);
        check(u("prom"), Attributes::non_resource("get", "/logs/kube.log"), true);
        check(u("prom"), Attributes::non_resource("get", "/logs"), false);
        check(u("prom"), Attributes::non_resource("post", "/metrics"), false);
        check(u("prom"), Attributes::non_resource("get", "/metricsx"), false);
        check(u("jane"), Attributes::non_resource("get", "/metrics"), false);
    }

    #[test]
    fn reasons_name_the_binding_and_missing_roles() {
        let mut d = fixture();
        let allow = authorize(&u("jane"), &res("get", "", "pods", "dev", "web"), &d);
        assert_eq!(
            allow,
            Decision::Allow(r#"RBAC: allowed by RoleBinding "read-pods/dev" of Role "pod-reader" to User "jane""#.into())
        );
        let allow = authorize(&UserInfo::service_account("build", "ci"), &res("create", "apps", "deployments", "dev", ""), &d);
        assert_eq!(
            allow.reason(),
            r#"RBAC: allowed by RoleBinding "ci-deploys/dev" of ClusterRole "deployer" to ServiceAccount "ci/build""#
        );
        d.upsert_json(&role_binding("dev", "dangling", "Role", "gone", json!([{"kind": "User", "name": "jane"}]))).unwrap();
        d.upsert_json(&cluster_binding("dangling2", "gone2", json!([{"kind": "User", "name": "jane"}]))).unwrap();
        let deny = authorize(&u("jane"), &res("delete", "", "pods", "dev", "web"), &d);
        assert_eq!(
            deny,
            Decision::NoOpinion(
                r#"RBAC: [clusterrole.rbac.authorization.k8s.io "gone2" not found, role.rbac.authorization.k8s.io "gone" not found]"#.into()
            )
        );
        // Still allowed by the other binding despite the dangling ones.
        assert!(authorize(&u("jane"), &res("get", "", "pods", "dev", "web"), &d).is_allowed());
        // Removing the binding takes the grant away.
        d.remove("RoleBinding", "dev", "read-pods");
        assert!(!authorize(&u("jane"), &res("get", "", "pods", "dev", "web"), &d).is_allowed());
    }

    #[test]
    fn aggregation_is_transitive_and_follows_changes() {
        let mut d = data(vec![
            json!({"kind": "ClusterRole", "metadata": {"name": "top"},
                   "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"agg-top": "true"}}]}}),
            json!({"kind": "ClusterRole", "metadata": {"name": "mid", "labels": {"agg-top": "true"}},
                   "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"agg-mid": "true"}}]}}),
            json!({"kind": "ClusterRole", "metadata": {"name": "leaf", "labels": {"agg-mid": "true"}},
                   "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]}),
            cluster_binding("b", "top", json!([{"kind": "User", "name": "amy"}])),
        ]);
        let get = res("get", "", "pods", "x", "p");
        let list = res("list", "", "services", "x", "");
        assert!(authorize(&u("amy"), &get, &d).is_allowed());
        assert!(!authorize(&u("amy"), &list, &d).is_allowed());
        d.upsert_json(&json!({"kind": "ClusterRole", "metadata": {"name": "extra", "labels": {"agg-top": "true"}},
                              "rules": [{"apiGroups": [""], "resources": ["services"], "verbs": ["list"]}]}))
            .unwrap();
        assert!(authorize(&u("amy"), &list, &d).is_allowed());
        d.remove("ClusterRole", "", "leaf");
        assert!(!authorize(&u("amy"), &get, &d).is_allowed());
    }

    #[test]
    fn rules_for_lists_cluster_and_namespace_rules() {
        let d = fixture();
        let (rules, errors) = d.rules_for(&UserInfo::new("jane", &["ops"]), "dev");
        assert!(errors.is_empty());
        // node-reader's two rules, then pod-reader's one.
        assert_eq!(rules.len(), 3);
        assert_eq!(rules[2].resources.as_deref(), Some(&["pods".to_string()][..]));
    }
}
