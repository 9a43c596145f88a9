//! Node lifecycle, node IPAM and pod GC against a real apiserver. The test
//! plays the node agent: it registers nodes, renews their Leases in
//! `kube-node-lease` and reports Ready. A node that stops heartbeating goes
//! Ready=Unknown with the unreachable taints and its pods are evicted after
//! the configured seconds; when heartbeats resume it comes back clean.
//! Nodes get distinct podCIDRs, and a deleted node's block goes to a node
//! that was waiting for one; pods of a deleted node are collected.

mod controller_common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use controller_common::*;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::chrono::{SecondsFormat, Utc};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn now_micro() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true)
}

async fn register_node(client: &Client, name: &str) {
    let node: Node = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    Api::<Node>::all(client.clone()).create(&PostParams::default(), &node).await.unwrap();
    report_ready(client, name).await;
}

/// The node agent's status report: Ready=True with a fresh heartbeat.
async fn report_ready(client: &Client, name: &str) {
    let patch = json!({"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
        "message": "kubelet is posting ready status", "lastHeartbeatTime": now(), "lastTransitionTime": now()}]}});
    Api::<Node>::all(client.clone()).patch_status(name, &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
}

/// Renews the node's Lease every 300 ms while `beating` is true.
fn heartbeat(client: Client, name: &str, beating: Arc<AtomicBool>) -> tokio::task::JoinHandle<()> {
    let name = name.to_string();
    tokio::spawn(async move {
        let api: Api<Lease> = Api::namespaced(client, "kube-node-lease");
        loop {
            if beating.load(Ordering::SeqCst) {
                let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": name},
                    "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": now_micro()}});
                if api.get_opt(&name).await.ok().flatten().is_none() {
                    let _ = api.create(&PostParams::default(), &serde_json::from_value(lease).unwrap()).await;
                } else {
                    let _ = api.patch(&name, &PatchParams::default(), &Patch::Merge(&json!({"spec": {"renewTime": now_micro()}}))).await;
                }
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    })
}

fn taints(n: &Node) -> Vec<String> {
    let mut t: Vec<String> = n.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default().iter().map(|t| format!("{}:{}", t.key, t.effect)).collect();
    t.sort();
    t
}

fn ready_status(n: &Node) -> String {
    n.status.as_ref().and_then(|s| s.conditions.as_ref()).into_iter().flatten().find(|c| c.type_ == "Ready").map(|c| c.status.clone()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_node_goes_unknown_pods_are_evicted_and_it_recovers() {
    let cluster = e2e::Cluster::start();
    let ctrl = Controller::start(
        &cluster,
        &[
            "--node-monitor-period=300ms",
            "--node-monitor-grace-period=3s",
            "--pod-eviction-timeout=2s",
            "--pod-gc-period=500ms",
            // Room for exactly two nodes' /24 blocks.
            "--cluster-cidr=10.244.0.0/23",
        ],
    );
    let client = cluster.client().await;
    let nodes: Api<Node> = Api::all(client.clone());
    register_node(&client, "n1").await;
    let beating = Arc::new(AtomicBool::new(true));
    let _hb = heartbeat(client.clone(), "n1", beating.clone());

    // IPAM: distinct pod CIDRs from 10.244.0.0/23.
    let cidr1 = eventually("n1 podCIDR", WAIT, || async { nodes.get("n1").await.unwrap().spec.and_then(|s| s.pod_cidr) }).await;
    register_node(&client, "n2").await;
    let cidr2 = eventually("n2 podCIDR", WAIT, || async { nodes.get("n2").await.unwrap().spec.and_then(|s| s.pod_cidr) }).await;
    assert_ne!(cidr1, cidr2);
    for c in [&cidr1, &cidr2] {
        assert!(c.starts_with("10.244.") && c.ends_with(".0/24"), "{c}");
    }
    // IPAM: the /23 has two /24 blocks, both taken: a third node gets none.
    register_node(&client, "n3").await;
    eventually("CIDRNotAvailable for n3", WAIT, || async {
        let ev = cluster.kubectl_ok(&["get", "events", "-A", "--field-selector=reason=CIDRNotAvailable", "-o", "name"]);
        (!ev.is_empty()).then_some(())
    })
    .await;
    assert_eq!(nodes.get("n3").await.unwrap().spec.and_then(|s| s.pod_cidr), None);


    // Two pods on n1, running and ready.
    let _kubelet = fake_kubelet(client.clone(), "default", "n1");
    let out = cluster.kubectl_stdin("default", &["apply", "-f", "-"], r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: c, image: nginx}]
      # Leave a lost node after 2 s (the apiserver's default is 300 s).
      tolerations: [{key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 2}]
"#);
    assert!(out.status.success());
    let first = eventually("2 ready pods", WAIT, || async {
        let p = active_pods(&client, "default").await;
        (p.len() == 2 && p.iter().all(is_ready)).then(|| names(&p))
    })
    .await;
    // n2 never heartbeats (no lease, no status updates) and soon goes
    // Unknown too; keep it out of the way by deleting it.
    nodes.delete("n2", &Default::default()).await.unwrap();
    drop(_kubelet);
    // IPAM release: n2's block goes to n3, which was waiting for one.
    let cidr3 = eventually("n3 podCIDR", WAIT, || async { nodes.get("n3").await.unwrap().spec.and_then(|s| s.pod_cidr) }).await;
    assert_eq!(cidr3, cidr2, "the deleted node's block is reused");
    nodes.delete("n3", &Default::default()).await.unwrap();

    // Heartbeats stop: the node goes Unknown and is tainted.
    beating.store(false, Ordering::SeqCst);
    let stopped = tokio::time::Instant::now();
    let n = eventually("n1 Ready=Unknown", WAIT, || async {
        let n = nodes.get("n1").await.unwrap();
        (ready_status(&n) == "Unknown").then_some(n)
    })
    .await;
    // Both sides of the grace period (3 s): the last heartbeat came at most
    // one beat (300 ms) and a request before `stopped`, so not before
    // 2.5 s; and the controller looks every 300 ms, so well before 10 s
    // (a controller waiting out the lease's 40 s instead would miss it).
    let took = stopped.elapsed();
    assert!(took >= Duration::from_millis(2500), "marked Unknown before the grace period: {took:?}");
    assert!(took <= Duration::from_secs(10), "marked Unknown long after the grace period: {took:?}");
    let cond = n.status.unwrap().conditions.unwrap().into_iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!(cond.reason.as_deref(), Some("NodeStatusUnknown"));
    eventually("unreachable taints", WAIT, || async {
        let n = nodes.get("n1").await.unwrap();
        (taints(&n) == ["node.kubernetes.io/unreachable:NoExecute", "node.kubernetes.io/unreachable:NoSchedule"]).then_some(())
    })
    .await;
    // Pods marked not ready, then evicted (deleted) after the toleration time.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    eventually("pods evicted", WAIT, || async {
        let mut gone = 0;
        for name in &first {
            match pods.get_opt(name).await.unwrap() {
                None => gone += 1,
                Some(p) if p.metadata.deletion_timestamp.is_some() => {
                    assert!(!is_ready(&p), "evicted pod still ready");
                    gone += 1
                }
                Some(_) => {}
            }
        }
        (gone == first.len()).then_some(())
    })
    .await;
    let events = cluster.kubectl_ok(&["get", "events", "-A", "-o", "custom-columns=R:.reason", "--no-headers"]);
    assert!(events.contains("NodeNotReady") && events.contains("TaintManagerEviction"), "{events}\n{}", ctrl.logs());

    // Heartbeats resume: Ready again, taints gone.
    beating.store(true, Ordering::SeqCst);
    report_ready(&client, "n1").await;
    eventually("n1 Ready and untainted", WAIT, || async {
        let n = nodes.get("n1").await.unwrap();
        (ready_status(&n) == "True" && taints(&n).is_empty()).then_some(())
    })
    .await;
    // A heartbeating node stays Ready. Proof that the controller has kept
    // watching for longer than the grace period since: a node registered
    // now that never heartbeats goes Unknown meanwhile.
    register_node(&client, "n9").await;
    eventually("the silent n9 Ready=Unknown", WAIT, || async { (ready_status(&nodes.get("n9").await.unwrap()) == "Unknown").then_some(()) }).await;
    let n = nodes.get("n1").await.unwrap();
    assert_eq!((ready_status(&n).as_str(), taints(&n).len()), ("True", 0), "a heartbeating node stays Ready");
    nodes.delete("n9", &Default::default()).await.unwrap();

    // Pod GC: the node is deleted; its (terminating) pods are force-deleted.
    nodes.delete("n1", &Default::default()).await.unwrap();
    eventually("pods of the deleted node collected", WAIT, || async {
        let all = pods.list(&Default::default()).await.unwrap().items;
        all.iter().all(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) != Some("n1")).then_some(())
    })
    .await;
    // n1's block is free again too.
    register_node(&client, "n4").await;
    let cidr4 = eventually("n4 podCIDR", WAIT, || async { nodes.get("n4").await.unwrap().spec.and_then(|s| s.pod_cidr) }).await;
    assert!(cidr4 == cidr1 || cidr4 == cidr2, "{cidr4}");
}
