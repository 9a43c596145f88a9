//! Figures for docs/benchmarks.md, "High availability". Not run
//! by default (`#[ignore]`: it measures, it asserts nothing about time):
//!
//! ```sh
//! RKUBE_BENCH_OUT=/tmp/ha cargo test --release -p rkube-tests --test ha_bench -- --ignored --nocapture --test-threads=1
//! ```
//!
//! 1. leader failover: kill -9 of the scheduler / controller-manager leader
//!    with upstream's default timings (lease 15 s, renew 10 s, retry 2 s);
//! 2. apiserver failover as a client sees it through HAProxy: one client
//!    doing GETs back to back while one apiserver is killed (-9), then while
//!    another is frozen (SIGSTOP) for 10 s;
//! 3. etcd member loss and write latency: sequential creates while healthy,
//!    with a follower killed, and right after the raft leader is killed.
//!
//! Each test prints its figures as `FIGURE …` lines and, when the
//! environment variable `RKUBE_BENCH_OUT` names a directory, also writes them
//! there as `ha-<test name>.json` in the shape every `rkube bench` report
//! has: `{"bench": "ha", "environment": {…}, "figures": [{key, label, unit,
//! value, better}, …]}`. Keys are stable across runs, so N runs can be
//! summarised per key:
//!
//! | key | unit | better |
//! |---|---|---|
//! | `ha.leader_failover_s.scheduler`, `….controller` — kill -9 of the leader → the standby leads, mean of the rounds | s | lower |
//! | `ha.apiserver_kill.clients_on_it`, `ha.apiserver_stop.clients_on_it` — clients that noticed the fault | clients | lower |
//! | `ha.apiserver_kill.failed_requests_on_it`, `ha.apiserver_stop.…` — most failed requests one of those clients saw | requests | lower |
//! | `ha.apiserver_kill.wait_ms` — longest request of those clients after the kill | ms | lower |
//! | `ha.apiserver_stop.wait_s` — longest request of those clients after the SIGSTOP | s | lower |
//! | `ha.apiserver_kill.slowest_other_ms`, `ha.apiserver_stop.…` — longest request of the other clients after the fault | ms | lower |
//! | `ha.etcd.creates_per_s.<phase>` — sequential creates per second | creates/s | higher |
//! | `ha.etcd.p50_ms.<phase>`, `ha.etcd.p99_ms.<phase>`, `ha.etcd.max_ms.<phase>` — create latency (nearest rank) | ms | lower |
//! | `ha.etcd.failed.<phase>` — creates that failed | requests | lower |
//!
//! where `<phase>` is `all_members`, `follower_killed` or `leader_killed`.

use std::time::{Duration, Instant};

use e2e::ha::{client_for, EtcdCluster, HaApiServer, HaControlPlane};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::PostParams;
use kube::Api;
use machinery::stats::{percentile_sorted, Figure};
use rkube_cli::bench_env::Environment;
use serde_json::json;

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn ms_or_none(d: Option<Duration>) -> String {
    d.map(ms).unwrap_or_else(|| "none".into())
}

fn lower(key: impl Into<String>, label: impl Into<String>, unit: &str, value: f64) -> Figure {
    Figure::lower(key, label, unit, value)
}

fn higher(key: impl Into<String>, label: impl Into<String>, unit: &str, value: f64) -> Figure {
    Figure::higher(key, label, unit, value)
}

/// Writes `ha-<test>.json` into the directory `RKUBE_BENCH_OUT` names; does
/// nothing when it is unset or empty. Figures that are not finite are left
/// out (a value that was not measured is no figure).
fn write_report(test: &str, environment: &Environment, figures: &[Figure]) {
    let Some(dir) = std::env::var_os("RKUBE_BENCH_OUT").filter(|d| !d.is_empty()) else {
        return;
    };
    let figures: Vec<serde_json::Value> = figures
        .iter()
        .filter(|f| f.value.is_finite())
        .map(|f| serde_json::to_value(f).unwrap())
        .collect();
    let report = json!({"bench": "ha", "environment": environment, "figures": figures});
    let dir = std::path::PathBuf::from(dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    let path = dir.join(format!("ha-{test}.json"));
    std::fs::write(&path, serde_json::to_string_pretty(&report).unwrap() + "\n").unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    println!("REPORT {}", path.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn leader_failover_with_default_timings() {
    const ROUNDS: usize = 2;
    let environment = Environment::capture();
    let mut figures = Vec::new();
    let cp = HaControlPlane::start(1, &[]);
    for (what, binary) in [("scheduler", "rkube-scheduler"), ("controller", "rkube-controller")] {
        let mut rounds = Vec::new();
        for round in 1..=ROUNDS {
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
            let failover = t.elapsed().as_secs_f64();
            println!("FIGURE leader failover, {what} round {round}: standby leads {failover:.2} s after kill -9 of the leader");
            rounds.push(failover);
            drop(b);
            // The next round starts with a fresh, free lease.
            tokio::time::sleep(Duration::from_secs(16)).await;
        }
        let mean = rounds.iter().sum::<f64>() / rounds.len() as f64;
        figures.push(lower(
            format!("ha.leader_failover_s.{what}"),
            format!("{binary}: standby leads after kill -9 of the leader (mean of {ROUNDS} rounds; lease 15 s, renew 10 s, retry 2 s)"),
            "s",
            mean,
        ));
    }
    write_report("leader_failover_with_default_timings", &environment, &figures);
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

/// Prints the fault's figure line and appends its figures under
/// `ha.<key>.…`; `wait_in_s` gives the longest wait of the clients on the
/// faulty apiserver in seconds (`wait_s`) rather than milliseconds (`wait_ms`).
fn report_all(what: &str, key: &str, wait_in_s: bool, per_client: &[Vec<(Duration, Duration, bool)>], fault_at: Duration, figures: &mut Vec<Figure>) {
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
    figures.push(lower(format!("ha.{key}.clients_on_it"), format!("{what}: clients (of {CLIENTS}) that noticed it"), "clients", noticed.len() as f64));
    figures.push(lower(
        format!("ha.{key}.failed_requests_on_it"),
        format!("{what}: most failed requests one client on it saw"),
        "requests",
        failed.iter().copied().max().unwrap_or(0) as f64,
    ));
    if wait_in_s {
        figures.push(lower(format!("ha.{key}.wait_s"), format!("{what}: longest request of the clients on it"), "s", stall.as_secs_f64()));
    } else {
        figures.push(lower(format!("ha.{key}.wait_ms"), format!("{what}: longest request of the clients on it"), "ms", stall.as_secs_f64() * 1e3));
    }
    figures.push(lower(
        format!("ha.{key}.slowest_other_ms"),
        format!("{what}: longest request of the other clients"),
        "ms",
        others_worst.as_secs_f64() * 1e3,
    ));
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
    let environment = Environment::capture();
    let mut figures = Vec::new();
    // Each fault on a fresh control plane, so HAProxy has spread the six
    // clients two per apiserver.
    {
        let mut cp = HaControlPlane::start(3, &[]);
        let url = cp.lb.url.clone();
        let task = tokio::spawn(async move { clients(&url, Duration::from_secs(10)).await });
        tokio::time::sleep(Duration::from_secs(3)).await;
        let i = busiest(&cp);
        cp.apiservers[i].proc.kill9();
        report_all("kill -9 of 1 of 3 apiservers", "apiserver_kill", false, &task.await.unwrap(), Duration::from_secs(3), &mut figures);
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
        report_all("SIGSTOP of 1 of 3 apiservers for 10 s", "apiserver_stop", true, &task.await.unwrap(), Duration::from_secs(3), &mut figures);
    }
    write_report("apiserver_failover_seen_by_a_client", &environment, &figures);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn etcd_member_loss_and_write_latency() {
    const RUN: Duration = Duration::from_secs(8);
    let environment = Environment::capture();
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
    let (l, f) = writes(&cms, &mut n, RUN).await;
    phases.push(("all_members", "3 of 3 members", l, f));
    let leader = etcd.leader().await.unwrap();
    let follower = (leader + 1) % 3;
    etcd.kill9(follower);
    let (l, f) = writes(&cms, &mut n, RUN).await;
    phases.push(("follower_killed", "a follower killed (2 of 3)", l, f));
    etcd.restart(follower);
    etcd.wait_healthy(follower, Duration::from_secs(30));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let leader = etcd.leader().await.unwrap();
    etcd.kill9(leader);
    let (l, f) = writes(&cms, &mut n, RUN).await;
    phases.push(("leader_killed", "the leader killed: first 8 s (election included)", l, f));
    let mut figures = Vec::new();
    for (key, label, mut l, failed) in phases {
        l.sort();
        let count = l.len();
        let rate = count as f64 / RUN.as_secs_f64();
        let (p50, p99, max) = (percentile_sorted(&l, 50.0), percentile_sorted(&l, 99.0), percentile_sorted(&l, 100.0));
        println!(
            "FIGURE etcd {label}: {count} sequential creates in {} s ({rate:.0}/s), p50 {}, p99 {}, max {}, {failed} failed",
            RUN.as_secs(),
            ms_or_none(p50),
            ms_or_none(p99),
            ms_or_none(max)
        );
        let label = format!("etcd, {label}");
        figures.push(higher(format!("ha.etcd.creates_per_s.{key}"), format!("{label}: sequential creates per second"), "creates/s", rate));
        for (stat, v) in [("p50", p50), ("p99", p99), ("max", max)] {
            if let Some(v) = v {
                figures.push(lower(format!("ha.etcd.{stat}_ms.{key}"), format!("{label}: create latency {stat} (n = {count})"), "ms", v.as_secs_f64() * 1e3));
            }
        }
        figures.push(lower(format!("ha.etcd.failed.{key}"), format!("{label}: failed creates"), "requests", failed as f64));
    }
    write_report("etcd_member_loss_and_write_latency", &environment, &figures);
}

