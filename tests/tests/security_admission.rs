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

/// Two creates racing for the last unit of a quota cannot both win: the
/// charge is a compare-and-swap on the quota that re-checks the usage it
/// adds to, so 8 pods posted at once against `pods: 2` give exactly two
/// 201s, and the quota says 2.
#[test]
fn concurrent_creates_never_lose_a_quota_charge() {
    let c = Cluster::start();
    let post = |path: &str, body: serde_json::Value| c.http("POST", path, JSON, body.to_string().as_bytes());
    assert_eq!(post("/api/v1/namespaces", json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "race"}})).status, 201);
    let r = post("/api/v1/namespaces/race/resourcequotas",
        json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "two"}, "spec": {"hard": {"pods": "2"}}}));
    assert_eq!(r.status, 201, "{}", r.text());
    let results: Vec<(String, u16, serde_json::Value)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let c = &c;
                s.spawn(move || {
                    let name = format!("p{i}");
                    let r = c.http("POST", "/api/v1/namespaces/race/pods", JSON, &pod(&name, json!({})));
                    (name, r.status, r.json())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let created: Vec<_> = results.iter().filter(|r| r.1 == 201).map(|r| r.0.clone()).collect();
    assert_eq!(created.len(), 2, "{results:?}");
    for (name, status, body) in results.iter().filter(|r| r.1 != 201) {
        assert_eq!(*status, 403, "{body}");
        assert_eq!(body["reason"], "Forbidden");
        assert_eq!(
            body["message"],
            format!("pods \"{name}\" is forbidden: exceeded quota: two, requested: pods=1, used: pods=2, limited: pods=2")
        );
    }
    let q = c.http("GET", "/api/v1/namespaces/race/resourcequotas/two", None, b"").json();
    assert_eq!(q["status"]["used"]["pods"], "2", "{q}");
    let pods = c.http("GET", "/api/v1/namespaces/race/pods", None, b"").json();
    let mut stored: Vec<_> = pods["items"].as_array().unwrap().iter().map(|p| p["metadata"]["name"].as_str().unwrap().to_string()).collect();
    stored.sort();
    let mut created = created;
    created.sort();
    assert_eq!(stored, created);
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
