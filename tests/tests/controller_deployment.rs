//! ReplicaSet and Deployment controllers against a real apiserver: pods
//! replaced when deleted, scaling with kubectl picks the right pods, a
//! rolling update never drops available pods below `replicas`, `kubectl
//! rollout status` finishes and `kubectl rollout undo` re-uses the old
//! ReplicaSet. The test plays the node agent (binding + pod status).
//! Also: Progressing/Available conditions (a missed progress deadline
//! cleared by late readiness), adoption and release of pods, paused
//! Deployments, Recreate, revisionHistoryLimit.

mod controller_common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use controller_common::*;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
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

/// The Deployment's conditions as (type, status, reason, message).
async fn conditions(client: &kube::Client, name: &str) -> Vec<(String, String, String, String)> {
    let d = Api::<Deployment>::namespaced(client.clone(), "default").get(name).await.unwrap();
    let conds = d.status.and_then(|s| s.conditions).unwrap_or_default();
    conds.into_iter().map(|c| (c.type_, c.status, c.reason.unwrap_or_default(), c.message.unwrap_or_default())).collect()
}

fn find<'a>(conds: &'a [(String, String, String, String)], type_: &str) -> Option<(&'a str, &'a str, &'a str)> {
    conds.iter().find(|c| c.0 == type_).map(|c| (c.1.as_str(), c.2.as_str(), c.3.as_str()))
}

async fn replica_sets(client: &kube::Client) -> Vec<ReplicaSet> {
    Api::<ReplicaSet>::namespaced(client.clone(), "default").list(&Default::default()).await.unwrap().items
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
    let ctrl = Controller::start(&cluster, &[]);
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
    let (rs_adds, d_adds) = (ctrl.queue_adds("replicaset"), ctrl.queue_adds("deployment"));
    cluster.kubectl_ok(&["scale", "deployment/web", "--replicas=2"]);
    let left = eventually("2 pods", WAIT, || async {
        let p = active_pods(&client, "default").await;
        (p.len() == 2).then_some(p)
    })
    .await;
    assert_eq!(names(&left), keep, "the ready pods stay, the pending ones go");
    // No more churn afterwards. Proof that the controllers looked after the
    // scale-down: the ReplicaSet's status reports the new generation with 2
    // replicas, and both work queues drained.
    eventually("the ReplicaSet's status at its generation with 2 replicas", WAIT, || async {
        let rs = replica_sets(&client).await.into_iter().next()?;
        let st = rs.status.as_ref()?;
        (st.replicas == 2 && st.observed_generation == rs.metadata.generation && rs.metadata.generation >= Some(3)).then_some(())
    })
    .await;
    ctrl.wait_drained("replicaset", rs_adds).await;
    ctrl.wait_drained("deployment", d_adds).await;
    assert_eq!(names(&active_pods(&client, "default").await), keep);
    let status = cluster.kubectl_ok(&["get", "rs", "-o", "jsonpath={.items[0].status.replicas}/{.items[0].status.readyReplicas}/{.items[0].status.observedGeneration}"]);
    assert!(status.starts_with("2/2/"), "{status}");
    // The ReplicaSet was scaled twice (generation 3): status says it saw that.
    let rs = &replica_sets(&client).await[0];
    assert_eq!(rs.metadata.generation, Some(3), "created, then scaled twice");
    assert_eq!(rs.status.as_ref().unwrap().observed_generation, rs.metadata.generation);
    // One SuccessfulDelete event per pod deleted on the scale-down.
    let events = cluster.kubectl_ok(&["get", "events", "--field-selector=reason=SuccessfulDelete", "-o", "custom-columns=M:.message", "--no-headers"]);
    let deleted: BTreeSet<String> = names(&pods).difference(&keep).cloned().collect();
    for p in &deleted {
        assert!(events.contains(&format!("Deleted pod: {p}")), "no SuccessfulDelete for {p}: {events}");
    }
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
    let conds = conditions(&client, "web").await;
    assert_eq!(find(&conds, "Available"), Some(("True", "MinimumReplicasAvailable", "Deployment has minimum availability.")), "{conds:?}");
    let done = format!("ReplicaSet \"{rs_v1}\" has successfully progressed.");
    assert_eq!(find(&conds, "Progressing"), Some(("True", "NewReplicaSetAvailable", done.as_str())), "{conds:?}");

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

/// progressDeadlineSeconds passes with the pods not ready: Progressing
/// False/ProgressDeadlineExceeded. Readiness then arrives after all: the
/// rollout is complete, Progressing True/NewReplicaSetAvailable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missed_progress_deadline_clears_when_pods_become_ready() {
    let cluster = e2e::Cluster::start();
    let ctrl = Controller::start(&cluster, &[]);
    let client = cluster.client().await;
    // No fake kubelet: the test reports readiness itself, late.
    apply(&cluster, &deployment("web", 2, "nginx:1", "progressDeadlineSeconds: 3"));
    let pods = eventually("2 pods", WAIT, || async {
        let p = active_pods(&client, "default").await;
        (p.len() == 2).then_some(p)
    })
    .await;
    let rs = replica_sets(&client).await[0].metadata.name.clone().unwrap();
    let timed_out = format!("ReplicaSet \"{rs}\" has timed out progressing.");
    eventually("ProgressDeadlineExceeded", WAIT, || async {
        let c = conditions(&client, "web").await;
        (find(&c, "Progressing") == Some(("False", "ProgressDeadlineExceeded", timed_out.as_str()))).then_some(())
    })
    .await;
    let c = conditions(&client, "web").await;
    assert_eq!(find(&c, "Available"), Some(("False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability.")), "{c:?}");
    let out = cluster.kubectl(&["rollout", "status", "deployment/web", "--timeout=10s"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("exceeded its progress deadline"), "{out:?}");

    for (i, p) in pods.iter().enumerate() {
        bind(&client, "default", &pod_name(p), "n1").await;
        set_ready(&client, "default", &pod_name(p), true, &format!("10.244.0.{}", i + 10)).await;
    }
    let done = format!("ReplicaSet \"{rs}\" has successfully progressed.");
    let c = eventually("NewReplicaSetAvailable", WAIT, || async {
        let c = conditions(&client, "web").await;
        (find(&c, "Progressing") == Some(("True", "NewReplicaSetAvailable", done.as_str()))).then_some(c)
    })
    .await;
    assert_eq!(find(&c, "Available"), Some(("True", "MinimumReplicasAvailable", "Deployment has minimum availability.")), "{c:?}");
    rollout_status(&cluster, &ctrl);
}

/// A ReplicaSet adopts an orphan pod its selector matches (controller
/// ownerReference) and releases a pod relabelled out of its selector
/// (ownerReference removed), replacing it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_set_adopts_orphans_and_releases_relabelled_pods() {
    let cluster = e2e::Cluster::start();
    let ctrl = Controller::start(&cluster, &[]);
    let client = cluster.client().await;
    let pods_api: Api<Pod> = Api::namespaced(client.clone(), "default");
    cluster.kubectl_ok(&["run", "orphan", "--image=nginx", "--labels=app=rs"]);
    let adds = ctrl.queue_adds("replicaset");
    apply(
        &cluster,
        "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata: {name: rs}\nspec:\n  replicas: 2\n  selector: {matchLabels: {app: rs}}\n  template:\n    metadata: {labels: {app: rs}}\n    spec: {containers: [{name: c, image: nginx}]}\n",
    );
    let rs = eventually("the ReplicaSet", WAIT, || async { Api::<ReplicaSet>::namespaced(client.clone(), "default").get_opt("rs").await.unwrap() }).await;
    let rs_uid = rs.metadata.uid.clone().unwrap();
    let controlled_by_rs = |p: &Pod| p.metadata.owner_references.iter().flatten().any(|r| r.controller == Some(true) && r.kind == "ReplicaSet" && r.uid == rs_uid);
    eventually("orphan adopted", WAIT, || async { controlled_by_rs(&pods_api.get("orphan").await.unwrap()).then_some(()) }).await;
    // Adopted, so only one pod was created for replicas: 2.
    let pods = eventually("2 pods", WAIT, || async {
        let p = active_pods(&client, "default").await;
        (p.len() == 2 && p.iter().all(controlled_by_rs)).then_some(p)
    })
    .await;
    // Proof that the ReplicaSet controller looked after the adoption: its
    // status counts 2 replicas at its generation, and its queue drained.
    eventually("the ReplicaSet's status: 2 replicas at its generation", WAIT, || async {
        let rs = Api::<ReplicaSet>::namespaced(client.clone(), "default").get("rs").await.unwrap();
        let st = rs.status.as_ref()?;
        (st.replicas == 2 && st.observed_generation == rs.metadata.generation).then_some(())
    })
    .await;
    ctrl.wait_drained("replicaset", adds).await;
    assert_eq!(names(&active_pods(&client, "default").await), names(&pods), "the orphan counted toward replicas");

    // Release: relabel the created pod out of the selector.
    let created = pods.iter().map(pod_name).find(|n| n != "orphan").unwrap();
    cluster.kubectl_ok(&["label", "pod", &created, "app=elsewhere", "--overwrite"]);
    eventually("relabelled pod released", WAIT, || async {
        let p = pods_api.get(&created).await.unwrap();
        p.metadata.owner_references.as_ref().is_none_or(|r| r.is_empty()).then_some(())
    })
    .await;
    let owned = eventually("a replacement", WAIT, || async {
        let p: Vec<Pod> = active_pods(&client, "default").await.into_iter().filter(controlled_by_rs).collect();
        (p.len() == 2).then_some(p)
    })
    .await;
    assert!(!names(&owned).contains(&created) && names(&owned).contains("orphan"), "{:?}", names(&owned));
    assert!(pods_api.get_opt(&created).await.unwrap().is_some(), "a released pod is left alone");
}

/// Paused: a template change makes no new ReplicaSet and Progressing says
/// DeploymentPaused; resumed, the rollout proceeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_deployment_waits_for_resume() {
    let cluster = e2e::Cluster::start();
    let ctrl = Controller::start(&cluster, &[]);
    let client = cluster.client().await;
    let _kubelet = fake_kubelet(client.clone(), "default", "n1");
    apply(&cluster, &deployment("web", 2, "nginx:1", ""));
    rollout_status(&cluster, &ctrl);
    cluster.kubectl_ok(&["rollout", "pause", "deployment/web"]);
    eventually("DeploymentPaused", WAIT, || async {
        let c = conditions(&client, "web").await;
        (find(&c, "Progressing") == Some(("Unknown", "DeploymentPaused", "Deployment is paused"))).then_some(())
    })
    .await;
    let adds = ctrl.queue_adds("deployment");
    cluster.kubectl_ok(&["set", "image", "deployment/web", "c=nginx:2"]);
    // The controller sees the new generation, and does nothing with it:
    // status reports the generation, and the queue drained since.
    eventually("new generation observed", WAIT, || async {
        let d = Api::<Deployment>::namespaced(client.clone(), "default").get("web").await.unwrap();
        (d.status.and_then(|s| s.observed_generation) == d.metadata.generation).then_some(())
    })
    .await;
    ctrl.wait_drained("deployment", adds).await;
    assert_eq!(replica_sets(&client).await.len(), 1, "no new ReplicaSet while paused");
    assert!(active_pods(&client, "default").await.iter().all(|p| p.spec.as_ref().unwrap().containers[0].image.as_deref() == Some("nginx:1")));
    assert_eq!(find(&conditions(&client, "web").await, "Progressing").map(|c| c.1.to_string()), Some("DeploymentPaused".into()));

    cluster.kubectl_ok(&["rollout", "resume", "deployment/web"]);
    rollout_status(&cluster, &ctrl);
    assert_eq!(replica_sets(&client).await.len(), 2);
    let pods = active_pods(&client, "default").await;
    assert!(pods.len() == 2 && pods.iter().all(|p| p.spec.as_ref().unwrap().containers[0].image.as_deref() == Some("nginx:2")));
}

/// Recreate: every old pod is gone before the first new one exists
/// (checked on every pod event of the rollout). revisionHistoryLimit: 1
/// keeps one old ReplicaSet after three rollouts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recreate_never_mixes_versions_and_history_is_limited() {
    let cluster = e2e::Cluster::start();
    let ctrl = Controller::start(&cluster, &[]);
    let client = cluster.client().await;
    let _kubelet = fake_kubelet(client.clone(), "default", "n1");
    apply(&cluster, &deployment("web", 3, "nginx:1", "strategy: {type: Recreate}\n  revisionHistoryLimit: 1"));
    rollout_status(&cluster, &ctrl);

    // Pods that exist (terminating or not), by name → image; the worst
    // moment seen (a set of images present together).
    let state: Arc<Mutex<(std::collections::BTreeMap<String, String>, Option<BTreeSet<String>>)>> = Arc::default();
    let watch = {
        let (api, state) = (Api::<Pod>::namespaced(client.clone(), "default"), state.clone());
        tokio::spawn(async move {
            let stream = watcher(api, watcher::Config::default());
            futures::pin_mut!(stream);
            while let Some(Ok(ev)) = stream.next().await {
                let mut st = state.lock().unwrap();
                match ev {
                    watcher::Event::Apply(p) | watcher::Event::InitApply(p) => {
                        let image = p.spec.as_ref().unwrap().containers[0].image.clone().unwrap_or_default();
                        st.0.insert(pod_name(&p), image);
                    }
                    watcher::Event::Delete(p) => {
                        st.0.remove(&pod_name(&p));
                    }
                    _ => {}
                }
                let images: BTreeSet<String> = st.0.values().cloned().collect();
                if images.len() > 1 && st.1.is_none() {
                    st.1 = Some(images);
                }
            }
        })
    };
    let mut adds = 0.0;
    for image in ["nginx:2", "nginx:3"] {
        adds = ctrl.queue_adds("deployment");
        cluster.kubectl_ok(&["set", "image", "deployment/web", &format!("c={image}")]);
        rollout_status(&cluster, &ctrl);
        let pods = active_pods(&client, "default").await;
        assert!(pods.len() == 3 && pods.iter().all(|p| p.spec.as_ref().unwrap().containers[0].image.as_deref() == Some(image)));
    }
    watch.abort();
    assert_eq!(state.lock().unwrap().1, None, "old and new pods existed together");

    // Three revisions, history limit 1: the current ReplicaSet and one old.
    let rss = eventually("old ReplicaSets cleaned up", WAIT, || async {
        let rss = replica_sets(&client).await;
        (rss.len() == 2).then_some(rss)
    })
    .await;
    let mut revisions: Vec<String> = rss.iter().map(|r| r.metadata.annotations.as_ref().unwrap()["deployment.kubernetes.io/revision"].clone()).collect();
    revisions.sort();
    assert_eq!(revisions, ["2", "3"]);
    // The clean-up is finished, not merely under way: the deployment
    // controller's queue drained since the last rollout began.
    ctrl.wait_drained("deployment", adds).await;
    assert_eq!(replica_sets(&client).await.len(), 2);
}
