//! Admission plugins through the API: LimitRanger fills in defaults,
//! ResourceQuota counts and refuses with Kubernetes' message, ServiceAccount
//! and DefaultTolerationSeconds mutate pods.

use e2e::Cluster;
use serde_json::json;

const JSON: Option<&str> = Some("application/json");

fn pod(name: &str, resources: serde_json::Value) -> Vec<u8> {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "busybox:1", "resources": resources}]}})
    .to_string()
    .into_bytes()
}

#[test]
fn limit_range_and_quota_behave_as_kubernetes() {
    // The whole default chain, ServiceAccount included (the harness turns
    // it off by default: no serviceaccount controller runs here, so the
    // test makes the `default` account itself).
    let c = Cluster::start_with(&["--enable-admission-plugins=ServiceAccount"]);
    let post = |path: &str, body: serde_json::Value| {
        let r = c.http("POST", path, JSON, body.to_string().as_bytes());
        assert_eq!(r.status, 201, "{}", r.text());
    };
    post("/api/v1/namespaces", json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "q"}}));
    post("/api/v1/namespaces/q/serviceaccounts", json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}}));
    post("/api/v1/namespaces/q/limitranges", json!({"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "defaults"},
        "spec": {"limits": [{"type": "Container", "default": {"cpu": "500m", "memory": "256Mi"}, "defaultRequest": {"cpu": "100m", "memory": "64Mi"}}]}}));
    post("/api/v1/namespaces/q/resourcequotas", json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "small"},
        "spec": {"hard": {"pods": "2", "requests.cpu": "250m"}}}));

    // A pod without requests gets the LimitRange's defaults, and the
    // mutating plugins' other defaults.
    let r = c.http("POST", "/api/v1/namespaces/q/pods", JSON, &pod("a", json!({})));
    assert_eq!(r.status, 201, "{}", r.text());
    let p = r.json();
    let res = &p["spec"]["containers"][0]["resources"];
    assert_eq!((res["requests"]["cpu"].as_str(), res["limits"]["memory"].as_str()), (Some("100m"), Some("256Mi")), "{res}");
    assert_eq!(p["spec"]["serviceAccountName"], "default");
    let tolerations = p["spec"]["tolerations"].as_array().unwrap();
    assert!(tolerations.iter().any(|t| t["key"] == "node.kubernetes.io/not-ready" && t["tolerationSeconds"] == 300));
    assert!(tolerations.iter().any(|t| t["key"] == "node.kubernetes.io/unreachable" && t["tolerationSeconds"] == 300));

    // The quota's usage is recorded.
    let q = c.http("GET", "/api/v1/namespaces/q/resourcequotas/small", None, b"").json();
    assert_eq!((q["status"]["used"]["pods"].as_str(), q["status"]["used"]["requests.cpu"].as_str()), (Some("1"), Some("100m")), "{q}");

    // A pod naming a ServiceAccount that does not exist: refused by the
    // ServiceAccount plugin (mutating phase), before quota charges it.
    let ghost = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "ghost"},
        "spec": {"serviceAccountName": "ghost", "containers": [{"name": "c", "image": "busybox:1"}]}});
    let r = c.http("POST", "/api/v1/namespaces/q/pods", JSON, ghost.to_string().as_bytes());
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(
        r.json()["message"],
        r#"pods "ghost" is forbidden: error looking up service account q/ghost: serviceaccount "ghost" not found"#
    );
    assert_eq!(c.http("GET", "/api/v1/namespaces/q/pods/ghost", None, b"").status, 404);
    let q = c.http("GET", "/api/v1/namespaces/q/resourcequotas/small", None, b"").json();
    assert_eq!(q["status"]["used"]["pods"].as_str(), Some("1"), "{q}");

    // Over the cpu quota: 403 with upstream's message, nothing created.
    let r = c.http("POST", "/api/v1/namespaces/q/pods", JSON, &pod("big", json!({"requests": {"cpu": "200m"}})));
    assert_eq!(r.status, 403, "{}", r.text());
    let msg = r.json()["message"].as_str().unwrap().to_string();
    assert!(msg.starts_with("pods \"big\" is forbidden: exceeded quota: small, requested: requests.cpu=200m, used: requests.cpu=100m, limited: requests.cpu=250m"), "{msg}");
    assert_eq!(c.http("GET", "/api/v1/namespaces/q/pods/big", None, b"").status, 404);

    // Within cpu, then over the pod count.
    let r = c.http("POST", "/api/v1/namespaces/q/pods", JSON, &pod("b", json!({"requests": {"cpu": "100m"}})));
    assert_eq!(r.status, 201, "{}", r.text());
    let r = c.http("POST", "/api/v1/namespaces/q/pods", JSON, &pod("c", json!({"requests": {"cpu": "10m"}})));
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.json()["message"].as_str().unwrap().contains("exceeded quota: small, requested: pods=1, used: pods=2, limited: pods=2"), "{}", r.text());
}

/// `--default-not-ready-toleration-seconds` and
/// `--default-unreachable-toleration-seconds` set what
/// DefaultTolerationSeconds gives new pods; a toleration the pod has is kept.
#[test]
fn default_toleration_seconds_follow_the_flags() {
    let c = Cluster::start_with(&["--default-not-ready-toleration-seconds=60", "--default-unreachable-toleration-seconds=30"]);
    let r = c.http("POST", "/api/v1/namespaces/default/pods", JSON, &pod("t", json!({})));
    assert_eq!(r.status, 201, "{}", r.text());
    let tol = r.json()["spec"]["tolerations"].clone();
    assert_eq!(
        tol,
        json!([
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60},
            {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 30}
        ])
    );
    let own = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "own"},
        "spec": {"containers": [{"name": "c", "image": "busybox:1"}],
            "tolerations": [{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5}]}});
    let r = c.http("POST", "/api/v1/namespaces/default/pods", JSON, own.to_string().as_bytes());
    assert_eq!(r.status, 201, "{}", r.text());
    let secs: Vec<(String, i64)> = r.json()["spec"]["tolerations"].as_array().unwrap().iter()
        .map(|t| (t["key"].as_str().unwrap().to_string(), t["tolerationSeconds"].as_i64().unwrap())).collect();
    assert_eq!(secs, vec![("node.kubernetes.io/unreachable".to_string(), 5), ("node.kubernetes.io/not-ready".to_string(), 60)]);

    // A negative value is refused at start, naming the flag.
    let out = std::process::Command::new(e2e::bin("rkube-apiserver"))
        .args(["--etcd-servers=http://127.0.0.1:1", "--insecure-port=0", "--default-unreachable-toleration-seconds=-5"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--default-unreachable-toleration-seconds must not be negative"), "{err}");
}
