//! A pod create whose answer is lost (the apiserver wrote the pod, then died
//! before answering) is sent again under the same name, and the pod exists
//! once: the ReplicaSet neither fails the create nor makes a second pod.
//!
//! The lost answer is made exactly: the client's transport forwards the
//! request to a real apiserver, lets it complete, then reports a broken
//! connection instead of the response — once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use rkube_controller::replicaset::{create_pod, pod_from_template};
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn a_create_whose_answer_is_lost_makes_one_pod() {
    let cluster = e2e::Cluster::start();
    let real = cluster.client().await;
    let rss: Api<ReplicaSet> = Api::namespaced(real.clone(), "default");
    let rs: ReplicaSet = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}
    }))
    .unwrap();
    let rs = rss.create(&PostParams::default(), &rs).await.unwrap();

    let creates = Arc::new(AtomicUsize::new(0));
    let seen = creates.clone();
    let lossy = tower::service_fn(move |req: http::Request<kube::client::Body>| {
        let (real, seen) = (real.clone(), seen.clone());
        async move {
            let is_create = req.method() == http::Method::POST && req.uri().path().ends_with("/pods");
            let resp = real.send(req).await?;
            if is_create && seen.fetch_add(1, Ordering::SeqCst) == 0 {
                return Err(Box::new(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "connection reset by peer")) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(resp)
        }
    });
    let client = Client::new(lossy, "default");
    let pods: Api<Pod> = Api::namespaced(client, "default");

    let pod = create_pod(&pods, &pod_from_template(&rs), &rs).await.expect("the lost answer is recovered");
    assert_eq!(creates.load(Ordering::SeqCst), 2, "the create was sent again");
    let all = Api::<Pod>::namespaced(cluster.client().await, "default").list(&ListParams::default()).await.unwrap();
    let names: Vec<_> = all.items.iter().filter_map(|p| p.metadata.name.clone()).collect();
    assert_eq!(names, vec![pod.metadata.name.clone().unwrap()], "exactly one pod, the one create_pod returned");
    assert!(names[0].starts_with("web-") && names[0].len() == "web-".len() + 5, "{names:?}");
}
