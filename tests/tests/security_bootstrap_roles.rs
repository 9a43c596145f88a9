//! Each bootstrap role is enough for its component and no more.
//!
//! For the identities the components run as (their `rkube certs` client
//! certificates): `system:kube-scheduler`, `system:kube-controller-manager`,
//! `system:node:<n>` in `system:nodes`, `system:kube-proxy`. The "may" rows
//! are what each component's code really does through the API (its
//! informers' list+watch, and every create/update/patch/delete it sends —
//! the client calls in scheduler/, controller/, agent/, proxy/ and the
//! shared leader election and event recorder in machinery/); the "may not"
//! rows are outside its job. Every row is asked of the running apiserver
//! with a SubjectAccessReview (Node,RBAC authorizers, bootstrap policy),
//! and a sample is then done for real with the component's certificate.

mod security_common;

use std::collections::BTreeSet;

use security_common::Secure;
use serde_json::{json, Value};

const NODES: &[&str] = &["system:nodes", "system:authenticated"];
const OTHERS: &[&str] = &["system:authenticated"];

/// One row: `verb resource ns/name`, resource written as kubectl writes it
/// (`resource[.group][/subresource]`), `ns/name` as `ns/name`, `ns/`, `/name`
/// or `/` (cluster scope, no name).
type Row = (&'static str, &'static str, &'static str);

fn attributes(verb: &str, resource: &str, where_: &str) -> Value {
    let (res, sub) = resource.split_once('/').unwrap_or((resource, ""));
    let (res, group) = res.split_once('.').unwrap_or((res, ""));
    let (ns, name) = where_.split_once('/').expect("ns/name");
    json!({"verb": verb, "group": group, "resource": res, "subresource": sub, "namespace": ns, "name": name})
}

/// Asks the apiserver, as the admin, whether `user` in `groups` may.
fn review(s: &Secure, user: &str, groups: &[&str], verb: &str, resource: &str, where_: &str) -> bool {
    let body = json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {"user": user, "groups": groups, "resourceAttributes": attributes(verb, resource, where_)}});
    let (out, code) = s.curl_as(
        "admin",
        &["-X", "POST", "-H", "Content-Type: application/json", "-d", &body.to_string(), &format!("{}/apis/authorization.k8s.io/v1/subjectaccessreviews", s.url)],
    );
    assert_eq!(code, "201", "{out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    v["status"]["allowed"].as_bool().unwrap_or_else(|| panic!("no status.allowed: {out}"))
}

/// Checks every row; reports all disagreements at once.
fn check(s: &Secure, user: &str, groups: &[&str], may: &[Row], may_not: &[Row], wrong: &mut Vec<String>) {
    for (rows, want) in [(may, true), (may_not, false)] {
        for (verb, resource, where_) in rows {
            if review(s, user, groups, verb, resource, where_) != want {
                wrong.push(format!("{user} {verb} {resource} {where_}: expected {}", if want { "allowed" } else { "denied" }));
            }
        }
    }
}

#[test]
fn each_bootstrap_role_is_enough_for_its_component_and_no_more() {
    let s = Secure::start_with(&["n1", "n2"], &[]);
    // Pods bound to each node: the Node authorizer lets a node write only
    // its own pods' status.
    for (pod, node) in [("mine", Some("n1")), ("theirs", Some("n2")), ("pending", None)] {
        let p = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": pod},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox:1"}]}});
        let (out, code) = s.curl_as("admin", &["-X", "POST", "-H", "Content-Type: application/json", "-d", &p.to_string(), &format!("{}/api/v1/namespaces/default/pods", s.url)]);
        assert_eq!(code, "201", "{out}");
    }
    let mut wrong = Vec::new();

    // scheduler/src/scheduler.rs: informers on pods, nodes, services; the
    // binding; the PodScheduled condition (pods/status); FailedScheduling
    // events; leader election on kube-system/kube-scheduler.
    check(
        &s,
        "system:kube-scheduler",
        OTHERS,
        &[
            ("list", "pods", "/"), ("watch", "pods", "/"), ("get", "pods", "default/p"),
            ("list", "nodes", "/"), ("watch", "nodes", "/"),
            ("list", "services", "/"), ("watch", "services", "/"),
            ("create", "pods/binding", "default/p"),
            ("patch", "pods/status", "default/p"), ("update", "pods/status", "default/p"),
            ("create", "events", "default/"), ("patch", "events", "default/e"), ("create", "events.events.k8s.io", "default/"),
            ("create", "leases.coordination.k8s.io", "kube-system/"),
            ("get", "leases.coordination.k8s.io", "kube-system/kube-scheduler"),
            ("update", "leases.coordination.k8s.io", "kube-system/kube-scheduler"),
        ],
        &[
            ("delete", "namespaces", "default/default"), ("create", "namespaces", "/"),
            ("update", "leases.coordination.k8s.io", "kube-system/kube-controller-manager"),
            ("create", "pods", "default/"), ("update", "pods", "default/p"),
            ("update", "nodes", "/n1"), ("patch", "nodes/status", "/n1"),
            ("list", "secrets", "/"), ("get", "secrets", "default/s"),
            ("create", "deployments.apps", "default/"), ("delete", "services", "default/s"),
            ("create", "clusterrolebindings.rbac.authorization.k8s.io", "/"),
        ],
        &mut wrong,
    );

    // controller/src: replicaset (pods create/delete, ownerRef patches,
    // status), deployment (replicasets, revision patch, status), endpoints,
    // garbagecollector (deletes, ownerRef patches), namespace
    // (deletecollection, finalize), nodelifecycle (node status, taints,
    // pod Ready=False, evictions), nodeipam (podCIDR patch), podgc,
    // serviceaccount, resourcequota (status); every informer's list+watch;
    // events; its Lease.
    check(
        &s,
        "system:kube-controller-manager",
        OTHERS,
        &[
            ("list", "pods", "/"), ("watch", "pods", "/"),
            ("create", "pods", "default/"), ("delete", "pods", "default/p"), ("patch", "pods", "default/p"),
            ("patch", "pods/status", "default/p"),
            ("list", "replicasets.apps", "/"), ("watch", "replicasets.apps", "/"),
            ("create", "replicasets.apps", "default/"), ("update", "replicasets.apps", "default/rs"),
            ("patch", "replicasets.apps", "default/rs"), ("delete", "replicasets.apps", "default/rs"),
            ("update", "replicasets.apps/status", "default/rs"),
            ("watch", "deployments.apps", "/"), ("patch", "deployments.apps", "default/d"),
            ("update", "deployments.apps/status", "default/d"),
            ("watch", "services", "/"), ("watch", "endpoints", "/"),
            ("create", "endpoints", "default/"), ("update", "endpoints", "default/s"), ("delete", "endpoints", "default/s"),
            ("watch", "serviceaccounts", "/"), ("create", "serviceaccounts", "team/"),
            ("watch", "namespaces", "/"), ("update", "namespaces/finalize", "team/team"),
            ("deletecollection", "configmaps", "team/"), ("delete", "namespaces", "team/team"),
            ("watch", "nodes", "/"), ("patch", "nodes", "/n1"), ("update", "nodes/status", "/n1"),
            ("watch", "leases.coordination.k8s.io", "kube-node-lease/"),
            ("create", "events", "default/"), ("patch", "events", "default/e"),
            ("watch", "resourcequotas", "/"), ("update", "resourcequotas/status", "team/q"),
            ("create", "leases.coordination.k8s.io", "kube-system/"),
            ("get", "leases.coordination.k8s.io", "kube-system/kube-controller-manager"),
            ("update", "leases.coordination.k8s.io", "kube-system/kube-controller-manager"),
        ],
        &[
            ("create", "namespaces", "/"), ("create", "services", "default/"), ("create", "deployments.apps", "default/"),
            ("create", "nodes", "/"), ("create", "clusterrolebindings.rbac.authorization.k8s.io", "/"),
            ("create", "rolebindings.rbac.authorization.k8s.io", "default/"), ("create", "configmaps", "default/"),
        ],
        &mut wrong,
    );

    // agent/src: node registration and re-registration (create, patch),
    // status (patch nodes/status), the heartbeat Lease in kube-node-lease,
    // its pods (list+watch with a nodeName selector, status patches, the
    // final delete of a graceful deletion), events, services for pod env.
    check(
        &s,
        "system:node:n1",
        NODES,
        &[
            ("create", "nodes", "/n1"), ("get", "nodes", "/n1"), ("list", "nodes", "/"), ("watch", "nodes", "/"),
            ("patch", "nodes", "/n1"), ("patch", "nodes/status", "/n1"), ("update", "nodes/status", "/n1"),
            ("create", "leases.coordination.k8s.io", "kube-node-lease/n1"), ("get", "leases.coordination.k8s.io", "kube-node-lease/n1"),
            ("patch", "leases.coordination.k8s.io", "kube-node-lease/n1"), ("update", "leases.coordination.k8s.io", "kube-node-lease/n1"),
            ("list", "pods", "/"), ("watch", "pods", "/"),
            ("patch", "pods/status", "default/mine"), ("update", "pods/status", "default/mine"), ("delete", "pods", "default/mine"),
            ("create", "events", "default/"), ("patch", "events", "default/e"),
            ("list", "services", "/"), ("watch", "services", "/"),
        ],
        &[
            ("create", "nodes", "/n2"), ("update", "nodes", "/n2"), ("patch", "nodes/status", "/n2"), ("delete", "nodes", "/n1"),
            ("patch", "leases.coordination.k8s.io", "kube-node-lease/n2"), ("update", "leases.coordination.k8s.io", "kube-system/n1"),
            ("patch", "pods/status", "default/theirs"), ("delete", "pods", "default/theirs"),
            ("create", "pods", "default/"), ("create", "pods/binding", "default/mine"), ("update", "pods", "default/mine"),
            ("list", "secrets", "/"), ("get", "secrets", "default/s"),
            ("create", "deployments.apps", "default/"), ("delete", "namespaces", "default/default"),
        ],
        &mut wrong,
    );

    // proxy/src/run.rs: informers on services and endpoints, its Node.
    check(
        &s,
        "system:kube-proxy",
        OTHERS,
        &[
            ("list", "services", "/"), ("watch", "services", "/"), ("list", "endpoints", "/"), ("watch", "endpoints", "/"),
            ("get", "nodes", "/n1"), ("create", "events", "default/"),
        ],
        &[
            ("create", "pods", "default/"), ("list", "pods", "/"), ("list", "secrets", "/"),
            ("update", "services", "default/s"), ("update", "endpoints", "default/s"), ("delete", "endpoints", "default/s"),
            ("delete", "namespaces", "default/default"), ("update", "nodes/status", "/n1"),
        ],
        &mut wrong,
    );
    assert!(wrong.is_empty(), "the bootstrap policy disagrees with the components' needs:\n{}", wrong.join("\n"));

    // The same answers for real, with each component's certificate.
    // Deletions ask for a dry run: authorization comes first either way.
    let json_body = |b: Value| b.to_string();
    let post = |who: &str, path: &str, body: Value| {
        s.curl_as(who, &["-X", "POST", "-H", "Content-Type: application/json", "-d", &json_body(body), &format!("{}{path}", s.url)]).1
    };
    let patch = |who: &str, path: &str, body: Value| {
        s.curl_as(who, &["-X", "PATCH", "-H", "Content-Type: application/merge-patch+json", "-d", &json_body(body), &format!("{}{path}", s.url)]).1
    };
    let get = |who: &str, path: &str| s.curl_as(who, &[&format!("{}{path}", s.url)]).1;
    let delete = |who: &str, path: &str| s.curl_as(who, &["-X", "DELETE", &format!("{}{path}?dryRun=All", s.url)]).1;
    let node = |n: &str| json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": n}});
    let lease = |n: &str| json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": n, "namespace": "kube-node-lease"}, "spec": {"holderIdentity": n}});
    let real = [
        ("kube-scheduler", get("kube-scheduler", "/api/v1/pods"), "200"),
        ("kube-scheduler", post("kube-scheduler", "/api/v1/namespaces/default/pods/pending/binding",
            json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "pending"}, "target": {"kind": "Node", "name": "n1"}})), "201"),
        ("kube-scheduler", delete("kube-scheduler", "/api/v1/namespaces/default"), "403"),
        ("kube-scheduler", get("kube-scheduler", "/api/v1/secrets"), "403"),
        ("kube-controller-manager", post("kube-controller-manager", "/api/v1/namespaces/default/serviceaccounts",
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "robot"}})), "201"),
        ("kube-controller-manager", post("kube-controller-manager", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "x"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"}, "subjects": []})), "403"),
        ("node-n1", post("node-n1", "/api/v1/nodes", node("n1")), "201"),
        ("node-n1", patch("node-n1", "/api/v1/nodes/n1/status", json!({"status": {"phase": "Running"}})), "200"),
        ("node-n1", post("node-n1", "/api/v1/nodes", node("n2")), "403"),
        ("node-n1", post("node-n1", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", lease("n1")), "201"),
        ("node-n1", post("node-n1", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", lease("n2")), "403"),
        ("node-n1", patch("node-n1", "/api/v1/namespaces/default/pods/mine/status", json!({"status": {"phase": "Running"}})), "200"),
        ("node-n1", patch("node-n1", "/api/v1/namespaces/default/pods/theirs/status", json!({"status": {"phase": "Running"}})), "403"),
        ("node-n1", get("node-n1", "/api/v1/secrets"), "403"),
        ("kube-proxy", get("kube-proxy", "/api/v1/endpoints"), "200"),
        ("kube-proxy", get("kube-proxy", "/api/v1/services"), "200"),
        ("kube-proxy", get("kube-proxy", "/api/v1/secrets"), "403"),
        ("kube-proxy", post("kube-proxy", "/api/v1/namespaces/default/pods",
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}, "spec": {"containers": [{"name": "c", "image": "busybox:1"}]}})), "403"),
    ];
    let mismatched: Vec<String> =
        real.iter().enumerate().filter(|(_, (_, got, want))| got != want).map(|(i, (who, got, want))| format!("#{i} as {who}: HTTP {got}, expected {want}")).collect();
    assert!(mismatched.is_empty(), "real requests:\n{}", mismatched.join("\n"));
}

/// One RBAC rule: verbs, API groups, resources, resource names, or
/// non-resource URLs.
#[derive(Debug, Default, Clone)]
struct Rule {
    verbs: Vec<String>,
    groups: Vec<String>,
    resources: Vec<String>,
    names: Vec<String>,
    urls: Vec<String>,
}

impl Rule {
    /// `"verbs | groups | resources [| names]"` or `"url verbs | urls"`,
    /// each a comma-separated list (an empty group is the core group).
    fn parse(s: &str) -> Rule {
        let list = |p: &str| p.trim().split(',').map(|x| x.trim().to_string()).collect::<Vec<_>>();
        let parts: Vec<&str> = s.split('|').collect();
        if let Some(verbs) = parts[0].trim().strip_prefix("url ") {
            return Rule { verbs: list(verbs), urls: list(parts[1]), ..Default::default() };
        }
        Rule { verbs: list(parts[0]), groups: list(parts[1]), resources: list(parts[2]), names: parts.get(3).map(|n| list(n)).unwrap_or_default(), urls: vec![] }
    }

    fn from_json(v: &Value) -> Rule {
        let list = |k: &str| v[k].as_array().map(|a| a.iter().map(|x| x.as_str().unwrap().to_string()).collect()).unwrap_or_default();
        Rule { verbs: list("verbs"), groups: list("apiGroups"), resources: list("resources"), names: list("resourceNames"), urls: list("nonResourceURLs") }
    }

    /// RBAC's `RuleAllows` for a resource request (`name` empty: none).
    fn allows(&self, verb: &str, group: &str, resource: &str, name: &str) -> bool {
        let has = |v: &[String], x: &str| v.iter().any(|e| e == x || e == "*");
        let sub_wildcard = resource.split_once('/').is_some_and(|(_, sub)| self.resources.iter().any(|r| *r == format!("*/{sub}")));
        !self.resources.is_empty()
            && has(&self.verbs, verb)
            && has(&self.groups, group)
            && (has(&self.resources, resource) || sub_wildcard)
            && (self.names.is_empty() || self.names.iter().any(|n| n == name))
    }

    fn allows_url(&self, verb: &str, url: &str) -> bool {
        self.verbs.iter().any(|v| v == verb || v == "*")
            && self.urls.iter().any(|u| u == url || u == "*" || u.strip_suffix('*').is_some_and(|p| url.starts_with(p)))
    }
}

const EVENTS_RULE: &str = "create,patch,update | ,events.k8s.io | events";

/// Upstream's bootstrap policy for the roles rkube serves, rule by rule as
/// plugin/pkg/auth/authorizer/rbac/bootstrappolicy/testdata/cluster-roles.yaml
/// and controller-roles.yaml state them (in this file's own notation, see
/// [`Rule::parse`]). Only the resources rkube serves are compared, so the
/// rules about the others can stay as upstream has them.
fn upstream_roles() -> Vec<(&'static str, Vec<&'static str>)> {
    let aggregate_to_admin = vec![
        "create | authorization.k8s.io | localsubjectaccessreviews",
        "create,delete,deletecollection,get,list,patch,update,watch | rbac.authorization.k8s.io | rolebindings,roles",
    ];
    let aggregate_to_edit = vec![
        "get,list,watch | | pods/attach,pods/exec,pods/portforward,pods/proxy,secrets,services/proxy",
        "impersonate | | serviceaccounts",
        "create,delete,deletecollection,patch,update | | pods,pods/attach,pods/exec,pods/portforward,pods/proxy",
        "create | | pods/eviction",
        "create,delete,deletecollection,patch,update | | configmaps,events,persistentvolumeclaims,replicationcontrollers,replicationcontrollers/scale,secrets,serviceaccounts,services,services/proxy",
        "create | | serviceaccounts/token",
        "create,delete,deletecollection,patch,update | apps | daemonsets,deployments,deployments/rollback,deployments/scale,replicasets,replicasets/scale,statefulsets,statefulsets/scale",
        "create,delete,deletecollection,patch,update | autoscaling | horizontalpodautoscalers",
        "create,delete,deletecollection,patch,update | batch | cronjobs,jobs",
        "create,delete,deletecollection,patch,update | extensions | daemonsets,deployments,deployments/rollback,deployments/scale,ingresses,networkpolicies,replicasets,replicasets/scale,replicationcontrollers/scale",
        "create,delete,deletecollection,patch,update | policy | poddisruptionbudgets",
        "create,delete,deletecollection,patch,update | networking.k8s.io | ingresses,networkpolicies",
        "create,delete,deletecollection,get,list,patch,update,watch | coordination.k8s.io | leases",
    ];
    let aggregate_to_view = vec![
        "get,list,watch | | configmaps,endpoints,persistentvolumeclaims,persistentvolumeclaims/status,pods,replicationcontrollers,replicationcontrollers/scale,serviceaccounts,services,services/status",
        "get,list,watch | | bindings,events,limitranges,namespaces/status,pods/log,pods/status,replicationcontrollers/status,resourcequotas,resourcequotas/status",
        "get,list,watch | | namespaces",
        "get,list,watch | discovery.k8s.io | endpointslices",
        "get,list,watch | apps | controllerrevisions,daemonsets,daemonsets/status,deployments,deployments/scale,deployments/status,replicasets,replicasets/scale,replicasets/status,statefulsets,statefulsets/scale,statefulsets/status",
        "get,list,watch | autoscaling | horizontalpodautoscalers,horizontalpodautoscalers/status",
        "get,list,watch | batch | cronjobs,cronjobs/status,jobs,jobs/status",
        "get,list,watch | extensions | daemonsets,daemonsets/status,deployments,deployments/scale,deployments/status,ingresses,ingresses/status,networkpolicies,replicasets,replicasets/scale,replicasets/status,replicationcontrollers/scale",
        "get,list,watch | policy | poddisruptionbudgets,poddisruptionbudgets/status",
        "get,list,watch | networking.k8s.io | ingresses,ingresses/status,networkpolicies",
    ];
    // Aggregation: view ⊂ edit ⊂ admin.
    let view = aggregate_to_view.clone();
    let edit: Vec<&str> = aggregate_to_edit.iter().chain(&view).copied().collect();
    let admin: Vec<&str> = aggregate_to_admin.iter().chain(&edit).copied().collect();
    vec![
        ("cluster-admin", vec!["* | * | *", "url * | *"]),
        ("system:discovery", vec!["url get | /api,/api/*,/apis,/apis/*,/healthz,/livez,/openapi,/openapi/*,/readyz,/version,/version/"]),
        ("system:public-info-viewer", vec!["url get | /healthz,/livez,/readyz,/version,/version/"]),
        (
            "system:basic-user",
            vec!["create | authorization.k8s.io | selfsubjectaccessreviews,selfsubjectrulesreviews", "create | authentication.k8s.io | selfsubjectreviews"],
        ),
        ("system:monitoring", vec!["url get | /healthz,/healthz/*,/livez,/livez/*,/metrics,/metrics/slis,/readyz,/readyz/*"]),
        ("admin", admin),
        ("edit", edit),
        ("view", view),
        ("system:aggregate-to-admin", aggregate_to_admin),
        ("system:aggregate-to-edit", aggregate_to_edit),
        ("system:aggregate-to-view", aggregate_to_view),
        (
            "system:kube-scheduler",
            vec![
                EVENTS_RULE,
                "create | coordination.k8s.io | leases",
                "get,update | coordination.k8s.io | leases | kube-scheduler",
                "get,list,watch | | nodes",
                "delete,get,list,watch | | pods",
                "create | | bindings,pods/binding",
                "patch,update | | pods/status",
                "get,list,watch | | replicationcontrollers,services",
                "get,list,watch | apps,extensions | replicasets",
                "get,list,watch | apps | statefulsets",
                "get,list,watch | policy | poddisruptionbudgets",
                "get,list,watch | | persistentvolumeclaims,persistentvolumes",
                "create | authentication.k8s.io | tokenreviews",
                "create | authorization.k8s.io | subjectaccessreviews",
                "get,list,watch | storage.k8s.io | csinodes",
                "get,list,watch | | namespaces",
                "get,list,watch | storage.k8s.io | csidrivers",
                "get,list,watch | storage.k8s.io | csistoragecapacities",
            ],
        ),
        (
            "system:kube-controller-manager",
            vec![
                EVENTS_RULE,
                "create | coordination.k8s.io | leases",
                "get,update | coordination.k8s.io | leases | kube-controller-manager",
                "create | | secrets,serviceaccounts",
                "delete | | secrets",
                "get | | configmaps,namespaces,secrets,serviceaccounts",
                "update | | secrets,serviceaccounts",
                "create | authentication.k8s.io | tokenreviews",
                "create | authorization.k8s.io | subjectaccessreviews",
                "list,watch | * | *",
                "create | | serviceaccounts/token",
            ],
        ),
        (
            "system:node",
            vec![
                "create | authentication.k8s.io | tokenreviews",
                "create | authorization.k8s.io | localsubjectaccessreviews,subjectaccessreviews",
                "get,list,watch | | services",
                "create,get,list,watch | | nodes",
                "patch,update | | nodes/status",
                "patch,update | | nodes",
                "create,patch,update | | events",
                "get,list,watch | | pods",
                "create,delete | | pods",
                "patch,update | | pods/status",
                "create | | pods/eviction",
                "get,list,watch | | configmaps,secrets",
                "get | | persistentvolumeclaims,persistentvolumes",
                "get | | endpoints",
                "create,get,list,watch | certificates.k8s.io | certificatesigningrequests",
                "create,delete,get,patch,update | coordination.k8s.io | leases",
                "get | storage.k8s.io | volumeattachments",
                "create | | serviceaccounts/token",
                "get,patch,update | | persistentvolumeclaims/status",
                "get,list,watch | storage.k8s.io | csidrivers",
                "create,delete,get,patch,update | storage.k8s.io | csinodes",
                "get,list,watch | node.k8s.io | runtimeclasses",
            ],
        ),
        (
            "system:node-proxier",
            vec!["list,watch | | endpoints,services", "get,list,watch | | nodes", EVENTS_RULE, "list,watch | discovery.k8s.io | endpointslices"],
        ),
        (
            "system:controller:deployment-controller",
            vec![
                "get,list,update,watch | apps,extensions | deployments",
                "update | apps,extensions | deployments/status",
                "update | apps,extensions | deployments/finalizers",
                "create,delete,get,list,patch,update,watch | apps,extensions | replicasets",
                "get,list,update,watch | | pods",
                EVENTS_RULE,
            ],
        ),
        (
            "system:controller:replicaset-controller",
            vec![
                "get,list,update,watch | apps,extensions | replicasets",
                "update | apps,extensions | replicasets/status",
                "update | apps,extensions | replicasets/finalizers",
                "create,delete,list,patch,watch | | pods",
                EVENTS_RULE,
            ],
        ),
        (
            "system:controller:endpoint-controller",
            vec![
                "get,list,watch | | pods,services",
                "create,delete,get,list,update,watch | | endpoints",
                "create | | endpoints/restricted",
                EVENTS_RULE,
            ],
        ),
        ("system:controller:generic-garbage-collector", vec!["delete,get,list,patch,update,watch | * | *", EVENTS_RULE]),
        (
            "system:controller:namespace-controller",
            vec![
                "delete,get,list,watch | | namespaces",
                "update | | namespaces/finalize,namespaces/status",
                "delete,deletecollection,get,list,watch | * | *",
            ],
        ),
        (
            "system:controller:node-controller",
            vec![
                "delete,get,list,patch,update,watch | | nodes",
                "patch,update | | nodes/status",
                "patch,update | | pods/status",
                "delete,get,list,watch | | pods",
                EVENTS_RULE,
            ],
        ),
        (
            "system:controller:pod-garbage-collector",
            vec!["delete,list,watch | | pods", "get,list,watch | | nodes", "patch | | pods/status"],
        ),
        ("system:controller:resourcequota-controller", vec!["list,watch | * | *", "update | | resourcequotas/status", EVENTS_RULE]),
        ("system:controller:service-account-controller", vec!["create | | serviceaccounts", EVENTS_RULE]),
    ]
}

/// Where rkube's bootstrap roles grant other than upstream's on a resource
/// rkube serves: (role, verb, `resource[.group]`, why). Each must still be
/// a difference (the test says so when one is gone).
const DIFFERENCES: &[(&str, &str, &str, &str)] = &[
    // On purpose: each component's role is what its code does (the test
    // above), and rkube-agent never evicts through the API — it has no
    // node-pressure eviction, the kubelet code that does.
    ("system:node", "create", "pods/eviction", "rkube-agent does not evict through the API"),
];


/// Every (group, resource) the apiserver serves, subresources included,
/// from its discovery documents.
fn served_resources(s: &Secure) -> Vec<(String, String)> {
    let get = |path: &str| -> Value {
        let (out, code) = s.curl_as("admin", &[&format!("{}{path}", s.url)]);
        assert_eq!(code, "200", "GET {path}: {out}");
        serde_json::from_str(&out).unwrap()
    };
    let mut versions = vec![(String::new(), "/api/v1".to_string())];
    for g in get("/apis")["groups"].as_array().unwrap() {
        let gv = g["preferredVersion"]["groupVersion"].as_str().unwrap();
        versions.push((g["name"].as_str().unwrap().to_string(), format!("/apis/{gv}")));
    }
    let mut out = Vec::new();
    for (group, path) in versions {
        for r in get(&path)["resources"].as_array().unwrap() {
            out.push((group.clone(), r["name"].as_str().unwrap().to_string()));
        }
    }
    out
}

/// rkube's bootstrap roles grant what upstream's grant, on every resource
/// and non-resource URL rkube serves, verb by verb (and resource name by
/// name where a rule names some) — apart from the differences listed in
/// [`DIFFERENCES`], each with its reason, and each of which must still be
/// there (a fixed one must leave the list).
#[test]
fn bootstrap_roles_grant_what_upstreams_grant_on_what_rkube_serves() {
    let s = Secure::start();
    let (out, code) = s.curl_as("admin", &[&format!("{}/apis/rbac.authorization.k8s.io/v1/clusterroles", s.url)]);
    assert_eq!(code, "200", "{out}");
    let served: Value = serde_json::from_str(&out).unwrap();
    let ours: std::collections::BTreeMap<String, Vec<Rule>> = served["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["metadata"]["name"].as_str().unwrap().to_string(), r["rules"].as_array().map(|a| a.iter().map(Rule::from_json).collect()).unwrap_or_default()))
        .collect();
    let upstream: Vec<(&str, Vec<Rule>)> = upstream_roles().into_iter().map(|(n, rules)| (n, rules.into_iter().map(Rule::parse).collect())).collect();
    let upstream_names: BTreeSet<&str> = upstream.iter().map(|(n, _)| *n).collect();
    let ours_names: BTreeSet<&str> = ours.keys().map(String::as_str).collect();
    assert_eq!(ours_names, upstream_names, "the bootstrap ClusterRoles rkube serves");

    let resources = served_resources(&s);
    assert!(resources.iter().any(|(g, r)| g.is_empty() && r == "pods/log"), "{resources:?}");
    const VERBS: &[&str] = &["get", "list", "watch", "create", "update", "patch", "delete", "deletecollection", "impersonate", "bind", "escalate", "proxy"];
    let mut differences = BTreeSet::new();
    for (role, theirs) in &upstream {
        let mine = &ours[*role];
        // Requests without a name, and, where a rule names objects, for
        // each of those names and for another one.
        let mut names: BTreeSet<&str> = theirs.iter().chain(mine.iter()).flat_map(|r| r.names.iter().map(String::as_str)).collect();
        if !names.is_empty() {
            names.insert("some-other-name");
        }
        names.insert("");
        for (group, resource) in &resources {
            for verb in VERBS {
                for name in &names {
                    let (t, m) = (theirs.iter().any(|r| r.allows(verb, group, resource, name)), mine.iter().any(|r| r.allows(verb, group, resource, name)));
                    if t != m {
                        let res = if group.is_empty() { resource.clone() } else { format!("{resource}.{group}") };
                        let res = if name.is_empty() { res } else { format!("{res} {name}") };
                        differences.insert((role.to_string(), verb.to_string(), res, if t { "upstream only" } else { "rkube only" }));
                    }
                }
            }
        }
        let urls: BTreeSet<String> = theirs.iter().chain(mine.iter()).flat_map(|r| r.urls.iter().map(|u| u.trim_end_matches('*').to_string() + if u.ends_with('*') { "x" } else { "" })).collect();
        for url in urls {
            for verb in ["get", "post", "put", "delete"] {
                let (t, m) = (theirs.iter().any(|r| r.allows_url(verb, &url)), mine.iter().any(|r| r.allows_url(verb, &url)));
                if t != m {
                    differences.insert((role.to_string(), verb.to_string(), url.clone(), if t { "upstream only" } else { "rkube only" }));
                }
            }
        }
    }
    let explained = |(role, verb, res, _): &(String, String, String, &str)| {
        DIFFERENCES.iter().any(|(r, v, x, _)| r == role && v == verb && x == res)
    };
    let unexplained: Vec<String> = differences.iter().filter(|d| !explained(d)).map(|(r, v, x, who)| format!("{r}: {v} {x} ({who})")).collect();
    assert!(unexplained.is_empty(), "bootstrap roles differ from upstream's:\n{}", unexplained.join("\n"));
    let stale: Vec<String> = DIFFERENCES
        .iter()
        .filter(|(r, v, x, _)| !differences.iter().any(|(role, verb, res, _)| r == role && v == verb && x == res))
        .map(|(r, v, x, why)| format!("{r}: {v} {x} ({why})"))
        .collect();
    assert!(stale.is_empty(), "listed as differences, but rkube now grants as upstream does:\n{}", stale.join("\n"));
}
