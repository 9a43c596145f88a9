//! RBAC privilege-escalation prevention on rkube's TLS port, with users
//! holding real client certificates: a user who may write bindings or
//! roles still cannot grant what they do not hold — unless they have the
//! `bind` / `escalate` verb — and a binding's roleRef never changes.

mod security_common;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use security_common::Secure;

const RBAC: &str = "/apis/rbac.authorization.k8s.io/v1";

/// A request as the user with certificate `<stem>.crt`; (status code, body).
fn call(s: &Secure, stem: &str, method: &str, path: &str, content_type: &str, body: Option<&Value>) -> (u16, Value) {
    let url = format!("{}{path}", s.url);
    let data = body.map(|b| b.to_string());
    let header = format!("Content-Type: {content_type}");
    let mut args = vec!["-X", method, "-H", &header];
    if let Some(d) = &data {
        args.extend(["--data", d.as_str()]);
    }
    args.push(&url);
    let (out, code) = s.curl_as(stem, &args);
    (code.parse().unwrap(), serde_json::from_str(&out).unwrap_or(Value::Null))
}

fn post(s: &Secure, stem: &str, path: &str, body: &Value) -> (u16, Value) {
    call(s, stem, "POST", path, "application/json", Some(body))
}

/// Repeats `f` until it answers `code` (RBAC objects reach the authorizer
/// through the watch cache, a moment after they are written).
fn until(code: u16, f: impl Fn() -> (u16, Value)) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (got, body) = f();
        if got == code {
            return body;
        }
        assert!(Instant::now() < deadline, "wanted {code}, still {got}: {body}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn binding(name: &str, kind: &str, role: &str, user: &str) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": name},
           "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role},
           "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]})
}

fn role(name: &str, rules: Value) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": name}, "rules": rules})
}

#[test]
fn bindings_grant_only_held_or_bindable_roles_and_keep_their_role() {
    let s = Secure::start();
    s.sign("dana", "/CN=dana/O=devs");
    s.admin(&["create", "namespace", "team"]);
    // dana may write RoleBindings in `team` and read pods there; nothing else.
    s.admin(&["create", "role", "binder", "-n", "team", "--verb=create,get,update,patch", "--resource=rolebindings.rbac.authorization.k8s.io"]);
    s.admin(&["create", "rolebinding", "dana-binds", "-n", "team", "--role=binder", "--user=dana"]);
    s.admin(&["create", "role", "pod-reader", "-n", "team", "--verb=get,list", "--resource=pods"]);
    s.admin(&["create", "rolebinding", "dana-reads-pods", "-n", "team", "--role=pod-reader", "--user=dana"]);
    let bindings = format!("{RBAC}/namespaces/team/rolebindings");

    // A role whose permissions she holds, she may hand on.
    until(201, || post(&s, "dana", &bindings, &binding("erin-reads-pods", "Role", "pod-reader", "erin")));

    // admin and cluster-admin she does not hold: 403 in upstream's words, nothing stored.
    let (code, v) = post(&s, "dana", &bindings, &binding("dana-admin", "ClusterRole", "admin", "dana"));
    assert_eq!(code, 403, "{v}");
    let msg = v["message"].as_str().unwrap();
    assert!(
        msg.starts_with(
            "rolebindings.rbac.authorization.k8s.io \"dana-admin\" is forbidden: user \"dana\" (groups=[\"devs\" \"system:authenticated\"]) \
             is attempting to grant RBAC permissions not currently held:\n"
        ),
        "{msg}"
    );
    assert!(msg.contains("\n{APIGroups:[\"\"], Resources:[\"secrets\"], Verbs:["), "{msg}");
    assert_eq!(v["reason"], "Forbidden");
    assert_eq!(v["details"], json!({"name": "dana-admin", "group": "rbac.authorization.k8s.io", "kind": "rolebindings"}));
    let (code, v) = post(&s, "dana", &bindings, &binding("dana-root", "ClusterRole", "cluster-admin", "dana"));
    assert_eq!(code, 403, "{v}");
    assert_eq!(
        v["message"],
        "rolebindings.rbac.authorization.k8s.io \"dana-root\" is forbidden: user \"dana\" (groups=[\"devs\" \"system:authenticated\"]) \
         is attempting to grant RBAC permissions not currently held:\n\
         {APIGroups:[\"*\"], Resources:[\"*\"], Verbs:[\"*\"]}\n{NonResourceURLs:[\"*\"], Verbs:[\"*\"]}"
    );
    for name in ["dana-admin", "dana-root"] {
        assert_eq!(call(&s, "admin", "GET", &format!("{bindings}/{name}"), "application/json", None).0, 404);
    }
    // A binding to a role that does not exist: upstream's role lookup answers 404.
    let (code, v) = post(&s, "dana", &bindings, &binding("ghost", "Role", "no-such-role", "dana"));
    assert_eq!((code, v["message"].as_str()), (404, Some(r#"roles.rbac.authorization.k8s.io "no-such-role" not found"#)), "{v}");

    // `bind` on clusterroles named admin, in team: now she may bind admin —
    // and still not cluster-admin (resourceNames restricts the verb).
    s.admin(&["create", "role", "bind-admin", "-n", "team", "--verb=bind", "--resource=clusterroles.rbac.authorization.k8s.io", "--resource-name=admin"]);
    s.admin(&["create", "rolebinding", "dana-binds-admin", "-n", "team", "--role=bind-admin", "--user=dana"]);
    until(201, || post(&s, "dana", &bindings, &binding("dana-admin", "ClusterRole", "admin", "dana")));
    assert_eq!(post(&s, "dana", &bindings, &binding("dana-root", "ClusterRole", "cluster-admin", "dana")).0, 403);

    // roleRef is immutable: a PUT that changes it is 422, whoever asks.
    let path = format!("{bindings}/erin-reads-pods");
    let (_, current) = call(&s, "dana", "GET", &path, "application/json", None);
    let mut changed = current.clone();
    changed["roleRef"] = json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "admin"});
    for who in ["dana", "admin"] {
        let (code, v) = call(&s, who, "PUT", &path, "application/json", Some(&changed));
        assert_eq!(code, 422, "{who}: {v}");
        assert!(
            v["message"].as_str().unwrap().ends_with(
                r#""erin-reads-pods" is invalid: roleRef: Invalid value: rbac.RoleRef{APIGroup:"rbac.authorization.k8s.io", Kind:"ClusterRole", Name:"admin"}: cannot change roleRef"#
            ),
            "{who}: {v}"
        );
        assert_eq!((v["reason"].as_str(), v["details"]["causes"][0]["field"].as_str()), (Some("Invalid"), Some("roleRef")), "{v}");
    }
    // As upstream, the escalation check comes first: a roleRef she may not bind is 403.
    changed["roleRef"]["name"] = json!("cluster-admin");
    assert_eq!(call(&s, "dana", "PUT", &path, "application/json", Some(&changed)).0, 403);
    // Other fields may change (she holds pod-reader): subjects, labels.
    let mut relabelled = current.clone();
    relabelled["metadata"]["labels"] = json!({"team": "a"});
    relabelled["subjects"] = json!([{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "frank"}]);
    assert_eq!(call(&s, "dana", "PUT", &path, "application/json", Some(&relabelled)).0, 200);

    // roleRef is validated on create (422 with a cause per field).
    let (code, v) = post(&s, "admin", &bindings, &json!({"metadata": {"name": "bad"},
        "roleRef": {"apiGroup": "example.com", "kind": "Foo", "name": ""}, "subjects": []}));
    assert_eq!(code, 422, "{v}");
    let fields: Vec<&str> = v["details"]["causes"].as_array().unwrap().iter().map(|c| c["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["roleRef.apiGroup", "roleRef.kind", "roleRef.name"], "{v}");
    // The admin (system:masters) is never checked for escalation.
    assert_eq!(post(&s, "admin", &bindings, &binding("root-for-erin", "ClusterRole", "cluster-admin", "erin")).0, 201);
}

#[test]
fn roles_grant_only_held_permissions_unless_escalate() {
    let s = Secure::start();
    s.sign("rita", "/CN=rita/O=devs");
    s.admin(&["create", "namespace", "team"]);
    s.admin(&["create", "role", "role-maker", "-n", "team", "--verb=create,get,update,patch", "--resource=roles.rbac.authorization.k8s.io"]);
    s.admin(&["create", "rolebinding", "rita-makes-roles", "-n", "team", "--role=role-maker", "--user=rita"]);
    let roles = format!("{RBAC}/namespaces/team/roles");
    let get_roles = json!([{"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles"], "verbs": ["get"]}]);
    let secrets = json!([{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"]}]);

    // A role within what she holds: allowed.
    until(201, || post(&s, "rita", &roles, &role("role-reader", get_roles.clone())));
    // Secrets she cannot read: 403, nothing stored.
    let refused = "roles.rbac.authorization.k8s.io \"secret-reader\" is forbidden: user \"rita\" (groups=[\"devs\" \"system:authenticated\"]) \
                   is attempting to grant RBAC permissions not currently held:\n{APIGroups:[\"\"], Resources:[\"secrets\"], Verbs:[\"get\" \"list\"]}";
    let (code, v) = post(&s, "rita", &roles, &role("secret-reader", secrets.clone()));
    assert_eq!((code, v["message"].as_str()), (403, Some(refused)), "{v}");
    assert_eq!(call(&s, "admin", "GET", &format!("{roles}/secret-reader"), "application/json", None).0, 404);
    // Nor by patching a role she made.
    let patch = json!({"rules": secrets});
    let patch_path = format!("{roles}/role-reader");
    let (code, v) = call(&s, "rita", "PATCH", &patch_path, "application/merge-patch+json", Some(&patch));
    assert_eq!(code, 403, "{v}");
    assert!(v["message"].as_str().unwrap().starts_with(r#"roles.rbac.authorization.k8s.io "role-reader" is forbidden: user "rita""#), "{v}");

    // With `escalate` on roles in team, she may.
    s.admin(&["create", "role", "escalator", "-n", "team", "--verb=escalate", "--resource=roles.rbac.authorization.k8s.io"]);
    s.admin(&["create", "rolebinding", "rita-escalates", "-n", "team", "--role=escalator", "--user=rita"]);
    until(201, || post(&s, "rita", &roles, &role("secret-reader", secrets.clone())));
    assert_eq!(call(&s, "rita", "PATCH", &patch_path, "application/merge-patch+json", Some(&patch)).0, 200);
    // `escalate` in team is not `escalate` elsewhere.
    s.admin(&["create", "namespace", "other"]);
    s.admin(&["create", "rolebinding", "rita-makes-roles", "-n", "other", "--clusterrole=admin", "--user=rita"]);
    let other = format!("{RBAC}/namespaces/other/roles");
    until(201, || post(&s, "rita", &other, &role("pods-only", json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]))));
    let nodes = json!([{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]}]);
    let (code, v) = post(&s, "rita", &other, &role("node-reader", nodes));
    assert_eq!(code, 403, "{v}");
    assert!(v["message"].as_str().unwrap().ends_with(r#"{APIGroups:[""], Resources:["nodes"], Verbs:["get"]}"#), "{v}");
}
