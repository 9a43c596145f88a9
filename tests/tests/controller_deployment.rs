//! ReplicaSet and Deployment controllers against a real apiserver: pods
//! replaced when deleted, scaling with kubectl picks the right pods, a
//! rolling update never drops available pods below `replicas`, `kubectl
//! rollout status` finishes and `kubectl rollout undo` re-uses the old
//! ReplicaSet. The test plays the node agent (binding + pod status).

mod controller_common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use controller_common::*;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::DeleteParams;
use kube::runtime::watcher;
use kube::Api;

fn deployment(name: &str, replicas: i32, image: &str, extra_spec: &str) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  {extra_spec}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      containers:
      - {{name: c, image: "{image}"}}
"#
    )
}

fn apply(cluster: &e2e::Cluster, manifest: &str) {
    let out = cluster.kubectl_stdin("default", &["apply", "-f", "-"], manifest);
    assert!(out.status.success(), "kubectl apply: {}", String::from_utf8_lossy(&out.stderr));
}

/// `kubectl rollout status` must finish; on failure, show what the controller did.
fn rollout_status(cluster: &e2e::Cluster, ctrl: &Controller) {
    let out = cluster.kubectl(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || !stdout.contains("successfully rolled out") {
        let state = cluster.kubectl(&["get", "deploy,rs,pods", "-o", "yaml"]);
        panic!("rollout status: {stdout} {}\nstate: {}\ncontroller log:\n{}", String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(&state.stdout), ctrl.logs());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_pod_is_replaced_by_a_new_one() {
    let cluster = e2e::Cluster::start();
    let _ctrl = Controller::start(&cluster, &[]);
    let client = cluster.client().await;
    let _kubelet = fake_kubelet(client.clone(), "default", "n1");
    apply(&cluster, &deployment("web", 1, "nginx:1", ""));
    let first = eventually("the first pod", WAIT, || async {
        let p = active_pods(&client, "default").await;
        (p.len() == 1 && is_ready(&p[0])).then(|| pod_name(&p[0]))
    })
    .await;
    // Named <deployment>-<hash>-<5 chars>.
    let parts: Vec<&str> = first.split('-').collect();
    assert_eq!((parts.len(), parts[0], parts[2].len()), (3, "web", 5), "{first}");

    cluster.kubectl_ok(&["delete", "pod", &first, "--wait=false"]);
    let second = eventually("a replacement pod", WAIT, || async {
        let p = active_pods(&client, "default").await;
        (p.len() == 1 && pod_name(&p[0]) != first).then(|| pod_name(&p[0]))
    })
    .await;
    eventually("the old pod gone", WAIT, || async {
        Api::<Pod>::namespaced(client.clone(), "default").get_opt(&first).await.unwrap().is_none().then_some(())
    })
    .await;
    assert!(second.starts_with(&format!("web-{}-", parts[1])), "{second}");
    // Events as upstream.
    let events = cluster.kubectl_ok(&["get", "events", "-o", "custom-columns=R:.reason,M:.message", "--no-headers"]);
    assert!(events.contains("SuccessfulCreate") && events.contains(&format!("Created pod: {second}")), "{events}");
    assert!(events.contains("ScalingReplicaSet"), "{events}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_up_and_down_deletes_unready_pods_first() {
    let cluster = e2e::Cluster::start();
    let _ctrl = Controller::start(&cluster, &[]);
    let client = cluster.client().await;
    apply(&cluster, &deployment("web", 1, "nginx:1", ""));
    eventually("1 pod", WAIT, || async { (active_pods(&client, "default").await.len() == 1).then_some(()) }).await;
    cluster.kubectl_ok(&["scale", "deployment/web", "--replicas=5"]);
    let pods = eventually("5 pods", WAIT, || async {
        let p = active_pods(&client, "default").await;
        (p.len() == 5).then_some(p)
    })
    .await;
    // Two pods run and are ready; three stay pending (unscheduled).
    let mut keep = BTreeSet::new();
    for (i, p) in pods.iter().take(2).enumerate() {
        bind(&client, "default", &pod_name(p), "n1").await;
        set_ready(&client, "default", &pod_name(p), true, &format!("10.244.0.{}", i + 10)).await;
        keep.insert(pod_name(p));
    }
    eventually("deployment sees 2 ready", WAIT, || async {
        let out = cluster.kubectl_ok(&["get", "deployment", "web", "-o", "jsonpath={.status.readyReplicas}"]);
        (out == "2").then_some(())
    })
    .await;
    cluster.kubectl_ok(&["scale", "deployment/web", "--replicas=2"]);
    let left = eventually("2 pods", WAIT, || async {
        let p = active_pods(&client, "default").await;
        (p.len() == 2).then_some(p)
    })
    .await;
    assert_eq!(names(&left), keep, "the ready pods stay, the pending ones go");
    // No more churn afterwards.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(names(&active_pods(&client, "default").await), keep);
    let status = cluster.kubectl_ok(&["get", "rs", "-o", "jsonpath={.items[0].status.replicas}/{.items[0].status.readyReplicas}/{.items[0].status.observedGeneration}"]);
    assert!(status.starts_with("2/2/"), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_update_keeps_availability_and_undo_reuses_the_old_replica_set() {
    let cluster = e2e::Cluster::start();
    let ctrl = Controller::start(&cluster, &[]);
    let client = cluster.client().await;
    let _kubelet = fake_kubelet(client.clone(), "default", "n1");
    let strategy = "strategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 1, maxUnavailable: 0}}";
    apply(&cluster, &deployment("web", 3, "nginx:1", strategy));
    rollout_status(&cluster, &ctrl);
    let rs_v1 = cluster.kubectl_ok(&["get", "rs", "-o", "jsonpath={.items[0].metadata.name}"]);

    // Watch every pod event; track the set of available (ready, not
    // terminating) pods and its minimum over the whole rollout.
    let available: Arc<Mutex<(BTreeSet<String>, usize, usize)>> = Arc::new(Mutex::new((BTreeSet::new(), usize::MAX, 0)));
    let watch = {
        let (api, available) = (Api::<Pod>::namespaced(client.clone(), "default"), available.clone());
        tokio::spawn(async move {
            let stream = watcher(api, watcher::Config::default());
            futures::pin_mut!(stream);
            while let Some(Ok(ev)) = stream.next().await {
                let mut a = available.lock().unwrap();
                match ev {
                    watcher::Event::Apply(p) | watcher::Event::InitApply(p) => {
                        if is_ready(&p) && p.metadata.deletion_timestamp.is_none() {
                            a.0.insert(pod_name(&p));
                        } else {
                            a.0.remove(&pod_name(&p));
                        }
                    }
                    watcher::Event::Delete(p) => {
                        a.0.remove(&pod_name(&p));
                    }
                    watcher::Event::InitDone => {
                        a.2 = 1;
                        continue;
                    }
                    _ => continue,
                }
                if a.2 == 1 {
                    a.1 = a.1.min(a.0.len());
                }
            }
        })
    };
    eventually("watch synced", WAIT, || async { (available.lock().unwrap().2 == 1).then_some(()) }).await;
    assert_eq!(available.lock().unwrap().0.len(), 3);

    cluster.kubectl_ok(&["set", "image", "deployment/web", "c=nginx:2"]);
    rollout_status(&cluster, &ctrl);
    let pods = active_pods(&client, "default").await;
    assert_eq!(pods.len(), 3);
    assert!(pods.iter().all(|p| p.spec.as_ref().unwrap().containers[0].image.as_deref() == Some("nginx:2")));
    {
        let a = available.lock().unwrap();
        assert!(a.1 >= 3, "available pods dropped to {} during the rollout", a.1);
    }
    let events = cluster.kubectl_ok(&["get", "events", "-o", "custom-columns=R:.reason,M:.message", "--no-headers"]);
    assert!(events.contains(&format!("Scaled down replica set {rs_v1} from 3 to 2")), "{events}");

    // Undo: back to v1, on the v1 ReplicaSet (now revision 3).
    cluster.kubectl_ok(&["rollout", "undo", "deployment/web"]);
    rollout_status(&cluster, &ctrl);
    let rss = Api::<ReplicaSet>::namespaced(client.clone(), "default").list(&Default::default()).await.unwrap().items;
    assert_eq!(rss.len(), 2, "undo re-uses the old ReplicaSet");
    let v1 = rss.iter().find(|r| r.metadata.name.as_deref() == Some(rs_v1.as_str())).unwrap();
    assert_eq!(v1.spec.as_ref().unwrap().replicas, Some(3));
    assert_eq!(v1.metadata.annotations.as_ref().unwrap()["deployment.kubernetes.io/revision"], "3");
    let pods = active_pods(&client, "default").await;
    assert!(pods.iter().all(|p| p.spec.as_ref().unwrap().containers[0].image.as_deref() == Some("nginx:1")));
    assert!(available.lock().unwrap().1 >= 3, "available pods dropped during undo");
    let rev = cluster.kubectl_ok(&["get", "deployment", "web", "-o", "jsonpath={.metadata.annotations.deployment\\.kubernetes\\.io/revision}"]);
    assert_eq!(rev, "3");
    watch.abort();
    let _ = Api::<Pod>::namespaced(client, "default").delete_collection(&DeleteParams::default(), &Default::default()).await;
}
