//! The real kubectl against rkube-apiserver's insecure port: the everyday
//! workflow, for the kubectl on the machine (1.32) and the oldest and newest
//! ones beside it. Every command must succeed and print nothing to stderr.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use e2e::Cluster;

const MANIFEST: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: demo
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: demo
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: busybox:1.36
        command: ["httpd", "-f", "-p", "80"]
        ports:
        - containerPort: 80
        resources:
          requests: {cpu: 100m, memory: 64Mi}
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: demo
spec:
  type: NodePort
  selector: {app: web}
  ports:
  - port: 80
    targetPort: 80
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: cfg
  namespace: demo
data:
  a: "1"
"#;

fn stdout_ok(c: &Cluster, v: &str, args: &[&str], input: Option<&str>) -> String {
    let out = match input {
        Some(i) => c.kubectl_stdin(v, args, i),
        None => c.kubectl_v(v, args),
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "kubectl {v} {args:?}: {stderr}");
    assert!(stderr.trim().is_empty(), "kubectl {v} {args:?} printed to stderr: {stderr}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn workflow(v: &str) {
    if !e2e::have_kubectl(v) {
        return;
    }
    let c = Cluster::start();
    let k = |args: &[&str]| stdout_ok(&c, v, args, None);

    // apply, then apply a change: kubectl reports what changed.
    let out = stdout_ok(&c, v, &["apply", "-f", "-"], Some(MANIFEST));
    for line in ["namespace/demo created", "deployment.apps/web created", "service/web created", "configmap/cfg created"] {
        assert!(out.contains(line), "{out}");
    }
    let changed = MANIFEST.replace("replicas: 2", "replicas: 3").replace("a: \"1\"", "a: \"2\"");
    let out = stdout_ok(&c, v, &["apply", "-f", "-"], Some(&changed));
    assert!(out.contains("deployment.apps/web configured"), "{out}");
    assert!(out.contains("configmap/cfg configured"), "{out}");
    assert!(out.contains("namespace/demo unchanged"), "{out}");
    assert!(out.contains("service/web unchanged"), "{out}");
    assert_eq!(k(&["get", "deploy", "web", "-n", "demo", "-o", "jsonpath={.spec.replicas}"]), "3");
    assert_eq!(k(&["get", "cm", "cfg", "-n", "demo", "-o", "jsonpath={.data.a}"]), "2");

    // get: table columns as kubectl users know them.
    let out = k(&["get", "deploy", "-n", "demo"]);
    assert!(out.starts_with("NAME   READY   UP-TO-DATE   AVAILABLE   AGE"), "{out}");
    let out = k(&["get", "svc", "-n", "demo", "-o", "wide"]);
    let header: Vec<&str> = out.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE", "SELECTOR"], "{out}");
    assert!(out.contains("NodePort") && out.contains("80:3") && out.contains("app=web"), "{out}");
    let out = k(&["get", "ns"]);
    assert!(out.lines().any(|l| l.starts_with("kube-system") && l.contains("Active")), "{out}");
    assert_eq!(k(&["get", "cm", "-n", "demo", "-o", "name"]).trim(), "configmap/cfg");
    let yaml = k(&["get", "deploy", "web", "-n", "demo", "-o", "yaml"]);
    assert!(yaml.contains("kind: Deployment") && yaml.contains("resourceVersion:") && yaml.contains("uid:"), "{yaml}");
    let json: serde_json::Value = serde_json::from_str(&k(&["get", "svc", "web", "-n", "demo", "-o", "json"])).unwrap();
    assert!(json["spec"]["clusterIP"].as_str().unwrap().starts_with("10."));
    let all = k(&["get", "all", "-n", "demo"]);
    assert!(all.contains("service/web") && all.contains("deployment.apps/web"), "{all}");

    // describe
    let out = k(&["describe", "deploy", "web", "-n", "demo"]);
    assert!(out.contains("Name:") && out.contains("web") && out.contains("Replicas:"), "{out}");
    let out = k(&["describe", "svc", "web", "-n", "demo"]);
    assert!(out.contains("NodePort:"), "{out}");

    // label, annotate, scale, set image, patch of each type.
    k(&["label", "deploy", "web", "-n", "demo", "tier=frontend"]);
    k(&["annotate", "svc", "web", "-n", "demo", "note=hello"]);
    assert_eq!(k(&["get", "deploy", "-n", "demo", "-l", "tier=frontend", "-o", "name"]).trim(), "deployment.apps/web");
    assert_eq!(k(&["get", "svc", "web", "-n", "demo", "-o", "jsonpath={.metadata.annotations.note}"]), "hello");
    k(&["scale", "deploy", "web", "-n", "demo", "--replicas=5"]);
    assert_eq!(k(&["get", "deploy", "web", "-n", "demo", "-o", "jsonpath={.spec.replicas}"]), "5");
    k(&["set", "image", "deploy/web", "-n", "demo", "web=busybox:1.37"]);
    assert_eq!(k(&["get", "deploy", "web", "-n", "demo", "-o", "jsonpath={.spec.template.spec.containers[0].image}"]), "busybox:1.37");
    // The container kept its other fields: strategic merge by name.
    assert_eq!(k(&["get", "deploy", "web", "-n", "demo", "-o", "jsonpath={.spec.template.spec.containers[0].ports[0].containerPort}"]), "80");
    k(&["patch", "deploy", "web", "-n", "demo", "-p", r#"{"spec":{"replicas":2}}"#]);
    k(&["patch", "deploy", "web", "-n", "demo", "--type=merge", "-p", r#"{"metadata":{"labels":{"m":"1"}}}"#]);
    k(&["patch", "deploy", "web", "-n", "demo", "--type=json", "-p", r#"[{"op":"replace","path":"/spec/replicas","value":4}]"#]);
    assert_eq!(k(&["get", "deploy", "web", "-n", "demo", "-o", "jsonpath={.spec.replicas} {.metadata.labels.m}"]), "4 1");

    // get -w sees ADDED, MODIFIED and DELETED.
    let mut watch = c
        .kubectl_cmd(v, &["get", "cm", "-n", "demo", "-w", "--output-watch-events"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = watch.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut seen = Vec::new();
    let expect = |want: &str, seen: &mut Vec<String>| {
        let deadline = Instant::now() + Duration::from_secs(15);
        while !seen.iter().any(|l: &String| l.contains(want)) {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(l) => seen.push(l),
                Err(_) => panic!("watch never printed {want:?}; saw {seen:?}"),
            }
        }
    };
    expect("EVENT      NAME   DATA   AGE", &mut seen);
    expect("ADDED      cfg    1", &mut seen);
    stdout_ok(&c, v, &["apply", "-f", "-"], Some("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: w1, namespace: demo}\ndata: {x: \"z\"}\n"));
    expect("ADDED      w1     1", &mut seen);
    k(&["label", "cm", "cfg", "-n", "demo", "z=1"]);
    expect("MODIFIED   cfg    1", &mut seen);
    k(&["delete", "cm", "cfg", "-n", "demo"]);
    expect("DELETED    cfg    1", &mut seen);
    let _ = watch.kill();
    let _ = watch.wait();

    // System namespaces are protected, with Kubernetes' message.
    let out = c.kubectl_v(v, &["delete", "ns", "kube-system"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(r#"namespaces "kube-system" is forbidden: this namespace may not be deleted"#), "{err}");

    // api-resources from discovery.
    let out = k(&["api-resources"]);
    for line in ["pods", "deployments", "leases", "namespaces"] {
        assert!(out.lines().any(|l| l.starts_with(line)), "{line} missing: {out}");
    }
    assert!(out.lines().any(|l| l.starts_with("deployments") && l.contains("deploy") && l.contains("apps/v1")), "{out}");

    // explain reads the OpenAPI v3 schemas.
    let out = k(&["explain", "pod.spec.containers.image"]);
    assert!(out.contains("FIELD: image"), "{out}");

    // delete: kubectl waits for the object to be gone.
    k(&["delete", "deploy", "web", "-n", "demo"]);
    let out = c.kubectl_v(v, &["get", "deploy", "web", "-n", "demo"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains(r#"deployments.apps "web" not found"#));
    k(&["delete", "svc", "web", "-n", "demo"]);
}

#[test]
fn kubectl_1_32_workflow() {
    workflow("default");
}

#[test]
fn kubectl_1_27_workflow() {
    workflow("1.27");
}

#[test]
fn kubectl_1_33_workflow() {
    workflow("1.33");
}

/// kubectl's generator commands send protobuf bodies.
fn create_generators(v: &str) {
    if !e2e::have_kubectl(v) {
        return;
    }
    let c = Cluster::start();
    let k = |args: &[&str]| stdout_ok(&c, v, args, None);
    assert_eq!(k(&["create", "namespace", "gen"]).trim(), "namespace/gen created");
    k(&["create", "deployment", "web", "-n", "gen", "--image=busybox:1.36", "--replicas=3", "--port=80"]);
    k(&["create", "configmap", "cfg", "-n", "gen", "--from-literal=a=b"]);
    k(&["create", "secret", "generic", "s", "-n", "gen", "--from-literal=k=v"]);
    k(&["create", "service", "nodeport", "web", "-n", "gen", "--tcp=80:8080"]);
    k(&["create", "serviceaccount", "robot", "-n", "gen"]);
    assert_eq!(k(&["get", "deploy", "web", "-n", "gen", "-o", "jsonpath={.spec.replicas} {.spec.template.spec.containers[0].ports[0].containerPort}"]), "3 80");
    assert_eq!(k(&["get", "secret", "s", "-n", "gen", "-o", "jsonpath={.data.k}"]), "dg==");
    assert_eq!(k(&["get", "svc", "web", "-n", "gen", "-o", "jsonpath={.spec.type} {.spec.ports[0].targetPort}"]), "NodePort 8080");
    assert_eq!(k(&["get", "cm", "cfg", "-n", "gen", "-o", "jsonpath={.data.a}"]), "b");
}

#[test]
fn kubectl_1_32_create_generators() {
    create_generators("default");
}

#[test]
fn kubectl_1_27_create_generators() {
    create_generators("1.27");
}

#[test]
fn kubectl_1_33_create_generators() {
    create_generators("1.33");
}

/// `kubectl version` against the server, health endpoints, the pod table
/// (plain and wide, once the pod is bound), and `kubectl apply` of a
/// manifest with a field Pod does not have: kubectl asks for strict field
/// validation and reports the server's strict decoding error; nothing is stored.
#[test]
fn kubectl_1_32_version_pod_table_and_strict_apply() {
    let c = Cluster::start();
    let k = |args: &[&str]| stdout_ok(&c, "default", args, None);

    // version -o json: the server says 1.32, and kubectl has nothing to warn about.
    let v: serde_json::Value = serde_json::from_str(&k(&["version", "-o", "json"])).unwrap();
    let server = v["serverVersion"]["gitVersion"].as_str().unwrap_or_default();
    assert!(server.starts_with("v1.32."), "{v}");
    for path in ["/healthz", "/version"] {
        let r = c.http("GET", path, None, b"");
        assert_eq!(r.status, 200, "{path}: {}", r.text());
    }

    // The pod table, plain and wide.
    k(&["run", "tbl", "--image=busybox:1"]);
    let bind = serde_json::json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "tbl"}, "target": {"kind": "Node", "name": "node-7"}});
    let r = c.http("POST", "/api/v1/namespaces/default/pods/tbl/binding", Some("application/json"), bind.to_string().as_bytes());
    assert_eq!(r.status, 201, "{}", r.text());
    let out = k(&["get", "pods"]);
    let header: Vec<&str> = out.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "READY", "STATUS", "RESTARTS", "AGE"], "{out}");
    assert!(out.lines().nth(1).is_some_and(|l| l.starts_with("tbl ") && l.contains("0/1") && l.contains("Pending")), "{out}");
    let out = k(&["get", "pods", "-o", "wide"]);
    let mut lines = out.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE", "NOMINATED", "NODE", "READINESS", "GATES"], "{out}");
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!((row[0], row[5], row[6]), ("tbl", "<none>", "node-7"), "{out}");

    // apply with an unknown field: the server's strict decoding error.
    let bad = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: strict\nspec:\n  containers:\n  - name: c\n    image: busybox:1\n    imagePullPolicie: Always\n";
    let out = c.kubectl_stdin("default", &["apply", "-f", "-"], bad);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(r#"Error from server (BadRequest): error when creating "STDIN": Pod in version "v1" cannot be handled as a Pod: strict decoding error: unknown field "spec.containers[0].imagePullPolicie""#),
        "{err}"
    );
    assert_eq!(c.http("GET", "/api/v1/namespaces/default/pods/strict", None, b"").status, 404);
}

/// `kubectl delete pod` waits: a bound pod is deleted gracefully (it stays,
/// with a deletionTimestamp, until the node agent confirms or grace 0), and
/// kubectl keeps watching by name until DELETED. A force delete through the
/// API ends the wait: kubectl exits 0 with nothing on stderr.
#[test]
fn kubectl_1_32_delete_pod_waits_for_graceful_deletion() {
    let c = Cluster::start();
    stdout_ok(&c, "default", &["run", "slow", "--image=busybox:1"], None);
    let bind = serde_json::json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "slow"}, "target": {"kind": "Node", "name": "node-1"}});
    let r = c.http("POST", "/api/v1/namespaces/default/pods/slow/binding", Some("application/json"), bind.to_string().as_bytes());
    assert_eq!(r.status, 201, "{}", r.text());

    // -v=6 logs each request kubectl makes (klog info lines on stderr):
    // how the test sees that kubectl is waiting on its watch.
    let mut child = c.kubectl_cmd("default", &["delete", "pod", "slow", "-v=6"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut all = Vec::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line.clone());
            all.push(line);
        }
        all
    });
    // kubectl has asked for the delete: the pod is marked, not gone.
    e2e::eventually_blocking("deletionTimestamp set", Duration::from_secs(10), || {
        c.http("GET", "/api/v1/namespaces/default/pods/slow", None, b"").json()["metadata"]["deletionTimestamp"].is_string().then_some(())
    });
    // Proof that kubectl looked: its watch for the pod's deletion was
    // answered (it is now reading events), and it is still waiting.
    e2e::eventually_blocking("kubectl's watch on the pod answered", Duration::from_secs(10), || {
        lines.try_iter().any(|l| l.contains("watch=true") && l.contains(" 200 OK")).then_some(())
    });
    assert!(child.try_wait().unwrap().is_none(), "kubectl delete returned while the pod still exists");
    assert_eq!(c.http("GET", "/api/v1/namespaces/default/pods/slow", None, b"").status, 200);

    let r = c.http("DELETE", "/api/v1/namespaces/default/pods/slow?gracePeriodSeconds=0", None, b"");
    assert_eq!(r.status, 200, "{}", r.text());
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if start.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            panic!("kubectl delete still waiting 10s after the pod was force-deleted");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = child.wait_with_output().unwrap();
    // Anything but -v=6's request lines (klog info: `I` + month and day):
    // warnings and errors still show.
    let stderr: Vec<String> = reader.join().unwrap().into_iter().filter(|l| !(l.starts_with('I') && l[1..].starts_with(|c: char| c.is_ascii_digit()))).collect();
    assert!(status.success(), "kubectl delete failed: {stderr:?}");
    assert!(stderr.is_empty(), "kubectl printed to stderr: {stderr:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), r#"pod "slow" deleted"#);
    assert_eq!(c.http("GET", "/api/v1/namespaces/default/pods/slow", None, b"").status, 404);
}

const SSA_DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: ssa
  labels: {app: ssa, tier: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: ssa}
  template:
    metadata:
      labels: {app: ssa}
    spec:
      containers:
      - name: c
        image: busybox:1
        ports:
        - containerPort: 80
"#;

fn managers(c: &Cluster, path: &str) -> Vec<String> {
    let obj = c.http("GET", path, None, b"").json();
    obj["metadata"]["managedFields"].as_array().into_iter().flatten().map(|e| format!("{}/{}", e["manager"].as_str().unwrap(), e["operation"].as_str().unwrap())).collect()
}

/// `kubectl apply --server-side` (PATCH application/apply-patch+yaml):
/// create, an idempotent re-apply, a conflict with another manager's change
/// (kubectl's own message and exit code), `--force-conflicts`, fields the
/// applier stops applying are removed unless another manager set them,
/// server-side dry run and diff.
fn server_side_apply(v: &str) {
    if !e2e::have_kubectl(v) {
        return;
    }
    let c = Cluster::start();
    let path = "/apis/apps/v1/namespaces/default/deployments/ssa";
    let apply = |manifest: &str| stdout_ok(&c, v, &["apply", "--server-side", "-f", "-"], Some(manifest));
    assert_eq!(apply(SSA_DEPLOYMENT).trim(), "deployment.apps/ssa serverside-applied");
    let first = c.http("GET", path, None, b"").json();
    assert_eq!(managers(&c, path), ["kubectl/Apply"]);
    assert_eq!(
        first["metadata"]["managedFields"][0]["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"c\"}"]["f:ports"]["k:{\"containerPort\":80,\"protocol\":\"TCP\"}"],
        serde_json::json!({".": {}, "f:containerPort": {}})
    );
    // The same configuration again changes nothing, not even the resourceVersion.
    apply(SSA_DEPLOYMENT);
    assert_eq!(c.http("GET", path, None, b"").json()["metadata"]["resourceVersion"], first["metadata"]["resourceVersion"]);

    // Another manager changes replicas: applying 2 again conflicts with it.
    stdout_ok(&c, v, &["scale", "deployment", "ssa", "--replicas=5"], None);
    let out = c.kubectl_stdin(v, &["apply", "--server-side", "-f", "-"], SSA_DEPLOYMENT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    // kubectl scale names no field manager: the User-Agent's first part
    // does, which is the binary's file name (`kubectl.1.27` for the extra versions).
    let scaler = e2e::kubectl_bin(v).file_name().unwrap().to_string_lossy().into_owned();
    assert!(stderr.contains(&format!("Apply failed with 1 conflict: conflict with \"{scaler}\" using apps/v1: .spec.replicas")), "{stderr}");
    assert_eq!(c.http("GET", path, None, b"").json()["spec"]["replicas"], 5);
    // Forced, the applier takes replicas back.
    stdout_ok(&c, v, &["apply", "--server-side", "--force-conflicts", "-f", "-"], Some(SSA_DEPLOYMENT));
    let d = c.http("GET", path, None, b"").json();
    assert_eq!(d["spec"]["replicas"], 2);
    assert_eq!(managers(&c, path), ["kubectl/Apply"], "the scaler owned nothing else");

    // A label set by `kubectl label` survives the applier dropping its own.
    stdout_ok(&c, v, &["label", "deployment", "ssa", "extra=1"], None);
    apply(&SSA_DEPLOYMENT.replace(", tier: web", ""));
    let labels = c.http("GET", path, None, b"").json()["metadata"]["labels"].clone();
    assert_eq!(labels, serde_json::json!({"app": "ssa", "extra": "1"}));

    // Dry run and diff change nothing.
    let rv = c.http("GET", path, None, b"").json()["metadata"]["resourceVersion"].clone();
    let out = stdout_ok(&c, v, &["apply", "--server-side", "--dry-run=server", "-f", "-"], Some(&SSA_DEPLOYMENT.replace("replicas: 2", "replicas: 3")));
    assert_eq!(out.trim(), "deployment.apps/ssa serverside-applied (server dry run)");
    let diff = c.kubectl_stdin(v, &["diff", "--server-side", "-f", "-"], &SSA_DEPLOYMENT.replace("replicas: 2", "replicas: 3"));
    assert_eq!(diff.status.code(), Some(1), "kubectl diff exits 1 when there are differences: {}", String::from_utf8_lossy(&diff.stderr));
    assert!(String::from_utf8_lossy(&diff.stdout).contains("+  replicas: 3"), "{}", String::from_utf8_lossy(&diff.stdout));
    assert_eq!(c.http("GET", path, None, b"").json()["metadata"]["resourceVersion"], rv);
}

#[test]
fn kubectl_1_32_server_side_apply() {
    server_side_apply("default");
}

#[test]
fn kubectl_1_27_server_side_apply() {
    server_side_apply("1.27");
}

#[test]
fn kubectl_1_33_server_side_apply() {
    server_side_apply("1.33");
}

/// Apply requests kubectl would never send: each is refused with the
/// Status Kubernetes gives, and nothing is stored.
#[test]
fn server_side_apply_bad_requests() {
    let c = Cluster::start();
    let cm = |name: &str| serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"a": "1"}}).to_string();
    let apply_ct = Some("application/apply-patch+yaml");
    for (path, ct, body, code, message) in [
        ("/api/v1/namespaces/default/configmaps/x", apply_ct, cm("x"), 422, "fieldManager: Required value: is required for apply patch"),
        ("/api/v1/namespaces/default/configmaps/x?fieldManager=t", apply_ct, "a: [1".to_string(), 400, "error decoding YAML"),
        ("/api/v1/namespaces/default/configmaps/x?fieldManager=t", apply_ct, cm("y"), 400, "the name of the object (y) does not match the name on the URL (x)"),
        ("/api/v1/namespaces/default/configmaps/x?fieldManager=t", apply_ct, serde_json::json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"}}).to_string(), 400, "does not match the expected kind"),
        ("/api/v1/namespaces/default/configmaps/x?fieldManager=t", apply_ct, serde_json::json!({"metadata": {"name": "x"}}).to_string(), 400, "apiVersion and kind must be set"),
        ("/api/v1/namespaces/default/configmaps/x?fieldManager=t&force=true", Some("application/merge-patch+json"), "{}".to_string(), 422, "force: Forbidden: may not be specified for non-apply patch"),
        ("/api/v1/namespaces/default/configmaps/x?fieldManager=t", apply_ct, serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "managedFields": [{"manager": "me"}]}}).to_string(), 422, "metadata.managedFields: Forbidden: must be nil"),
    ] {
        let r = c.http("PATCH", path, ct, body.as_bytes());
        let s = r.json();
        assert_eq!((r.status, s["kind"].as_str()), (code, Some("Status")), "{path}: {}", r.text());
        assert!(s["message"].as_str().unwrap_or("").contains(message), "{path}: {}", r.text());
    }
    assert_eq!(c.http("GET", "/api/v1/namespaces/default/configmaps/x", None, b"").status, 404);
    // A good one creates (201), then updates (200).
    let r = c.http("PATCH", "/api/v1/namespaces/default/configmaps/x?fieldManager=t", apply_ct, cm("x").as_bytes());
    assert_eq!(r.status, 201, "{}", r.text());
    let r = c.http("PATCH", "/api/v1/namespaces/default/configmaps/x?fieldManager=t", apply_ct, cm("x").replace("\"1\"", "\"2\"").as_bytes());
    assert_eq!((r.status, r.json()["data"]["a"].as_str()), (200, Some("2")), "{}", r.text());
}

/// kube-rs `Patch::Apply`, as a controller would use it: the conflict is a
/// 409 whose causes name the other manager and the field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_client_apply_conflict_names_manager_and_field() {
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::{Api, Patch, PatchParams};
    let c = Cluster::start();
    let client = c.client().await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    let mine = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "owned"}, "data": {"a": "1", "b": "1"}});
    cms.patch("owned", &PatchParams::apply("ctrl-a"), &Patch::Apply(&mine)).await.unwrap();
    let theirs = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "owned"}, "data": {"a": "2"}});
    match cms.patch("owned", &PatchParams::apply("ctrl-b"), &Patch::Apply(&theirs)).await {
        Err(kube::Error::Api(s)) => {
            assert_eq!((s.code, s.reason.as_str()), (409, "Conflict"));
            assert_eq!(s.message, "Apply failed with 1 conflict: conflict with \"ctrl-a\": .data.a");
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    let raw = c.http("PATCH", "/api/v1/namespaces/default/configmaps/owned?fieldManager=ctrl-b", Some("application/apply-patch+yaml"), theirs.to_string().as_bytes()).json();
    assert_eq!(raw["details"]["causes"], serde_json::json!([{"reason": "FieldManagerConflict", "message": "conflict with \"ctrl-a\"", "field": ".data.a"}]));
    // Forced: ctrl-b owns a, ctrl-a keeps b.
    let got = cms.patch("owned", &PatchParams::apply("ctrl-b").force(), &Patch::Apply(&theirs)).await.unwrap();
    assert_eq!(got.data.unwrap(), [("a".to_string(), "2".to_string()), ("b".to_string(), "1".to_string())].into());
    let fields: Vec<(String, serde_json::Value)> = got.metadata.managed_fields.unwrap().into_iter().map(|e| (e.manager.unwrap(), e.fields_v1.unwrap().0)).collect();
    assert_eq!(fields, [("ctrl-a".to_string(), serde_json::json!({"f:data": {"f:b": {}}})), ("ctrl-b".to_string(), serde_json::json!({"f:data": {"f:a": {}}}))]);
}
