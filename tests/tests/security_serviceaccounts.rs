//! The `default` ServiceAccount, end to end: real etcd, rkube-apiserver on
//! its TLS port with Node,RBAC and the ServiceAccount admission plugin, and
//! rkube-controller running as `system:kube-controller-manager` (its
//! `rkube certs` certificate, so its bootstrap role is what it has).
//!
//! Without the controller a pod in a new namespace is refused with
//! Kubernetes' message (after the plugin's retries); with it, every
//! namespace gets `default`, a deleted `default` comes back, and a pod
//! created right after its namespace is admitted.

mod security_common;

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use kube::api::{DeleteParams, PostParams};
use kube::Api;
use security_common::Secure;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

/// [`e2e::eventually`] with this file's timeout.
async fn eventually<T, F, Fut>(what: &str, f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    e2e::eventually(what, WAIT, f).await
}

fn pod(name: &str, service_account: Option<&str>) -> Pod {
    serde_json::from_value(json!({"metadata": {"name": name},
        "spec": {"serviceAccountName": service_account, "containers": [{"name": "c", "image": "busybox:1"}]}}))
    .unwrap()
}

fn namespace(name: &str) -> Namespace {
    serde_json::from_value(json!({"metadata": {"name": name}})).unwrap()
}

fn forbidden_message(e: kube::Error) -> String {
    match e {
        kube::Error::Api(s) if s.code == 403 => s.message,
        other => panic!("expected 403, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_namespace_gets_a_default_service_account() {
    let s = Secure::start_with(&[], &["--enable-admission-plugins=ServiceAccount"]);
    let admin = machinery::client::connect_as("e2e", None, Some(&s.admin_kubeconfig())).await.unwrap();
    let pp = PostParams::default();
    let namespaces: Api<Namespace> = Api::all(admin.clone());
    let sas = |ns: &str| Api::<ServiceAccount>::namespaced(admin.clone(), ns);
    let pods = |ns: &str| Api::<Pod>::namespaced(admin.clone(), ns);

    // No controller yet: the plugin looks `default` up again for a while
    // (10 reads, 100–200 ms apart), then refuses with Kubernetes' message.
    namespaces.create(&pp, &namespace("early")).await.unwrap();
    let t = Instant::now();
    let err = pods("early").create(&pp, &pod("p", None)).await.unwrap_err();
    let waited = t.elapsed();
    assert_eq!(
        forbidden_message(err),
        r#"pods "p" is forbidden: error looking up service account early/default: serviceaccount "default" not found"#
    );
    assert!(waited >= Duration::from_millis(900), "refused after {waited:?}: the plugin did not retry");
    // Another account is looked up once.
    let t = Instant::now();
    let err = pods("early").create(&pp, &pod("q", Some("builder"))).await.unwrap_err();
    assert!(t.elapsed() < Duration::from_millis(900), "{:?}", t.elapsed());
    assert!(forbidden_message(err).ends_with(r#"error looking up service account early/builder: serviceaccount "builder" not found"#));
    assert!(pods("early").get_opt("p").await.unwrap().is_none(), "a refused pod was stored");

    // The controller manager with its default `--controllers=*`.
    let ctrl = s.start_controller(&[]);
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease", "early"] {
        eventually(&format!("{ns}/default"), || async { sas(ns).get_opt("default").await.unwrap().map(|_| ()) }).await;
    }
    // Now the same pod is admitted, running as `default`.
    let p = pods("early").create(&pp, &pod("p", None)).await.unwrap();
    assert_eq!(p.spec.as_ref().unwrap().service_account_name.as_deref(), Some("default"));

    // A new namespace gets its account; a deleted one comes back (a new object).
    namespaces.create(&pp, &namespace("team")).await.unwrap();
    let first = eventually("team/default", || async { sas("team").get_opt("default").await.unwrap() }).await;
    sas("team").delete("default", &DeleteParams::default()).await.unwrap();
    let again = eventually("team/default re-created", || async {
        sas("team").get_opt("default").await.unwrap().filter(|sa| sa.metadata.uid != first.metadata.uid)
    })
    .await;
    assert_ne!(again.metadata.uid, first.metadata.uid);
    // Other accounts are the user's business: a deleted one stays deleted.
    sas("team").create(&pp, &serde_json::from_value(json!({"metadata": {"name": "builder"}})).unwrap()).await.unwrap();
    sas("team").delete("builder", &DeleteParams::default()).await.unwrap();
    // Proof that the controller looked at `team` after `builder` went: a
    // `default` deleted after it comes back, so a sync of `team` ran on a
    // cache that no longer had `builder` (one informer delivers both
    // deletes, in order); and once the queue has drained, every sync that
    // could have re-created `builder` is finished.
    sas("team").delete("default", &DeleteParams::default()).await.unwrap();
    eventually("team/default re-created after builder was deleted", || async {
        sas("team").get_opt("default").await.unwrap().filter(|sa| sa.metadata.uid != again.metadata.uid).map(|_| ())
    })
    .await;
    eventually("the serviceaccount queue drained", || async { ctrl.metrics().and_then(|m| e2e::work_queue_drained(&m, "serviceaccount")) }).await;
    assert!(sas("team").get_opt("builder").await.unwrap().is_none(), "the controller re-created a non-default account");

    // A pod right after its namespace: the plugin's retries cover the
    // moment before the controller has created `default`.
    namespaces.create(&pp, &namespace("fresh")).await.unwrap();
    let p = pods("fresh").create(&pp, &pod("first", None)).await.unwrap();
    assert_eq!(p.spec.as_ref().unwrap().service_account_name.as_deref(), Some("default"));
    // A pod naming an account that does not exist is refused, with the controller running too.
    let err = pods("team").create(&pp, &pod("ghost-user", Some("ghost"))).await.unwrap_err();
    assert_eq!(
        forbidden_message(err),
        r#"pods "ghost-user" is forbidden: error looking up service account team/ghost: serviceaccount "ghost" not found"#
    );
    assert!(sas("team").get_opt("builder").await.unwrap().is_none(), "the controller re-created a non-default account");

    // A namespace being deleted gets nothing new: the namespace controller
    // empties it (the `default` account included) and it goes away.
    namespaces.delete("team", &DeleteParams::default()).await.unwrap();
    eventually("team deleted", || async { namespaces.get_opt("team").await.unwrap().is_none().then_some(()) }).await;
    // No sync failed: a failed sync is retried through the queue's rate
    // limiter, which `workqueue_retries_total` counts.
    let m = ctrl.metrics().expect("controller /metrics");
    assert_eq!(e2e::metric(&m, r#"workqueue_retries_total{name="serviceaccount"}"#), Some(0.0), "the serviceaccount controller failed a sync:\n{m}");
}
