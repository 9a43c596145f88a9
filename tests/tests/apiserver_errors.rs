//! Bad input gets the Kubernetes `Status` with the right code and reason —
//! and writes nothing: etcd holds exactly the same keys, at the same
//! revisions, before and after a batch of rejected requests.

use e2e::Cluster;
use serde_json::{json, Value};

const JSON: Option<&str> = Some("application/json");

struct Case {
    method: &'static str,
    path: &'static str,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    code: u16,
    reason: &'static str,
    /// A fragment the message must contain.
    message: &'static str,
}

fn case(method: &'static str, path: &'static str, body: impl Into<Vec<u8>>, code: u16, reason: &'static str, message: &'static str) -> Case {
    Case { method, path, content_type: JSON, body: body.into(), code, reason, message }
}

fn pod(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": {"containers": [{"name": "c", "image": "busybox:1"}]}})
}

/// A hand-made list `continue` token (URL-safe base64 without padding of
/// `{"v","rv","start"}`), as a client forging one would build it.
fn forged_continue(rv: i64, start: &str) -> String {
    const ABC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let raw = json!({"v": "meta.k8s.io/v1", "rv": rv, "start": start}).to_string().into_bytes();
    let mut out = String::new();
    for chunk in raw.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | (*b as u32) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// Case messages built at run time.
fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

fn check(c: &Cluster, case: &Case) {
    let r = c.http(case.method, case.path, case.content_type, &case.body);
    let s = r.json();
    assert_eq!(
        (r.status, s["kind"].as_str(), s["reason"].as_str(), s["code"].as_u64()),
        (case.code, Some("Status"), Some(case.reason), Some(case.code as u64)),
        "{} {}: {}",
        case.method,
        case.path,
        r.text()
    );
    let msg = s["message"].as_str().unwrap_or("");
    assert!(msg.contains(case.message), "{} {}: message {msg:?} lacks {:?}", case.method, case.path, case.message);
}

#[tokio::test(flavor = "multi_thread")]
async fn rejected_requests_write_nothing() {
    let c = Cluster::start();
    // Something to conflict with.
    let created = c.http("POST", "/api/v1/namespaces/default/pods", JSON, pod("existing").to_string().as_bytes());
    assert_eq!(created.status, 201, "{}", created.text());
    let rv = created.json()["metadata"]["resourceVersion"].as_str().unwrap().to_string();
    let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "taken"},
        "spec": {"type": "NodePort", "clusterIP": "10.96.0.50", "ports": [{"port": 80, "nodePort": 30050}]}});
    assert_eq!(c.http("POST", "/api/v1/namespaces/default/services", JSON, svc.to_string().as_bytes()).status, 201);

    // A secret in another namespace, which a forged continue token must not reach.
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "hidden"}, "data": {"k": "c2VjcmV0"}});
    assert_eq!(c.http("POST", "/api/v1/namespaces/kube-system/secrets", JSON, secret.to_string().as_bytes()).status, 201);
    let list_rv = c.http("GET", "/api/v1/namespaces/default/pods", None, b"").json()["metadata"]["resourceVersion"]
        .as_str().unwrap().parse::<i64>().unwrap();
    let climb = "../../secrets/kube-system/";
    let climb_path = leak(format!("/api/v1/namespaces/default/pods?limit=10&continue={}", forged_continue(list_rv, climb)));
    let climb_msg = leak(format!("invalid continue token: continue key is not valid: {climb}"));
    let stale_rv = rv.parse::<i64>().unwrap() - 1;
    let precondition_msg = leak(format!("Precondition failed: ResourceVersion in precondition: {stale_rv}, ResourceVersion in object meta: {rv}"));
    // The stored pod with a field Pod does not have, for strict PUT/PATCH.
    let mut with_unknown = created.json();
    with_unknown["spec"]["bogus"] = json!(1);

    let before = c.etcd.keys().await;
    let mut stale = pod("existing");
    stale["metadata"]["resourceVersion"] = json!((rv.parse::<i64>().unwrap() - 1).to_string());
    let mut big = pod("big");
    big["metadata"]["annotations"] = json!({"x": "y".repeat(3 * 1024 * 1024 + 10)});
    let mut unknown = pod("unknown");
    unknown["spec"]["containers"][0]["imagePullPolicie"] = json!("Always");
    let cases = vec![
        case("POST", "/api/v1/namespaces/default/pods", "{not json", 400, "BadRequest", "json parse error"),
        case("POST", "/api/v1/namespaces/default/pods?fieldValidation=Strict",
            r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"d","name":"e"},"spec":{"containers":[{"name":"c","image":"i"}]}}"#,
            400, "BadRequest", "strict decoding error: duplicate field \"metadata.name\""),
        case("POST", "/api/v1/namespaces/default/pods", pod("x").to_string().replace("\"v1\"", "\"apps/v1\""), 400, "BadRequest",
            "the API version in the data (apps/v1) does not match the expected API version (v1)"),
        case("POST", "/api/v1/namespaces/default/pods", pod("x").to_string().replace("\"Pod\"", "\"Service\""), 400, "BadRequest",
            "does not match the expected kind (Pod)"),
        case("PUT", "/api/v1/namespaces/default/pods/other", pod("existing").to_string(), 400, "BadRequest",
            "the name of the object (existing) does not match the name on the URL (other)"),
        case("POST", "/api/v1/namespaces/default/pods?fieldValidation=Strict", unknown.to_string(), 400, "BadRequest",
            "strict decoding error: unknown field \"spec.containers[0].imagePullPolicie\""),
        case("POST", "/api/v1/namespaces/default/pods", json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
            "spec": {"replicas": "three"}}).to_string(), 400, "BadRequest", "apps/v1"),
        case("GET", "/api/v1/namespaces/default/pods/nope", "", 404, "NotFound", "pods \"nope\" not found"),
        case("GET", "/apis/apps/v1/namespaces/default/deployments/nope", "", 404, "NotFound", "deployments.apps \"nope\" not found"),
        case("GET", "/api/v1/widgets", "", 404, "NotFound", "could not find the requested resource"),
        case("PUT", "/api/v1/namespaces/default/pods", pod("x").to_string(), 405, "MethodNotAllowed", "does not allow this method"),
        case("POST", "/api/v1/namespaces/default/pods", pod("existing").to_string(), 409, "AlreadyExists", "pods \"existing\" already exists"),
        case("PUT", "/api/v1/namespaces/default/pods/existing", stale.to_string(), 409, "Conflict",
            "Operation cannot be fulfilled on pods \"existing\": the object has been modified"),
        case("POST", "/api/v1/namespaces/default/pods", big.to_string(), 413, "RequestEntityTooLarge", "Request entity too large"),
        Case { content_type: Some("text/plain"), ..case("POST", "/api/v1/namespaces/default/pods", "hello", 415, "UnsupportedMediaType", "text/plain") },
        case("POST", "/api/v1/namespaces/default/pods", json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "Bad_Name"},
            "spec": {"containers": []}}).to_string(), 422, "Invalid", "Pod \"Bad_Name\" is invalid: [metadata.name: Invalid value: \"Bad_Name\""),
        case("POST", "/api/v1/namespaces/default/pods", json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "q"},
            "spec": {"containers": [{"name": "c", "image": "i", "resources": {"requests": {"cpu": "lots"}}}]}}).to_string(), 422, "Invalid",
            "spec.containers[0].resources.requests[cpu]: Invalid value: \"lots\""),
        case("POST", "/api/v1/namespaces/nowhere/pods", pod("x").to_string(), 404, "NotFound", "namespaces \"nowhere\" not found"),
        case("POST", "/api/v1/namespaces/default/services", json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "dup-ip"},
            "spec": {"clusterIP": "10.96.0.50", "ports": [{"port": 80}]}}).to_string(), 422, "Invalid", "provided IP is already allocated"),
        case("POST", "/api/v1/namespaces/default/services", json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "dup-port"},
            "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 30050}]}}).to_string(), 422, "Invalid", "provided port is already allocated"),
        case("POST", "/api/v1/namespaces/default/services", json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "far-port"},
            "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 80}]}}).to_string(), 422, "Invalid", "not in the valid range"),
        case("DELETE", "/api/v1/namespaces/kube-system", "", 403, "Forbidden", "namespaces \"kube-system\" is forbidden: this namespace may not be deleted"),
        case("DELETE", "/api/v1/namespaces/default/pods/existing", json!({"preconditions": {"uid": "not-the-uid"}}).to_string(), 409, "Conflict",
            "Precondition failed: UID in precondition: not-the-uid"),
        case("GET", "/api/v1/namespaces/default/pods?labelSelector=a%20in%20b", "", 400, "BadRequest", "unable to parse requirement"),
        case("GET", "/api/v1/namespaces/default/pods?fieldSelector=spec.magic%3Dx", "", 400, "BadRequest", "field label not supported: spec.magic"),
        case("GET", "/api/v1/namespaces/default/pods?watch=true&sendInitialEvents=true", "", 400, "BadRequest", "sendInitialEvents"),
        case("GET", "/api/v1/namespaces/default/pods?limit=abc", "", 400, "BadRequest", "invalid limit"),
        case("GET", "/api/v1/namespaces/default/pods?limit=1&continue=garbage", "", 400, "BadRequest", "continue key is not valid"),
        case("GET", climb_path, "", 400, "BadRequest", climb_msg),
        // Malformed YAML: 400, nothing decoded.
        Case { content_type: Some("application/yaml"), ..case("POST", "/api/v1/namespaces/default/pods",
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: [unclosed\n  labels: {a: b\n", 400, "BadRequest", "error converting YAML to JSON") },
        // Strict field validation on update and on patch.
        case("PUT", "/api/v1/namespaces/default/pods/existing?fieldValidation=Strict", with_unknown.to_string(), 400, "BadRequest",
            "Pod in version \"v1\" cannot be handled as a Pod: strict decoding error: unknown field \"spec.bogus\""),
        Case { content_type: Some("application/merge-patch+json"),
            ..case("PATCH", "/api/v1/namespaces/default/pods/existing?fieldValidation=Strict", r#"{"spec":{"bogus":1}}"#, 400, "BadRequest",
                "strict decoding error: unknown field \"spec.bogus\"") },
        Case { content_type: Some("application/strategic-merge-patch+json"),
            ..case("PATCH", "/api/v1/namespaces/default/pods/existing?fieldValidation=Strict", r#"{"metadata":{"labelz":{"a":"b"}}}"#, 400, "BadRequest",
                "strict decoding error: unknown field \"metadata.labelz\"") },
        // A resourceVersion precondition that no longer holds.
        case("DELETE", "/api/v1/namespaces/default/pods/existing", json!({"preconditions": {"resourceVersion": stale_rv.to_string()}}).to_string(),
            409, "Conflict", precondition_msg),
        Case { content_type: Some("application/strategic-merge-patch+json"),
            ..case("PATCH", "/api/v1/namespaces/default/pods/existing", "[]", 400, "BadRequest", "strategic merge patch must be a JSON object") },
        case("PATCH", "/api/v1/namespaces/default/pods/existing", "{}", 415, "UnsupportedMediaType", "application/json"),
        Case { content_type: Some("application/json-patch+json"),
            ..case("PATCH", "/api/v1/namespaces/default/pods/existing", r#"[{"op":"remove","path":"/nope"}]"#, 422, "Invalid", "") },
        Case { content_type: Some("application/merge-patch+json"),
            ..case("PATCH", "/api/v1/namespaces/default/pods/existing", r#"{"spec":{"containers":[{"name":"c","image":"i","ports":[{"containerPort":99999}]}]}}"#,
                422, "Invalid", "containerPort") },
        case("POST", "/api/v1/namespaces/default/pods/existing/binding", json!({"apiVersion": "v1", "kind": "Binding",
            "metadata": {"name": "existing"}, "target": {}}).to_string(), 422, "Invalid", "target.name: Required value"),
    ];
    for case in &cases {
        check(&c, case);
        if std::env::var("DEBUG_KEYS").is_ok() {
            eprintln!("{} {} -> {:?}", case.method, case.path, c.etcd.keys().await.iter().map(|k| k.1).max());
        }
    }
    // Pod spec updates other than images are forbidden.
    let r = c.http("GET", "/api/v1/namespaces/default/pods/existing", None, b"");
    let mut p = r.json();
    p["spec"]["restartPolicy"] = json!("Never");
    check(&c, &case("PUT", "/api/v1/namespaces/default/pods/existing", p.to_string(), 422, "Invalid", "pod updates may not change fields"));

    // A forged absolute start key is read relative to the list's own prefix
    // (as upstream does): the list stays inside default's pods.
    let forged = forged_continue(list_rv, "/registry/secrets/kube-system/hidden");
    let r = c.http("GET", &format!("/api/v1/namespaces/default/pods?limit=10&continue={forged}"), None, b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["kind"], "PodList");
    assert_eq!(r.json()["items"], json!([]), "{}", r.text());
    let r = c.http("GET", &format!("/api/v1/secrets?limit=10&continue={}", forged_continue(list_rv, "kube-system/hidden")), None, b"");
    // A well-formed relative start key works: the cluster-wide list resumes at kube-system.
    let names: Vec<_> = r.json()["items"].as_array().unwrap().iter().map(|s| s["metadata"]["name"].clone()).collect();
    assert_eq!(names, vec![json!("hidden")], "{}", r.text());

    let after = c.etcd.keys().await;
    assert_eq!(before, after, "rejected requests changed etcd");
}

#[test]
fn no_etcd_gives_a_clear_error() {
    let port = e2e::free_port();
    let out = std::process::Command::new(e2e::bin("rkube-apiserver"))
        .args([&format!("--etcd-servers=http://127.0.0.1:{port}"), "--insecure-port=0", "--etcd-connect-timeout=2s"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot reach etcd at http://127.0.0.1:"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn field_validation_warn_and_ignore() {
    let c = Cluster::start();
    let mut p = pod("warned");
    p["spec"]["bogus"] = json!(1);
    // Warn (the default): created, with a Warning header; the field is dropped.
    let r = c.http("POST", "/api/v1/namespaces/default/pods?fieldValidation=Warn", JSON, p.to_string().as_bytes());
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.header("warning"), Some(r#"299 - "unknown field \"spec.bogus\"""#));
    assert!(r.json()["spec"].get("bogus").is_none());
    // Ignore: created, silently.
    p["metadata"]["name"] = json!("ignored");
    let r = c.http("POST", "/api/v1/namespaces/default/pods?fieldValidation=Ignore", JSON, p.to_string().as_bytes());
    assert_eq!(r.status, 201);
    assert_eq!(r.header("warning"), None);
    // An unknown validation mode is itself a bad request.
    let r = c.http("POST", "/api/v1/namespaces/default/pods?fieldValidation=Loose", JSON, p.to_string().as_bytes());
    assert_eq!(r.status, 400);
}
