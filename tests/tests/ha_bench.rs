//! Figures for docs/benchmarks.md, "High availability". Not run
//! by default (`#[ignore]`: it measures, it asserts nothing about time):
//!
//! ```sh
//! cargo test --release -p rkube-tests --test ha_bench -- --ignored --nocapture
//! ```
//!
//! 1. leader failover: kill -9 of the scheduler / controller-manager leader
//!    with upstream's default timings (lease 15 s, renew 10 s, retry 2 s);
//! 2. apiserver failover as a client sees it through HAProxy: one client
//!    doing GETs back to back while one apiserver is killed (-9), then while
//!    another is frozen (SIGSTOP) for 10 s;
//! 3. etcd member loss and write latency: sequential creates while healthy,
//!    with a follower killed, and right after the raft leader is killed.

use std::time::{Duration, Instant};

use e2e::ha::{client_for, EtcdCluster, HaApiServer, HaControlPlane};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::PostParams;
use kube::Api;
use serde_json::json;

fn pct(v: &mut [Duration], p: usize) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v.sort();
    v[((v.len() * p) / 100).min(v.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn leader_failover_with_default_timings() {
    let cp = HaControlPlane::start(1, &[]);
    for (what, binary) in [("scheduler", "rkube-scheduler"), ("controller", "rkube-controller")] {
        for round in 1..=2 {
            let mut a = cp.component(&format!("{what}-a{round}"), binary, &["--leader-elect=true", "--bind-address=127.0.0.1", &format!("--secure-port={}", e2e::free_port())]);
            let t = Instant::now();
            while !a.log_text().contains("acquired lease") {
                assert!(t.elapsed() < Duration::from_secs(60), "{}", a.log_tail(10));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let b = cp.component(&format!("{what}-b{round}"), binary, &["--leader-elect=true", "--bind-address=127.0.0.1", &format!("--secure-port={}", e2e::free_port())]);
            // Let the standby watch a few renewals first, as it would in a cluster.
            tokio::time::sleep(Duration::from_secs(5)).await;
            let t = Instant::now();
            a.kill9();
            while !b.log_text().contains("acquired lease") {
                assert!(t.elapsed() < Duration::from_secs(60));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            println!("FIGURE leader failover, {what} round {round}: standby leads {:.2} s after kill -9 of the leader", t.elapsed().as_secs_f64());
            drop(b);
            // The next round starts with a fresh, free lease.
            tokio::time::sleep(Duration::from_secs(16)).await;
        }
    }
}

/// GETs back to back through HAProxy for `run`; `fault` fires at `at`.
/// Returns per-request (start offset, latency, ok).
async fn client_loop(url: &str, run: Duration) -> Vec<(Duration, Duration, bool)> {
    let api: Api<ConfigMap> = Api::namespaced(client_for(url).await, "default");
    let start = Instant::now();
    let mut out = Vec::new();
    while start.elapsed() < run {
        let t = Instant::now();
        let ok = tokio::time::timeout(Duration::from_secs(30), api.get_opt("probe")).await.map(|r| r.is_ok()).unwrap_or(false);
        out.push((t - start, t.elapsed(), ok));
    }
    out
}

/// `CLIENTS` clients (each its own connection, so HAProxy spreads them over
/// the apiservers round robin) for `run`; per-client samples.
async fn clients(url: &str, run: Duration) -> Vec<Vec<(Duration, Duration, bool)>> {
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let url = url.to_string();
            tokio::spawn(async move { client_loop(&url, run).await })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

const CLIENTS: usize = 6;

fn report_all(what: &str, per_client: &[Vec<(Duration, Duration, bool)>], fault_at: Duration) {
    // Only the clients whose connection HAProxy had sent to the faulty
    // apiserver can notice; the others must not.
    let noticed: Vec<&Vec<(Duration, Duration, bool)>> =
        per_client.iter().filter(|s| s.iter().any(|(t, d, ok)| *t >= fault_at && (!ok || *d > Duration::from_millis(100)))).collect();
    let failed: Vec<usize> = noticed.iter().map(|s| s.iter().filter(|(t, _, ok)| *t >= fault_at && !ok).count()).collect();
    let stall = noticed.iter().flat_map(|s| s.iter().filter(|(t, _, _)| *t >= fault_at).map(|(_, d, _)| *d)).max().unwrap_or_default();
    let others = per_client.len() - noticed.len();
    let others_worst = per_client
        .iter()
        .filter(|s| !noticed.iter().any(|n| std::ptr::eq(*n, *s)))
        .flat_map(|s| s.iter().filter(|(t, _, _)| *t >= fault_at).map(|(_, d, _)| *d))
        .max()
        .unwrap_or_default();
    println!(
        "FIGURE apiserver failover, {what}: {} of {CLIENTS} clients were on it; each saw {:?} failed request(s) and a longest wait of {}; the other {others} saw nothing (slowest {})",
        noticed.len(),
        failed,
        ms(stall),
        ms(others_worst)
    );
}

/// The apiserver with the most client connections (from HAProxy) right now:
/// the one whose failure clients will see.
fn busiest(cp: &HaControlPlane) -> usize {
    let conns = |port: u16| {
        let out = std::process::Command::new("ss").args(["-tnH", "state", "established", &format!("( sport = :{port} )")]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).lines().count()
    };
    (0..cp.apiservers.len()).max_by_key(|i| conns(cp.apiservers[*i].port)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn apiserver_failover_seen_by_a_client() {
    // Each fault on a fresh control plane, so HAProxy has spread the six
    // clients two per apiserver.
    {
        let mut cp = HaControlPlane::start(3, &[]);
        let url = cp.lb.url.clone();
        let task = tokio::spawn(async move { clients(&url, Duration::from_secs(10)).await });
        tokio::time::sleep(Duration::from_secs(3)).await;
        let i = busiest(&cp);
        cp.apiservers[i].proc.kill9();
        report_all("kill -9 of 1 of 3 apiservers", &task.await.unwrap(), Duration::from_secs(3));
    }
    {
        let mut cp = HaControlPlane::start(3, &[]);
        let url = cp.lb.url.clone();
        let task = tokio::spawn(async move { clients(&url, Duration::from_secs(16)).await });
        tokio::time::sleep(Duration::from_secs(3)).await;
        let i = busiest(&cp);
        cp.apiservers[i].proc.freeze();
        tokio::time::sleep(Duration::from_secs(10)).await;
        cp.apiservers[i].proc.thaw();
        report_all("SIGSTOP of 1 of 3 apiservers for 10 s", &task.await.unwrap(), Duration::from_secs(3));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn etcd_member_loss_and_write_latency() {
    let mut etcd = EtcdCluster::start(3);
    let dir = tempfile::tempdir().unwrap();
    let api = HaApiServer::start(&etcd.endpoints(), dir.path(), 0, &[]);
    let cms: Api<ConfigMap> = Api::namespaced(client_for(&api.url).await, "default");
    let mut n = 0;
    let mut phases = Vec::new();
    async fn writes(cms: &Api<ConfigMap>, n: &mut usize, run: Duration) -> (Vec<Duration>, usize) {
        let start = Instant::now();
        let mut lat = Vec::new();
        let mut failed = 0;
        while start.elapsed() < run {
            *n += 1;
            let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": format!("w-{n}")}, "data": {"k": "v"}})).unwrap();
            let t = Instant::now();
            match cms.create(&PostParams::default(), &cm).await {
                Ok(_) => lat.push(t.elapsed()),
                Err(_) => failed += 1,
            }
        }
        (lat, failed)
    }
    let (l, f) = writes(&cms, &mut n, Duration::from_secs(8)).await;
    phases.push(("3 of 3 members", l, f));
    let leader = etcd.leader().await.unwrap();
    let follower = (leader + 1) % 3;
    etcd.kill9(follower);
    let (l, f) = writes(&cms, &mut n, Duration::from_secs(8)).await;
    phases.push(("a follower killed (2 of 3)", l, f));
    etcd.restart(follower);
    etcd.wait_healthy(follower, Duration::from_secs(30));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let leader = etcd.leader().await.unwrap();
    etcd.kill9(leader);
    let (l, f) = writes(&cms, &mut n, Duration::from_secs(8)).await;
    phases.push(("the leader killed: first 8 s (election included)", l, f));
    for (label, mut l, failed) in phases {
        let count = l.len();
        println!(
            "FIGURE etcd {label}: {count} sequential creates in 8 s ({:.0}/s), p50 {}, p99 {}, max {}, {failed} failed",
            count as f64 / 8.0,
            ms(pct(&mut l, 50)),
            ms(pct(&mut l, 99)),
            ms(pct(&mut l, 100))
        );
    }
}

