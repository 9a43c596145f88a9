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
    let events: Api<Event> = Api::namespaced(client.clone(), NS);
    let failed_syncs = || async {
        let list = events.list(&ListParams::default()).await.unwrap();
        list.items.into_iter().filter(|e| e.reason.as_deref() == Some("FailedSync")).collect::<Vec<_>>()
    };
    // Each identical event is one more on the same object: created once,
    // then patched to count 2, then 3.
    let mut first_name = None;
    for n in 1..=3 {
        recorder.event(&obj, EventType::Warning, "FailedSync", "could not sync");
        let e = eventually(&format!("FailedSync with count {n}"), Duration::from_secs(20), || async {
            let f = failed_syncs().await;
            (f.len() == 1 && f[0].count == Some(n)).then(|| f[0].clone())
        })
        .await;
        let name = e.metadata.name.clone().unwrap();
        assert_eq!(first_name.get_or_insert(name.clone()), &name, "the repeat made a new Event object");
    }
    recorder.event(&obj, EventType::Normal, "Synced", "all good");

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
///
/// With burst 5 and a write every 2 s, the bucket (full at the recorder's
/// creation, time 0) holds exactly 5 tokens, and token 5+k comes at 2k s:
/// the k-th write after the burst can never appear before 2k s (exact), and
/// on a working machine appears within a second or so after (generous).
#[tokio::test]
async fn writes_are_rate_limited_without_blocking_the_caller() {
    use machinery::events::{CorrelatorConfig, WriteLimits};
    const BURST: usize = 5;
    const QPS: f64 = 0.5;
    /// How late a write may be after its token, on a busy machine.
    const SLACK: Duration = Duration::from_millis(1500);
    let cluster = e2e::Cluster::start();
    let client = cluster.client().await;
    let mut objs = vec![];
    for i in 0..1200 {
        let cm = ConfigMap { metadata: ObjectMeta { name: Some(format!("cm-{i}")), namespace: Some(NS.into()), uid: Some(format!("uid-{i}")), ..Default::default() }, ..Default::default() };
        objs.push(cm);
    }
    // Taken before the recorder (and its bucket) exists: no token can come
    // earlier than `t + k / QPS`.
    let t = std::time::Instant::now();
    let recorder = EventRecorder::with_limits(client.clone(), "rate-test", "", CorrelatorConfig::default(), WriteLimits { qps: QPS, burst: BURST as u32 });
    // 1200 distinct objects: the spam filter and aggregation leave them all.
    for o in &objs {
        recorder.event(o, EventType::Normal, "Tick", "tick");
    }
    assert!(t.elapsed() < Duration::from_secs(1), "recording blocked the caller: {:?}", t.elapsed());
    let events: Api<Event> = Api::namespaced(client, NS);
    let count = || async { events.list(&ListParams::default()).await.unwrap().items.iter().filter(|e| e.reason.as_deref() == Some("Tick")).count() };
    // When each count was first seen (polling; a write is seen after it happened).
    let mut seen_at: Vec<Duration> = Vec::new();
    let total = BURST + 3;
    while seen_at.len() < total {
        let n = count().await;
        while seen_at.len() < n.min(total) {
            seen_at.push(t.elapsed());
        }
        assert!(t.elapsed() < Duration::from_secs(30), "only {n} events written after {:?}", t.elapsed());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The burst goes out at once: all 5 before the 6th token exists…
    let sixth_token = Duration::from_secs_f64(1.0 / QPS);
    assert!(seen_at[BURST - 1] < sixth_token, "the burst of {BURST} took until {:?}: {seen_at:?}", seen_at[BURST - 1]);
    // …and not one more: write 5+k waits for its token at k / QPS, and
    // comes soon after it.
    for k in 1..=total - BURST {
        let token = Duration::from_secs_f64(k as f64 / QPS);
        let at = seen_at[BURST + k - 1];
        assert!(at >= token, "write {} at {at:?}, before its token at {token:?}: {seen_at:?}", BURST + k);
        assert!(at <= token + SLACK, "write {} at {at:?}, long after its token at {token:?}: {seen_at:?}", BURST + k);
    }
    // Nothing more than the bucket allows, ever, up to now.
    let n = count().await;
    let allowed = BURST + (t.elapsed().as_secs_f64() * QPS).floor() as usize;
    assert!(n <= allowed, "{n} events written after {:?}; at most {allowed} allowed", t.elapsed());
}
