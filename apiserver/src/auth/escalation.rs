//! RBAC **privilege-escalation prevention**: nobody grants, through a Role
//! or a binding, a permission they do not hold themselves — unless they
//! were explicitly trusted to (Kubernetes' `pkg/registry/rbac`: the
//! "policybased" storage of the four RBAC resources, `escalation_check.go`,
//! and `validation/rule.go` + `policy_comparator.go` for the comparison).
//!
//! A write of a **Role / ClusterRole** is allowed when the user
//! - is in `system:masters` (`EscalationAllowed`; the insecure port, which
//!   has no user, never gets here), or
//! - may `escalate` that resource in that scope (`RoleEscalationAuthorized`), or
//! - already holds every permission in the new rules, in the role's
//!   namespace (cluster-wide for a ClusterRole) — `ConfirmNoEscalation`.
//!   Setting or changing an `aggregationRule` needs full authority (`*` on
//!   everything), since it can gather any rule.
//!
//! A write of a **RoleBinding / ClusterRoleBinding** is allowed when the user
//! - is in `system:masters`, or
//! - may `bind` the referenced role (`BindingAuthorized`: verb `bind` on
//!   `roles`/`clusterroles` named by the roleRef, in the binding's
//!   namespace — so `resourceNames` can limit which roles), or
//! - already holds every permission of the referenced role in the
//!   binding's scope (`ConfirmNoEscalation` again).
//!
//! An update that changes only what the garbage collector writes
//! (ownerReferences, finalizers) is never checked (`IsOnlyMutatingGCFields`).
//!
//! "Holds" is decided by [`covers`]: every rule to grant is broken down
//! into atoms (one group, resource, verb, name) and each atom must be
//! covered by one rule the user has. The 403 lists what is missing, in
//! upstream's compact form:
//! `user "dana" (groups=["devs" "system:authenticated"]) is attempting to grant RBAC permissions not currently held:`
//! `{APIGroups:[""], Resources:["secrets"], Verbs:["get"]}`.
//!
//! Everything here is pure: the caller gives the RBAC snapshot and the
//! authorizer (for `escalate` and `bind`) as arguments.

use std::collections::BTreeSet;

use k8s_openapi::api::rbac::v1::PolicyRule;
use serde_json::Value;

use super::aggregate::aggregate_errors;
use super::attributes::Attributes;
use super::{user, RbacData, UserInfo};

pub const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// One write (create, update or patch) of an RBAC object.
pub struct Write<'a> {
    /// `roles`, `clusterroles`, `rolebindings` or `clusterrolebindings`.
    pub resource: &'a str,
    /// The request's namespace; empty for the cluster-scoped kinds.
    pub namespace: &'a str,
    /// The object's name in the URL (empty on create): what `escalate` is
    /// asked about, as upstream asks with the request's own attributes.
    pub request_name: &'a str,
    /// The object to be stored.
    pub new: &'a Value,
    /// The stored object, on update and patch.
    pub old: Option<&'a Value>,
}

/// Why a write is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// 403: `<resource>.rbac.authorization.k8s.io "<name>" is forbidden: <this>`.
    Forbidden(String),
    /// The binding's role does not exist (upstream: the role getter's 404).
    RoleNotFound { resource: &'static str, name: String },
    /// A roleRef kind that names no role type (upstream: a plain error, 500).
    Internal(String),
}

/// Decides one write. `authorized` asks the server's authorizer chain (the
/// same one requests go through) about `escalate` and `bind`.
pub fn check(user: &UserInfo, w: &Write<'_>, data: &RbacData, authorized: &dyn Fn(&Attributes) -> bool) -> Result<(), Refusal> {
    // EscalationAllowed: the privileged group may do anything.
    if user.in_group(user::SYSTEM_PRIVILEGED_GROUP) {
        return Ok(());
    }
    // IsOnlyMutatingGCFields: the garbage collector must be able to finish
    // deleting what it owns, whatever the object grants.
    if w.old.is_some_and(|old| only_gc_fields_differ(w.new, old)) {
        return Ok(());
    }
    match w.resource {
        "roles" | "clusterroles" => {
            // RoleEscalationAuthorized: the `escalate` verb on this resource.
            let escalate = Attributes::resource("escalate", RBAC_GROUP, w.resource, w.namespace, w.request_name);
            if authorized(&escalate) {
                return Ok(());
            }
            confirm_no_escalation(user, w.namespace, &rules_of(w.new), data)?;
            // An aggregationRule can gather any rule: only full authority may set or keep one.
            let aggregates = |o: &Value| o["aggregationRule"]["clusterRoleSelectors"].as_array().is_some_and(|s| !s.is_empty());
            if w.resource == "clusterroles" && (aggregates(w.new) || w.old.is_some_and(aggregates)) {
                confirm_no_escalation(user, w.namespace, &full_authority(), data)
                    .map_err(|_| Refusal::Forbidden("must have cluster-admin privileges to use the aggregationRule".into()))?;
            }
            Ok(())
        }
        "rolebindings" | "clusterrolebindings" => {
            let role_ref = &w.new["roleRef"];
            let (group, kind, name) = (str_at(role_ref, "apiGroup"), str_at(role_ref, "kind"), str_at(role_ref, "name"));
            // BindingAuthorized: the `bind` verb on the referenced role, in
            // the binding's namespace (empty for a ClusterRoleBinding).
            let role_resource = match kind {
                "Role" => Some("roles"),
                "ClusterRole" => Some("clusterroles"),
                _ => None,
            };
            if let Some(resource) = role_resource {
                if authorized(&Attributes::resource("bind", group, resource, w.namespace, name)) {
                    return Ok(());
                }
            }
            // GetRoleReferenceRules, then ConfirmNoEscalation.
            let rules = match kind {
                "Role" => data.role_rules(w.namespace, name),
                "ClusterRole" => data.cluster_role_rules(name),
                other => return Err(Refusal::Internal(format!("unsupported role reference kind: {other:?}"))),
            };
            let rules = rules.ok_or_else(|| Refusal::RoleNotFound { resource: role_resource.unwrap_or_default(), name: name.to_string() })?;
            confirm_no_escalation(user, w.namespace, rules, data)
        }
        _ => Ok(()),
    }
}

/// ConfirmNoEscalation: the user's rules in `namespace` (cluster-wide ones
/// included) must cover `rules`; otherwise the message lists what is missing.
pub fn confirm_no_escalation(user: &UserInfo, namespace: &str, rules: &[PolicyRule], data: &RbacData) -> Result<(), Refusal> {
    let (owned, errors) = data.rules_for(user, namespace);
    let missing = covers(&owned, rules);
    if missing.is_empty() {
        return Ok(());
    }
    // Sorted and deduplicated, as upstream's string set.
    let described: BTreeSet<String> = compact(&missing).iter().map(compact_string).collect();
    let mut msg = format!(
        "user {:?} (groups={}) is attempting to grant RBAC permissions not currently held:\n{}",
        user.name,
        go_list(&user.groups),
        described.into_iter().collect::<Vec<_>>().join("\n")
    );
    if !errors.is_empty() {
        msg.push_str(&format!("; resolution errors: [{}]", aggregate_errors(&errors)));
    }
    Err(Refusal::Forbidden(msg))
}

/// Covers: the atoms of `servant` that no rule of `owner` covers (empty:
/// the owner holds everything the servant rules grant).
pub fn covers(owner: &[PolicyRule], servant: &[PolicyRule]) -> Vec<PolicyRule> {
    servant.iter().flat_map(breakdown).filter(|atom| !owner.iter().any(|o| rule_covers(o, atom))).collect()
}

/// BreakdownRule: one rule per (group, resource, verb[, resourceName]),
/// and per (nonResourceURL, verb).
fn breakdown(rule: &PolicyRule) -> Vec<PolicyRule> {
    let list = |v: &Option<Vec<String>>| v.clone().unwrap_or_default();
    let one = |s: &String| Some(vec![s.clone()]);
    let names = list(&rule.resource_names);
    let mut out = Vec::new();
    for group in list(&rule.api_groups) {
        for resource in list(&rule.resources) {
            for verb in &rule.verbs {
                let atom = PolicyRule {
                    api_groups: one(&group),
                    resources: one(&resource),
                    verbs: vec![verb.clone()],
                    ..Default::default()
                };
                if names.is_empty() {
                    out.push(atom);
                } else {
                    out.extend(names.iter().map(|n| PolicyRule { resource_names: one(n), ..atom.clone() }));
                }
            }
        }
    }
    for url in list(&rule.non_resource_urls) {
        for verb in &rule.verbs {
            out.push(PolicyRule { non_resource_urls: one(&url), verbs: vec![verb.clone()], ..Default::default() });
        }
    }
    out
}

/// ruleCovers: does one owner rule cover one atom?
fn rule_covers(owner: &PolicyRule, atom: &PolicyRule) -> bool {
    let list = |v: &Option<Vec<String>>| v.clone().unwrap_or_default();
    let has = |set: &[String], s: &str| set.iter().any(|x| x == s);
    let has_all = |set: &[String], all: &[String]| all.iter().all(|s| has(set, s));
    let (owner_groups, owner_resources, owner_names) = (list(&owner.api_groups), list(&owner.resources), list(&owner.resource_names));
    let verbs = has(&owner.verbs, "*") || has_all(&owner.verbs, &atom.verbs);
    let groups = has(&owner_groups, "*") || has_all(&owner_groups, &list(&atom.api_groups));
    // `*` covers every resource and subresource; `*/scale` covers any `<r>/scale`.
    let resources = has(&owner_resources, "*")
        || list(&atom.resources).iter().all(|r| {
            has(&owner_resources, r) || r.split_once('/').is_some_and(|(_, sub)| has(&owner_resources, &format!("*/{sub}")))
        });
    // An atom without a name needs an owner rule without names; a named
    // atom is covered by no names (all) or by its own name.
    let atom_names = list(&atom.resource_names);
    let names = owner_names.is_empty() || (!atom_names.is_empty() && has_all(&owner_names, &atom_names));
    // `/apis/*` covers every path under `/apis/`, `*` every path.
    let urls = list(&atom.non_resource_urls).iter().all(|path| {
        list(&owner.non_resource_urls)
            .iter()
            .any(|o| o == path || (o.ends_with('*') && path.starts_with(o.trim_end_matches('*'))))
    });
    verbs && groups && resources && names && urls
}

/// CompactRules: atoms on the same single group/resource(/name) merged
/// into one rule with all their verbs — for a readable message.
fn compact(atoms: &[PolicyRule]) -> Vec<PolicyRule> {
    let mut out: Vec<PolicyRule> = Vec::new();
    let mut simple: Vec<PolicyRule> = Vec::new();
    for a in atoms {
        let one = |v: &Option<Vec<String>>| v.as_ref().is_some_and(|v| v.len() == 1);
        let is_simple = one(&a.api_groups)
            && one(&a.resources)
            && a.resource_names.as_ref().is_none_or(|n| n.len() <= 1)
            && a.non_resource_urls.as_ref().is_none_or(|u| u.is_empty());
        if !is_simple {
            out.push(a.clone());
            continue;
        }
        let key = |r: &PolicyRule| (r.api_groups.clone(), r.resources.clone(), r.resource_names.clone().unwrap_or_default());
        match simple.iter_mut().find(|s| key(s) == key(a)) {
            Some(s) => s.verbs.extend(a.verbs.iter().cloned()),
            None => simple.push(a.clone()),
        }
    }
    out.extend(simple);
    out
}

/// CompactString: `{APIGroups:["apps"], Resources:["deployments"], Verbs:["get" "list"]}`,
/// empty fields left out.
pub fn compact_string(r: &PolicyRule) -> String {
    let mut parts = Vec::new();
    for (label, values) in [
        ("APIGroups", r.api_groups.as_deref()),
        ("Resources", r.resources.as_deref()),
        ("NonResourceURLs", r.non_resource_urls.as_deref()),
        ("ResourceNames", r.resource_names.as_deref()),
        ("Verbs", Some(&r.verbs[..])),
    ] {
        if let Some(v) = values.filter(|v| !v.is_empty()) {
            parts.push(format!("{label}:{}", go_list(v)));
        }
    }
    format!("{{{}}}", parts.join(", "))
}

/// A string list as Go's `%q` prints it: `["a" "b"]`.
fn go_list(v: &[String]) -> String {
    format!("[{}]", v.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(" "))
}

/// `*` on everything, resources and URLs: what an aggregationRule needs.
fn full_authority() -> Vec<PolicyRule> {
    let all = || Some(vec!["*".to_string()]);
    vec![
        PolicyRule { api_groups: all(), resources: all(), verbs: vec!["*".into()], ..Default::default() },
        PolicyRule { non_resource_urls: all(), verbs: vec!["*".into()], ..Default::default() },
    ]
}

fn rules_of(obj: &Value) -> Vec<PolicyRule> {
    serde_json::from_value(obj["rules"].clone()).unwrap_or_default()
}

fn str_at<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("")
}

/// Equal but for what the garbage collector writes (and what the server
/// sets on every write anyway).
fn only_gc_fields_differ(new: &Value, old: &Value) -> bool {
    let strip = |o: &Value| {
        let mut o = o.clone();
        if let Some(m) = o["metadata"].as_object_mut() {
            for k in ["ownerReferences", "finalizers", "managedFields", "selfLink", "resourceVersion"] {
                m.remove(k);
            }
        }
        o
    };
    strip(new) == strip(old)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rules(v: Value) -> Vec<PolicyRule> {
        serde_json::from_value(v).unwrap()
    }

    /// `owner` covers `servant` but for the atoms in `missing` (compact strings).
    fn check_covers(owner: Value, servant: Value, missing: &[&str]) {
        let got: Vec<String> = covers(&rules(owner.clone()), &rules(servant.clone())).iter().map(compact_string).collect();
        assert_eq!(got, missing, "owner {owner} servant {servant}");
    }

    #[test]
    fn rules_covered_by_rules() {
        let pods_get = json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]);
        // Exact, and nothing to grant.
        check_covers(pods_get.clone(), pods_get.clone(), &[]);
        check_covers(json!([]), json!([]), &[]);
        check_covers(json!([]), pods_get.clone(), &[r#"{APIGroups:[""], Resources:["pods"], Verbs:["get"]}"#]);
        // Verbs: a subset is covered, `*` covers any verb, one missing verb is named.
        check_covers(json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]), pods_get.clone(), &[]);
        check_covers(json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["*"]}]),
            json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "escalate"]}]), &[]);
        check_covers(pods_get.clone(), json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "delete"]}]),
            &[r#"{APIGroups:[""], Resources:["pods"], Verbs:["delete"]}"#]);
        // A literal `*` verb to grant is covered only by `*`.
        check_covers(json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "delete"]}]),
            json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["*"]}]), &[r#"{APIGroups:[""], Resources:["pods"], Verbs:["*"]}"#]);
        // API groups: `*` covers all; another group is not covered.
        check_covers(json!([{"apiGroups": ["*"], "resources": ["deployments"], "verbs": ["get"]}]),
            json!([{"apiGroups": ["apps", "extensions"], "resources": ["deployments"], "verbs": ["get"]}]), &[]);
        check_covers(json!([{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get"]}]),
            json!([{"apiGroups": ["apps", "extensions"], "resources": ["deployments"], "verbs": ["get"]}]),
            &[r#"{APIGroups:["extensions"], Resources:["deployments"], Verbs:["get"]}"#]);
        // Resources: `*` covers resources and subresources; `pods` does not cover `pods/log`;
        // `*/scale` covers any scale subresource, not the resource itself.
        check_covers(json!([{"apiGroups": [""], "resources": ["*"], "verbs": ["get"]}]),
            json!([{"apiGroups": [""], "resources": ["pods", "pods/log", "secrets"], "verbs": ["get"]}]), &[]);
        check_covers(pods_get.clone(), json!([{"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]}]),
            &[r#"{APIGroups:[""], Resources:["pods/log"], Verbs:["get"]}"#]);
        check_covers(json!([{"apiGroups": ["apps"], "resources": ["*/scale"], "verbs": ["update"]}]),
            json!([{"apiGroups": ["apps"], "resources": ["deployments/scale", "deployments"], "verbs": ["update"]}]),
            &[r#"{APIGroups:["apps"], Resources:["deployments"], Verbs:["update"]}"#]);
        // resourceNames: no names covers every name; names cover only those
        // names; a named owner never covers an unnamed grant.
        let cm = |names: Value| json!([{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": names, "verbs": ["get"]}]);
        check_covers(json!([{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]), cm(json!(["a", "b"])), &[]);
        check_covers(cm(json!(["a", "b"])), cm(json!(["a"])), &[]);
        check_covers(cm(json!(["a"])), cm(json!(["a", "b"])),
            &[r#"{APIGroups:[""], Resources:["configmaps"], ResourceNames:["b"], Verbs:["get"]}"#]);
        check_covers(cm(json!(["a"])), json!([{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]),
            &[r#"{APIGroups:[""], Resources:["configmaps"], Verbs:["get"]}"#]);
        // nonResourceURLs: exact, `prefix*`, `*`; never covered by resource rules.
        check_covers(json!([{"nonResourceURLs": ["/healthz", "/logs/*"], "verbs": ["get"]}]),
            json!([{"nonResourceURLs": ["/healthz", "/logs/kube.log"], "verbs": ["get"]}]), &[]);
        check_covers(json!([{"nonResourceURLs": ["*"], "verbs": ["*"]}]),
            json!([{"nonResourceURLs": ["/metrics"], "verbs": ["get", "post"]}]), &[]);
        check_covers(json!([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]),
            json!([{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}]), &[r#"{NonResourceURLs:["/metrics"], Verbs:["get"]}"#]);
        check_covers(json!([{"nonResourceURLs": ["/logs/*"], "verbs": ["get"]}]),
            json!([{"nonResourceURLs": ["/logs"], "verbs": ["get"]}]), &[r#"{NonResourceURLs:["/logs"], Verbs:["get"]}"#]);
        // Rules add up: two owner rules together cover one servant rule.
        check_covers(json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]},
                            {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}]),
            json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]), &[]);
    }

    #[test]
    fn missing_rules_are_compacted_per_resource() {
        let missing = covers(&[], &rules(json!([
            {"apiGroups": [""], "resources": ["secrets", "pods"], "verbs": ["get", "list"]},
            {"nonResourceURLs": ["/metrics"], "verbs": ["get"]}])));
        let described: BTreeSet<String> = compact(&missing).iter().map(compact_string).collect();
        assert_eq!(
            described.into_iter().collect::<Vec<_>>(),
            [
                r#"{APIGroups:[""], Resources:["pods"], Verbs:["get" "list"]}"#,
                r#"{APIGroups:[""], Resources:["secrets"], Verbs:["get" "list"]}"#,
                r#"{NonResourceURLs:["/metrics"], Verbs:["get"]}"#,
            ]
        );
    }

    fn data(objects: Vec<Value>) -> RbacData {
        let mut d = RbacData::new();
        for o in objects {
            d.upsert_json(&o).unwrap();
        }
        d
    }

    /// dana may create rolebindings and read pods in `team`, and `bind` the
    /// ClusterRole `view` there; `admin` is a ClusterRole she does not hold.
    fn fixture() -> RbacData {
        data(vec![
            json!({"kind": "Role", "metadata": {"namespace": "team", "name": "dana"}, "rules": [
                {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["rolebindings", "roles"], "verbs": ["create", "update"]},
                {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]},
                {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles"], "resourceNames": ["view"], "verbs": ["bind"]}]}),
            json!({"kind": "RoleBinding", "metadata": {"namespace": "team", "name": "dana"},
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "dana"},
                   "subjects": [{"kind": "User", "name": "dana"}]}),
            json!({"kind": "Role", "metadata": {"namespace": "team", "name": "pod-reader"}, "rules": [
                {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]}),
            json!({"kind": "ClusterRole", "metadata": {"name": "admin"}, "rules": [
                {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"]}]}),
            json!({"kind": "ClusterRole", "metadata": {"name": "view"}, "rules": [
                {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]}),
        ])
    }

    fn dana() -> UserInfo {
        UserInfo::new("dana", &["devs", "system:authenticated"])
    }

    /// The authorizer: RBAC over the fixture.
    fn decide(user: &UserInfo, d: &RbacData) -> impl Fn(&Attributes) -> bool {
        let (user, d) = (user.clone(), d.clone());
        move |a: &Attributes| super::super::rbac::authorize(&user, a, &d).is_allowed()
    }

    fn binding(kind: &str, role: &str) -> Value {
        json!({"kind": "RoleBinding", "metadata": {"namespace": "team", "name": "b"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role},
               "subjects": [{"kind": "User", "name": "dana"}]})
    }

    fn write<'a>(resource: &'a str, new: &'a Value, old: Option<&'a Value>) -> Write<'a> {
        Write { resource, namespace: "team", request_name: "", new, old }
    }

    #[test]
    fn bindings_need_bind_or_the_permissions() {
        let d = fixture();
        let run = |user: &UserInfo, new: &Value| check(user, &write("rolebindings", new, None), &d, &decide(user, &d));
        // Held permissions may be handed on; `bind` on `view` allows binding it.
        assert_eq!(run(&dana(), &binding("Role", "pod-reader")), Ok(()));
        assert_eq!(run(&dana(), &binding("ClusterRole", "view")), Ok(()));
        // `admin` is neither held nor bindable: the upstream message.
        assert_eq!(
            run(&dana(), &binding("ClusterRole", "admin")),
            Err(Refusal::Forbidden(
                "user \"dana\" (groups=[\"devs\" \"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n\
                 {APIGroups:[\"\"], Resources:[\"secrets\"], Verbs:[\"get\" \"list\"]}"
                    .into()
            ))
        );
        // A missing role is a 404; an unknown kind an internal error.
        assert_eq!(run(&dana(), &binding("Role", "gone")), Err(Refusal::RoleNotFound { resource: "roles", name: "gone".into() }));
        assert!(matches!(run(&dana(), &binding("Group", "x")), Err(Refusal::Internal(_))));
        // system:masters is never checked.
        let root = UserInfo::new("root", &["system:masters"]);
        assert_eq!(run(&root, &binding("ClusterRole", "admin")), Ok(()));
    }

    #[test]
    fn roles_need_escalate_or_the_permissions() {
        let mut d = fixture();
        let secrets = json!({"kind": "Role", "metadata": {"namespace": "team", "name": "r"}, "rules": [
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]});
        let pods = json!({"kind": "Role", "metadata": {"namespace": "team", "name": "r"}, "rules": [
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}]});
        let run = |d: &RbacData, new: &Value, old: Option<&Value>| check(&dana(), &write("roles", new, old), d, &decide(&dana(), d));
        assert_eq!(run(&d, &pods, None), Ok(()));
        assert!(matches!(run(&d, &secrets, None), Err(Refusal::Forbidden(m)) if m.ends_with(r#"{APIGroups:[""], Resources:["secrets"], Verbs:["get"]}"#)));
        // An update checks the new rules; one touching only GC fields is not checked.
        assert!(run(&d, &secrets, Some(&pods)).is_err());
        let mut owned = secrets.clone();
        owned["metadata"]["finalizers"] = json!(["x"]);
        assert_eq!(run(&d, &owned, Some(&secrets)), Ok(()));
        // With `escalate` on roles in the namespace, anything goes.
        d.upsert_json(&json!({"kind": "Role", "metadata": {"namespace": "team", "name": "dana"}, "rules": [
            {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles"], "verbs": ["create", "escalate"]}]}))
            .unwrap();
        assert_eq!(run(&d, &secrets, None), Ok(()));
    }

    #[test]
    fn aggregation_rules_need_full_authority() {
        // rick holds `*` on resources (not URLs) and may create clusterroles.
        let d = data(vec![
            json!({"kind": "ClusterRole", "metadata": {"name": "almost-all"}, "rules": [
                {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]}),
            json!({"kind": "ClusterRoleBinding", "metadata": {"name": "rick"},
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "almost-all"},
                   "subjects": [{"kind": "User", "name": "rick"}]}),
        ]);
        let rick = UserInfo::new("rick", &[]);
        let new = json!({"kind": "ClusterRole", "metadata": {"name": "agg"},
                         "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"a": "b"}}]}});
        // `escalate` is in `*`, so rick is allowed outright; without the
        // authorizer's yes he lacks the URL half of full authority.
        assert_eq!(check(&rick, &Write { namespace: "", ..write("clusterroles", &new, None) }, &d, &decide(&rick, &d)), Ok(()));
        assert_eq!(
            check(&rick, &Write { namespace: "", ..write("clusterroles", &new, None) }, &d, &|_| false),
            Err(Refusal::Forbidden("must have cluster-admin privileges to use the aggregationRule".into()))
        );
    }
}
