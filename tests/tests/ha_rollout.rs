//! High availability: kill -9 of one apiserver during a 200-pod Deployment rollout.
//!
//! Three apiservers on a 3-member etcd behind HAProxy; the controller
//! manager, the scheduler and 10 simulated nodes (`rkube-agent --runtime
//! fake`) all talk to HAProxy. While the ReplicaSet is creating pods, one
//! apiserver is killed: the components' connections to it break, HAProxy
//! sends them elsewhere, informers re-watch from their last
//! resourceVersion. The rollout completes with exactly 200 pods: none lost
//! (no pod ever deleted), none doubled (200 ever created, each bound once).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2e::ha::{record_pods, HaControlPlane, PodHistory};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{ListParams, PostParams};
use kube::Api;
use serde_json::json;

const NS: &str = "rollout";
const REPLICAS: usize = 200;

/// Every pod event in the namespace, by pod: (ADDED, DELETED, nodeName changes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apiserver_killed_during_a_200_pod_rollout() {
    let mut cp = HaControlPlane::start(3, &[]);
    let agent_root = cp.dir.path().join("agent");
    let _agent = cp.component(
        "agent",
        "rkube-agent",
        &["--runtime=fake", "--nodes=10", "--node-name-prefix=sim-", "--healthz-port=0", &format!("--port={}", e2e::free_port()), "--node-ip=192.0.2.10", "--max-pods=110", &format!("--root-dir={}", agent_root.display())],
    );
    let _controller = cp.component("controller", "rkube-controller", &["--leader-elect=false", "--bind-address=127.0.0.1", &format!("--secure-port={}", e2e::free_port())]);
    let _scheduler = cp.component("scheduler", "rkube-scheduler", &["--leader-elect=false", "--bind-address=127.0.0.1", &format!("--secure-port={}", e2e::free_port())]);
    let client = cp.client().await;
    let ns = Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": NS}})).unwrap()).await.unwrap();
    let rv = ns.metadata.resource_version.unwrap();
    // The recorder watches through an apiserver that stays up.
    let history = Arc::new(Mutex::new(PodHistory::default()));
    let recorder = record_pods(cp.apiservers[1].url.clone(), NS, rv, history.clone());
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
    let t = Instant::now();
    while nodes.list(&ListParams::default()).await.map(|l| l.items.len()).unwrap_or(0) < 10 {
        assert!(t.elapsed() < Duration::from_secs(60), "10 simulated nodes did not register");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let deploy: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"replicas": REPLICAS, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "busybox:1", "resources": {"requests": {"cpu": "10m"}}}]}}}
    }))
    .unwrap();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NS);
    let started = Instant::now();
    deployments.create(&PostParams::default(), &deploy).await.unwrap();

    // Kill one apiserver once the ReplicaSet is a quarter of the way.
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    loop {
        let n = history.lock().unwrap().added.len();
        if n >= REPLICAS / 4 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "rollout did not start: {n} pods");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let at = history.lock().unwrap().added.len();
    cp.apiservers[0].proc.kill9();
    let killed = started.elapsed();

    // The rollout completes.
    let done = loop {
        let d = deployments.get("web").await;
        if let Ok(d) = d {
            let st = d.status.clone().unwrap_or_default();
            if st.ready_replicas == Some(REPLICAS as i32) && st.updated_replicas == Some(REPLICAS as i32) && st.available_replicas == Some(REPLICAS as i32) {
                break started.elapsed();
            }
        }
        assert!(started.elapsed() < Duration::from_secs(100), "rollout not complete: {:?}", deployments.get("web").await.ok().and_then(|d| d.status));
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    eprintln!("apiserver killed at {killed:?} with {at} pods created; rollout of {REPLICAS} complete after {done:?}");

    // Exactly 200, all Running, spread over the nodes; nothing doubled or
    // lost. Counted once the recorder has seen everything up to now: a pod
    // created last (bound to a node that does not exist, so nobody acts on
    // it) reaches it after every earlier pod event.
    let marker: Pod = serde_json::from_value(json!({"metadata": {"name": "marker", "labels": {"app": "marker"}},
        "spec": {"nodeName": "nowhere", "containers": [{"name": "c", "image": "busybox:1"}]}}))
    .unwrap();
    pods.create(&PostParams::default(), &marker).await.unwrap();
    e2e::eventually("the recorder to see the marker pod", Duration::from_secs(30), || async { history.lock().unwrap().added.contains_key("marker").then_some(()) }).await;
    pods.delete("marker", &kube::api::DeleteParams { grace_period_seconds: Some(0), ..Default::default() }).await.unwrap();
    e2e::eventually("the marker pod gone", Duration::from_secs(30), || async { pods.get_opt("marker").await.unwrap().is_none().then_some(()) }).await;
    {
        let mut h = history.lock().unwrap();
        h.added.remove("marker");
        h.deleted.remove("marker");
        h.nodes.remove("marker");
    }
    let list = pods.list(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), REPLICAS, "pods in the namespace");
    assert!(list.items.iter().all(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")), "not all Running");
    let owners: BTreeSet<String> = list.items.iter().filter_map(|p| p.metadata.owner_references.as_ref()?.first().map(|o| o.name.clone())).collect();
    assert_eq!(owners.len(), 1, "one ReplicaSet owns every pod: {owners:?}");
    recorder.abort();
    let h = history.lock().unwrap();
    assert_eq!(h.added.len(), REPLICAS, "pods ever created (a doubled creation shows here)");
    assert!(h.added.values().all(|n| *n == 1), "a pod was ADDED twice");
    assert!(h.deleted.is_empty(), "pods deleted (lost or doubled-then-removed): {:?}", h.deleted);
    let rebound: Vec<(&String, &Vec<String>)> = h.nodes.iter().filter(|(_, v)| v.len() != 1).collect();
    assert!(rebound.is_empty(), "pods not bound exactly once: {rebound:?}");
    let used: BTreeSet<&String> = h.nodes.values().flatten().collect();
    assert!(used.len() >= 5, "pods should spread over the 10 nodes: {used:?}");
}
