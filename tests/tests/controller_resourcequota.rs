//! The resourcequota controller against a real apiserver whose
//! ResourceQuota admission charges every create: usage is given back when
//! pods are deleted or finish and when counted objects are deleted, so a
//! full quota has room again; a quota created over existing objects shows
//! what they use.

mod controller_common;

use std::collections::BTreeMap;

use controller_common::*;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, ResourceQuota};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::Api;
use serde_json::json;

fn pod(name: &str) -> Pod {
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"containers": [{"name": "c", "image": "nginx",
        "resources": {"requests": {"cpu": "200m", "memory": "64Mi"}, "limits": {"cpu": "400m", "memory": "128Mi"}}}]}}))
    .unwrap()
}

fn quota(name: &str, hard: serde_json::Value) -> ResourceQuota {
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"hard": hard}})).unwrap()
}

fn used(q: &ResourceQuota) -> BTreeMap<String, String> {
    q.status.as_ref().and_then(|s| s.used.as_ref()).map(|u| u.iter().map(|(k, v)| (k.clone(), v.0.clone())).collect()).unwrap_or_default()
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// Waits until the quota's `status.used` is `want` (and `status.hard` is
/// its `spec.hard`).
async fn wait_used(api: &Api<ResourceQuota>, name: &str, want: &[(&str, &str)], what: &str) {
    let want = map(want);
    e2e::eventually(what, WAIT, || async {
        let q = api.get(name).await.unwrap();
        let hard_ok = q.status.as_ref().and_then(|s| s.hard.clone()) == q.spec.as_ref().and_then(|s| s.hard.clone());
        let u = used(&q);
        if u != want {
            eprintln!("{what}: used {u:?}");
        }
        (hard_ok && u == want).then_some(())
    })
    .await;
}

async fn delete_now(api: &Api<Pod>, name: &str) {
    api.delete(name, &DeleteParams { grace_period_seconds: Some(0), ..Default::default() }).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_usage_is_released_and_recounted() {
    let cluster = e2e::Cluster::start();
    let _ctrl = Controller::start(&cluster, &[]);
    let client = cluster.client().await;
    create_namespace(&client, "q").await;
    let quotas: Api<ResourceQuota> = Api::namespaced(client.clone(), "q");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "q");
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "q");
    let hard = json!({"pods": "2", "requests.cpu": "1", "requests.memory": "1Gi", "limits.cpu": "2", "limits.memory": "2Gi", "count/configmaps": "5"});
    quotas.create(&PostParams::default(), &quota("compute", hard)).await.unwrap();
    let zero = [("pods", "0"), ("requests.cpu", "0"), ("requests.memory", "0"), ("limits.cpu", "0"), ("limits.memory", "0"), ("count/configmaps", "0")];
    wait_used(&quotas, "compute", &zero, "a new quota counted (status.hard = spec.hard, used zero)").await;

    // Two pods fill `pods: 2`; a third is refused.
    pods.create(&PostParams::default(), &pod("p1")).await.unwrap();
    pods.create(&PostParams::default(), &pod("p2")).await.unwrap();
    let q = quotas.get("compute").await.unwrap();
    assert_eq!(used(&q).get("pods").map(String::as_str), Some("2"), "admission charged both pods: {:?}", q.status);
    let err = pods.create(&PostParams::default(), &pod("p3")).await.unwrap_err();
    match &err {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 403, "{err}");
            assert!(s.message.contains("exceeded quota: compute, requested: pods=1, used: pods=2, limited: pods=2"), "{}", s.message);
        }
        e => panic!("{e}"),
    }

    // A pod deleted: its usage is released, and a new pod fits.
    delete_now(&pods, "p1").await;
    let one_pod = [("pods", "1"), ("requests.cpu", "200m"), ("requests.memory", "64Mi"), ("limits.cpu", "400m"), ("limits.memory", "128Mi"), ("count/configmaps", "0")];
    wait_used(&quotas, "compute", &one_pod, "usage released after a pod deletion").await;
    pods.create(&PostParams::default(), &pod("p3")).await.expect("room again after the release");

    // A pod that finished (Succeeded) holds no quota either.
    pods.patch_status("p2", &PatchParams::default(), &Patch::Merge(json!({"status": {"phase": "Succeeded"}}))).await.unwrap();
    wait_used(&quotas, "compute", &one_pod, "usage released when a pod finished").await;
    pods.create(&PostParams::default(), &pod("p4")).await.expect("a finished pod's room is free");

    // Object counts are released too.
    for n in ["c1", "c2"] {
        cms.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": n}})).unwrap()).await.unwrap();
    }
    cms.delete("c1", &DeleteParams::default()).await.unwrap();
    let two_pods = [("pods", "2"), ("requests.cpu", "400m"), ("requests.memory", "128Mi"), ("limits.cpu", "800m"), ("limits.memory", "256Mi"), ("count/configmaps", "1")];
    wait_used(&quotas, "compute", &two_pods, "configmap count released").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_created_over_existing_objects_counts_them() {
    let cluster = e2e::Cluster::start();
    let _ctrl = Controller::start(&cluster, &[]);
    let client = cluster.client().await;
    create_namespace(&client, "pre").await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "pre");
    for n in ["a", "b", "done"] {
        pods.create(&PostParams::default(), &pod(n)).await.unwrap();
    }
    pods.patch_status("done", &PatchParams::default(), &Patch::Merge(json!({"status": {"phase": "Failed"}}))).await.unwrap();
    cluster.kubectl_ok(&["create", "configmap", "x", "-n", "pre"]);
    cluster.kubectl_ok(&["create", "secret", "generic", "s", "-n", "pre", "--from-literal=a=b"]);
    cluster.kubectl_ok(&["create", "service", "nodeport", "web", "-n", "pre", "--tcp=80:8080"]);
    cluster.kubectl_ok(&["create", "deployment", "d", "-n", "pre", "--image=nginx", "--replicas=0"]);

    let quotas: Api<ResourceQuota> = Api::namespaced(client.clone(), "pre");
    let hard = json!({"pods": "10", "requests.cpu": "10", "limits.memory": "10Gi", "count/pods": "10", "configmaps": "10", "secrets": "10",
        "services": "5", "services.nodeports": "5", "count/deployments.apps": "3"});
    quotas.create(&PostParams::default(), &quota("late", hard)).await.unwrap();
    wait_used(
        &quotas,
        "late",
        &[
            ("pods", "2"), // the Failed pod is not counted...
            ("count/pods", "3"), // ...except as an object
            ("requests.cpu", "400m"),
            ("limits.memory", "256Mi"),
            ("configmaps", "1"),
            ("secrets", "1"),
            ("services", "1"),
            ("services.nodeports", "1"),
            ("count/deployments.apps", "1"),
        ],
        "usage of the objects that existed before the quota",
    )
    .await;
}
