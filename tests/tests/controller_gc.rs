//! Garbage collector and namespace controller against a real apiserver:
//! cascading deletion in the Background, Foreground and Orphan modes
//! through Deployment → ReplicaSet → Pods, and namespace deletion emptying
//! and removing the namespace.

mod controller_common;

use controller_common::*;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use kube::Api;

fn deployment(ns: &str) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: {ns}}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec: {{containers: [{{name: c, image: nginx}}]}}
"#
    )
}

async fn counts(client: &kube::Client, ns: &str) -> (usize, usize, usize) {
    let d = Api::<Deployment>::namespaced(client.clone(), ns).list(&Default::default()).await.unwrap().items.len();
    let r = Api::<ReplicaSet>::namespaced(client.clone(), ns).list(&Default::default()).await.unwrap().items.len();
    let p = Api::<Pod>::namespaced(client.clone(), ns).list(&Default::default()).await.unwrap().items.len();
    (d, r, p)
}

async fn setup(cluster: &e2e::Cluster, client: &kube::Client, ns: &str) {
    if ns != "default" {
        create_namespace(client, ns).await;
    }
    let out = cluster.kubectl_stdin("default", &["apply", "-f", "-"], &deployment(ns));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    eventually("deployment with 1 rs and 2 pods", WAIT, || async { (counts(client, ns).await == (1, 1, 2)).then_some(()) }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cascading_deletion_background_foreground_orphan() {
    let cluster = e2e::Cluster::start();
    let _ctrl = Controller::start(&cluster, &[]);
    let client = cluster.client().await;

    // Background (kubectl's default): the Deployment goes at once, then its
    // ReplicaSet, then the pods.
    setup(&cluster, &client, "bg").await;
    cluster.kubectl_ok(&["delete", "-n", "bg", "deployment", "web", "--wait=false"]);
    eventually("background cascade", WAIT, || async { (counts(&client, "bg").await == (0, 0, 0)).then_some(()) }).await;

    // Foreground: the Deployment stays (deletionTimestamp + finalizer) until
    // everything under it is gone.
    setup(&cluster, &client, "fg").await;
    cluster.kubectl_ok(&["delete", "-n", "fg", "deployment", "web", "--cascade=foreground", "--wait=false"]);
    let d = Api::<Deployment>::namespaced(client.clone(), "fg").get("web").await.unwrap();
    assert!(d.metadata.deletion_timestamp.is_some());
    eventually("foreground cascade", WAIT, || async {
        let (d, r, p) = counts(&client, "fg").await;
        assert!(!(d == 0 && (r > 0 || p > 0)), "owner went before its dependents: rs={r} pods={p}");
        (d + r + p == 0).then_some(())
    })
    .await;

    // Orphan: the Deployment goes; its ReplicaSet stays, without an owner,
    // and keeps its pods.
    setup(&cluster, &client, "orphan").await;
    cluster.kubectl_ok(&["delete", "-n", "orphan", "deployment", "web", "--cascade=orphan", "--wait=false"]);
    eventually("deployment gone", WAIT, || async { (counts(&client, "orphan").await.0 == 0).then_some(()) }).await;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(counts(&client, "orphan").await, (0, 1, 2));
    let rs = &Api::<ReplicaSet>::namespaced(client.clone(), "orphan").list(&Default::default()).await.unwrap().items[0];
    assert!(rs.metadata.owner_references.as_ref().is_none_or(|r| r.is_empty()), "{:?}", rs.metadata.owner_references);
    // The ReplicaSet's pods are still its own.
    let pods = Api::<Pod>::namespaced(client.clone(), "orphan").list(&Default::default()).await.unwrap().items;
    assert!(pods.iter().all(|p| p.metadata.owner_references.as_ref().unwrap()[0].uid == *rs.metadata.uid.as_ref().unwrap()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_deletion_empties_and_removes_the_namespace() {
    let cluster = e2e::Cluster::start();
    let _ctrl = Controller::start(&cluster, &[]);
    let client = cluster.client().await;
    setup(&cluster, &client, "team").await;
    cluster.kubectl_ok(&["create", "configmap", "settings", "-n", "team", "--from-literal=a=b"]);
    cluster.kubectl_ok(&["create", "service", "clusterip", "web", "-n", "team", "--tcp=80:8080"]);
    cluster.kubectl_ok(&["delete", "namespace", "team", "--wait=false"]);
    let ns_api: Api<Namespace> = Api::all(client.clone());
    eventually("namespace gone", WAIT, || async { ns_api.get_opt("team").await.unwrap().is_none().then_some(()) }).await;
    assert_eq!(counts(&client, "team").await, (0, 0, 0));
    assert!(Api::<ConfigMap>::namespaced(client.clone(), "team").list(&Default::default()).await.unwrap().items.is_empty());
    // Other namespaces untouched.
    assert!(ns_api.get_opt("default").await.unwrap().is_some());
}
