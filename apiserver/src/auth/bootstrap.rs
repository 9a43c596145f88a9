//! The bootstrap policy: the ClusterRoles and ClusterRoleBindings a cluster
//! starts with (plugin/pkg/auth/authorizer/rbac/bootstrappolicy).
//!
//! kube-apiserver creates these at start-up when missing (and reconciles
//! them when labelled `rbac.authorization.kubernetes.io/autoupdate: "true"`).
//! They are upstream's rules, trimmed to what rkube serves: the resources of
//! `machinery::resources::RESOURCES` (core configmaps, endpoints, events,
//! namespaces, nodes, pods, secrets, serviceaccounts, services; apps
//! deployments and replicasets; coordination leases), plus
//! `rbac.authorization.k8s.io`, `authorization.k8s.io` (access reviews),
//! limitranges/resourcequotas (read by admission), and `pods/log` (the
//! textbook subresource). Rules about resources rkube does not serve
//! (statefulsets, CSI, …) are left out.
//!
//! The roles fall into four families:
//! - **super-user and discovery**: `cluster-admin` (bound to group
//!   `system:masters`), `system:discovery`, `system:public-info-viewer`
//!   (what anonymous requests may read: /healthz, /livez, /readyz, /version),
//!   `system:basic-user` (ask "can I?"), `system:monitoring`.
//! - **user-facing** roles meant for RoleBindings: `admin`, `edit`, `view`,
//!   built by aggregation from `system:aggregate-to-{admin,edit,view}`.
//! - **components**: `system:kube-scheduler`, `system:kube-controller-manager`,
//!   `system:node`, `system:node-proxier` (kube-proxy).
//! - **controllers**: `system:controller:<name>`, one per controller loop
//!   rkube runs (controller_policy.go).

use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule};
use serde_json::{json, Value};

use super::rbac::RbacData;

const READ: &[&str] = &["get", "list", "watch"];
const READ_WRITE: &[&str] = &["get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"];
const WRITE: &[&str] = &["create", "delete", "deletecollection", "patch", "update"];
const EVENTS_WRITE: &[&str] = &["create", "patch", "update"];

const CORE: &str = "";
const APPS: &str = "apps";
const AUTHORIZATION: &str = "authorization.k8s.io";
const AUTHENTICATION: &str = "authentication.k8s.io";
const COORDINATION: &str = "coordination.k8s.io";
const RBAC: &str = "rbac.authorization.k8s.io";
const EVENTS: &str = "events.k8s.io";

const AGGREGATE_TO_ADMIN: &str = "rbac.authorization.k8s.io/aggregate-to-admin";
const AGGREGATE_TO_EDIT: &str = "rbac.authorization.k8s.io/aggregate-to-edit";
const AGGREGATE_TO_VIEW: &str = "rbac.authorization.k8s.io/aggregate-to-view";

/// The controllers rkube's controller manager runs, by their upstream
/// service-account names (each gets `system:controller:<name>`).
pub const CONTROLLERS: &[&str] = &[
    "deployment-controller",
    "replicaset-controller",
    "endpoint-controller",
    "generic-garbage-collector",
    "namespace-controller",
    "node-controller",
    "pod-garbage-collector",
    "resourcequota-controller",
    "service-account-controller",
];

fn rule(verbs: &[&str], groups: &[&str], resources: &[&str]) -> Value {
    json!({"apiGroups": groups, "resources": resources, "verbs": verbs})
}

fn named(verbs: &[&str], groups: &[&str], resources: &[&str], names: &[&str]) -> Value {
    json!({"apiGroups": groups, "resources": resources, "resourceNames": names, "verbs": verbs})
}

fn urls(verbs: &[&str], urls: &[&str]) -> Value {
    json!({"nonResourceURLs": urls, "verbs": verbs})
}

fn events_rule() -> Value {
    rule(EVENTS_WRITE, &[CORE, EVENTS], &["events"])
}

fn meta(name: &str, extra_labels: &[(&str, &str)]) -> Value {
    let mut labels = json!({"kubernetes.io/bootstrapping": "rbac-defaults"});
    for (k, v) in extra_labels {
        labels[*k] = json!(v);
    }
    json!({
        "name": name,
        "labels": labels,
        "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"},
    })
}

fn cluster_role(name: &str, rules: Vec<Value>) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": meta(name, &[]), "rules": rules})
}

fn labelled_role(name: &str, labels: &[(&str, &str)], rules: Vec<Value>) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": meta(name, labels), "rules": rules})
}

fn aggregated_role(name: &str, labels: &[(&str, &str)], selects: &str) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": meta(name, labels),
        "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {selects: "true"}}]},
        "rules": [],
    })
}

fn binding(name: &str, role: &str, subjects: Vec<Value>) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": meta(name, &[]),
        "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": role},
        "subjects": subjects,
    })
}

fn group(name: &str) -> Value {
    json!({"apiGroup": RBAC, "kind": "Group", "name": name})
}

fn user(name: &str) -> Value {
    json!({"apiGroup": RBAC, "kind": "User", "name": name})
}

fn service_account(namespace: &str, name: &str) -> Value {
    json!({"kind": "ServiceAccount", "name": name, "namespace": namespace})
}

/// The rules of `system:node` — also what the Node authorizer allows a node
/// for resources it has no finer rule for.
fn node_rule_values() -> Vec<Value> {
    vec![
        rule(&["create"], &[AUTHORIZATION], &["localsubjectaccessreviews", "subjectaccessreviews"]),
        rule(READ, &[CORE], &["services"]),
        // Nodes register themselves and report status; the Node authorizer
        // narrows writes to the node's own object.
        rule(&["create", "get", "list", "watch"], &[CORE], &["nodes"]),
        rule(&["patch", "update"], &[CORE], &["nodes/status"]),
        rule(&["patch", "update"], &[CORE], &["nodes"]),
        rule(EVENTS_WRITE, &[CORE], &["events"]),
        rule(READ, &[CORE], &["pods"]),
        rule(&["create", "delete"], &[CORE], &["pods"]),
        rule(&["patch", "update"], &[CORE], &["pods/status"]),
        rule(READ, &[CORE], &["configmaps", "secrets"]),
        rule(&["get"], &[CORE], &["endpoints"]),
        rule(&["create", "delete", "get", "patch", "update"], &[COORDINATION], &["leases"]),
    ]
}

/// `system:node`'s rules as typed values.
pub fn node_rules() -> Vec<PolicyRule> {
    node_rule_values().into_iter().map(|v| serde_json::from_value(v).expect("static rule")).collect()
}

fn controller_rules(name: &str) -> Vec<Value> {
    match name {
        "deployment-controller" => vec![
            rule(&["get", "list", "update", "watch"], &[APPS], &["deployments"]),
            rule(&["update"], &[APPS], &["deployments/status"]),
            rule(&["update"], &[APPS], &["deployments/finalizers"]),
            rule(&["create", "delete", "get", "list", "patch", "update", "watch"], &[APPS], &["replicasets"]),
            rule(&["get", "list", "update", "watch"], &[CORE], &["pods"]),
            events_rule(),
        ],
        "replicaset-controller" => vec![
            rule(&["get", "list", "update", "watch"], &[APPS], &["replicasets"]),
            rule(&["update"], &[APPS], &["replicasets/status"]),
            rule(&["update"], &[APPS], &["replicasets/finalizers"]),
            rule(&["create", "delete", "list", "patch", "watch"], &[CORE], &["pods"]),
            events_rule(),
        ],
        "endpoint-controller" => vec![
            rule(READ, &[CORE], &["pods", "services"]),
            rule(&["create", "delete", "get", "list", "update", "watch"], &[CORE], &["endpoints"]),
            rule(&["create"], &[CORE], &["endpoints/restricted"]),
            events_rule(),
        ],
        "generic-garbage-collector" => vec![
            rule(&["delete", "get", "list", "patch", "update", "watch"], &["*"], &["*"]),
            events_rule(),
        ],
        "namespace-controller" => vec![
            rule(&["delete", "get", "list", "watch"], &[CORE], &["namespaces"]),
            rule(&["update"], &[CORE], &["namespaces/finalize", "namespaces/status"]),
            rule(&["delete", "deletecollection", "get", "list", "watch"], &["*"], &["*"]),
        ],
        "node-controller" => vec![
            rule(&["delete", "get", "list", "patch", "update", "watch"], &[CORE], &["nodes"]),
            rule(&["patch", "update"], &[CORE], &["nodes/status"]),
            rule(&["patch", "update"], &[CORE], &["pods/status"]),
            rule(&["delete", "get", "list", "watch"], &[CORE], &["pods"]),
            events_rule(),
        ],
        "pod-garbage-collector" => vec![
            rule(&["delete", "list", "watch"], &[CORE], &["pods"]),
            rule(READ, &[CORE], &["nodes"]),
            rule(&["patch"], &[CORE], &["pods/status"]),
        ],
        "resourcequota-controller" => vec![
            // Recounting usage means listing anything a quota can count;
            // list and watch only, no get (as upstream).
            rule(&["list", "watch"], &["*"], &["*"]),
            rule(&["update"], &[CORE], &["resourcequotas/status"]),
            events_rule(),
        ],
        "service-account-controller" => vec![rule(&["create"], &[CORE], &["serviceaccounts"]), events_rule()],
        _ => vec![],
    }
}

/// Every bootstrap ClusterRole, as JSON objects ready to create. Aggregated
/// roles (`admin`, `edit`, `view`) carry their computed rules, as they
/// would after the aggregation controller ran.
pub fn cluster_roles() -> Vec<Value> {
    let mut roles = vec![
        cluster_role(
            "cluster-admin",
            vec![rule(&["*"], &["*"], &["*"]), urls(&["*"], &["*"])],
        ),
        cluster_role(
            "system:discovery",
            vec![urls(
                &["get"],
                &["/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi", "/openapi/*", "/readyz", "/version", "/version/"],
            )],
        ),
        cluster_role(
            "system:public-info-viewer",
            vec![urls(&["get"], &["/healthz", "/livez", "/readyz", "/version", "/version/"])],
        ),
        cluster_role(
            "system:basic-user",
            vec![
                rule(&["create"], &[AUTHORIZATION], &["selfsubjectaccessreviews", "selfsubjectrulesreviews"]),
                rule(&["create"], &[AUTHENTICATION], &["selfsubjectreviews"]),
            ],
        ),
        cluster_role(
            "system:monitoring",
            vec![urls(
                &["get"],
                &["/healthz", "/healthz/*", "/livez", "/livez/*", "/metrics", "/metrics/slis", "/readyz", "/readyz/*"],
            )],
        ),
        // User-facing roles, meant for RoleBindings in a namespace.
        aggregated_role("admin", &[], AGGREGATE_TO_ADMIN),
        aggregated_role("edit", &[(AGGREGATE_TO_ADMIN, "true")], AGGREGATE_TO_EDIT),
        aggregated_role("view", &[(AGGREGATE_TO_EDIT, "true")], AGGREGATE_TO_VIEW),
        labelled_role(
            "system:aggregate-to-admin",
            &[(AGGREGATE_TO_ADMIN, "true")],
            vec![
                rule(&["create"], &[AUTHORIZATION], &["localsubjectaccessreviews"]),
                rule(READ_WRITE, &[RBAC], &["rolebindings", "roles"]),
            ],
        ),
        labelled_role(
            "system:aggregate-to-edit",
            &[(AGGREGATE_TO_EDIT, "true")],
            vec![
                // Read on the escalating resources: a pod's streams reach
                // inside its containers.
                rule(READ, &[CORE], &["pods/attach", "pods/exec", "pods/portforward", "pods/proxy", "secrets", "services/proxy"]),
                rule(&["impersonate"], &[CORE], &["serviceaccounts"]),
                rule(WRITE, &[CORE], &["pods", "pods/attach", "pods/exec", "pods/portforward", "pods/proxy"]),
                rule(&["create"], &[CORE], &["pods/eviction"]),
                rule(WRITE, &[CORE], &["configmaps", "events", "secrets", "serviceaccounts", "services", "services/proxy"]),
                rule(WRITE, &[APPS], &["deployments", "deployments/scale", "replicasets", "replicasets/scale"]),
                rule(READ_WRITE, &[COORDINATION], &["leases"]),
            ],
        ),
        labelled_role(
            "system:aggregate-to-view",
            &[(AGGREGATE_TO_VIEW, "true")],
            vec![
                rule(READ, &[CORE], &["configmaps", "endpoints", "pods", "serviceaccounts", "services", "services/status"]),
                rule(
                    READ,
                    &[CORE],
                    &["events", "limitranges", "namespaces/status", "pods/log", "pods/status", "resourcequotas", "resourcequotas/status"],
                ),
                rule(READ, &[CORE], &["namespaces"]),
                rule(
                    READ,
                    &[APPS],
                    &["deployments", "deployments/scale", "deployments/status", "replicasets", "replicasets/scale", "replicasets/status"],
                ),
            ],
        ),
        // Components.
        cluster_role(
            "system:kube-scheduler",
            vec![
                events_rule(),
                rule(&["create"], &[COORDINATION], &["leases"]),
                named(&["get", "update"], &[COORDINATION], &["leases"], &["kube-scheduler"]),
                rule(READ, &[CORE], &["nodes"]),
                rule(&["delete", "get", "list", "watch"], &[CORE], &["pods"]),
                rule(&["create"], &[CORE], &["bindings", "pods/binding"]),
                rule(&["patch", "update"], &[CORE], &["pods/status"]),
                rule(READ, &[CORE], &["services"]),
                rule(READ, &[APPS], &["replicasets"]),
                rule(&["create"], &[AUTHORIZATION], &["subjectaccessreviews"]),
                rule(READ, &[CORE], &["namespaces"]),
            ],
        ),
        cluster_role(
            "system:kube-controller-manager",
            vec![
                events_rule(),
                rule(&["create"], &[COORDINATION], &["leases"]),
                named(&["get", "update"], &[COORDINATION], &["leases"], &["kube-controller-manager"]),
                rule(&["create"], &[CORE], &["secrets", "serviceaccounts"]),
                rule(&["delete"], &[CORE], &["secrets"]),
                rule(&["get"], &[CORE], &["configmaps", "namespaces", "secrets", "serviceaccounts"]),
                rule(&["update"], &[CORE], &["secrets", "serviceaccounts"]),
                rule(&["create"], &[AUTHORIZATION], &["subjectaccessreviews"]),
                rule(&["list", "watch"], &["*"], &["*"]),
            ],
        ),
        cluster_role("system:node", node_rule_values()),
        cluster_role(
            "system:node-proxier",
            vec![
                rule(&["list", "watch"], &[CORE], &["endpoints", "services"]),
                rule(READ, &[CORE], &["nodes"]),
                events_rule(),
            ],
        ),
    ];
    for c in CONTROLLERS {
        roles.push(cluster_role(&format!("system:controller:{c}"), controller_rules(c)));
    }
    fill_aggregated(&mut roles);
    roles
}

/// Writes the aggregated rules into `admin`, `edit` and `view`.
fn fill_aggregated(roles: &mut [Value]) {
    let mut data = RbacData::new();
    for r in roles.iter() {
        data.upsert_json(r).expect("bootstrap role");
    }
    for r in roles.iter_mut() {
        if r.get("aggregationRule").is_some() {
            let name = r["metadata"]["name"].as_str().unwrap_or_default().to_string();
            let rules = data.cluster_role_rules(&name).unwrap_or(&[]);
            r["rules"] = serde_json::to_value(rules).expect("rules");
        }
    }
}

/// Every bootstrap ClusterRoleBinding.
///
/// `system:node` is bound to no one, as upstream since 1.8: nodes are
/// authorized by the Node authorizer (`--authorization-mode=Node,RBAC`).
/// rkube's controller manager runs all its loops under one identity, so each
/// `system:controller:<name>` binding names the upstream service account
/// *and* the user `system:kube-controller-manager` (kube-controller-manager
/// would instead use one service-account token per loop,
/// `--use-service-account-credentials`).
pub fn cluster_role_bindings() -> Vec<Value> {
    let mut out = vec![
        binding("cluster-admin", "cluster-admin", vec![group("system:masters")]),
        binding("system:basic-user", "system:basic-user", vec![group("system:authenticated")]),
        binding("system:discovery", "system:discovery", vec![group("system:authenticated")]),
        binding(
            "system:public-info-viewer",
            "system:public-info-viewer",
            vec![group("system:authenticated"), group("system:unauthenticated")],
        ),
        binding("system:monitoring", "system:monitoring", vec![group("system:monitoring")]),
        binding("system:kube-scheduler", "system:kube-scheduler", vec![user("system:kube-scheduler")]),
        binding(
            "system:kube-controller-manager",
            "system:kube-controller-manager",
            vec![user("system:kube-controller-manager")],
        ),
        binding("system:node", "system:node", vec![]),
        binding("system:node-proxier", "system:node-proxier", vec![user("system:kube-proxy")]),
    ];
    for c in CONTROLLERS {
        let name = format!("system:controller:{c}");
        out.push(binding(
            &name,
            &name,
            vec![service_account("kube-system", c), user("system:kube-controller-manager")],
        ));
    }
    out
}

/// ClusterRoles then ClusterRoleBindings: what to create at start-up when
/// missing.
pub fn all() -> Vec<Value> {
    let mut v = cluster_roles();
    v.extend(cluster_role_bindings());
    v
}

/// The bootstrap policy loaded into an authorizer snapshot.
pub fn rbac_data() -> RbacData {
    let mut d = RbacData::new();
    for o in all() {
        d.upsert_json(&o).expect("bootstrap object");
    }
    d
}

/// Typed view, for callers that want k8s-openapi values.
pub fn typed_cluster_roles() -> Vec<ClusterRole> {
    cluster_roles().into_iter().map(|v| serde_json::from_value(v).expect("bootstrap role")).collect()
}

#[cfg(test)]
mod tests {
    use super::super::{rbac, Attributes, UserInfo};
    use super::*;

    fn check(user: UserInfo, attrs: Attributes, allowed: bool) {
        let d = rbac::authorize(&user, &attrs, &rbac_data());
        assert_eq!(d.is_allowed(), allowed, "{} {:?}: {:?}", user.name, attrs, d);
    }

    fn authed(name: &str, groups: &[&str]) -> UserInfo {
        UserInfo::new(name, groups).with_authenticated_group()
    }

    fn res(verb: &str, group: &str, resource: &str, ns: &str, name: &str) -> Attributes {
        Attributes::resource(verb, group, resource, ns, name)
    }

    #[test]
    fn anonymous_reads_public_info_only() {
        let anon = UserInfo::anonymous();
        for path in ["/healthz", "/livez", "/readyz", "/version"] {
            check(anon.clone(), Attributes::non_resource("get", path), true);
        }
        check(anon.clone(), Attributes::non_resource("get", "/api"), false);
        check(anon.clone(), Attributes::non_resource("get", "/metrics"), false);
        check(anon, res("list", "", "namespaces", "", ""), false);
    }

    #[test]
    fn authenticated_users_discover_and_ask() {
        let bob = authed("bob", &[]);
        check(bob.clone(), Attributes::non_resource("get", "/apis/apps/v1"), true);
        check(bob.clone(), Attributes::non_resource("get", "/openapi/v3"), true);
        check(bob.clone(), res("create", AUTHORIZATION, "selfsubjectaccessreviews", "", ""), true);
        check(bob.clone(), res("list", "", "pods", "default", ""), false);
        check(bob, res("create", AUTHORIZATION, "subjectaccessreviews", "", ""), false);
    }

    #[test]
    fn masters_are_cluster_admin() {
        let admin = authed("kubernetes-admin", &["system:masters"]);
        check(admin.clone(), res("delete", "", "nodes", "", "n1"), true);
        check(admin.clone(), res("create", RBAC, "clusterrolebindings", "", ""), true);
        check(admin, Attributes::non_resource("get", "/metrics"), true);
    }

    #[test]
    fn components_have_what_they_use() {
        let sched = authed("system:kube-scheduler", &[]);
        check(sched.clone(), res("create", "", "pods", "default", "p").with_subresource("binding"), true);
        check(sched.clone(), res("watch", "", "nodes", "", ""), true);
        check(sched.clone(), res("update", COORDINATION, "leases", "kube-system", "kube-scheduler"), true);
        check(sched.clone(), res("update", COORDINATION, "leases", "kube-system", "other"), false);
        check(sched.clone(), res("create", "", "pods", "default", ""), false);

        let cm = authed("system:kube-controller-manager", &[]);
        check(cm.clone(), res("create", "", "pods", "default", ""), true); // replicaset-controller
        check(cm.clone(), res("update", APPS, "deployments", "default", "d").with_subresource("status"), true);
        check(cm.clone(), res("update", "", "endpoints", "default", "svc"), true);
        check(cm.clone(), res("update", "", "namespaces", "ns1", "ns1").with_subresource("finalize"), true);
        check(cm.clone(), res("list", "anything.example.com", "widgets", "", ""), true);
        check(cm, res("create", RBAC, "clusterroles", "", ""), false);
        check(
            UserInfo::service_account("kube-system", "replicaset-controller"),
            res("create", "", "pods", "default", ""),
            true,
        );
        let quota = UserInfo::service_account("kube-system", "resourcequota-controller");
        check(quota.clone(), res("update", "", "resourcequotas", "team", "q").with_subresource("status"), true);
        check(quota.clone(), res("list", APPS, "deployments", "team", ""), true);
        check(quota.clone(), res("get", "", "secrets", "team", "s"), false);
        check(quota, res("update", "", "resourcequotas", "team", "q"), false);

        let proxy = authed("system:kube-proxy", &[]);
        check(proxy.clone(), res("watch", "", "endpoints", "", ""), true);
        check(proxy.clone(), res("get", "", "nodes", "", "n1"), true);
        check(proxy, res("update", "", "services", "default", "s"), false);

        // system:node is bound to no one: RBAC alone gives a node nothing
        // beyond what every authenticated user has.
        let node = authed("system:node:n1", &["system:nodes"]);
        check(node, res("get", "", "nodes", "", "n1"), false);
    }

    #[test]
    fn admin_edit_view_in_a_namespace() {
        let mut d = rbac_data();
        for (who, role) in [("ann", "admin"), ("ed", "edit"), ("vic", "view")] {
            d.upsert_json(&json!({"kind": "RoleBinding",
                "metadata": {"namespace": "dev", "name": who},
                "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": role},
                "subjects": [{"kind": "User", "name": who}]}))
                .unwrap();
        }
        let can = |who: &str, a: Attributes| rbac::authorize(&authed(who, &[]), &a, &d).is_allowed();
        let create_rb = res("create", RBAC, "rolebindings", "dev", "");
        let read_secret = res("get", "", "secrets", "dev", "s");
        let scale = res("patch", APPS, "deployments", "dev", "web").with_subresource("scale");
        let logs = res("get", "", "pods", "dev", "web").with_subresource("log");
        assert!(can("ann", create_rb.clone()) && can("ann", read_secret.clone()) && can("ann", scale.clone()));
        assert!(!can("ed", create_rb.clone()) && can("ed", read_secret.clone()) && can("ed", scale.clone()));
        assert!(!can("vic", create_rb) && !can("vic", read_secret) && !can("vic", scale) && can("vic", logs.clone()));
        // Streams into a pod (POST, and a WebSocket's GET): edit and admin, not view.
        for sub in ["exec", "attach", "portforward"] {
            for verb in ["create", "get"] {
                let a = res(verb, "", "pods", "dev", "web").with_subresource(sub);
                assert!(can("ann", a.clone()) && can("ed", a.clone()) && !can("vic", a), "{verb} pods/{sub}");
            }
        }
        let evict = res("create", "", "pods", "dev", "web").with_subresource("eviction");
        assert!(can("ann", evict.clone()) && can("ed", evict.clone()) && !can("vic", evict));
        // Only in their namespace.
        assert!(!can("vic", res("get", "", "pods", "prod", "web")));
    }

    #[test]
    fn objects_are_valid_rbac_and_labelled() {
        for o in all() {
            assert_eq!(o["metadata"]["labels"]["kubernetes.io/bootstrapping"], "rbac-defaults");
            assert_eq!(o["apiVersion"], "rbac.authorization.k8s.io/v1");
        }
        let roles = typed_cluster_roles();
        let view = roles.iter().find(|r| r.metadata.name.as_deref() == Some("view")).unwrap();
        assert!(!view.rules.as_deref().unwrap().is_empty(), "aggregated rules filled in");
        // Every binding points at a role that exists.
        let names: Vec<_> = roles.iter().map(|r| r.metadata.name.clone().unwrap()).collect();
        for b in cluster_role_bindings() {
            assert!(names.contains(&b["roleRef"]["name"].as_str().unwrap().to_string()), "{}", b["roleRef"]);
        }
    }
}
