//! Informers against a real apiserver: list, watch, handlers, indexes, and
//! recovery — resuming after a dropped connection, and re-listing from
//! scratch after 410 Gone (etcd compacted while the informer was cut off).
//!
//! Each test starts its own etcd and apiserver (`e2e::Cluster`).

mod machinery_common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::Api;
use machinery::informer::{Event, Informer};
use machinery_common::*;

const NS: &str = "default";
use tokio::sync::mpsc::UnboundedReceiver;

const WAIT: Duration = Duration::from_secs(20);

fn cm(name: &str, team: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(BTreeMap::from([("team".to_string(), team.to_string())])),
            ..Default::default()
        },
        data: Some(BTreeMap::from([("v".to_string(), "1".to_string())])),
        ..Default::default()
    }
}

fn team(c: &ConfigMap) -> Vec<String> {
    c.metadata.labels.as_ref().and_then(|l| l.get("team").cloned()).into_iter().collect()
}

fn describe(e: &Event<ConfigMap>) -> String {
    let name = |c: &Arc<ConfigMap>| c.metadata.name.clone().unwrap();
    match e {
        Event::Added(c) => format!("add {}", name(c)),
        Event::Updated { old, new } => {
            let data = |c: &Arc<ConfigMap>| c.data.as_ref().and_then(|d| d.get("v").cloned()).unwrap_or_default();
            format!("update {} v{}->v{}", name(new), data(old), data(new))
        }
        Event::Deleted(c) => format!("delete {}", name(c)),
    }
}

/// The next `n` events, sorted (a re-list delivers its diff in no set order).
async fn next_events(rx: &mut UnboundedReceiver<Event<ConfigMap>>, n: usize) -> Vec<String> {
    let mut got = Vec::new();
    while got.len() < n {
        match tokio::time::timeout(WAIT, rx.recv()).await {
            Ok(Some(e)) => got.push(describe(&e)),
            _ => panic!("timed out; events so far: {got:?}"),
        }
    }
    got.sort();
    got
}

async fn set_v(api: &Api<ConfigMap>, name: &str, v: &str) {
    let patch = serde_json::json!({"data": {"v": v}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
}

fn sorted_names(informer: &Informer<ConfigMap>) -> Vec<String> {
    let mut names: Vec<String> = informer.store().list().iter().map(|c| c.metadata.name.clone().unwrap()).collect();
    names.sort();
    names
}

#[tokio::test]
async fn informer_lists_watches_and_indexes() {
    let cluster = e2e::Cluster::start();
    let api: Api<ConfigMap> = Api::namespaced(cluster.client().await, NS);
    let pp = PostParams::default();
    api.create(&pp, &cm("a", "red")).await.unwrap();
    api.create(&pp, &cm("b", "blue")).await.unwrap();

    let informer = Informer::new(api.clone()).index("team", team);
    let mut events = informer.events();
    let task = informer.spawn();
    tokio::time::timeout(WAIT, informer.wait_for_sync()).await.expect("informer never synced");
    assert_eq!(next_events(&mut events, 2).await, ["add a", "add b"]);

    set_v(&api, "a", "2").await;
    assert_eq!(next_events(&mut events, 1).await, ["update a v1->v2"]);
    api.delete("b", &DeleteParams::default()).await.unwrap();
    assert_eq!(next_events(&mut events, 1).await, ["delete b"]);
    api.create(&pp, &cm("c", "red")).await.unwrap();
    assert_eq!(next_events(&mut events, 1).await, ["add c"]);

    // The store matches the server, keyed "namespace/name", indexed by team.
    assert_eq!(sorted_names(&informer), ["a", "c"]);
    let a = informer.store().get(&format!("{}/a", NS)).unwrap();
    assert_eq!(a.data.as_ref().unwrap()["v"], "2");
    let mut red: Vec<String> = informer.store().by_index("team", "red").iter().map(|c| c.metadata.name.clone().unwrap()).collect();
    red.sort();
    assert_eq!(red, ["a", "c"]);
    assert!(informer.store().by_index("team", "blue").is_empty());
    task.abort();
}

#[tokio::test]
async fn informer_label_selector_limits_the_cache() {
    let cluster = e2e::Cluster::start();
    let api: Api<ConfigMap> = Api::namespaced(cluster.client().await, NS);
    let pp = PostParams::default();
    api.create(&pp, &cm("a", "red")).await.unwrap();
    api.create(&pp, &cm("b", "blue")).await.unwrap();
    let informer = Informer::new(api.clone()).labels("team=red");
    let mut events = informer.events();
    let task = informer.spawn();
    assert_eq!(next_events(&mut events, 1).await, ["add a"]);
    api.create(&pp, &cm("c", "blue")).await.unwrap();
    api.create(&pp, &cm("d", "red")).await.unwrap();
    assert_eq!(next_events(&mut events, 1).await, ["add d"]);
    assert_eq!(sorted_names(&informer), ["a", "d"]);
    task.abort();
}

#[tokio::test]
async fn informer_resyncs_periodically() {
    let cluster = e2e::Cluster::start();
    let api: Api<ConfigMap> = Api::namespaced(cluster.client().await, NS);
    api.create(&PostParams::default(), &cm("a", "red")).await.unwrap();
    let informer = Informer::new(api.clone()).resync(Duration::from_millis(300));
    let mut events = informer.events();
    let task = informer.spawn();
    assert_eq!(next_events(&mut events, 1).await, ["add a"]);
    // Nothing changed, yet the handler hears about `a` again: old == new.
    assert_eq!(next_events(&mut events, 1).await, ["update a v1->v1"]);
    assert_eq!(next_events(&mut events, 1).await, ["update a v1->v1"]);
    task.abort();
}

/// The connection drops (an apiserver restart looks the same to a client):
/// the informer resumes watching from its last resourceVersion and misses
/// nothing that happened meanwhile.
#[tokio::test]
async fn informer_resumes_after_connection_loss() {
    let cluster = e2e::Cluster::start();
    let direct: Api<ConfigMap> = Api::namespaced(cluster.client().await, NS);
    let proxy = Proxy::start(&cluster.api.url).await;
    let proxied: Api<ConfigMap> = Api::namespaced(client_for(&proxy.url).await, NS);
    direct.create(&PostParams::default(), &cm("a", "red")).await.unwrap();

    let informer = Informer::new(proxied);
    let mut events = informer.events();
    let task = informer.spawn();
    assert_eq!(next_events(&mut events, 1).await, ["add a"]);

    proxy.cut();
    set_v(&direct, "a", "2").await;
    direct.create(&PostParams::default(), &cm("b", "red")).await.unwrap();
    // The informer noticed: it tried to reconnect, and was refused.
    eventually("the informer to try to reconnect", WAIT, || async { (proxy.refused() > 0).then_some(()) }).await;
    proxy.restore();

    assert_eq!(next_events(&mut events, 2).await, ["add b", "update a v1->v2"]);
    assert_eq!(sorted_names(&informer), ["a", "b"]);
    task.abort();
}

/// The apiserver restarts while the informer is cut off, and things change
/// meanwhile. The new apiserver's watch cache starts at the current etcd
/// revision, so it cannot replay from the informer's resourceVersion and
/// answers 410 Gone: the informer re-lists from scratch, and the diff
/// against its cache reports the delete, update and add it missed.
#[tokio::test]
async fn informer_relists_after_410_gone() {
    let mut cluster = e2e::Cluster::start();
    let direct: Api<ConfigMap> = Api::namespaced(cluster.client().await, NS);
    let proxy = Proxy::start(&cluster.api.url).await;
    let proxied: Api<ConfigMap> = Api::namespaced(client_for(&proxy.url).await, NS);
    let pp = PostParams::default();
    direct.create(&pp, &cm("a", "red")).await.unwrap();
    direct.create(&pp, &cm("b", "red")).await.unwrap();
    direct.create(&pp, &cm("u", "red")).await.unwrap();

    let informer = Informer::new(proxied);
    let mut events = informer.events();
    let task = informer.spawn();
    assert_eq!(next_events(&mut events, 3).await, ["add a", "add b", "add u"]);
    let old_rv = direct.get("u").await.unwrap().metadata.resource_version.unwrap();

    proxy.cut();
    direct.delete("a", &DeleteParams::default()).await.unwrap();
    set_v(&direct, "b", "2").await;
    direct.create(&pp, &cm("c", "red")).await.unwrap();
    // "Restart": a new apiserver on the same etcd, the old one gone.
    let restarted = e2e::ApiServer::start(&cluster.etcd, cluster.dir.path(), &[]);
    cluster.api.kill();
    // The new apiserver really cannot resume from the informer's version.
    let fresh: Api<ConfigMap> = Api::namespaced(client_for(&restarted.url).await, NS);
    let gone = fresh.watch(&kube::api::WatchParams::default(), &old_rv).await;
    let gone = match gone {
        Err(kube::Error::Api(e)) => e.code,
        Ok(stream) => {
            use futures::StreamExt;
            let mut stream = Box::pin(stream);
            match stream.next().await {
                Some(Ok(kube::api::WatchEvent::Error(e))) => e.code,
                other => panic!("expected 410, got {other:?}"),
            }
        }
        Err(e) => panic!("expected 410, got {e}"),
    };
    assert_eq!(gone, 410);
    proxy.set_upstream(&restarted.url);
    proxy.restore();

    // A resumed watch would not mention the untouched `u`; a re-list
    // reports every surviving object as an update (client-go's Replace).
    assert_eq!(
        next_events(&mut events, 4).await,
        ["add c", "delete a", "update b v1->v2", "update u v1->v1"]
    );
    assert_eq!(sorted_names(&informer), ["b", "c", "u"]);
    assert!(informer.has_synced());
    task.abort();
}
