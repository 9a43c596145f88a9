//! `rkube bench scheduler --mode e2e`, the **end-to-end** scheduler
//! benchmark (it lives in the CLI, not the scheduler crate, because it talks
//! to etcd directly; only the apiserver and the benchmarks may). Real etcd, rkube-apiserver and
//! rkube-scheduler processes; simulated nodes (Node objects with capacity,
//! labels, taints and a Ready condition — no agent); pods created through
//! the API. Upstream's equivalent is `scheduler_perf` (which runs the
//! scheduler in-process against an in-process apiserver).
//!
//! What is measured:
//!
//! * a pod **counts when its binding is stored**: we watch etcd itself (the
//!   pods prefix) and take the first revision in which the pod has a
//!   `spec.nodeName` — no apiserver watch latency in between;
//! * **throughput**: bound pods from the first create of the measured pods
//!   to the last binding, over that time (the average); and per full 1 s
//!   window, whose percentiles the report gives only when there are enough
//!   windows (see `rkube_scheduler::perf::report`);
//! * **latency**: created (the create request is sent) → binding stored;
//! * **the etcd ceiling**, in the same run, before the pods, on a twin etcd
//!   ([`procs::CeilingEtcd`]): one 1 KiB create-if-absent transaction per
//!   pod ([`CeilingOp::CreateTxn`], the transaction the apiserver's create
//!   is), with the same number of requests in flight. Every pod costs at
//!   least two such writes end to end (its create and its binding), which
//!   is why the ratio end-to-end / ceiling is the figure of merit;
//!   [`etcd_ceiling`] is the one ceiling helper, `rkube bench apiserver`
//!   uses it too;
//! * **CPU per pod** of every process in the pipeline (etcd, apiserver,
//!   scheduler, this runner), from `/proc` over the measured phase.
//!
//! Nothing is timed with sleeps: the run waits on the etcd watch. The only
//! timer is the idle timeout that ends a phase when pods stay unbound
//! (unschedulable ones), and it is not part of the measured time.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use etcd_client::{Compare, CompareOp, EventType, GetOptions, Txn, TxnOp, WatchOptions};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Service};
use kube::api::{Api, PostParams};
use serde::Deserialize;
use tokio::sync::Notify;

use rkube_agent::bench::ProcSample;
use rkube_scheduler::perf::{EtcdCeiling, ProcessCpu, Report, Workload};

use crate::procs::{self, free_port, Proc};

/// How to run the end-to-end benchmark.
#[derive(Debug, Clone)]
pub struct E2eOptions {
    /// Throughput window (1 s, as upstream's throughput collector).
    pub window: Duration,
    /// An etcd already running (then the apiserver must use it too); by
    /// default a private one is started on free ports in a temp dir.
    pub etcd_endpoint: Option<String>,
    pub apiserver_bin: PathBuf,
    /// Use this apiserver instead of starting one (needs `etcd_endpoint`).
    pub api_url: Option<String>,
    pub scheduler_bin: PathBuf,
    /// Extra scheduler flags.
    pub scheduler_args: Vec<String>,
    /// The apiserver's etcd key prefix.
    pub etcd_prefix: String,
    /// Requests in flight while creating objects and in the raw etcd run.
    pub concurrency: usize,
    /// A phase ends when no pod got bound for this long after all its pods
    /// were created (the rest are unschedulable). Not part of measured time.
    pub idle_timeout: Duration,
    /// Where logs go (a temp dir if None; kept if given).
    pub work_dir: Option<PathBuf>,
}

impl Default for E2eOptions {
    fn default() -> Self {
        E2eOptions {
            window: Duration::from_secs(1),
            etcd_endpoint: None,
            apiserver_bin: PathBuf::from("rkube-apiserver"),
            api_url: None,
            scheduler_bin: PathBuf::from("rkube-scheduler"),
            scheduler_args: Vec::new(),
            etcd_prefix: "/registry".into(),
            concurrency: 64,
            idle_timeout: Duration::from_secs(5),
            work_dir: None,
        }
    }
}

/// Set-up only (not measured): wait until `base` answers 200 on `path`,
/// failing early with its log when `p` exits.
async fn wait_ready(p: &mut Proc, base: &str, path: &str, log: &std::path::Path) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if procs::wait_http_ok(&format!("{base}{path}"), Duration::from_millis(500)).await.is_ok() {
            return Ok(());
        }
        if let Ok(Some(st)) = p.child.try_wait() {
            bail!("{} exited with {st}: {}", p.name, std::fs::read_to_string(log).unwrap_or_default());
        }
        if Instant::now() > deadline {
            bail!("{} not ready at {base}{path}", p.name);
        }
    }
}

/// Fails when `p` has exited (it should run for the whole measurement).
fn check_alive(p: &mut Proc, log: &std::path::Path) -> anyhow::Result<()> {
    if let Ok(Some(st)) = p.child.try_wait() {
        bail!("{} exited with {st}: {}", p.name, std::fs::read_to_string(log).unwrap_or_default());
    }
    Ok(())
}

/// The etcd operation a ceiling run repeats, each on a fresh key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CeilingOp {
    /// Exactly the transaction the apiserver's create is
    /// (`apiserver/src/storage/etcd.rs`, `create`): if the key's mod
    /// revision is 0 (absent) then put the value, else get the key. Every
    /// pod create costs one; a binding is the same transaction with the
    /// object's current revision.
    CreateTxn,
    /// A plain put: no compare, no transaction.
    Put,
}

impl CeilingOp {
    /// How reports name it.
    pub fn describe(self) -> &'static str {
        match self {
            CeilingOp::CreateTxn => "create-if-absent txn",
            CeilingOp::Put => "plain put",
        }
    }

    fn slug(self) -> &'static str {
        match self {
            CeilingOp::CreateTxn => "txn",
            CeilingOp::Put => "put",
        }
    }
}

/// One ceiling run: `operations` of `op` on fresh keys, `in_flight` at a time.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CeilingRun {
    pub operation: &'static str,
    pub operations: usize,
    pub value_bytes: usize,
    pub in_flight: usize,
    pub seconds: f64,
    pub per_second: f64,
}

/// The one measured etcd ceiling both benchmarks use: `n` operations `op`
/// of `value`, each on a fresh key under a scratch prefix, by `in_flight`
/// concurrent clients (tasks that each send their next request when the
/// last returns, as the benchmarks' own clients do), cleared afterwards.
/// Fails unless every operation succeeded (a create txn on a fresh key
/// always does).
pub async fn etcd_ceiling(etcd: &procs::CeilingEtcd, op: CeilingOp, n: usize, value: &[u8], in_flight: usize) -> anyhow::Result<CeilingRun> {
    let client = etcd_client::Client::connect([etcd.url.as_str()], None).await?;
    let prefix = format!("/rkube-bench-ceiling/{}/{}/", std::process::id(), op.slug());
    let value = Arc::new(value.to_vec());
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..in_flight.max(1) {
        let mut kv = client.kv_client();
        let (next, value, prefix) = (next.clone(), value.clone(), prefix.clone());
        tasks.push(tokio::spawn(async move {
            let mut failed = 0usize;
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    return Ok::<_, etcd_client::Error>(failed);
                }
                let key = format!("{prefix}{i:08}");
                match op {
                    CeilingOp::CreateTxn => {
                        let txn = Txn::new()
                            .when([Compare::mod_revision(key.clone(), CompareOp::Equal, 0)])
                            .and_then([TxnOp::put(key.clone(), value.as_slice(), None)])
                            .or_else([TxnOp::get(key, None)]);
                        if !kv.txn(txn).await?.succeeded() {
                            failed += 1;
                        }
                    }
                    CeilingOp::Put => {
                        kv.put(key, value.as_slice(), None).await?;
                    }
                }
            }
        }));
    }
    let mut failed = 0;
    for t in tasks {
        failed += t.await??;
    }
    let seconds = start.elapsed().as_secs_f64();
    if failed > 0 {
        bail!("etcd ceiling ({}): {failed} of {n} operations failed", op.describe());
    }
    etcd.clear(&prefix).await?;
    Ok(CeilingRun {
        operation: op.describe(),
        operations: n,
        value_bytes: value.len(),
        in_flight: in_flight.max(1),
        seconds,
        per_second: n as f64 / seconds.max(1e-9),
    })
}

#[derive(Deserialize)]
struct StoredPod {
    metadata: StoredMeta,
    #[serde(default)]
    spec: Option<StoredSpec>,
}
#[derive(Deserialize)]
struct StoredMeta {
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: String,
}
#[derive(Deserialize)]
struct StoredSpec {
    #[serde(default, rename = "nodeName")]
    node_name: Option<String>,
}

/// When each pod's binding was first seen stored, by `namespace/name`.
#[derive(Default)]
struct Bound {
    at: Mutex<HashMap<String, Instant>>,
    changed: Notify,
}

/// Watch the pods prefix in etcd from `revision` on.
async fn watch_bindings(endpoint: String, prefix: String, revision: i64, bound: Arc<Bound>) -> anyhow::Result<()> {
    let mut client = etcd_client::Client::connect([endpoint.as_str()], None).await?;
    let (_watcher, mut stream) =
        client.watch(prefix.as_bytes(), Some(WatchOptions::new().with_prefix().with_start_revision(revision))).await?;
    while let Some(resp) = stream.message().await? {
        let now = Instant::now();
        let mut new = false;
        {
            let mut at = bound.at.lock().unwrap();
            for ev in resp.events() {
                if ev.event_type() != EventType::Put {
                    continue;
                }
                let Some(kv) = ev.kv() else { continue };
                let Ok(p) = serde_json::from_slice::<StoredPod>(kv.value()) else { continue };
                if p.spec.and_then(|s| s.node_name).is_some_and(|n| !n.is_empty()) {
                    let key = format!("{}/{}", p.metadata.namespace, p.metadata.name);
                    if let std::collections::hash_map::Entry::Vacant(e) = at.entry(key) {
                        e.insert(now);
                        new = true;
                    }
                }
            }
        }
        if new {
            bound.changed.notify_waiters();
        }
    }
    Ok(())
}

fn pod_key(p: &Pod) -> String {
    format!("{}/{}", p.metadata.namespace.as_deref().unwrap_or("default"), p.metadata.name.as_deref().unwrap_or(""))
}

/// Create `pods`, `in_flight` at a time; returns when each create was sent,
/// and when the last create returned.
async fn create_pods(client: &kube::Client, pods: Vec<Pod>, in_flight: usize) -> anyhow::Result<(HashMap<String, Instant>, Instant)> {
    let results: Vec<anyhow::Result<(String, Instant)>> = futures::stream::iter(pods)
        .map(|p| {
            let api: Api<Pod> = Api::namespaced(client.clone(), p.metadata.namespace.as_deref().unwrap_or("default"));
            async move {
                let key = pod_key(&p);
                let sent = Instant::now();
                api.create(&PostParams::default(), &p).await.with_context(|| format!("creating pod {key}"))?;
                Ok((key, sent))
            }
        })
        .buffer_unordered(in_flight.max(1))
        .collect()
        .await;
    let done = Instant::now();
    let mut sent = HashMap::with_capacity(results.len());
    for r in results {
        let (k, t) = r?;
        sent.insert(k, t);
    }
    Ok((sent, done))
}

/// Wait until every key in `keys` is bound, or nothing new was bound for
/// `idle` (the rest are unschedulable).
async fn wait_bound(bound: &Bound, keys: &[String], idle: Duration) -> usize {
    loop {
        let notified = bound.changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let n = {
            let at = bound.at.lock().unwrap();
            keys.iter().filter(|k| at.contains_key(*k)).count()
        };
        if n == keys.len() {
            return n;
        }
        if tokio::time::timeout(idle, notified).await.is_err() {
            return n;
        }
    }
}

/// Run `workload` end to end and measure the measured pods.
pub async fn run_end_to_end(workload: &Workload, opts: &E2eOptions) -> anyhow::Result<Report> {
    let tmp = tempfile::Builder::new().prefix("rkube-sched-bench-").tempdir()?;
    let dir: PathBuf = match &opts.work_dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            d.clone()
        }
        None => tmp.path().to_path_buf(),
    };
    let mut procs: Vec<Proc> = Vec::new();

    // ---- etcd ----
    let etcd_endpoint = match &opts.etcd_endpoint {
        Some(e) => e.clone(),
        None => {
            let (p, endpoint) = procs::start_etcd(&dir)?;
            procs.push(p);
            endpoint
        }
    };
    // ---- apiserver ----
    let api_url = match &opts.api_url {
        Some(u) => u.clone(),
        None => {
            let port = free_port()?;
            let url = format!("http://127.0.0.1:{port}");
            let mut cmd = Command::new(&opts.apiserver_bin);
            cmd.arg(format!("--etcd-servers={etcd_endpoint}")).arg(format!("--insecure-port={port}"));
            // No controller runs to make `default` ServiceAccounts; upstream's
            // integration test servers (test/integration) disable the
            // ServiceAccount admission plugin for the same reason.
            cmd.arg("--disable-admission-plugins=ServiceAccount");
            let log = dir.join("apiserver.log");
            let mut p = Proc::spawn("rkube-apiserver", cmd, &log)?;
            wait_ready(&mut p, &url, "/readyz", &log).await?;
            procs.push(p);
            url
        }
    };
    let client = machinery::client::connect_as("scheduler-bench", Some(&api_url), None).await?;

    let measure_pods = workload.generate_measure_pods()?;
    let init_pods = workload.generate_init_pods()?;
    let nodes = workload.generate_nodes()?;
    let num_nodes = nodes.len();
    let num_measured = measure_pods.len();

    // ---- the etcd ceiling, in this run, on an idle twin etcd ----
    // (not on the measured one: see `procs::CeilingEtcd`)
    let value = vec![b'x'; 1024]; // about a small pod's stored JSON
    let raw = {
        let ceiling = procs::CeilingEtcd::new(&dir, opts.etcd_endpoint.as_deref())?;
        etcd_ceiling(&ceiling, CeilingOp::CreateTxn, num_measured.max(1000), &value, opts.concurrency).await?
    };

    // ---- namespaces, nodes and services ----
    let namespaces: std::collections::BTreeSet<String> = init_pods
        .iter()
        .chain(&measure_pods)
        .map(|p| p.metadata.namespace.clone().unwrap_or_else(|| "default".into()))
        .chain(workload.services.iter().map(|s| s.namespace.clone()))
        .filter(|ns| ns != "default")
        .collect();
    for ns in namespaces {
        let obj: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": ns}}))?;
        match Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &obj).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e).with_context(|| format!("creating namespace {ns}")),
        }
    }
    let node_api: Api<Node> = Api::all(client.clone());
    let created: Vec<anyhow::Result<()>> = futures::stream::iter(nodes)
        .map(|n| {
            let api = node_api.clone();
            async move { api.create(&PostParams::default(), &n).await.map(drop).context("creating node") }
        })
        .buffer_unordered(opts.concurrency.max(1))
        .collect()
        .await;
    created.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
    for s in &workload.services {
        let svc: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": s.name, "namespace": s.namespace},
            "spec": {"selector": s.selector, "ports": [{"port": 80}]},
        }))?;
        Api::<Service>::namespaced(client.clone(), &s.namespace).create(&PostParams::default(), &svc).await?;
    }

    // ---- the scheduler ----
    let sched_port = free_port()?;
    let mut cmd = Command::new(&opts.scheduler_bin);
    cmd.arg(format!("--master={api_url}"))
        .arg("--leader-elect=false")
        .arg(format!("--secure-port={sched_port}"))
        .args(&opts.scheduler_args)
        .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()));
    if let Some(cfg) = &workload.config {
        let path = dir.join("scheduler-config.yaml");
        std::fs::write(&path, serde_yaml::to_string(cfg)?)?;
        cmd.arg(format!("--config={}", path.display()));
    }
    let sched_log = dir.join("scheduler.log");
    let mut sched = Proc::spawn("rkube-scheduler", cmd, &sched_log)?;
    wait_ready(&mut sched, &format!("http://127.0.0.1:{sched_port}"), "/readyz", &sched_log).await?;

    // ---- watch bindings in etcd from now on ----
    let mut kv = etcd_client::Client::connect([etcd_endpoint.as_str()], None).await?;
    let rev = kv.get("/", Some(GetOptions::new().with_keys_only().with_limit(1))).await?.header().map_or(0, |h| h.revision());
    let bound = Arc::new(Bound::default());
    let watch = tokio::spawn(watch_bindings(etcd_endpoint.clone(), format!("{}/pods/", opts.etcd_prefix), rev + 1, bound.clone()));

    // ---- init pods: scheduled, not measured ----
    let init_keys: Vec<String> = init_pods.iter().map(pod_key).collect();
    create_pods(&client, init_pods, opts.concurrency).await?;
    let init_bound = wait_bound(&bound, &init_keys, opts.idle_timeout).await;
    check_alive(&mut sched, &sched_log)?;

    // ---- measured pods ----
    let keys: Vec<String> = measure_pods.iter().map(pod_key).collect();
    // CPU of every process in the pipeline over the measured phase (the
    // runner included: it creates the pods and watches etcd).
    let mut watched: Vec<(String, u32)> = procs.iter().map(|p| (p.name.clone(), p.pid())).collect();
    watched.push((sched.name.clone(), sched.pid()));
    watched.push(("runner".into(), std::process::id()));
    let cpu_before: Vec<Option<Duration>> = watched.iter().map(|(_, pid)| ProcSample::read(*pid).ok().map(|s| s.cpu)).collect();
    let start = Instant::now();
    let (sent, created_at) = create_pods(&client, measure_pods, opts.concurrency).await?;
    let creation = created_at - start;
    wait_bound(&bound, &keys, opts.idle_timeout).await;
    check_alive(&mut sched, &sched_log)?;
    watch.abort();
    let phase = start.elapsed();
    let cpu_after: Vec<Option<Duration>> = watched.iter().map(|(_, pid)| ProcSample::read(*pid).ok().map(|s| s.cpu)).collect();

    let at = bound.at.lock().unwrap();
    let mut scheduled: Vec<(Duration, Duration)> = keys
        .iter()
        .filter_map(|k| {
            let b = *at.get(k)?;
            let c = sent.get(k).copied().unwrap_or(start);
            Some((b.saturating_duration_since(start), b.saturating_duration_since(c)))
        })
        .collect();
    scheduled.sort();
    let elapsed = scheduled.last().map_or(Duration::ZERO, |(t, _)| *t);
    let unschedulable = num_measured - scheduled.len();
    let first_failure = (unschedulable > 0).then(|| format!("{unschedulable} pods not bound within {:?} of the last binding", opts.idle_timeout));
    let mut report = Report::build(
        &workload.name,
        "end-to-end",
        num_nodes,
        init_bound,
        num_measured,
        &scheduled,
        unschedulable,
        first_failure,
        elapsed,
        opts.window,
    );
    report.threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    report.etcd = Some(EtcdCeiling {
        operation: raw.operation.to_string(),
        txn_per_second: raw.per_second,
        transactions: raw.operations,
        value_bytes: raw.value_bytes,
        in_flight: raw.in_flight,
        ratio: if raw.per_second > 0.0 { report.throughput.average / raw.per_second } else { 0.0 },
        pods_created_per_second: num_measured as f64 / creation.as_secs_f64().max(1e-9),
    });
    let bound_pods = report.scheduled.max(1) as f64;
    report.cpu_per_pod = watched
        .iter()
        .zip(cpu_before.iter().zip(&cpu_after))
        .filter_map(|((name, _), (b, a))| {
            let used = a.as_ref()?.saturating_sub(*b.as_ref()?);
            Some(ProcessCpu {
                process: name.clone(),
                cpu_seconds: used.as_secs_f64(),
                ms_per_pod: used.as_secs_f64() * 1e3 / bound_pods,
                cores: used.as_secs_f64() / phase.as_secs_f64().max(1e-9),
            })
        })
        .collect();
    drop(sched);
    drop(procs);
    Ok(report)
}
