//! rkube-scheduler against real etcd + rkube-apiserver: placement by
//! requests, node selectors, affinity and taints; FailedScheduling with the
//! upstream message and the PodScheduled condition; retry when a node is
//! added; pods for other schedulers left alone; odd objects survived;
//! leader election hand-over between two processes; metrics.

mod scheduler_common;

use std::time::Duration;

use e2e::Cluster;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, PostParams};
use scheduler_common::*;
use serde_json::json;

const T: Duration = Duration::from_secs(30);

/// small (1 cpu, disk=hdd, zone a), big (8 cpu, disk=ssd, zone b),
/// gpu (8 cpu, 2 GPUs, disk=ssd, zone c, tainted dedicated=gpu:NoSchedule).
fn three_nodes() -> Vec<Node> {
    vec![
        node("small", &[("cpu", "1"), ("memory", "2Gi"), ("pods", "10")], &[("disk", "hdd"), ("zone", "a")], json!([])),
        node("big", &[("cpu", "8"), ("memory", "16Gi"), ("pods", "110")], &[("disk", "ssd"), ("zone", "b")], json!([])),
        node(
            "gpu",
            &[("cpu", "8"), ("memory", "16Gi"), ("pods", "110"), ("nvidia.com/gpu", "2")],
            &[("disk", "ssd"), ("zone", "c")],
            json!([{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]),
        ),
    ]
}

fn gpu_toleration() -> serde_json::Value {
    json!([{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}])
}

fn node_affinity(key: &str, op: &str, values: &[&str]) -> serde_json::Value {
    json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": key, "operator": op, "values": values}]}
    ]}}})
}

#[tokio::test(flavor = "multi_thread")]
async fn pods_land_on_the_expected_nodes() {
    let c = Cluster::start();
    let client = c.client().await;
    create_nodes(&client, three_nodes()).await;
    let mut s = SchedulerProc::start(&c, &["--leader-elect=false"]);
    s.wait_ready().await;

    // A pod for another scheduler, created first: it must be left alone.
    create_pod(&client, pod("other-scheduler", &[], json!({"schedulerName": "my-scheduler"}))).await;

    // (pod, expected node)
    let cases: Vec<(Pod, &str)> = vec![
        // 4 cpu: only big and gpu have room, and gpu is tainted.
        (pod("needs-cpu", &[("cpu", "4")], json!({})), "big"),
        // nodeSelector disk=ssd: big or gpu; gpu is tainted.
        (pod("ssd-selector", &[("cpu", "100m")], json!({"nodeSelector": {"disk": "ssd"}})), "big"),
        // Required node affinity disk In [hdd]: only small.
        (pod("hdd-affinity", &[("cpu", "100m")], json!({"affinity": node_affinity("disk", "In", &["hdd"])})), "small"),
        // A GPU and the toleration: only gpu has GPUs.
        (pod("gpu-job", &[("nvidia.com/gpu", "1")], json!({"tolerations": gpu_toleration()})), "gpu"),
        // Toleration + affinity to zone c.
        (pod("zone-c", &[("cpu", "1")], json!({"tolerations": gpu_toleration(), "affinity": node_affinity("zone", "In", &["c"])})), "gpu"),
        // NotIn ssd: only small (and it still has 800m left).
        (pod("not-ssd", &[("cpu", "500m")], json!({"affinity": node_affinity("disk", "NotIn", &["ssd"])})), "small"),
    ];
    for (p, _) in &cases {
        create_pod(&client, p.clone()).await;
    }
    for (p, expected) in &cases {
        let name = p.metadata.name.as_deref().unwrap();
        let got = wait_bound(&client, name, T).await;
        assert_eq!(got, *expected, "pod {name}");
    }
    // The Scheduled event, in upstream's words (events are asynchronous).
    let ev = eventually("Scheduled event", T, || async {
        events_of(&client, "hdd-affinity").await.into_iter().find(|(r, _, _)| r == "Scheduled")
    })
    .await;
    assert_eq!(ev.1, "Successfully assigned default/hdd-affinity to small");
    // The binding also set PodScheduled=True (the apiserver does that).
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let p = api.get("needs-cpu").await.unwrap();
    let cond = p.status.unwrap().conditions.unwrap().into_iter().find(|c| c.type_ == "PodScheduled").unwrap();
    assert_eq!(cond.status, "True");

    // Ignored: never bound, no event, even though nodes have room. (Every
    // pod created after it was scheduled, so it was seen and passed over.)
    assert_eq!(node_of(&client, "other-scheduler").await, "");
    assert!(events_of(&client, "other-scheduler").await.is_empty());

    // Metrics: attempts by result, bindings, pending pods.
    let m = s.metrics().unwrap();
    assert!(m.contains(r#"scheduler_schedule_attempts_total{result="scheduled",profile="default-scheduler"} 6"#), "{m}");
    assert!(m.contains(r#"scheduler_scheduling_attempt_duration_seconds_count{result="scheduled",profile="default-scheduler"} 6"#), "{m}");
    assert!(m.contains("scheduler_pod_scheduling_sli_duration_seconds_count 6"), "{m}");
    assert!(m.contains(r#"scheduler_pending_pods{queue="active"} 0"#), "{m}");
    assert!(m.contains(r#"scheduler_goroutines{operation="binding"}"#), "{m}");
    assert_eq!(e2e::http(&s.metrics_url, "GET", "/healthz", None, b"").text(), "ok");
    assert!(s.alive());
}

#[tokio::test(flavor = "multi_thread")]
async fn unschedulable_pod_reports_why_and_is_scheduled_when_a_node_fits() {
    let c = Cluster::start();
    let client = c.client().await;
    create_nodes(
        &client,
        vec![
            node("a", &[("cpu", "1"), ("memory", "2Gi"), ("pods", "10")], &[], json!([])),
            node("b", &[("cpu", "1"), ("memory", "2Gi"), ("pods", "10")], &[], json!([])),
            node("t", &[("cpu", "8"), ("memory", "16Gi"), ("pods", "10")], &[], json!([{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}])),
        ],
    )
    .await;
    let mut s = SchedulerProc::start(&c, &["--leader-elect=false"]);
    s.wait_ready().await;
    create_pod(&client, pod("too-big", &[("cpu", "2")], json!({}))).await;

    let want = "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, 2 Insufficient cpu.";
    let ev = eventually("FailedScheduling event", T, || async {
        events_of(&client, "too-big").await.into_iter().find(|(r, _, _)| r == "FailedScheduling")
    })
    .await;
    assert_eq!(ev.1, want);
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let cond = eventually("PodScheduled=False", T, || async {
        let p = api.get("too-big").await.unwrap();
        p.status.and_then(|s| s.conditions).and_then(|cs| cs.into_iter().find(|c| c.type_ == "PodScheduled"))
    })
    .await;
    assert_eq!((cond.status.as_str(), cond.reason.as_deref(), cond.message.as_deref()), ("False", Some("Unschedulable"), Some(want)));
    assert_eq!(node_of(&client, "too-big").await, "");

    // A fitting node arrives: the parked pod is retried and bound there.
    create_nodes(&client, vec![node("roomy", &[("cpu", "4"), ("memory", "8Gi"), ("pods", "10")], &[], json!([]))]).await;
    assert_eq!(wait_bound(&client, "too-big", T).await, "roomy");
    let ev = eventually("Scheduled event", T, || async {
        events_of(&client, "too-big").await.into_iter().find(|(r, _, _)| r == "Scheduled")
    })
    .await;
    assert_eq!(ev.1, "Successfully assigned default/too-big to roomy");
    let p = api.get("too-big").await.unwrap();
    let cond = p.status.unwrap().conditions.unwrap().into_iter().find(|c| c.type_ == "PodScheduled").unwrap();
    assert_eq!(cond.status, "True");
    let m = s.metrics().unwrap();
    assert!(m.contains(r#"scheduler_schedule_attempts_total{result="unschedulable",profile="default-scheduler"}"#), "{m}");
    assert!(s.alive());
}

#[tokio::test(flavor = "multi_thread")]
async fn survives_odd_but_valid_objects() {
    let c = Cluster::start();
    let client = c.client().await;
    let nodes: Api<Node> = Api::all(client.clone());
    // A node with no status, one with no labels and odd taints, one normal.
    for n in [
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "bare"}}),
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "odd"}, "spec": {"unschedulable": true, "taints": [
            {"key": "k", "effect": "PreferNoSchedule"}, {"key": "e", "value": "", "effect": "NoExecute"}]},
            "status": {"allocatable": {"cpu": "0", "memory": "0", "pods": "0", "example.com/dongle": "3"}}}),
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "normal"}, "status": {"allocatable": {"cpu": "2", "memory": "4Gi", "pods": "10"}}}),
    ] {
        nodes.create(&PostParams::default(), &serde_json::from_value(n).unwrap()).await.unwrap();
    }
    let mut s = SchedulerProc::start(&c, &["--leader-elect=false"]);
    s.wait_ready().await;
    let odd_pods = vec![
        // No requests at all; init containers, a sidecar and overhead; host ports.
        pod("no-requests", &[], json!({})),
        pod("inits", &[("cpu", "100m")], json!({
            "initContainers": [{"name": "i", "image": "x", "resources": {"requests": {"cpu": "1"}}},
                               {"name": "s", "image": "x", "restartPolicy": "Always"}],
            "overhead": {"cpu": "10m"}})),
        pod("host-port", &[], json!({"containers": [{"name": "c", "image": "x", "ports": [{"containerPort": 80, "hostPort": 8080}]}]})),
        // Every selector operator, empty affinity objects, anti-affinity on itself.
        pod("operators", &[], json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "nope", "operator": "DoesNotExist"}]},
            {"matchExpressions": [{"key": "x", "operator": "Gt", "values": ["3"]}]}]},
            "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 1, "preference": {}}]},
            "podAffinity": {}, "podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {"app": "solo"}}, "topologyKey": "kubernetes.io/hostname"}]}}})),
        pod("tolerate-all", &[], json!({"tolerations": [{"operator": "Exists"}], "priority": 1000000})),
        // Fits nowhere: an extended resource only the cordoned node has.
        pod("dongle", &[("example.com/dongle", "1")], json!({"topologySpreadConstraints": [
            {"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {}}]})),
    ];
    for p in odd_pods {
        create_pod(&client, p).await;
    }
    for name in ["no-requests", "inits", "host-port", "operators", "tolerate-all"] {
        assert_eq!(wait_bound(&client, name, T).await, "normal", "pod {name}");
    }
    let ev = eventually("FailedScheduling for dongle", T, || async {
        events_of(&client, "dongle").await.into_iter().find(|(r, _, _)| r == "FailedScheduling")
    })
    .await;
    // The status-less node has no pod room either: NodeResourcesFit reports
    // both, as upstream does.
    assert_eq!(
        ev.1,
        "0/3 nodes are available: 1 Too many pods, 1 node(s) were unschedulable, 2 Insufficient example.com/dongle."
    );
    // Deleting nodes and pods under it is fine too.
    nodes.delete("bare", &Default::default()).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.delete("no-requests", &kube::api::DeleteParams { grace_period_seconds: Some(0), ..Default::default() }).await.unwrap();
    create_pod(&client, pod("after", &[], json!({}))).await;
    assert_eq!(wait_bound(&client, "after", T).await, "normal");
    assert!(s.alive(), "scheduler died:\n{}", s.log_text());
    assert!(!s.log_text().contains("panicked"), "{}", s.log_text());
}

fn leads(s: &SchedulerProc) -> bool {
    s.metrics().is_some_and(|m| m.lines().any(|l| l == r#"leader_election_master_status{name="kube-scheduler"} 1"#))
}

#[tokio::test(flavor = "multi_thread")]
async fn killing_the_leader_hands_over_to_the_standby() {
    let c = Cluster::start();
    let client = c.client().await;
    create_nodes(&client, vec![node("n1", &[("cpu", "4"), ("memory", "8Gi"), ("pods", "110")], &[], json!([]))]).await;
    let flags = [
        "--leader-elect",
        "--leader-elect-lease-duration=2s",
        "--leader-elect-renew-deadline=1500ms",
        "--leader-elect-retry-period=250ms",
    ];
    let mut a = SchedulerProc::start(&c, &flags);
    let mut b = SchedulerProc::start(&c, &flags);
    a.wait_ready().await;
    b.wait_ready().await;
    let first_leader = eventually("a leader", T, || async {
        match (leads(&a), leads(&b)) {
            (true, false) => Some('a'),
            (false, true) => Some('b'),
            _ => None,
        }
    })
    .await;
    create_pod(&client, pod("p1", &[("cpu", "100m")], json!({}))).await;
    assert_eq!(wait_bound(&client, "p1", T).await, "n1");
    let (leader, standby) = if first_leader == 'a' { (&mut a, &mut b) } else { (&mut b, &mut a) };
    // Only the leader acted.
    let sm = standby.metrics().unwrap();
    assert!(!sm.contains("scheduler_schedule_attempts_total{"), "standby scheduled:\n{sm}");
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    let before = leases.get("kube-scheduler").await.unwrap().spec.unwrap();

    leader.kill();
    create_pod(&client, pod("p2", &[("cpu", "100m")], json!({}))).await;
    // Lease 2 s: the standby must take over and bind p2 well within T.
    let started = std::time::Instant::now();
    assert_eq!(wait_bound(&client, "p2", T).await, "n1");
    eprintln!("hand-over: p2 bound {:?} after the leader was killed", started.elapsed());
    assert!(leads(standby));
    let after = leases.get("kube-scheduler").await.unwrap().spec.unwrap();
    assert_ne!(after.holder_identity, before.holder_identity);
    assert_eq!(after.lease_transitions.unwrap_or(0), before.lease_transitions.unwrap_or(0) + 1);
    assert!(standby.alive());
}
