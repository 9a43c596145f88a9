//! API semantics beyond kubectl's everyday use: watches (resume, 410,
//! selector transitions, bookmarks), pagination, graceful deletion,
//! finalizers, binding, subresources — through the `kube` crate as a second
//! real client, and raw HTTP where exact wire behaviour matters.

use std::collections::BTreeMap;
use std::time::Duration;

use e2e::Cluster;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use serde_json::{json, Value};

const JSON: Option<&str> = Some("application/json");

fn cm(name: &str, labels: &[(&str, &str)]) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name, "labels": labels.iter().cloned().collect::<BTreeMap<_, _>>()}, "data": {"k": "v"}})).unwrap()
}

/// The lines of a watch stream that ends after `timeout` seconds.
fn watch_lines(c: &Cluster, path: &str) -> Vec<Value> {
    let r = c.http("GET", path, None, b"");
    assert_eq!(r.status, 200, "{}", r.text());
    r.text().lines().filter(|l| !l.is_empty()).map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn summary(events: &[Value]) -> Vec<String> {
    events.iter().map(|e| format!("{} {}", e["type"].as_str().unwrap(), e["object"]["metadata"]["name"].as_str().unwrap_or(""))).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn kube_client_create_list_watch_patch_delete() {
    let c = Cluster::start();
    let client = c.client().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let a = api.create(&PostParams::default(), &cm("a", &[("app", "x")])).await.unwrap();
    let rv_after_a = a.metadata.resource_version.clone().unwrap();
    api.create(&PostParams::default(), &cm("b", &[("app", "y")])).await.unwrap();
    let list = api.list(&ListParams::default().labels("app=x")).await.unwrap();
    assert_eq!(list.items.iter().map(|c| c.metadata.name.clone().unwrap()).collect::<Vec<_>>(), ["a"]);
    // resourceVersion is the etcd revision: a list's is at least every item's.
    let list_rv: i64 = list.metadata.resource_version.unwrap().parse().unwrap();
    assert!(list_rv >= rv_after_a.parse::<i64>().unwrap());

    // Watch from a resourceVersion: exactly the changes after it, in order.
    let mut stream = api.watch(&WatchParams::default().timeout(10), &rv_after_a).await.unwrap().boxed();
    api.patch("a", &PatchParams::default(), &Patch::Merge(json!({"data": {"k": "v2"}}))).await.unwrap();
    api.delete("a", &DeleteParams::default()).await.unwrap();
    let mut got = Vec::new();
    while got.len() < 3 {
        match stream.try_next().await.unwrap().expect("stream ended early") {
            WatchEvent::Added(o) => got.push(format!("ADDED {}", o.metadata.name.unwrap())),
            WatchEvent::Modified(o) => got.push(format!("MODIFIED {} {}", o.metadata.name.unwrap(), o.data.unwrap()["k"])),
            WatchEvent::Deleted(o) => got.push(format!("DELETED {}", o.metadata.name.unwrap())),
            WatchEvent::Bookmark(_) => {}
            WatchEvent::Error(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(got, ["ADDED b", "MODIFIED a v2", "DELETED a"]);
    assert!(api.get_opt("a").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_semantics() {
    let c = Cluster::start();
    let post = |name: &str, app: &str| {
        let r = c.http("POST", "/api/v1/namespaces/default/configmaps", JSON, serde_json::to_vec(&cm(name, &[("app", app)])).unwrap().as_slice());
        assert_eq!(r.status, 201, "{}", r.text());
        r.json()["metadata"]["resourceVersion"].as_str().unwrap().to_string()
    };
    let rv0 = post("w", "a");
    post("w2", "a");
    // A second apiserver on the same etcd starts its watch cache now: a
    // revision from before that is older than its window reaches, so it
    // answers 200 with one ERROR event (410 Expired), as upstream does.
    let second = e2e::ApiServer::start(&c.etcd, c.dir.path(), &[]);
    let r = e2e::http(&second.url, "GET", &format!("/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={rv0}&timeoutSeconds=2"), None, b"");
    let ev: Vec<Value> = r.text().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!((ev[0]["type"].as_str(), ev[0]["object"]["code"].as_u64(), ev[0]["object"]["reason"].as_str()), (Some("ERROR"), Some(410), Some("Expired")));
    assert!(ev[0]["object"]["message"].as_str().unwrap().starts_with(&format!("too old resource version: {rv0} (")));
    drop(second);

    // Selector transitions: leaving the selection is DELETED, entering it ADDED.
    let patch = |app: &str| {
        let r = c.http("PATCH", "/api/v1/namespaces/default/configmaps/w", Some("application/merge-patch+json"), json!({"metadata": {"labels": {"app": app}}}).to_string().as_bytes());
        assert_eq!(r.status, 200);
    };
    patch("b");
    patch("a");
    post("other", "b");
    let ev = watch_lines(&c, &format!("/api/v1/namespaces/default/configmaps?watch=true&labelSelector=app%3Da&resourceVersion={rv0}&timeoutSeconds=2"));
    assert_eq!(summary(&ev), ["ADDED w2", "DELETED w", "ADDED w"]);

    // kubectl's single-object watch: rv=0 + name selector starts with the object.
    let ev = watch_lines(&c, "/api/v1/namespaces/default/configmaps?watch=true&resourceVersion=0&fieldSelector=metadata.name%3Dw&timeoutSeconds=1");
    assert_eq!(summary(&ev), ["ADDED w"]);

    // Bookmarks, when asked for: only metadata.resourceVersion set.
    let ev = watch_lines(&c, &format!("/api/v1/namespaces/default/configmaps?watch=true&allowWatchBookmarks=true&resourceVersion={rv0}&timeoutSeconds=7"));
    let bm = ev.iter().find(|e| e["type"] == "BOOKMARK").expect("a bookmark within 7s");
    assert_eq!(bm["object"]["kind"], "ConfigMap");
    assert!(bm["object"]["metadata"]["resourceVersion"].as_str().unwrap().parse::<i64>().unwrap() >= rv0.parse::<i64>().unwrap());
    assert_eq!(bm["object"]["metadata"].as_object().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn pagination_with_limit_and_continue() {
    let c = Cluster::start();
    for i in 0..5 {
        let r = c.http("POST", "/api/v1/namespaces/default/configmaps", JSON, serde_json::to_vec(&cm(&format!("p{i}"), &[])).unwrap().as_slice());
        assert_eq!(r.status, 201);
    }
    let mut names = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let path = format!("/api/v1/namespaces/default/configmaps?limit=2{}", if token.is_empty() { String::new() } else { format!("&continue={token}") });
        let l = c.http("GET", &path, None, b"").json();
        assert!(l["items"].as_array().unwrap().len() <= 2);
        names.extend(l["items"].as_array().unwrap().iter().map(|i| i["metadata"]["name"].as_str().unwrap().to_string()));
        pages += 1;
        match l["metadata"]["continue"].as_str() {
            Some(t) if !t.is_empty() => token = t.to_string(),
            _ => break,
        }
    }
    assert_eq!(names, ["p0", "p1", "p2", "p3", "p4"]);
    assert_eq!(pages, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn pods_binding_status_and_graceful_deletion() {
    let c = Cluster::start();
    let client = c.client().await;
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}})).unwrap();
    let created = pods.create(&PostParams::default(), &pod).await.unwrap();
    // Defaults as Kubernetes sets them.
    let spec = created.spec.as_ref().unwrap();
    assert_eq!(spec.restart_policy.as_deref(), Some("Always"));
    assert_eq!(spec.scheduler_name.as_deref(), Some("default-scheduler"));
    assert_eq!(spec.containers[0].image_pull_policy.as_deref(), Some("Always"));
    assert_eq!(created.status.as_ref().unwrap().phase.as_deref(), Some("Pending"));
    assert_eq!(created.status.as_ref().unwrap().qos_class.as_deref(), Some("BestEffort"));

    // Binding: once.
    let bind = |node: &str| json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p"}, "target": {"kind": "Node", "name": node}}).to_string();
    let r = c.http("POST", "/api/v1/namespaces/default/pods/p/binding", JSON, bind("n1").as_bytes());
    assert_eq!(r.status, 201, "{}", r.text());
    let bound = pods.get("p").await.unwrap();
    assert_eq!(bound.spec.as_ref().unwrap().node_name.as_deref(), Some("n1"));
    let cond = bound.status.as_ref().unwrap().conditions.as_ref().unwrap().iter().find(|c| c.type_ == "PodScheduled").unwrap().clone();
    assert_eq!(cond.status, "True");
    let r = c.http("POST", "/api/v1/namespaces/default/pods/p/binding", JSON, bind("n2").as_bytes());
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(r.json()["message"].as_str().unwrap().contains("is already assigned to node \"n1\""));

    // Status subresource changes only status; the main resource ignores status.
    let r = c.http("PATCH", "/api/v1/namespaces/default/pods/p/status", Some("application/merge-patch+json"),
        json!({"status": {"phase": "Running"}, "spec": {"nodeName": "elsewhere"}}).to_string().as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    let p = pods.get("p").await.unwrap();
    assert_eq!(p.status.as_ref().unwrap().phase.as_deref(), Some("Running"));
    assert_eq!(p.spec.as_ref().unwrap().node_name.as_deref(), Some("n1"));
    let r = c.http("PATCH", "/api/v1/namespaces/default/pods/p", Some("application/merge-patch+json"),
        json!({"status": {"phase": "Failed"}, "metadata": {"labels": {"x": "1"}}}).to_string().as_bytes());
    assert_eq!(r.status, 200);
    let p = pods.get("p").await.unwrap();
    assert_eq!(p.status.as_ref().unwrap().phase.as_deref(), Some("Running"));
    assert_eq!(p.metadata.labels.unwrap()["x"], "1");

    // A pod on a node is deleted gracefully: it stays, marked, until grace 0.
    pods.delete("p", &DeleteParams::default()).await.unwrap();
    let p = pods.get("p").await.unwrap();
    assert!(p.metadata.deletion_timestamp.is_some());
    assert_eq!(p.metadata.deletion_grace_period_seconds, Some(30));
    pods.delete("p", &DeleteParams { grace_period_seconds: Some(0), ..Default::default() }).await.unwrap();
    assert!(pods.get_opt("p").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn finalizers_propagation_namespaces_and_scale() {
    let c = Cluster::start();
    let client = c.client().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    cms.create(&PostParams::default(), &cm("f", &[])).await.unwrap();
    // Foreground deletion is recorded as a finalizer for the garbage collector.
    cms.delete("f", &DeleteParams::foreground()).await.unwrap();
    let f = cms.get("f").await.unwrap();
    assert!(f.metadata.deletion_timestamp.is_some());
    assert_eq!(f.metadata.finalizers.as_deref(), Some(&["foregroundDeletion".to_string()][..]));
    // Removing the last finalizer lets it go.
    cms.patch("f", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"finalizers": null}}))).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(cms.get_opt("f").await.unwrap().is_none());

    // Namespace deletion: Terminating, and no new content.
    let r = c.http("POST", "/api/v1/namespaces", JSON, json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "gone"}}).to_string().as_bytes());
    assert_eq!(r.status, 201);
    let r = c.http("DELETE", "/api/v1/namespaces/gone", None, b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["status"]["phase"], "Terminating");
    let r = c.http("POST", "/api/v1/namespaces/gone/configmaps", JSON, serde_json::to_vec(&cm("x", &[])).unwrap().as_slice());
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.json()["message"].as_str().unwrap().contains("unable to create new content in namespace gone because it is being terminated"));
    // The namespace controller's last step: finalize empties spec.finalizers and it disappears.
    let r = c.http("PUT", "/api/v1/namespaces/gone/finalize", JSON,
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "gone"}, "spec": {"finalizers": []}}).to_string().as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(c.http("GET", "/api/v1/namespaces/gone", None, b"").status, 404);

    // Scale subresource.
    let d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": {"selector": {"matchLabels": {"a": "b"}},
        "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i:1"}]}}}});
    assert_eq!(c.http("POST", "/apis/apps/v1/namespaces/default/deployments", JSON, d.to_string().as_bytes()).status, 201);
    let s = c.http("GET", "/apis/apps/v1/namespaces/default/deployments/d/scale", None, b"").json();
    assert_eq!((s["kind"].as_str(), s["apiVersion"].as_str(), s["spec"]["replicas"].as_i64(), s["status"]["selector"].as_str()),
        (Some("Scale"), Some("autoscaling/v1"), Some(1), Some("a=b")));
    let r = c.http("PATCH", "/apis/apps/v1/namespaces/default/deployments/d/scale", Some("application/merge-patch+json"), br#"{"spec":{"replicas":4}}"#);
    assert_eq!((r.status, r.json()["spec"]["replicas"].as_i64()), (200, Some(4)));
    let d = c.http("GET", "/apis/apps/v1/namespaces/default/deployments/d", None, b"").json();
    assert_eq!((d["spec"]["replicas"].as_i64(), d["metadata"]["generation"].as_i64()), (Some(4), Some(2)));
}

/// Namespace lifecycle as Kubernetes has it: the system namespaces exist
/// from the start; NamespaceLifecycle refuses to delete the immortal ones
/// (`default`, `kube-system`, `kube-public` — upstream's set — and
/// `kube-node-lease`, which rkube keeps too); a new namespace carries the `kubernetes` finalizer.
#[tokio::test(flavor = "multi_thread")]
async fn namespace_lifecycle() {
    let c = Cluster::start();
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        let r = c.http("GET", &format!("/api/v1/namespaces/{ns}"), None, b"");
        assert_eq!((r.status, r.json()["status"]["phase"].as_str()), (200, Some("Active")), "{ns}: {}", r.text());
    }
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        let r = c.http("DELETE", &format!("/api/v1/namespaces/{ns}"), None, b"");
        let s = r.json();
        assert_eq!((r.status, s["reason"].as_str()), (403, Some("Forbidden")), "{ns}: {}", r.text());
        assert_eq!(s["message"], format!("namespaces \"{ns}\" is forbidden: this namespace may not be deleted"));
        assert_eq!(c.http("GET", &format!("/api/v1/namespaces/{ns}"), None, b"").json()["status"]["phase"], "Active");
    }
    let r = c.http("POST", "/api/v1/namespaces", JSON, json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "fresh"}}).to_string().as_bytes());
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["spec"]["finalizers"], json!(["kubernetes"]));
    assert_eq!(c.http("GET", "/api/v1/namespaces/fresh", None, b"").json()["spec"]["finalizers"], json!(["kubernetes"]));
}

/// `--disable-admission-plugins=NamespaceLifecycle` turns the plugin off:
/// objects may be created in a namespace that does not exist, and the
/// immortal namespaces may be deleted — as kube-apiserver without it.
#[tokio::test(flavor = "multi_thread")]
async fn namespace_lifecycle_can_be_disabled() {
    let c = Cluster::start_with(&["--disable-admission-plugins=NamespaceLifecycle,ServiceAccount"]);
    let r = c.http("POST", "/api/v1/namespaces/nowhere/configmaps", JSON, serde_json::to_vec(&cm("x", &[])).unwrap().as_slice());
    assert_eq!(r.status, 201, "{}", r.text());
    let r = c.http("DELETE", "/api/v1/namespaces/kube-public", None, b"");
    assert_eq!((r.status, r.json()["status"]["phase"].as_str()), (200, Some("Terminating")), "{}", r.text());
}

/// A normal DELETE of a Service frees its ClusterIP and NodePort at once:
/// the same fixed values can be taken again straight away.
#[tokio::test(flavor = "multi_thread")]
async fn service_delete_releases_cluster_ip_and_node_port() {
    let c = Cluster::start();
    let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "np"},
        "spec": {"type": "NodePort", "clusterIP": "10.96.0.77", "selector": {"app": "x"}, "ports": [{"port": 80, "nodePort": 30077}]}});
    for round in 0..2 {
        let r = c.http("POST", "/api/v1/namespaces/default/services", JSON, svc.to_string().as_bytes());
        assert_eq!(r.status, 201, "round {round}: {}", r.text());
        let s = r.json();
        assert_eq!((s["spec"]["clusterIP"].as_str(), s["spec"]["ports"][0]["nodePort"].as_i64()), (Some("10.96.0.77"), Some(30077)));
        let r = c.http("DELETE", "/api/v1/namespaces/default/services/np", None, b"");
        assert_eq!(r.status, 200, "round {round}: {}", r.text());
        assert_eq!(c.http("GET", "/api/v1/namespaces/default/services/np", None, b"").status, 404);
    }
    // And a different Service may take them too.
    let mut other = svc.clone();
    other["metadata"]["name"] = json!("other");
    let r = c.http("POST", "/api/v1/namespaces/default/services", JSON, other.to_string().as_bytes());
    assert_eq!(r.status, 201, "{}", r.text());
}

/// deletecollection with a label selector deletes exactly the matching objects.
#[tokio::test(flavor = "multi_thread")]
async fn deletecollection_with_label_selector() {
    let c = Cluster::start();
    for (name, tier) in [("a", "web"), ("b", "web"), ("c", "db"), ("d", "web-2")] {
        let r = c.http("POST", "/api/v1/namespaces/default/configmaps", JSON, serde_json::to_vec(&cm(name, &[("tier", tier)])).unwrap().as_slice());
        assert_eq!(r.status, 201);
    }
    let r = c.http("POST", "/api/v1/namespaces/kube-system/configmaps", JSON, serde_json::to_vec(&cm("e", &[("tier", "web")])).unwrap().as_slice());
    assert_eq!(r.status, 201);
    let r = c.http("DELETE", "/api/v1/namespaces/default/configmaps?labelSelector=tier%3Dweb", None, b"");
    assert_eq!(r.status, 200, "{}", r.text());
    let mut deleted: Vec<String> = r.json()["items"].as_array().unwrap().iter().map(|i| i["metadata"]["name"].as_str().unwrap().to_string()).collect();
    deleted.sort();
    assert_eq!(deleted, ["a", "b"]);
    let names = |path: &str| -> Vec<String> {
        c.http("GET", path, None, b"").json()["items"].as_array().unwrap().iter().map(|i| i["metadata"]["name"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(names("/api/v1/namespaces/default/configmaps"), ["c", "d"]);
    assert_eq!(names("/api/v1/namespaces/kube-system/configmaps"), ["e"]);
}

/// etcd's own gauge of open watchers (`etcd_debugging_mvcc_watcher_total`).
fn etcd_watchers(c: &Cluster) -> f64 {
    let m = e2e::http(&c.etcd.endpoint, "GET", "/metrics", None, b"").text();
    e2e::metric(&m, "etcd_debugging_mvcc_watcher_total").unwrap_or_else(|| panic!("no etcd_debugging_mvcc_watcher_total in etcd's /metrics"))
}

/// Many watchers, one etcd watch per resource: 30 open pod watches through
/// the apiserver are served from its watch cache, so etcd's watcher count
/// stays where it was.
#[tokio::test(flavor = "multi_thread")]
async fn many_watchers_share_one_etcd_watch() {
    use std::io::{Read, Write};
    let c = Cluster::start();
    let before = etcd_watchers(&c);
    // The gauge counts the apiserver's own cache watches (one per resource).
    assert!(before >= 1.0, "etcd reports {before} watchers with an apiserver running");
    let hostport = c.api.url.trim_start_matches("http://").to_string();
    let mut streams = Vec::new();
    for _ in 0..30 {
        let mut s = std::net::TcpStream::connect(&hostport).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
        write!(s, "GET /api/v1/pods?watch=true&timeoutSeconds=30 HTTP/1.1\r\nHost: {hostport}\r\n\r\n").unwrap();
        // The response head arrives once the watch is established.
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            assert_eq!(s.read(&mut b).unwrap(), 1, "watch closed early: {}", String::from_utf8_lossy(&head));
            head.push(b[0]);
        }
        assert!(head.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&head));
        streams.push(s);
    }
    // Every watch is live: each sees the pod created now.
    let r = c.http("POST", "/api/v1/namespaces/default/pods", JSON,
        json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}).to_string().as_bytes());
    assert_eq!(r.status, 201, "{}", r.text());
    for s in &mut streams {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&got).contains(r#""type":"ADDED""#) {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "watch ended before the ADDED event: {}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
    }
    let during = etcd_watchers(&c);
    assert_eq!(during, before, "etcd watchers went from {before} to {during} with 30 apiserver watches open");
    eprintln!("etcd watchers: {before} before, {during} with 30 pod watches open");
}

/// A resourceVersion compacted away in etcd cannot be replayed: an apiserver
/// that has to read history from etcd (here one started after the
/// compaction, whose cache begins at the current revision) answers the watch
/// with one ERROR event, 410 Expired; and a list at that exact version is
/// refused as well, since etcd no longer has it.
#[tokio::test(flavor = "multi_thread")]
async fn watch_from_compacted_revision_is_410_gone() {
    let c = Cluster::start();
    let post = |name: &str| {
        let r = c.http("POST", "/api/v1/namespaces/default/configmaps", JSON, serde_json::to_vec(&cm(name, &[("app", "x")])).unwrap().as_slice());
        assert_eq!(r.status, 201, "{}", r.text());
        r.json()["metadata"]["resourceVersion"].as_str().unwrap().parse::<i64>().unwrap()
    };
    let old = post("a");
    post("b");
    let last = post("c");
    let mut etcd = c.etcd.client().await;
    etcd.compact(last, Some(etcd_client::CompactionOptions::new().with_physical())).await.unwrap();
    // etcd itself now refuses the old revision.
    let err = etcd.get("/registry/configmaps/default/a", Some(etcd_client::GetOptions::new().with_revision(old))).await.unwrap_err();
    assert!(err.to_string().contains("compacted"), "{err}");

    let second = e2e::ApiServer::start(&c.etcd, c.dir.path(), &[]);
    for api in [&c.api.url, &second.url] {
        let r = e2e::http(api, "GET", &format!("/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={old}&timeoutSeconds=2"), None, b"");
        assert_eq!(r.status, 200, "{}", r.text());
        let ev: Vec<Value> = r.text().lines().filter(|l| !l.is_empty()).map(|l| serde_json::from_str(l).unwrap()).collect();
        if api == &c.api.url {
            // The first apiserver's watch cache still holds the events after
            // `old` (upstream's cacher serves them the same way): exact replay.
            assert_eq!(summary(&ev), ["ADDED b", "ADDED c"], "{ev:?}");
            continue;
        }
        assert_eq!(ev.len(), 1, "{ev:?}");
        assert_eq!((ev[0]["type"].as_str(), ev[0]["object"]["code"].as_u64(), ev[0]["object"]["reason"].as_str()), (Some("ERROR"), Some(410), Some("Expired")), "{ev:?}");
    }
}

/// The watch cache's own etcd watch resumes from the last revision it
/// applied when etcd comes back. If that history was compacted meanwhile,
/// the cache lists again and turns the differences into events: a client
/// that kept watching through the apiserver sees, on the same open watch,
/// exactly the changes it missed, and lists match etcd afterwards.
///
/// etcd is restarted on a port the apiserver does not know; the changes
/// and the compaction happen there; then etcd comes back where the
/// apiserver looks for it.
#[tokio::test(flavor = "multi_thread")]
async fn watch_cache_lists_again_when_its_history_was_compacted() {
    let mut c = Cluster::start();
    let post = |name: &str| {
        let r = c.http("POST", "/api/v1/namespaces/default/configmaps", JSON, serde_json::to_vec(&cm(name, &[])).unwrap().as_slice());
        assert_eq!(r.status, 201, "{}", r.text());
        r.json()["metadata"]["resourceVersion"].as_str().unwrap().to_string()
    };
    post("a");
    post("b");
    let rv = post("c");
    let api: Api<ConfigMap> = Api::namespaced(c.client().await, "default");
    let mut watch = api.watch(&WatchParams::default().timeout(120), &rv).await.unwrap().boxed();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(ev) = watch.next().await {
            if matches!(ev, Ok(WatchEvent::Bookmark(_))) {
                continue;
            }
            // (what happened, resourceVersion)
            let rv = |o: &ConfigMap| o.metadata.resource_version.as_deref().and_then(|v| v.parse::<i64>().ok()).unwrap_or(-1);
            let _ = tx.send(match ev {
                Ok(WatchEvent::Added(o)) => (format!("ADDED {}", o.metadata.name.clone().unwrap_or_default()), rv(&o)),
                Ok(WatchEvent::Modified(o)) => (format!("MODIFIED {}", o.metadata.name.clone().unwrap_or_default()), rv(&o)),
                Ok(WatchEvent::Deleted(o)) => (format!("DELETED {}", o.metadata.name.clone().unwrap_or_default()), rv(&o)),
                other => (format!("{other:?}"), -1),
            });
        }
        let _ = tx.send(("watch ended".to_string(), -1));
    });

    // Behind the apiserver's back: delete a, change b, add d, compact.
    let hidden = format!("http://127.0.0.1:{}", e2e::free_port());
    c.etcd.restart_at(&hidden);
    let mut etcd = etcd_client::Client::connect([hidden.as_str()], None).await.unwrap();
    let key = |n: &str| format!("/registry/configmaps/default/{n}");
    let stored = |resp: etcd_client::GetResponse| serde_json::from_slice::<Value>(resp.kvs()[0].value()).unwrap();
    etcd.delete(key("a"), None).await.unwrap();
    let mut b = stored(etcd.get(key("b"), None).await.unwrap());
    b["data"] = json!({"k": "changed"});
    etcd.put(key("b"), serde_json::to_vec(&b).unwrap(), None).await.unwrap();
    let mut d = stored(etcd.get(key("c"), None).await.unwrap());
    d["metadata"]["name"] = json!("d");
    d["metadata"]["uid"] = json!("00000000-0000-0000-0000-00000000000d");
    let now = etcd.put(key("d"), serde_json::to_vec(&d).unwrap(), None).await.unwrap().header().unwrap().revision();
    etcd.compact(now, Some(etcd_client::CompactionOptions::new().with_physical())).await.unwrap();
    drop(etcd);
    let endpoint = c.etcd.endpoint.clone();
    c.etcd.restart_at(&endpoint);

    let mut seen = Vec::new();
    while seen.len() < 3 {
        match tokio::time::timeout(Duration::from_secs(30), rx.recv()).await {
            Ok(Some(e)) => seen.push(e),
            other => panic!("watch got {seen:?}, then {other:?}"),
        }
    }
    let rv_of = |what: &str| seen.iter().find(|(w, _)| w == what).map(|(_, rv)| *rv).unwrap();
    // It was the compacted path, not a plain resume: a resumed etcd watch
    // would replay the delete of `a` at its own revision, before the puts
    // of `b` and `d`; the re-list can only date it at the list's revision.
    assert!(rv_of("DELETED a") >= rv_of("ADDED d"), "a's delete replayed, not found by a re-list: {seen:?}");
    let mut kinds: Vec<String> = seen.iter().map(|(w, _)| w.clone()).collect();
    kinds.sort();
    assert_eq!(kinds, ["ADDED d", "DELETED a", "MODIFIED b"]);
    let list = api.list(&ListParams::default()).await.unwrap();
    let names: Vec<String> = list.items.iter().map(|o| o.metadata.name.clone().unwrap()).collect();
    assert_eq!(names, ["b", "c", "d"]);
    assert_eq!(list.items[0].data.as_ref().unwrap()["k"], "changed");
    // Nothing more arrives on the watch (no duplicates), and it is still
    // open: the next thing it carries is a write made now.
    let r = c.http("POST", "/api/v1/namespaces/default/configmaps", JSON, serde_json::to_vec(&cm("e", &[])).unwrap().as_slice());
    assert_eq!(r.status, 201, "{}", r.text());
    let next = tokio::time::timeout(Duration::from_secs(30), rx.recv()).await.expect("the watch carries a new write").unwrap();
    assert_eq!(next.0, "ADDED e", "unexpected event after the three: {next:?}");
}

/// `--etcd-prefix=/other`: every key the apiserver writes — objects,
/// namespaces, the ClusterIP bitmap — is under /other/, none under /registry/.
#[tokio::test(flavor = "multi_thread")]
async fn etcd_prefix_is_honoured_for_every_key() {
    let c = Cluster::start_with(&["--etcd-prefix=/other"]);
    let post = |path: &str, body: Value| {
        let r = c.http("POST", path, JSON, body.to_string().as_bytes());
        assert_eq!(r.status, 201, "{path}: {}", r.text());
    };
    post("/api/v1/namespaces", json!({"metadata": {"name": "team"}}));
    post("/api/v1/namespaces/team/pods", json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}));
    post("/api/v1/namespaces/team/services", json!({"metadata": {"name": "web"}, "spec": {"type": "ClusterIP", "ports": [{"port": 80}]}}));
    let r = c.http("GET", "/api/v1/namespaces/team/services/web", None, b"");
    assert!(r.json()["spec"]["clusterIP"].as_str().is_some_and(|ip| ip.starts_with("10.")), "{}", r.text());

    let keys: Vec<String> = c.etcd.keys().await.into_iter().map(|(k, _)| k).collect();
    let outside: Vec<&String> = keys.iter().filter(|k| !k.starts_with("/other/")).collect();
    assert!(outside.is_empty(), "keys outside /other/: {outside:?}");
    assert!(!keys.iter().any(|k| k.starts_with("/registry")), "{keys:?}");
    for want in ["/other/namespaces/team", "/other/pods/team/p", "/other/ranges/serviceips", "/other/namespaces/default"] {
        assert!(keys.iter().any(|k| k == want), "no {want} in {keys:?}");
    }
    assert!(keys.iter().any(|k| k.starts_with("/other/services/") && k.ends_with("/team/web")), "no service key in {keys:?}");
}
