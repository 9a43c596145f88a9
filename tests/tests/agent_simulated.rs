//! Simulated nodes (`rkube-agent --runtime fake`) against a real etcd +
//! rkube-apiserver: 1000 nodes register, stay Ready with fresh leases, and
//! pods bound to them go Running with an IP from the node's podCIDR, then
//! disappear when deleted.

mod agent_common;

use std::collections::BTreeMap;
use std::time::Duration;

use agent_common::{eventually, Agent};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::Api;

fn ready(n: &Node) -> bool {
    n.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Each simulated node's lease renewTime, by node.
async fn renew_times(leases: &Api<Lease>) -> BTreeMap<String, String> {
    let items = leases.list(&ListParams::default()).await.map(|l| l.items).unwrap_or_default();
    items
        .into_iter()
        .filter(|l| l.metadata.name.as_deref().is_some_and(|n| n.starts_with("sim-")))
        .map(|l| (l.metadata.name.clone().unwrap(), serde_json::to_string(&l.spec.unwrap().renew_time).unwrap()))
        .collect()
}

fn pod(name: &str, node: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox:1", "resources": {"requests": {"cpu": "100m"}}}]}
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_fake_nodes_register_stay_ready_and_run_pods() {
    let cluster = e2e::Cluster::start();
    let client = cluster.client().await;
    let port = e2e::free_port().to_string();
    let mut agent = Agent::start(
        &cluster,
        &[
            "--runtime=fake",
            "--nodes=1000",
            "--node-name-prefix=sim-",
            "--node-labels=tier=sim",
            "--register-with-taints=sim=yes:PreferNoSchedule",
            "--healthz-port=0",
            &format!("--port={port}"),
            "--node-ip=192.0.2.10",
            // Renew every 2 s, so "stays fresh" is visible within the test.
            "--node-lease-duration-seconds=8",
            "--fake-pod-start-delay=500ms",
        ],
    );
    let nodes: Api<Node> = Api::all(client.clone());
    let list = eventually("1000 Ready nodes", Duration::from_secs(120), &mut agent, || {
        let nodes = nodes.clone();
        async move {
            let l = nodes.list(&ListParams::default().labels("tier=sim")).await.ok()?;
            (l.items.len() == 1000 && l.items.iter().all(ready)).then_some(l.items)
        }
    })
    .await;
    // Registration as `kubectl get node -o yaml` shows it.
    let n = list.iter().find(|n| n.metadata.name.as_deref() == Some("sim-7")).expect("sim-7");
    let status = n.status.clone().unwrap();
    assert_eq!(status.capacity.as_ref().unwrap()["pods"].0, "110");
    assert_eq!(status.capacity.as_ref().unwrap()["cpu"].0, "32");
    let addrs: Vec<(String, String)> = status.addresses.unwrap().into_iter().map(|a| (a.type_, a.address)).collect();
    assert_eq!(addrs, [("InternalIP".to_string(), "192.0.2.10".to_string()), ("Hostname".to_string(), "sim-7".to_string())]);
    assert_eq!(status.daemon_endpoints.unwrap().kubelet_endpoint.unwrap().port, port.parse::<i32>().unwrap());
    let types: Vec<String> = status.conditions.unwrap().into_iter().map(|c| c.type_).collect();
    assert_eq!(types, ["MemoryPressure", "DiskPressure", "PIDPressure", "Ready"]);
    assert_eq!(n.metadata.labels.as_ref().unwrap()["kubernetes.io/hostname"], "sim-7");
    let taints = n.spec.as_ref().unwrap().taints.clone().unwrap();
    assert_eq!((taints[0].key.as_str(), taints[0].effect.as_str()), ("sim", "PreferNoSchedule"));
    let cidr = n.spec.as_ref().unwrap().pod_cidr.clone().expect("podCIDR");
    // Every node has its own podCIDR.
    let cidrs: std::collections::BTreeSet<String> = list.iter().filter_map(|n| n.spec.as_ref()?.pod_cidr.clone()).collect();
    assert_eq!(cidrs.len(), 1000);

    // Leases: one per node, owned by the node, renewed.
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let first: BTreeMap<String, String> = eventually("1000 leases", Duration::from_secs(60), &mut agent, || {
        let leases = leases.clone();
        async move {
            let m = renew_times(&leases).await;
            (m.len() == 1000).then_some(m)
        }
    })
    .await;
    let sim7 = leases.get("sim-7").await.unwrap();
    assert_eq!(sim7.metadata.owner_references.unwrap()[0].kind, "Node");
    assert_eq!(sim7.spec.unwrap().lease_duration_seconds, Some(8));
    // Every lease is renewed again (renewal period 2 s; no timing is asserted).
    eventually("every lease renewed", Duration::from_secs(60), &mut agent, || {
        let (leases, first) = (leases.clone(), first.clone());
        async move {
            let later = renew_times(&leases).await;
            (later.len() == 1000 && later.iter().all(|(n, t)| first.get(n) != Some(t))).then_some(())
        }
    })
    .await;

    // Pods bound to simulated nodes go Running and Ready with IPs from the node's podCIDR.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    for i in 0..5 {
        pods.create(&PostParams::default(), &pod(&format!("p{i}"), "sim-7")).await.unwrap();
    }
    pods.create(&PostParams::default(), &pod("other", "sim-999")).await.unwrap();
    let running = eventually("pods Running", Duration::from_secs(30), &mut agent, || {
        let pods = pods.clone();
        async move {
            let l = pods.list(&ListParams::default()).await.ok()?;
            (l.items.len() == 6 && l.items.iter().all(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))).then_some(l.items)
        }
    })
    .await;
    // The simulated podCIDRs are /24s: the pod IP shares the first three octets.
    assert!(cidr.ends_with(".0/24"), "{cidr}");
    let prefix = cidr.trim_end_matches("0/24").to_string();
    let mut ips = std::collections::BTreeSet::new();
    for p in running.iter().filter(|p| p.spec.as_ref().unwrap().node_name.as_deref() == Some("sim-7")) {
        let s = p.status.as_ref().unwrap();
        let ip: std::net::Ipv4Addr = s.pod_ip.as_deref().unwrap().parse().unwrap();
        assert!(ip.to_string().starts_with(&prefix), "{ip} in {cidr}");
        ips.insert(ip);
        assert_eq!(s.host_ip.as_deref(), Some("192.0.2.10"));
        assert_eq!(s.qos_class.as_deref(), Some("Burstable"));
        let ready = s.conditions.as_ref().unwrap().iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(ready.status, "True");
        assert!(s.container_statuses.as_ref().unwrap()[0].ready);
    }
    assert_eq!(ips.len(), 5, "distinct pod IPs");

    // Deletion: the graceful delete is confirmed by the agent, the pod disappears.
    pods.delete("p0", &DeleteParams::default()).await.unwrap();
    eventually("p0 deleted", Duration::from_secs(20), &mut agent, || {
        let pods = pods.clone();
        async move { pods.get_opt("p0").await.ok()?.is_none().then_some(()) }
    })
    .await;

    // Still all Ready a while later. Proof that every node's heartbeat ran
    // since: each lease was renewed once more.
    let since = renew_times(&leases).await;
    eventually("every lease renewed again", Duration::from_secs(60), &mut agent, || {
        let (leases, since) = (leases.clone(), since.clone());
        async move {
            let now = renew_times(&leases).await;
            (now.len() == 1000 && now.iter().all(|(n, t)| since.get(n) != Some(t))).then_some(())
        }
    })
    .await;
    let l = nodes.list(&ListParams::default().labels("tier=sim")).await.unwrap();
    assert!(l.items.iter().all(ready));
    agent.assert_alive();
}
