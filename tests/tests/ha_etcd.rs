//! High availability, etcd faults: an apiserver on a real 3-member etcd cluster.
//!
//! - kill -9 of one member (the one the apiserver talks to, then the raft
//!   leader): writes and reads go on; no request fails beyond one retry;
//! - two members down (quorum lost): requests get a 503/504 `Status`
//!   quickly instead of hanging, and `/readyz` turns false;
//! - the members come back: `/readyz` is true again, writes work, and every
//!   acknowledged write is there — nothing lost.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2e::ha::{client_for, EtcdCluster, HaApiServer};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ListParams, PostParams};
use kube::Api;
use serde_json::json;

const NS: &str = "default";

/// What the writer saw: acknowledged names, operations that needed their
/// one retry, operations that failed even after it, and latencies.
#[derive(Default)]
struct Ledger {
    acked: Vec<String>,
    retried: usize,
    failed: Vec<String>,
    latencies: Vec<(Instant, Duration)>,
    /// Rounds (a create and a list) completed.
    rounds: usize,
}

fn cm(name: &str) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name}, "data": {"k": name}})).unwrap()
}

/// Creates a ConfigMap, retrying once on failure (a client's one retry).
/// A retry that finds the object already there counts as acknowledged: the
/// first attempt was committed but its answer lost.
async fn create_with_one_retry(api: &Api<ConfigMap>, name: &str, ledger: &Mutex<Ledger>) {
    let started = Instant::now();
    let mut last = String::new();
    for attempt in 0..2 {
        match api.create(&PostParams::default(), &cm(name)).await {
            Ok(_) => {
                let mut l = ledger.lock().unwrap();
                l.acked.push(name.to_string());
                l.retried += attempt;
                l.latencies.push((started, started.elapsed()));
                return;
            }
            Err(kube::Error::Api(e)) if attempt == 1 && e.code == 409 => {
                let mut l = ledger.lock().unwrap();
                l.acked.push(name.to_string());
                l.retried += 1;
                return;
            }
            Err(e) => last = e.to_string(),
        }
    }
    ledger.lock().unwrap().failed.push(format!("create {name}: {last}"));
}

/// A consistent list, retried once.
async fn list_with_one_retry(api: &Api<ConfigMap>, ledger: &Mutex<Ledger>) {
    let mut last = String::new();
    for attempt in 0..2 {
        match api.list(&ListParams::default().labels("nothing=here")).await {
            Ok(_) => {
                ledger.lock().unwrap().retried += attempt;
                return;
            }
            Err(e) => last = e.to_string(),
        }
    }
    ledger.lock().unwrap().failed.push(format!("list: {last}"));
}

/// Writes and lists through the apiserver until `stop` is set.
fn workload(url: String, stop: Arc<Mutex<bool>>, ledger: Arc<Mutex<Ledger>>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let api: Api<ConfigMap> = Api::namespaced(client_for(&url).await, NS);
        let mut n = 0;
        while !*stop.lock().unwrap() {
            n += 1;
            create_with_one_retry(&api, &format!("cm-{n}"), &ledger).await;
            list_with_one_retry(&api, &ledger).await;
            ledger.lock().unwrap().rounds += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
}

/// Rounds a fault must last for: the claim "no request failed" is only as
/// good as the number of requests made while the fault was on.
const ROUNDS: usize = 20;

/// Waits until the workload has completed `n` more rounds (and, with
/// `at_least`, until that much time has passed too); panics if it stalls.
async fn rounds_done(ledger: &Mutex<Ledger>, n: usize, at_least: Duration, what: &str) {
    let (start, t) = (ledger.lock().unwrap().rounds, Instant::now());
    e2e::eventually(&format!("{n} workload rounds {what} (the workload stalled?)"), Duration::from_secs(30), || async {
        (ledger.lock().unwrap().rounds >= start + n && t.elapsed() >= at_least).then_some(())
    })
    .await;
}

fn p95(mut v: Vec<Duration>) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v.sort();
    v[(v.len() * 95 / 100).min(v.len() - 1)]
}

/// The 503/504 answer of an apiserver whose etcd lost quorum.
fn assert_quick_unavailable(what: &str, started: Instant, status: u16, body: &serde_json::Value) {
    let took = started.elapsed();
    assert!(took < Duration::from_secs(8), "{what}: took {took:?} (etcd request timeout is 3s)");
    assert!(status == 503 || status == 504, "{what}: HTTP {status}: {body}");
    assert_eq!(body["kind"], "Status", "{what}: {body}");
    assert_eq!(body["status"], "Failure", "{what}: {body}");
    assert_eq!(body["code"], status, "{what}: {body}");
    let reason = body["reason"].as_str().unwrap_or("");
    assert!(reason == "Timeout" || reason == "ServiceUnavailable", "{what}: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_member_loss_is_invisible_and_quorum_loss_fails_fast() {
    let t0 = Instant::now();
    let phase = |what: &str| eprintln!("[{:>6.1}s] {what}", t0.elapsed().as_secs_f64());
    let mut etcd = EtcdCluster::start(3);
    phase("etcd cluster up");
    let dir = tempfile::tempdir().unwrap();
    let mut api = HaApiServer::start(&etcd.endpoints(), dir.path(), 0, &["--etcd-request-timeout=3s"]);
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let stop = Arc::new(Mutex::new(false));
    let writer = workload(api.url.clone(), stop.clone(), ledger.clone());
    rounds_done(&ledger, ROUNDS, Duration::ZERO, "with every member up").await;

    // 1. Member 0: the apiserver's first endpoint, the one it talks to.
    // Down for at least 4 s, and until the workload did its rounds.
    phase("killing member 0");
    let t_kill0 = Instant::now();
    etcd.kill9(0);
    rounds_done(&ledger, ROUNDS, Duration::from_secs(4), "while member 0 was down").await;
    let t_back0 = Instant::now();
    etcd.restart(0);
    etcd.wait_healthy(0, Duration::from_secs(30));
    rounds_done(&ledger, ROUNDS / 4, Duration::ZERO, "after member 0 came back").await;

    // 2. The raft leader: the others must elect a new one first.
    phase("member 0 back");
    let leader = etcd.leader().await.expect("a leader");
    phase(&format!("killing the leader, member {leader}"));
    let t_kill_leader = Instant::now();
    etcd.kill9(leader);
    rounds_done(&ledger, ROUNDS, Duration::from_secs(4), "while the leader was down").await;
    let t_back_leader = Instant::now();
    etcd.restart(leader);
    etcd.wait_healthy(leader, Duration::from_secs(30));
    rounds_done(&ledger, ROUNDS / 4, Duration::ZERO, "after the leader came back").await;

    phase("leader back");
    *stop.lock().unwrap() = true;
    writer.await.unwrap();
    phase("workload stopped");
    {
        let l = ledger.lock().unwrap();
        assert!(l.failed.is_empty(), "requests failed beyond one retry while one member was down: {:#?}", l.failed);
        let base: Vec<Duration> = l.latencies.iter().filter(|(t, _)| *t < t_kill0).map(|(_, d)| *d).collect();
        let m0: Vec<Duration> = l.latencies.iter().filter(|(t, _)| *t >= t_kill0 && *t < t_back0).map(|(_, d)| *d).collect();
        let ml: Vec<Duration> = l.latencies.iter().filter(|(t, _)| *t >= t_kill_leader && *t < t_back_leader).map(|(_, d)| *d).collect();
        eprintln!(
            "writes: {} acknowledged, {} needed their retry; create p95 latency: healthy {:?} ({} writes), member 0 down {:?} ({}), leader down {:?} ({}), worst {:?}",
            l.acked.len(),
            l.retried,
            p95(base.clone()),
            base.len(),
            p95(m0.clone()),
            m0.len(),
            p95(ml.clone()),
            ml.len(),
            l.latencies.iter().map(|(_, d)| *d).max().unwrap_or_default()
        );
        assert!(m0.len() >= 5 && ml.len() >= 5, "the workload stalled while a member was down");
    }

    // 3. Two members down: no quorum. Answers come quickly, as Status.
    etcd.kill9(1);
    etcd.kill9(2);
    phase("members 1 and 2 killed");
    let t = Instant::now();
    let body = serde_json::to_vec(&json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "no-quorum"}})).unwrap();
    let r = e2e::http(&api.url, "POST", "/api/v1/namespaces/default/configmaps", Some("application/json"), &body);
    assert_quick_unavailable("create without quorum", t, r.status, &r.json());
    let t = Instant::now();
    let r = e2e::http(&api.url, "GET", "/api/v1/namespaces/default/configmaps/cm-1", None, b"");
    assert_quick_unavailable("get without quorum", t, r.status, &r.json());
    let t = Instant::now();
    let r = e2e::http(&api.url, "GET", "/api/v1/namespaces/default/configmaps", None, b"");
    assert_quick_unavailable("list without quorum", t, r.status, &r.json());
    let t = Instant::now();
    let r = e2e::http(&api.url, "GET", "/readyz", None, b"");
    assert_eq!(r.status, 500, "readyz without quorum: {}", r.text());
    assert!(r.text().contains("[-]etcd failed") && r.text().ends_with("readyz check failed"), "{}", r.text());
    assert!(t.elapsed() < Duration::from_secs(4), "readyz took {:?}", t.elapsed());
    // Liveness is not readiness: the process itself is fine.
    assert_eq!(e2e::http(&api.url, "GET", "/livez", None, b"").status, 200);

    // 4. The members come back: ready again, nothing lost.
    phase("restarting members 1 and 2");
    etcd.restart(1);
    etcd.restart(2);
    let back = Instant::now();
    e2e::eventually_blocking("readyz true again", Duration::from_secs(30), || api.ready().then_some(()));
    eprintln!("apiserver ready {:?} after the etcd members were restarted", back.elapsed());
    let capi: Api<ConfigMap> = Api::namespaced(client_for(&api.url).await, NS);
    capi.create(&PostParams::default(), &cm("after-recovery")).await.expect("writes work again");
    let acked = ledger.lock().unwrap().acked.clone();
    let listed: std::collections::BTreeSet<String> =
        capi.list(&ListParams::default()).await.unwrap().items.into_iter().filter_map(|c| c.metadata.name).collect();
    let lost: Vec<&String> = acked.iter().filter(|n| !listed.contains(*n)).collect();
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    assert!(listed.contains("after-recovery"));
    assert!(api.proc.running(), "{}", api.proc.log_tail(20));
}
