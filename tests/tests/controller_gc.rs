//! Garbage collector and namespace controller against a real apiserver:
//! cascading deletion in the Background, Foreground and Orphan modes
//! through Deployment → ReplicaSet → Pods, and namespace deletion emptying
//! and removing the namespace; Orphan and Foreground deletes of kinds no
//! workload controller touches (Services, ConfigMaps, Secrets), and
//! dependents collected when an owner of such a kind goes.

mod controller_common;

use controller_common::*;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret, Service};
use kube::api::{DeleteParams, PostParams};
use kube::Api;
use serde_json::json;

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
    let ctrl = Controller::start(&cluster, &[]);
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
    let deployment_uid = Api::<Deployment>::namespaced(client.clone(), "orphan").get("web").await.unwrap().metadata.uid.unwrap();
    let rs_adds = ctrl.queue_adds("replicaset");
    cluster.kubectl_ok(&["delete", "-n", "orphan", "deployment", "web", "--cascade=orphan", "--wait=false"]);
    eventually("deployment gone", WAIT, || async { (counts(&client, "orphan").await.0 == 0).then_some(()) }).await;
    let rss = Api::<ReplicaSet>::namespaced(client.clone(), "orphan");
    let rs = &rss.list(&Default::default()).await.unwrap().items[0];
    assert!(rs.metadata.owner_references.as_ref().is_none_or(|r| r.is_empty()), "{:?}", rs.metadata.owner_references);
    // Proof that the collector and the ReplicaSet controller have looked at
    // the orphaned ReplicaSet since: a ReplicaSet created now, owned by the
    // gone Deployment, is collected (the informer they share delivers the
    // orphaned one's update first), and then both queues drain.
    let adds = ctrl.queue_adds("garbagecollector");
    let sentinel: ReplicaSet = serde_json::from_value(json!({"metadata": {"name": "sentinel", "ownerReferences": [{
        "apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": deployment_uid}]},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "sentinel"}},
            "template": {"metadata": {"labels": {"app": "sentinel"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}))
    .unwrap();
    rss.create(&PostParams::default(), &sentinel).await.unwrap();
    gone(&rss, "sentinel", "a ReplicaSet of the gone Deployment collected").await;
    ctrl.wait_drained("garbagecollector", adds).await;
    ctrl.wait_drained("replicaset", rs_adds).await;
    assert_eq!(counts(&client, "orphan").await, (0, 1, 2));
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

async fn gone<K>(api: &Api<K>, name: &str, what: &str)
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    eventually(what, WAIT, || async { api.get_opt(name).await.unwrap().is_none().then_some(()) }).await;
}

/// The apiserver puts an `orphan` or `foregroundDeletion` finalizer on an
/// object of *any* kind deleted with that propagation policy; the garbage
/// collector must finish those deletes for every kind, and collect
/// dependents whatever the kind of their owner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphan_and_foreground_deletes_of_any_kind_complete() {
    let cluster = e2e::Cluster::start();
    let ctrl = Controller::start(&cluster, &[]);
    let client = cluster.client().await;
    let svcs: Api<Service> = Api::namespaced(client.clone(), "default");
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");

    // kubectl, both policies, a Service and a ConfigMap.
    cluster.kubectl_ok(&["create", "service", "clusterip", "orphan-svc", "--tcp=80:8080"]);
    cluster.kubectl_ok(&["create", "configmap", "fg-cm", "--from-literal=a=b"]);
    cluster.kubectl_ok(&["delete", "svc", "orphan-svc", "--cascade=orphan", "--wait=false"]);
    cluster.kubectl_ok(&["delete", "configmap", "fg-cm", "--cascade=foreground", "--wait=false"]);
    // The finalizers really were added (else this test proves nothing)...
    let fg = cms.get_opt("fg-cm").await.unwrap();
    assert!(fg.as_ref().is_none_or(|c| c.metadata.finalizers.iter().flatten().any(|f| f == "foregroundDeletion")), "{fg:?}");
    // ...and the collector removes them.
    gone(&svcs, "orphan-svc", "service deleted with --cascade=orphan gone").await;
    gone(&cms, "fg-cm", "configmap deleted with --cascade=foreground gone").await;

    // The API, the other way round.
    cluster.kubectl_ok(&["create", "service", "clusterip", "fg-svc", "--tcp=80:8080"]);
    cluster.kubectl_ok(&["create", "configmap", "orphan-cm", "--from-literal=a=b"]);
    svcs.delete("fg-svc", &DeleteParams::foreground()).await.unwrap();
    cms.delete("orphan-cm", &DeleteParams::orphan()).await.unwrap();
    gone(&svcs, "fg-svc", "service deleted in the foreground gone").await;
    gone(&cms, "orphan-cm", "configmap deleted with Orphan gone").await;

    // A ConfigMap owned by a Secret: collected once the Secret is deleted
    // in the background.
    let owned_by = |s: &Secret, name: &str| -> ConfigMap {
        serde_json::from_value(json!({"metadata": {"name": name, "ownerReferences": [{
            "apiVersion": "v1", "kind": "Secret", "name": s.metadata.name, "uid": s.metadata.uid, "blockOwnerDeletion": true}]},
            "data": {"k": "v"}}))
        .unwrap()
    };
    let new_secret = |name: &str| -> Secret { serde_json::from_value(json!({"metadata": {"name": name}, "stringData": {"p": "w"}})).unwrap() };
    let s1 = secrets.create(&PostParams::default(), &new_secret("s1")).await.unwrap();
    let adds = ctrl.queue_adds("garbagecollector");
    cms.create(&PostParams::default(), &owned_by(&s1, "dep1")).await.unwrap();
    // Not collected while the owner lives. Proof that the collector looked
    // at `dep1`: a ConfigMap created after it whose owner never existed is
    // collected (one informer delivers both, `dep1` first), and then the
    // queue drains.
    let ghost: Secret = serde_json::from_value(json!({"metadata": {"name": "never-existed", "uid": "00000000-0000-0000-0000-00000000dead"}})).unwrap();
    cms.create(&PostParams::default(), &owned_by(&ghost, "sentinel1")).await.unwrap();
    gone(&cms, "sentinel1", "a ConfigMap whose owner never existed collected").await;
    ctrl.wait_drained("garbagecollector", adds).await;
    assert!(cms.get_opt("dep1").await.unwrap().is_some(), "a dependent with a live owner was collected");
    secrets.delete("s1", &DeleteParams::background()).await.unwrap();
    gone(&cms, "dep1", "configmap owned by a deleted secret collected").await;

    // Foreground on the Secret: it waits for its dependent, which goes first.
    let s2 = secrets.create(&PostParams::default(), &new_secret("s2")).await.unwrap();
    cms.create(&PostParams::default(), &owned_by(&s2, "dep2")).await.unwrap();
    secrets.delete("s2", &DeleteParams::foreground()).await.unwrap();
    eventually("foreground: dependent first, then owner", WAIT, || async {
        let (s, c) = (secrets.get_opt("s2").await.unwrap(), cms.get_opt("dep2").await.unwrap());
        assert!(!(s.is_none() && c.is_some()), "owner went before its dependent");
        (s.is_none() && c.is_none()).then_some(())
    })
    .await;

    // Orphan on the Secret: the dependent stays, without the reference.
    let s3 = secrets.create(&PostParams::default(), &new_secret("s3")).await.unwrap();
    cms.create(&PostParams::default(), &owned_by(&s3, "dep3")).await.unwrap();
    let adds = ctrl.queue_adds("garbagecollector");
    secrets.delete("s3", &DeleteParams::orphan()).await.unwrap();
    gone(&secrets, "s3", "secret deleted with Orphan gone").await;
    let dep3 = cms.get_opt("dep3").await.unwrap().expect("orphaned dependent kept");
    assert!(dep3.metadata.owner_references.as_ref().is_none_or(|r| r.is_empty()), "{:?}", dep3.metadata.owner_references);
    // Proof that the collector has looked at `dep3` since it was orphaned:
    // a ConfigMap created now, owned by the gone `s3`, is collected (one
    // informer delivers `dep3`'s update first), and then the queue drains.
    cms.create(&PostParams::default(), &owned_by(&s3, "sentinel3")).await.unwrap();
    gone(&cms, "sentinel3", "a ConfigMap of the gone secret collected").await;
    ctrl.wait_drained("garbagecollector", adds).await;
    let dep3 = cms.get_opt("dep3").await.unwrap().expect("orphaned dependent kept");
    assert!(dep3.metadata.owner_references.as_ref().is_none_or(|r| r.is_empty()), "{:?}", dep3.metadata.owner_references);
    drop(ctrl);
}
