//! The seed's "create a user with limited rights" walk-through, verbatim,
//! with real openssl and real kubectl against rkube's TLS port with RBAC —
//! plus anonymous access, bad credentials, and `kubectl auth can-i`.

mod security_common;

use std::process::Command;

use e2e::bin;
use security_common::{run, Secure};

#[test]
fn seed_walkthrough_user_with_limited_rights() {
    let s = Secure::start();
    // Anonymous: 403 on resources with Kubernetes' message; public info readable.
    let (body, code) = s.curl(&[&format!("{}/api/v1/namespaces", s.url)]);
    assert_eq!(code, "403", "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["message"],
        r#"namespaces is forbidden: User "system:anonymous" cannot list resource "namespaces" in API group "" at the cluster scope"#
    );
    assert_eq!(s.curl(&[&format!("{}/version", s.url)]).1, "200");
    assert_eq!(s.curl(&[&format!("{}/healthz", s.url)]).1, "200");

    // A user: key, CSR with CN (user) and O (group), signed by the cluster CA.
    let d = s.dir.path();
    let f = |n: &str| d.join(n).display().to_string();
    run(Command::new("openssl").args(["genrsa", "-out", &f("jane.key"), "2048"]));
    run(Command::new("openssl").args(["req", "-new", "-key", &f("jane.key"), "-out", &f("jane.csr"), "-subj", "/CN=jane/O=dev"]));
    run(Command::new("openssl").args([
        "x509", "-req", "-in", &f("jane.csr"), "-CA", &s.pki("ca.crt"), "-CAkey", &s.pki("ca.key"), "-CAcreateserial",
        "-out", &f("jane.crt"), "-days", "2",
    ]));
    let jane = d.join("jane.kubeconfig");
    let k = |args: &[&str]| s.kubectl(&jane, args);
    let ok = |args: &[&str]| {
        let o = k(args);
        assert!(o.status.success(), "jane kubectl {args:?}: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    ok(&["config", "set-cluster", "rkube", &format!("--server={}", s.url), &format!("--certificate-authority={}", s.pki("ca.crt")), "--embed-certs=true"]);
    ok(&["config", "set-credentials", "jane", &format!("--client-certificate={}", f("jane.crt")), &format!("--client-key={}", f("jane.key")), "--embed-certs=true"]);
    ok(&["config", "set-context", "jane-context", "--cluster=rkube", "--user=jane", "--namespace=office"]);
    ok(&["config", "use-context", "jane-context"]);

    // The admin makes the namespace, a Role and a RoleBinding.
    s.admin(&["create", "namespace", "office"]);
    s.admin(&["create", "role", "pod-reader", "-n", "office", "--verb=get,list,watch", "--resource=pods"]);
    s.admin(&["create", "rolebinding", "jane-reads-pods", "-n", "office", "--role=pod-reader", "--user=jane"]);
    s.admin(&["run", "busy", "-n", "office", "--image=busybox:1"]);

    // What jane may and may not do.
    assert!(ok(&["get", "pods"]).contains("busy"));
    let denied = |args: &[&str], msg: &str| {
        let o = k(args);
        assert!(!o.status.success(), "{args:?} should be refused");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(msg), "{args:?}: {err}");
    };
    denied(&["get", "pods", "-n", "default"], r#"pods is forbidden: User "jane" cannot list resource "pods" in API group "" in the namespace "default""#);
    denied(&["delete", "namespace", "office"], r#"namespaces "office" is forbidden: User "jane" cannot delete resource "namespaces" in API group "" in the namespace "office""#);
    denied(&["delete", "pod", "busy"], r#"pods "busy" is forbidden: User "jane" cannot delete resource "pods" in API group "" in the namespace "office""#);

    // A refused create names no object, as Kubernetes: a create is
    // authorized without a name, whatever the body says.
    let create_refused = r#"pods is forbidden: User "jane" cannot create resource "pods" in API group "" in the namespace "office""#;
    denied(&["run", "x", "--image=busybox:1"], create_refused);
    let pod_x = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"x"},"spec":{"containers":[{"name":"c","image":"busybox:1"}]}}"#;
    let post_x = || {
        s.curl_as("jane", &["-X", "POST", "-H", "Content-Type: application/json", "--data", pod_x, &format!("{}/api/v1/namespaces/office/pods", s.url)])
    };
    let (body, code) = post_x();
    assert_eq!(code, "403", "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!((v["message"].as_str(), v["reason"].as_str()), (Some(create_refused), Some("Forbidden")), "{body}");
    assert_eq!(v["details"].get("name"), None, "{body}");
    // A Role naming the object does not grant its create: Kubernetes never
    // authorizes create by resourceNames.
    s.admin(&["create", "role", "make-x", "-n", "office", "--verb=create", "--resource=pods", "--resource-name=x"]);
    s.admin(&["create", "rolebinding", "jane-makes-x", "-n", "office", "--role=make-x", "--user=jane"]);
    assert_eq!(String::from_utf8_lossy(&k(&["auth", "can-i", "create", "pods"]).stdout).trim(), "no");
    assert_eq!(String::from_utf8_lossy(&k(&["auth", "can-i", "create", "pods/x"]).stdout).trim(), "yes");
    let (body, code) = post_x();
    assert_eq!(code, "403", "{body}");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&body).unwrap()["message"], create_refused);
    assert!(s.admin(&["get", "pods", "-n", "office", "-o", "name"]).lines().all(|l| l != "pod/x"));

    // kubectl auth can-i agrees with the rules.
    for (args, expect) in [
        (vec!["auth", "can-i", "list", "pods"], "yes"),
        (vec!["auth", "can-i", "watch", "pods", "-n", "office"], "yes"),
        (vec!["auth", "can-i", "delete", "pods"], "no"),
        (vec!["auth", "can-i", "list", "pods", "-n", "default"], "no"),
        (vec!["auth", "can-i", "create", "deployments"], "no"),
    ] {
        let o = k(&args);
        assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), expect, "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
    }
    assert_eq!(s.admin(&["auth", "can-i", "delete", "namespaces"]).trim(), "yes");

    // kubectl auth whoami: who the apiserver thinks jane is (from her certificate).
    let who = ok(&["auth", "whoami", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&who).unwrap();
    assert_eq!((v["kind"].as_str(), v["apiVersion"].as_str()), (Some("SelfSubjectReview"), Some("authentication.k8s.io/v1")), "{who}");
    assert_eq!(v["status"]["userInfo"]["username"], "jane", "{who}");
    assert_eq!(v["status"]["userInfo"]["groups"], serde_json::json!(["dev", "system:authenticated"]), "{who}");
    let table = ok(&["auth", "whoami"]);
    assert!(table.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["Username", "jane"]), "{table}");

    // A WebSocket exec arrives as GET, but it needs `create` on pods/exec as
    // well (as kube-apiserver since 1.30): `get` alone is refused before
    // anything is proxied.
    s.admin(&["create", "role", "exec-get", "-n", "office", "--verb=get", "--resource=pods/exec"]);
    s.admin(&["create", "rolebinding", "jane-exec-get", "-n", "office", "--role=exec-get", "--user=jane"]);
    let ws_exec = || s.curl_as("jane", &[&format!("{}/api/v1/namespaces/office/pods/busy/exec?command=true&stdout=true", s.url)]);
    let (body, code) = ws_exec();
    assert_eq!(code, "403", "{body}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["message"],
        r#"pods "busy" is forbidden: User "jane" cannot create resource "pods/exec" in API group "" in the namespace "office""#
    );
    s.admin(&["create", "role", "exec-create", "-n", "office", "--verb=create", "--resource=pods/exec"]);
    s.admin(&["create", "rolebinding", "jane-exec-create", "-n", "office", "--role=exec-create", "--user=jane"]);
    // Authorized now; the pod was never scheduled (no scheduler here), so there is no node to reach.
    let (body, code) = ws_exec();
    assert_eq!(code, "400", "{body}");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&body).unwrap()["message"], "pod busy does not have a host assigned");
}

#[test]
fn bad_credentials_are_401() {
    let s = Secure::start();
    // A bad bearer token: 401. Schemes rkube has no authenticator for
    // (Basic, garbage) are not credentials, as upstream: anonymous → 403.
    for (header, want) in [
        ("Authorization: Bearer wrong", "401"),
        // "Bearer" with no token is not a credential at all (upstream bearertoken).
        ("Authorization: Bearer", "403"),
        ("Authorization: Basic Zm9vOmJhcg==", "403"),
        ("Authorization: Negotiate !!!###", "403"),
        ("Authorization: Bearer %%%###!!!{}", "401"),
    ] {
        let (body, code) = s.curl(&["-H", header, &format!("{}/api/v1/namespaces", s.url)]);
        assert_eq!(code, want, "{header}: {body}");
        if want == "401" {
            assert!(body.contains(r#""reason":"Unauthorized""#), "{body}");
        }
    }
    // A good token authenticates (and is then authorized: no rights → 403).
    let (body, code) = s.curl(&["-H", "Authorization: Bearer s3cr3t", &format!("{}/api/v1/namespaces", s.url)]);
    assert_eq!(code, "403", "{body}");
    assert!(body.contains(r#"User \"token-user\""#), "{body}");
    // A client certificate from another CA: 401.
    let d = s.dir.path();
    let f = |n: &str| d.join(n).display().to_string();
    run(Command::new("openssl").args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", &f("evil-ca.key"), "-out", &f("evil-ca.crt"), "-subj", "/CN=evil", "-days", "2"]));
    run(Command::new("openssl").args(["genrsa", "-out", &f("mallory.key"), "2048"]));
    run(Command::new("openssl").args(["req", "-new", "-key", &f("mallory.key"), "-out", &f("mallory.csr"), "-subj", "/CN=admin/O=system:masters"]));
    run(Command::new("openssl").args(["x509", "-req", "-in", &f("mallory.csr"), "-CA", &f("evil-ca.crt"), "-CAkey", &f("evil-ca.key"), "-CAcreateserial", "-out", &f("mallory.crt"), "-days", "2"]));
    let (body, code) = s.curl(&["--cert", &f("mallory.crt"), "--key", &f("mallory.key"), &format!("{}/api/v1/namespaces", s.url)]);
    assert_eq!(code, "401", "{body}");
    // The admin certificate works.
    let (_, code) = s.curl(&["--cert", &s.pki("admin.crt"), "--key", &s.pki("admin.key"), &format!("{}/api/v1/namespaces", s.url)]);
    assert_eq!(code, "200");
}

#[test]
fn node_may_only_write_its_own_node() {
    let s = Secure::start();
    let pki = s.dir.path().join("pki");
    run(Command::new(bin("rkube")).args(["certs", "--dir", pki.to_str().unwrap(), "--server", &s.url, "--node", "n1", "--node", "n2"]));
    let node = |name: &str| format!(r#"{{"apiVersion":"v1","kind":"Node","metadata":{{"name":"{name}"}}}}"#);
    let as_n1 = |args: &[&str]| Command::new("curl").args(["-sk", "-w", "\n%{http_code}", "--cert", &s.pki("node-n1.crt"), "--key", &s.pki("node-n1.key")]).args(args).output().unwrap();
    let code = |o: std::process::Output| String::from_utf8_lossy(&o.stdout).rsplit_once('\n').unwrap().1.to_string();
    let post = |name: &str| as_n1(&["-X", "POST", "-H", "Content-Type: application/json", "-d", &node(name), &format!("{}/api/v1/nodes", s.url)]);
    assert_eq!(code(post("n1")), "201");
    assert_eq!(code(post("n2")), "403");
    // The admin registers n2; n1 still may not touch its status.
    let as_admin = Command::new("curl")
        .args(["-sk", "--cert", &s.pki("admin.crt"), "--key", &s.pki("admin.key"), "-X", "POST", "-H", "Content-Type: application/json", "-d", &node("n2")])
        .arg(format!("{}/api/v1/nodes", s.url))
        .output()
        .unwrap();
    assert!(as_admin.status.success());
    let patch = |name: &str| {
        as_n1(&["-X", "PATCH", "-H", "Content-Type: application/merge-patch+json", "-d", r#"{"status":{"phase":"Running"}}"#,
            &format!("{}/api/v1/nodes/{name}/status", s.url)])
    };
    assert_eq!(code(patch("n1")), "200");
    assert_eq!(code(patch("n2")), "403");
}
