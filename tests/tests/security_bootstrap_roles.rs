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
