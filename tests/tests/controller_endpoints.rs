//! Endpoints controller against a real apiserver: ready pods in
//! `addresses`, not-ready ones in `notReadyAddresses`, following readiness
//! changes; a named target port resolved per pod; Endpoints removed with
//! their Service.

mod controller_common;

use controller_common::*;
use k8s_openapi::api::core::v1::{Endpoints, Pod};
use kube::api::PostParams;
use kube::Api;
use serde_json::json;

/// "addresses | notReady" IPs, each with port per subset: "ip:port,..." lists.
fn summary(ep: &Endpoints) -> String {
    let mut ready = Vec::new();
    let mut not_ready = Vec::new();
    for s in ep.subsets.iter().flatten() {
        let ports: Vec<i32> = s.ports.iter().flatten().map(|p| p.port).collect();
        for a in s.addresses.iter().flatten() {
            ready.push(format!("{}:{}", a.ip, ports.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("+")));
        }
        for a in s.not_ready_addresses.iter().flatten() {
            not_ready.push(format!("{}:{}", a.ip, ports.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("+")));
        }
    }
    ready.sort();
    not_ready.sort();
    format!("{} | {}", ready.join(","), not_ready.join(","))
}

async fn wait_endpoints(client: &kube::Client, name: &str, expect: &str) -> Endpoints {
    let api: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    let mut last = String::new();
    let r = tokio::time::timeout(WAIT, async {
        loop {
            if let Some(ep) = api.get_opt(name).await.unwrap() {
                last = summary(&ep);
                if last == expect {
                    return ep;
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await;
    r.unwrap_or_else(|_| panic!("endpoints {name}: want {expect:?}, last saw {last:?}"))
}

async fn pod(client: &kube::Client, name: &str, port: i32) {
    let p: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "c", "image": "nginx", "ports": [{"name": "web-port", "containerPort": port}]}]}
    }))
    .unwrap();
    Api::<Pod>::namespaced(client.clone(), "default").create(&PostParams::default(), &p).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_follow_pod_readiness_and_resolve_named_ports() {
    let cluster = e2e::Cluster::start();
    let _ctrl = Controller::start(&cluster, &["--controllers=endpoint"]);
    let client = cluster.client().await;
    let svc = r#"
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: named}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: web-port}]
"#;
    let out = cluster.kubectl_stdin("default", &["apply", "-f", "-"], svc);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    pod(&client, "a", 8080).await;
    pod(&client, "b", 9090).await;
    pod(&client, "c", 7070).await; // never gets an IP: not listed
    // No pod has an IP yet: an Endpoints object without subsets.
    wait_endpoints(&client, "web", " | ").await;

    bind(&client, "default", "a", "n1").await;
    bind(&client, "default", "b", "n2").await;
    set_ready(&client, "default", "a", true, "10.244.0.5").await;
    set_ready(&client, "default", "b", false, "10.244.1.6").await;
    let ep = wait_endpoints(&client, "web", "10.244.0.5:8080 | 10.244.1.6:8080").await;
    let addr = &ep.subsets.as_ref().unwrap()[0].addresses.as_ref().unwrap()[0];
    assert_eq!(addr.node_name.as_deref(), Some("n1"));
    let target = addr.target_ref.as_ref().unwrap();
    assert_eq!((target.kind.as_deref(), target.name.as_deref(), target.namespace.as_deref()), (Some("Pod"), Some("a"), Some("default")));
    assert!(target.uid.is_some());
    // Named target port: each pod's own container port.
    wait_endpoints(&client, "named", "10.244.0.5:8080 | 10.244.1.6:9090").await;

    // Readiness flips.
    set_ready(&client, "default", "a", false, "10.244.0.5").await;
    set_ready(&client, "default", "b", true, "10.244.1.6").await;
    wait_endpoints(&client, "web", "10.244.1.6:8080 | 10.244.0.5:8080").await;

    // A pod whose labels stop matching leaves; deleting the Service removes its Endpoints.
    cluster.kubectl_ok(&["label", "pod", "b", "app=other", "--overwrite"]);
    wait_endpoints(&client, "web", " | 10.244.0.5:8080").await;
    cluster.kubectl_ok(&["delete", "service", "web"]);
    let api: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    eventually("endpoints deleted", WAIT, || async { api.get_opt("web").await.unwrap().is_none().then_some(()) }).await;
}
