//! The **end-to-end** benchmark: real etcd, rkube-apiserver and
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
//! * **throughput**: bound pods per 1 s window from the first create of the
//!   measured pods to the last binding; average and percentiles;
//! * **latency**: created (the create request is sent) → binding stored;
//! * **the etcd ceiling**, in the same run, before the pods: one small
//!   transaction per pod (create-if-absent, as the apiserver's create is),
//!   with the same number of requests in flight. Every pod costs at least
//!   two such writes end to end (its create and its binding), which is why
//!   the ratio end-to-end / raw is the figure of merit.
//!
//! Nothing is timed with sleeps: the run waits on the etcd watch. The only
//! timer is the idle timeout that ends a phase when pods stay unbound
//! (unschedulable ones), and it is not part of the measured time.

use std::collections::HashMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use etcd_client::{Compare, CompareOp, EventType, GetOptions, Txn, TxnOp, WatchOptions};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use kube::api::{Api, PostParams};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::perf::report::Report;
use crate::perf::workload::Workload;

/// How to run the end-to-end benchmark.
#[derive(Debug, Clone)]
pub struct E2eOptions {
    /// Throughput window (1 s, as upstream's throughput collector).
    pub window: Duration,
    /// The etcd binary (started on free ports in a temp dir) …
    pub etcd_bin: PathBuf,
    /// … or an etcd already running (then the apiserver must use it too).
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
            etcd_bin: PathBuf::from("etcd"),
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

/// The raw etcd figure measured in the same run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EtcdCeiling {
    /// Transactions per second: one small create-if-absent txn per pod.
    pub txn_per_second: f64,
    pub transactions: usize,
    pub value_bytes: usize,
    pub in_flight: usize,
    /// End-to-end throughput (average) / `txn_per_second`.
    pub ratio: f64,
    /// Pods created per second during the measured phase (its own figure:
    /// creation competes with binding for the same etcd).
    pub pods_created_per_second: f64,
}

/// A child process killed (and reaped) on drop; dies with us too.
struct Proc {
    child: Child,
    name: &'static str,
    log: PathBuf,
}

impl Proc {
    fn spawn(name: &'static str, mut cmd: Command, log: PathBuf) -> anyhow::Result<Proc> {
        let out = std::fs::File::create(&log)?;
        cmd.stdin(Stdio::null()).stdout(out.try_clone()?).stderr(out);
        // SAFETY: prctl is async-signal-safe; nothing else runs in the child.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd.spawn().with_context(|| format!("starting {name} ({cmd:?})"))?;
        Ok(Proc { child, name, log })
    }

    fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Ok(Some(st)) = self.child.try_wait() {
            bail!("{} exited with {st}: {}", self.name, std::fs::read_to_string(&self.log).unwrap_or_default());
        }
        Ok(())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// GET `path` on a plain-HTTP loopback server: the status code.
async fn http_status(base: &str, path: &str) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let hp = base.trim_start_matches("http://").trim_end_matches('/');
    let mut s = tokio::net::TcpStream::connect(hp).await.ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {hp}\r\nConnection: close\r\n\r\n").as_bytes()).await.ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.ok()?;
    String::from_utf8_lossy(&buf).split_whitespace().nth(1)?.parse().ok()
}

/// Set-up only (not measured): poll until `base` answers 200 on `path`.
async fn wait_http_ok(p: &mut Proc, base: &str, path: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if http_status(base, path).await == Some(200) {
            return Ok(());
        }
        p.check_alive()?;
        if Instant::now() > deadline {
            bail!("{} not ready at {base}{path}", p.name);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The measured ceiling: `n` create-if-absent transactions of `value_bytes`,
/// `in_flight` at a time, under a scratch prefix deleted afterwards.
pub async fn raw_etcd_txn_rate(endpoint: &str, n: usize, value_bytes: usize, in_flight: usize) -> anyhow::Result<f64> {
    let client = etcd_client::Client::connect([endpoint], None).await?;
    let value = vec![b'x'; value_bytes];
    let prefix = format!("/rkube-bench-raw/{}/", std::process::id());
    let start = Instant::now();
    let results: Vec<Result<bool, etcd_client::Error>> = futures::stream::iter(0..n)
        .map(|i| {
            let mut kv = client.kv_client();
            let key = format!("{prefix}{i:08}");
            let value = value.clone();
            async move {
                let txn = Txn::new()
                    .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
                    .and_then([TxnOp::put(key, value, None)]);
                kv.txn(txn).await.map(|r| r.succeeded())
            }
        })
        .buffer_unordered(in_flight.max(1))
        .collect()
        .await;
    let elapsed = start.elapsed().as_secs_f64();
    let ok = results.iter().filter(|r| matches!(r, Ok(true))).count();
    if ok != n {
        bail!("raw etcd run: {ok} of {n} transactions succeeded");
    }
    client.kv_client().delete(prefix, Some(etcd_client::DeleteOptions::new().with_prefix())).await?;
    Ok(n as f64 / elapsed)
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
            let (client, peer) = (free_port()?, free_port()?);
            let endpoint = format!("http://127.0.0.1:{client}");
            let peer_url = format!("http://127.0.0.1:{peer}");
            let mut cmd = Command::new(&opts.etcd_bin);
            cmd.arg("--name=bench")
                .arg(format!("--data-dir={}", dir.join("etcd-data").display()))
                .arg(format!("--listen-client-urls={endpoint}"))
                .arg(format!("--advertise-client-urls={endpoint}"))
                .arg(format!("--listen-peer-urls={peer_url}"))
                .arg(format!("--initial-advertise-peer-urls={peer_url}"))
                .arg(format!("--initial-cluster=bench={peer_url}"))
                .arg("--log-level=error")
                .arg("--logger=zap");
            let mut p = Proc::spawn("etcd", cmd, dir.join("etcd.log"))?;
            wait_http_ok(&mut p, &endpoint, "/health").await?;
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
            let mut p = Proc::spawn("rkube-apiserver", cmd, dir.join("apiserver.log"))?;
            wait_http_ok(&mut p, &url, "/readyz").await?;
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

    // ---- the etcd ceiling, in this run, on an idle etcd ----
    let value_bytes = 1024; // about a small pod's stored JSON
    let raw = raw_etcd_txn_rate(&etcd_endpoint, num_measured.max(1000), value_bytes, opts.concurrency).await?;

    // ---- nodes and services ----
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
    let mut sched = Proc::spawn("rkube-scheduler", cmd, dir.join("scheduler.log"))?;
    wait_http_ok(&mut sched, &format!("http://127.0.0.1:{sched_port}"), "/readyz").await?;

    // ---- watch bindings in etcd from now on ----
    let mut kv = etcd_client::Client::connect([etcd_endpoint.as_str()], None).await?;
    let rev = kv.get("/", Some(GetOptions::new().with_keys_only().with_limit(1))).await?.header().map_or(0, |h| h.revision());
    let bound = Arc::new(Bound::default());
    let watch = tokio::spawn(watch_bindings(etcd_endpoint.clone(), format!("{}/pods/", opts.etcd_prefix), rev + 1, bound.clone()));

    // ---- init pods: scheduled, not measured ----
    let init_keys: Vec<String> = init_pods.iter().map(pod_key).collect();
    create_pods(&client, init_pods, opts.concurrency).await?;
    let init_bound = wait_bound(&bound, &init_keys, opts.idle_timeout).await;
    sched.check_alive()?;

    // ---- measured pods ----
    let keys: Vec<String> = measure_pods.iter().map(pod_key).collect();
    let start = Instant::now();
    let (sent, created_at) = create_pods(&client, measure_pods, opts.concurrency).await?;
    let creation = created_at - start;
    wait_bound(&bound, &keys, opts.idle_timeout).await;
    sched.check_alive()?;
    watch.abort();

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
        txn_per_second: raw,
        transactions: num_measured.max(1000),
        value_bytes,
        in_flight: opts.concurrency,
        ratio: if raw > 0.0 { report.throughput.average / raw } else { 0.0 },
        pods_created_per_second: num_measured as f64 / creation.as_secs_f64().max(1e-9),
    });
    drop(sched);
    drop(procs);
    Ok(report)
}

/// Paths of the workspace binaries next to the running executable
/// (`target/<profile>/examples/x` → `target/<profile>/<name>`).
pub fn sibling_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    let mut dir: &Path = exe.parent().unwrap_or(Path::new("."));
    if dir.file_name().is_some_and(|n| n == "examples" || n == "deps") {
        dir = dir.parent().unwrap_or(dir);
    }
    dir.join(name)
}
