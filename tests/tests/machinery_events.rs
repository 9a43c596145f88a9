//! The event recorder against a real apiserver: identical events become one
//! Event object with a count, different ones stay separate.
//!
//! Each test starts its own etcd and apiserver (`e2e::Cluster`).

mod machinery_common;

use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Event};
use kube::api::{ListParams, ObjectMeta, PostParams};
use kube::Api;
use machinery::events::{EventRecorder, EventType};
use machinery_common::*;

const NS: &str = "default";

#[tokio::test]
async fn identical_events_are_aggregated_into_a_count() {
    let cluster = e2e::Cluster::start();
    let client = cluster.client().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
    let obj = cms
        .create(
            &PostParams::default(),
            &ConfigMap { metadata: ObjectMeta { name: Some("web".into()), ..Default::default() }, ..Default::default() },
        )
        .await
        .unwrap();

    let recorder = EventRecorder::new(client.clone(), "test-controller", "host-1");
    for _ in 0..3 {
        recorder.event(&obj, EventType::Warning, "FailedSync", "could not sync");
        // Give the writer time to create the first one, so later ones patch it.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    recorder.event(&obj, EventType::Normal, "Synced", "all good");

    let events: Api<Event> = Api::namespaced(client, NS);
    let (failed, synced) = eventually("events to be written", Duration::from_secs(20), || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        let find = |reason: &str| list.items.iter().filter(|e| e.reason.as_deref() == Some(reason)).cloned().collect::<Vec<_>>();
        let (failed, synced) = (find("FailedSync"), find("Synced"));
        (failed.len() == 1 && failed[0].count == Some(3) && synced.len() == 1).then(|| (failed[0].clone(), synced[0].clone()))
    })
    .await;

    assert_eq!(failed.type_.as_deref(), Some("Warning"));
    assert_eq!(failed.message.as_deref(), Some("could not sync"));
    assert_eq!(failed.involved_object.kind.as_deref(), Some("ConfigMap"));
    assert_eq!(failed.involved_object.name.as_deref(), Some("web"));
    assert_eq!(failed.involved_object.uid, obj.metadata.uid);
    assert_eq!(failed.source.as_ref().unwrap().component.as_deref(), Some("test-controller"));
    assert_eq!(failed.reporting_component.as_deref(), Some("test-controller"));
    assert!(failed.last_timestamp.as_ref().unwrap().0 >= failed.first_timestamp.as_ref().unwrap().0);
    assert_eq!(synced.count, Some(1));
    assert_eq!(synced.type_.as_deref(), Some("Normal"));
}

/// The writer calls the apiserver at most `qps` times a second after a
/// `burst`, as client-go's rate limiter makes it; recording never blocks the
/// caller (what does not fit in the queue is dropped).
#[tokio::test]
async fn writes_are_rate_limited_without_blocking_the_caller() {
    use machinery::events::{CorrelatorConfig, WriteLimits};
    let cluster = e2e::Cluster::start();
    let client = cluster.client().await;
    let mut objs = vec![];
    for i in 0..1200 {
        let cm = ConfigMap { metadata: ObjectMeta { name: Some(format!("cm-{i}")), namespace: Some(NS.into()), uid: Some(format!("uid-{i}")), ..Default::default() }, ..Default::default() };
        objs.push(cm);
    }
    let recorder = EventRecorder::with_limits(client.clone(), "rate-test", "", CorrelatorConfig::default(), WriteLimits { qps: 2.0, burst: 5 });
    let t = std::time::Instant::now();
    // 1200 distinct objects: the spam filter and aggregation leave them all.
    for o in &objs {
        recorder.event(o, EventType::Normal, "Tick", "tick");
    }
    assert!(t.elapsed() < Duration::from_secs(1), "recording blocked the caller: {:?}", t.elapsed());
    let events: Api<Event> = Api::namespaced(client, NS);
    let count = || async { events.list(&ListParams::default()).await.unwrap().items.iter().filter(|e| e.reason.as_deref() == Some("Tick")).count() };
    // The burst goes out at once…
    eventually("the burst to be written", Duration::from_secs(10), || async { (count().await >= 5).then_some(()) }).await;
    let start = t.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    // …then 2 per second: after about 2 s more, at most burst + 2 × elapsed + 1.
    let n = count().await;
    let bound = 5 + (2.0 * (t.elapsed().as_secs_f64())).ceil() as usize + 1;
    assert!(n >= 5 && n <= bound, "{n} events written after {:?} (burst at {start:?}); at most {bound} allowed", t.elapsed());
}
