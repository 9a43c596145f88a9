//! The controller manager process: /healthz and /metrics, and leader
//! election — of two managers with `--leader-elect` only one acts; when it
//! is killed the other takes over, without doubling pods.

mod controller_common;

use std::time::Duration;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standby_takes_over_without_doubling_pods() {
    let cluster = e2e::Cluster::start();
    let mut a = Controller::start(&cluster, LE);
    eventually("a leads", WAIT, || async { a.logs().contains("became leader").then_some(()) }).await;
    let b = Controller::start(&cluster, LE);
    let client = cluster.client().await;
    let out = cluster.kubectl_stdin("default", &["create", "deployment", "web", "--image=nginx", "--replicas=3"], "");
    assert!(out.status.success());
    eventually("3 pods", WAIT, || async { (active_pods(&client, "default").await.len() == 3).then_some(()) }).await;
    let lease = cluster.kubectl_ok(&["get", "lease", "-n", "kube-system", "kube-controller-manager", "-o", "jsonpath={.spec.holderIdentity}"]);
    assert!(!lease.is_empty());
    assert!(!b.logs().contains("became leader"), "standby acted while the leader was alive");

    // Kill the leader; scale while nobody leads.
    a.kill();
    cluster.kubectl_ok(&["scale", "deployment/web", "--replicas=5"]);
    eventually("b takes over", WAIT, || async { b.logs().contains("became leader").then_some(()) }).await;
    eventually("5 pods", WAIT, || async { (active_pods(&client, "default").await.len() == 5).then_some(()) }).await;
    // And no more than 5, ever after.
    for _ in 0..20 {
        let n = active_pods(&client, "default").await.len();
        assert_eq!(n, 5, "pods doubled during the hand-over");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let holder = cluster.kubectl_ok(&["get", "lease", "-n", "kube-system", "kube-controller-manager", "-o", "jsonpath={.spec.holderIdentity}"]);
    assert_ne!(holder, lease, "the lease changed hands");
}
