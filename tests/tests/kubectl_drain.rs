//! `kubectl drain` and the Eviction API (`pods/<name>/eviction`) against a
//! whole control plane: rkube-apiserver, rkube-controller (the ReplicaSet
//! controller replaces evicted pods), rkube-scheduler (places them), and
//! three simulated nodes in one `rkube-agent --runtime fake` (which finishes
//! a pod's graceful deletion, as a kubelet would).
//!
//! kubectl drain evicts when discovery lists `pods/eviction` with its group
//! and version, and deletes otherwise; it prints "evicted" for the first,
//! "deleted" for the second, so the test can tell the paths apart.

mod agent_common;
mod controller_common;
mod scheduler_common;

use std::collections::BTreeMap;
use std::time::Duration;

use agent_common::{eventually, Agent};
use controller_common::Controller;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::ListParams;
use kube::Api;
use scheduler_common::SchedulerProc;

/// Running, not terminating `app=web` pods per node.
async fn web_pods_by_node(pods: &Api<Pod>) -> Option<BTreeMap<String, usize>> {
    let list = pods.list(&ListParams::default().labels("app=web")).await.ok()?;
    let mut by_node = BTreeMap::new();
    for p in list.items.iter().filter(|p| p.metadata.deletion_timestamp.is_none()) {
        if p.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Running") {
            return None;
        }
        *by_node.entry(p.spec.as_ref()?.node_name.clone()?).or_insert(0) += 1;
    }
    Some(by_node)
}

fn unschedulable(n: &Node) -> bool {
    n.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_evicts_pods_which_move_to_other_nodes() {
    let cluster = e2e::Cluster::start();
    let client = cluster.client().await;
    let _ctrl = Controller::start(&cluster, &[]);
    let _sched = SchedulerProc::start(&cluster, &["--leader-elect=false"]);
    let port = e2e::free_port().to_string();
    let mut agent = Agent::start(
        &cluster,
        &["--runtime=fake", "--nodes=3", "--node-name-prefix=sim-", "--healthz-port=0", &format!("--port={port}"), "--node-ip=192.0.2.10", "--fake-pod-start-delay=100ms"],
    );
    let nodes: Api<Node> = Api::all(client.clone());
    eventually("3 nodes registered", Duration::from_secs(60), &mut agent, || {
        let nodes = nodes.clone();
        async move { (nodes.list(&ListParams::default()).await.ok()?.items.len() == 3).then_some(()) }
    })
    .await;

    // Every replica on sim-0: the others are cordoned while the Deployment starts.
    for n in ["sim-1", "sim-2"] {
        cluster.kubectl_ok(&["cordon", n]);
    }
    cluster.kubectl_ok(&["create", "deployment", "web", "--image=busybox:1", "--replicas=4"]);
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let placed = eventually("4 web pods Running", Duration::from_secs(60), &mut agent, || {
        let pods = pods.clone();
        async move { web_pods_by_node(&pods).await.filter(|m| m.values().sum::<usize>() == 4) }
    })
    .await;
    assert_eq!(placed, BTreeMap::from([("sim-0".to_string(), 4)]));
    for n in ["sim-1", "sim-2"] {
        cluster.kubectl_ok(&["uncordon", n]);
    }

    // Drain sim-0 (this machine's kubectl), then sim-1 (kubectl 1.27): each
    // time the pods are evicted, the ReplicaSet makes new ones, and the
    // scheduler puts them where they may go.
    // Without kubectl 1.27 on this machine (announced as skipped), the
    // default drains both.
    let old = if e2e::have_kubectl("1.27") { "1.27" } else { "default" };
    for (version, node, allowed) in [("default", "sim-0", vec!["sim-1", "sim-2"]), (old, "sim-1", vec!["sim-2"])] {
        // Every web pod on the node is evicted, each exactly once.
        let on_node = web_pods_by_node(&pods).await.expect("web pods Running").get(node).copied().unwrap_or(0);
        assert!(on_node >= 1, "no web pod on {node} to drain");
        let out = cluster.kubectl_v(version, &["drain", node, "--ignore-daemonsets", "--timeout=60s"]);
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "kubectl {version} drain {node}: {stderr}\n{stdout}");
        let evicted = stdout.lines().filter(|l| l.starts_with("pod/web-") && l.ends_with(" evicted")).count();
        assert_eq!(evicted, on_node, "kubectl {version} drain {node} evicts (not deletes) each of its {on_node} pods: {stdout}");
        assert!(stdout.contains(&format!("node/{node} drained")), "{stdout}");
        assert!(unschedulable(&nodes.get(node).await.unwrap()));
        let got = eventually(&format!("4 web pods Running off {node}"), Duration::from_secs(60), &mut agent, || {
            let pods = pods.clone();
            async move { web_pods_by_node(&pods).await.filter(|m| m.values().sum::<usize>() == 4 && !m.contains_key(node)) }
        })
        .await;
        assert!(got.keys().all(|n| allowed.contains(&n.as_str())), "after draining {node}, pods are on {got:?}; cordoned nodes take none");
    }

    // The Eviction API itself: what kubectl sent, and bad requests.
    let victim = pods.list(&ListParams::default().labels("app=web")).await.unwrap().items.into_iter().find(|p| p.metadata.deletion_timestamp.is_none()).unwrap();
    let name = victim.metadata.name.clone().unwrap();
    let evict = |url_name: &str, body: serde_json::Value| {
        let req = http::Request::post(format!("/api/v1/namespaces/default/pods/{url_name}/eviction")).header("content-type", "application/json").body(serde_json::to_vec(&body).unwrap()).unwrap();
        let client = client.clone();
        async move { client.request::<serde_json::Value>(req).await }
    };
    let eviction = |n: &str| serde_json::json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": n, "namespace": "default"}});
    for (url_name, body, code, message) in [
        (name.as_str(), eviction("other"), 400, "name in URL does not match name in Eviction object".to_string()),
        ("nosuch", eviction("nosuch"), 404, r#"pods "nosuch" not found"#.to_string()),
        (name.as_str(), serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}}), 400, "not a Eviction object".to_string()),
    ] {
        match evict(url_name, body).await {
            Err(kube::Error::Api(s)) => assert!(s.code == code && s.message.contains(&message), "{url_name}: {s:?}"),
            other => panic!("{url_name}: expected {code}, got {other:?}"),
        }
    }
    // A dry run changes nothing; a real one starts a graceful delete.
    let mut dry = eviction(&name);
    dry["deleteOptions"] = serde_json::json!({"dryRun": ["All"]});
    let ok = evict(&name, dry).await.unwrap();
    assert_eq!((ok["kind"].as_str(), ok["status"].as_str()), (Some("Status"), Some("Success")), "{ok}");
    assert!(pods.get(&name).await.unwrap().metadata.deletion_timestamp.is_none());
    evict(&name, eviction(&name)).await.unwrap();
    let uid = victim.metadata.uid.clone();
    eventually("the evicted pod gone", Duration::from_secs(30), &mut agent, || {
        let pods = pods.clone();
        let (name, uid) = (name.clone(), uid.clone());
        async move { pods.get_opt(&name).await.ok()?.is_none_or(|p| p.metadata.uid != uid).then_some(()) }
    })
    .await;
}
