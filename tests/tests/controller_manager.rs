//! The controller manager process: /healthz and /metrics, and leader
//! election — of two managers with `--leader-elect` only one acts; when it
//! is killed the other takes over, without doubling pods.

mod controller_common;

use controller_common::*;

const LE: &[&str] = &[
    "--leader-elect=true",
    "--leader-elect-lease-duration=2s",
    "--leader-elect-renew-deadline=1500ms",
    "--leader-elect-retry-period=250ms",
    "--controllers=replicaset,deployment",
];

fn get(url: &str, path: &str) -> e2e::HttpResponse {
    e2e::http(url, "GET", path, None, b"")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_and_metrics() {
    let cluster = e2e::Cluster::start();
    let ctrl = Controller::start(&cluster, &[]);
    let url = ctrl.health_url.clone();
    eventually("healthz", WAIT, || async {
        let u = url.clone();
        tokio::task::spawn_blocking(move || std::net::TcpStream::connect(u.trim_start_matches("http://")).is_ok()).await.unwrap().then_some(())
    })
    .await;
    let r = get(&url, "/healthz");
    assert_eq!((r.status, r.text().as_str()), (200, "ok"));
    // Some work so the queues have samples.
    let out = cluster.kubectl_stdin("default", &["create", "deployment", "web", "--image=nginx", "--replicas=2"], "");
    assert!(out.status.success());
    let client = cluster.client().await;
    eventually("2 pods", WAIT, || async { (active_pods(&client, "default").await.len() == 2).then_some(()) }).await;
    let m = get(&url, "/metrics").text();
    for want in [
        "workqueue_depth{name=\"replicaset\"}",
        "workqueue_depth{name=\"deployment\"}",
        "workqueue_adds_total{name=\"replicaset\"}",
        "workqueue_retries_total{name=\"endpoint\"}",
        "workqueue_work_duration_seconds_count{name=\"deployment\"}",
    ] {
        assert!(m.contains(want), "{want} missing from /metrics:\n{m}");
    }
    assert_eq!(get(&url, "/nope").status, 404);
}

/// Runs controllers, so leads: a controller manager creates its work
/// queues (and their `workqueue_*{name=...}` series) only once it has
/// acquired the lease.
fn leads(c: &Controller) -> bool {
    c.metrics().is_some_and(|m| e2e::metric(&m, r#"workqueue_adds_total{name="replicaset"}"#).is_some())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standby_takes_over_without_doubling_pods() {
    let cluster = e2e::Cluster::start();
    let client = cluster.client().await;
    // Every pod ever created in the namespace, from before the first one.
    let pods: kube::Api<k8s_openapi::api::core::v1::Pod> = kube::Api::namespaced(client.clone(), "default");
    let rv = pods.list(&Default::default()).await.unwrap().metadata.resource_version.unwrap();
    let history = std::sync::Arc::new(std::sync::Mutex::new(e2e::ha::PodHistory::default()));
    let recorder = e2e::ha::record_pods(cluster.api.url.clone(), "default", rv, history.clone());

    let mut a = Controller::start(&cluster, LE);
    eventually("a leads", WAIT, || async { leads(&a).then_some(()) }).await;
    let b = Controller::start(&cluster, LE);
    let out = cluster.kubectl_stdin("default", &["create", "deployment", "web", "--image=nginx", "--replicas=3"], "");
    assert!(out.status.success());
    eventually("3 pods", WAIT, || async { (active_pods(&client, "default").await.len() == 3).then_some(()) }).await;
    let lease = cluster.kubectl_ok(&["get", "lease", "-n", "kube-system", "kube-controller-manager", "-o", "jsonpath={.spec.holderIdentity}"]);
    assert!(!lease.is_empty());
    eventually("b serves /metrics", WAIT, || async { b.metrics().map(|_| ()) }).await;
    assert!(!leads(&b), "standby acted while the leader was alive");

    // Kill the leader; scale while nobody leads.
    a.kill();
    cluster.kubectl_ok(&["scale", "deployment/web", "--replicas=5"]);
    eventually("b takes over", WAIT, || async { leads(&b).then_some(()) }).await;
    eventually("5 pods", WAIT, || async { (active_pods(&client, "default").await.len() == 5).then_some(()) }).await;
    // And no more than 5, ever: b has finished (its ReplicaSet status says
    // 5 at the scaled generation, its queue drained); then a pod the
    // controllers ignore, created last, reaches the recorder, so it has
    // seen every pod event before — 5 pods were ever created, none deleted.
    eventually("the ReplicaSet's status: 5 replicas at its generation", WAIT, || async {
        let rs = kube::Api::<k8s_openapi::api::apps::v1::ReplicaSet>::namespaced(client.clone(), "default").list(&Default::default()).await.unwrap().items.into_iter().next()?;
        let st = rs.status.as_ref()?;
        (st.replicas == 5 && st.observed_generation == rs.metadata.generation).then_some(())
    })
    .await;
    b.wait_drained("replicaset", 0.0).await;
    let marker: k8s_openapi::api::core::v1::Pod = serde_json::from_value(serde_json::json!({"metadata": {"name": "marker", "labels": {"app": "marker"}},
        "spec": {"containers": [{"name": "c", "image": "nginx"}]}}))
    .unwrap();
    pods.create(&Default::default(), &marker).await.unwrap();
    eventually("the recorder to see the marker pod", WAIT, || async { history.lock().unwrap().added.contains_key("marker").then_some(()) }).await;
    recorder.abort();
    {
        let h = history.lock().unwrap();
        let created: Vec<&String> = h.added.keys().filter(|n| *n != "marker").collect();
        assert_eq!(created.len(), 5, "pods doubled during the hand-over: {created:?}");
        assert!(h.added.values().all(|n| *n == 1), "a pod was ADDED twice: {:?}", h.added);
        assert!(h.deleted.is_empty(), "pods deleted (made one too many, then removed): {:?}", h.deleted);
    }
    let holder = cluster.kubectl_ok(&["get", "lease", "-n", "kube-system", "kube-controller-manager", "-o", "jsonpath={.spec.holderIdentity}"]);
    assert_ne!(holder, lease, "the lease changed hands");
}
