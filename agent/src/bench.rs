//! The node agent's benchmarks; `rkube bench agent`
//! (`cli/src/commands/bench_agent.rs`) starts the processes and calls these.
//!
//! * [`deployment_startup`] — **pod startup latency**: a Deployment of N
//!   pods goes through the Deployment and ReplicaSet controllers, the
//!   scheduler and a real agent on containerd (images already present).
//! * [`cri_floor`] — the same N pods started straight through CRI on the
//!   same runtime, as many at a time as the agent starts, with no apiserver,
//!   scheduler, controllers or watches: the **floor** under pod startup
//!   latency on this machine (what the runtime itself costs), measured the
//!   way the raw etcd write rate is measured as the scheduler's ceiling.
//! * [`compare`] — rkube's startup against the floor, pod by pod and at
//!   p50 / p99: rkube's share is the difference.
//! * [`simulated_nodes`] — one `rkube-agent --runtime fake --nodes N`
//!   process (given by pid): time until every node is registered with a
//!   Lease, then the process's CPU (fraction of one core) and resident memory
//!   from `/proc/<pid>` over a window while it renews the Leases, and how many
//!   nodes are still Ready with a fresh Lease at the end.
//!
//! # What "startup" means, for rkube and for the floor alike
//!
//! Both are timed from **one common t0, when all N pods are requested at
//! once**, to the moment **this benchmark learns that a given pod's
//! container is running**, on **one clock**: the benchmark process's
//! monotonic clock (`std::time::Instant`), read on receipt of each event,
//! with microsecond precision (reported in ms).
//!
//! | | t0 (all N pods requested) | a pod's end |
//! |---|---|---|
//! | rkube ([`StartupReport::startup_ms`]) | just before the Deployment's create request is sent | the pod watch delivers the pod with condition Ready = True |
//! | floor ([`FloorReport::started_ms`]) | just before the N pod starts are handed to their tasks | that pod's `StartContainer` call returns |
//!
//! Both therefore include the wait for a start slot: the floor starts at
//! most `parallel` pods at a time, the same bound as the agent's
//! `--max-parallel-pod-starts`. rkube's time also holds what only rkube
//! does: the controllers creating the pods, scheduling, the agent's watch,
//! the status update and its watch event; that difference is rkube's share.
//! The pods run `sleep` with no probes, so Ready comes with the same status
//! update as Running.
//!
//! The report also keeps upstream's pod startup SLI (sig-scalability
//! `pod_startup_latency.md`: from *each pod's own* creation to all its
//! containers running, observed by a watch): per pod from its ADDED event
//! to Running and to Ready ([`StartupReport::running_ms`],
//! [`StartupReport::ready_ms`]; `creationTimestamp` has one-second
//! granularity, so the ADDED event stands in for it). That excludes the
//! time before the pod object exists, which the floor has no equivalent
//! of, so it is not the figure compared with the floor.
//!
//! Percentiles are nearest rank ([`machinery::stats`]).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use chrono::Utc;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod, ServiceAccount};
use kube::api::{ListParams, PostParams, WatchEvent, WatchParams};
use kube::{Api, Client};
use serde::Serialize;

use machinery::stats::percentile;

use crate::node::LEASE_NAMESPACE;

/// CPU time and memory of one process, from `/proc/<pid>/stat` and `status`.
#[derive(Clone, Copy, Debug)]
pub struct ProcSample {
    /// User + system time of all its threads.
    pub cpu: Duration,
    /// User + system time of its children that it waited for (containerd:
    /// the CNI plugins and the iptables they run).
    pub children_cpu: Duration,
    pub rss_bytes: u64,
    /// Peak resident set size over the process's life (`VmHWM`).
    pub hwm_bytes: u64,
}

impl ProcSample {
    /// Fails if the process is gone or a zombie (exited, not yet reaped).
    pub fn read(pid: u32) -> Result<Self> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).with_context(|| format!("process {pid} is gone"))?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).with_context(|| format!("process {pid} is gone"))?;
        Self::parse(&stat, &status).with_context(|| format!("process {pid}"))
    }

    pub fn parse(stat: &str, status: &str) -> Result<Self> {
        // The fields after the command name (which may hold spaces and
        // parentheses) start after the last ')': state is field 3, utime 14, stime 15.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).context("malformed stat")?;
        let f: Vec<&str> = rest.split_whitespace().collect();
        if f.first() == Some(&"Z") {
            bail!("exited (zombie)");
        }
        let field = |i: usize| -> Result<u64> { f.get(i).context("short stat")?.parse().context("stat field") };
        // /proc counts in USER_HZ ticks, which Linux fixes at 100 for user space.
        let tick = |n: u64| Duration::from_millis(n * 10);
        let (cpu, children_cpu) = (tick(field(11)? + field(12)?), tick(field(13)? + field(14)?));
        let kib = |key: &str| -> u64 {
            status.lines().find_map(|l| l.strip_prefix(key)).and_then(|v| v.split_whitespace().next()?.parse().ok()).unwrap_or(0)
        };
        Ok(ProcSample { cpu, children_cpu, rss_bytes: kib("VmRSS:") * 1024, hwm_bytes: kib("VmHWM:") * 1024 })
    }
}

/// CPU time the whole machine spent busy (all cores; not idle, not waiting for I/O), from `/proc/stat`.
pub fn machine_busy() -> Duration {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let f: Vec<u64> = stat.lines().next().unwrap_or("").split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let busy: u64 = f.iter().take(8).enumerate().filter(|(i, _)| *i != 3 && *i != 4).map(|(_, v)| v).sum();
    Duration::from_millis(busy * 10)
}

/// Nearest-rank percentile of ms samples (0 for none).
fn pct(samples: &[f64], p: f64) -> f64 {
    percentile(samples, p).unwrap_or(0.0)
}

/// Rounded to µs (ms with three decimals).
fn round_ms(v: f64) -> f64 {
    (v * 1e3).round() / 1e3
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

fn condition_true(conditions: Option<&Vec<k8s_openapi::api::core::v1::PodCondition>>, ty: &str) -> bool {
    conditions.is_some_and(|cs| cs.iter().any(|c| c.type_ == ty && c.status == "True"))
}

/// What the watching client saw of one pod, relative to t0 (just before
/// the Deployment's create request was sent).
#[derive(Clone, Debug, Serialize)]
pub struct PodTimes {
    pub name: String,
    pub node: Option<String>,
    pub pod_ip: Option<String>,
    /// First watch event (ADDED): the pod exists.
    pub created_ms: f64,
    pub running_ms: Option<f64>,
    pub ready_ms: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct StartupReport {
    pub pods: usize,
    /// Wall-clock time of the Deployment's create request (to line up with runtime logs).
    pub deployment_created_at: String,
    /// Deployment create request → the last pod Ready.
    pub all_ready_ms: f64,
    /// Per pod, t0 (all pods requested: the Deployment's create request) →
    /// Ready seen by the watch, sorted (ms): the figure compared with the
    /// floor (see the module docs).
    pub startup_ms: Vec<f64>,
    /// Per pod, its own creation (ADDED) → Running, sorted (ms): upstream's SLI.
    pub running_ms: Vec<f64>,
    /// Per pod, its own creation (ADDED) → Ready, sorted (ms).
    pub ready_ms: Vec<f64>,
    pub per_pod: Vec<PodTimes>,
}

impl StartupReport {
    /// Percentile of [`Self::startup_ms`] (t0 → Ready).
    pub fn startup_percentile_ms(&self, p: f64) -> f64 {
        pct(&self.startup_ms, p)
    }
    /// Percentile of [`Self::ready_ms`] (own creation → Ready).
    pub fn ready_percentile_ms(&self, p: f64) -> f64 {
        pct(&self.ready_ms, p)
    }
    /// Percentile of [`Self::running_ms`] (own creation → Running).
    pub fn running_percentile_ms(&self, p: f64) -> f64 {
        pct(&self.running_ms, p)
    }
}

/// One pod of the floor, relative to t0 (all pods requested).
#[derive(Clone, Debug, Serialize)]
pub struct FloorPod {
    pub name: String,
    /// It got a start slot (its first CRI call follows).
    pub admitted_ms: f64,
    /// Its `StartContainer` returned.
    pub started_ms: f64,
}

/// Bare CRI pod starts: per pod, from t0 (all requested at once) to its
/// StartContainer returning (ms).
#[derive(Clone, Debug, Serialize)]
pub struct FloorReport {
    pub pods: usize,
    /// Pods started at once (0: no bound), as the agent's `--max-parallel-pod-starts`.
    pub parallel: usize,
    /// Per pod, t0 → started, sorted.
    pub started_ms: Vec<f64>,
    pub all_started_ms: f64,
    /// In the order requested.
    pub per_pod: Vec<FloorPod>,
}

impl FloorReport {
    /// Percentile of [`Self::started_ms`].
    pub fn percentile_ms(&self, p: f64) -> f64 {
        pct(&self.started_ms, p)
    }
}

/// rkube's pod startup against the floor, both as the module docs define
/// them (t0 = all pods requested; same clock).
#[derive(Clone, Debug, Serialize)]
pub struct StartupComparison {
    /// What both lists measure, for the reader of the JSON.
    pub definition: &'static str,
    pub pods: usize,
    /// Per pod, sorted: rkube (t0 → Ready seen by the watch) and the floor
    /// (t0 → StartContainer returned).
    pub rkube_ms: Vec<f64>,
    pub floor_ms: Vec<f64>,
    pub rkube_p50_ms: f64,
    pub rkube_p99_ms: f64,
    pub floor_p50_ms: f64,
    pub floor_p99_ms: f64,
    /// rkube's share: rkube − floor at the same percentile.
    pub share_p50_ms: f64,
    pub share_p99_ms: f64,
}

/// [`StartupComparison::definition`], in words.
pub const STARTUP_DEFINITION: &str = "per pod, from t0 = all pods requested at once (rkube: the Deployment's create request; floor: the pod starts handed to their tasks) to that pod's container running as this benchmark learns it (rkube: watch event with Ready=True; floor: StartContainer returned), on the benchmark's monotonic clock; at most max_parallel_pod_starts pods starting at a time in both";

/// Lines up the two reports (see [`StartupComparison`]).
pub fn compare(rkube: &StartupReport, floor: &FloorReport) -> StartupComparison {
    let (r50, r99, f50, f99) = (rkube.startup_percentile_ms(50.0), rkube.startup_percentile_ms(99.0), floor.percentile_ms(50.0), floor.percentile_ms(99.0));
    StartupComparison {
        definition: STARTUP_DEFINITION,
        pods: rkube.pods,
        rkube_ms: rkube.startup_ms.clone(),
        floor_ms: floor.started_ms.clone(),
        rkube_p50_ms: r50,
        rkube_p99_ms: r99,
        floor_p50_ms: f50,
        floor_p99_ms: f99,
        share_p50_ms: round_ms(r50 - f50),
        share_p99_ms: round_ms(r99 - f99),
    }
}

/// Starts `pods` pods of one container (`image`, `sleep 3600`) through CRI
/// as the agent's pod worker does (ImageStatus, RunPodSandbox,
/// PodSandboxStatus for the IP, CreateContainer, StartContainer), at most
/// `parallel` at a time (0: all at once), then removes them. Every pod is
/// requested at t0; its time is t0 → its StartContainer returned (see the
/// module docs).
pub async fn cri_floor(cri: crate::runtime::cri::CriClient, image: &str, pods: usize, parallel: usize, log_root: &std::path::Path) -> Result<FloorReport> {
    use proto::runtime::v1 as c;
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(if parallel == 0 { pods.max(1) } else { parallel }));
    // The pods' specs are built before t0: only the starts are timed.
    let mut specs = Vec::new();
    for i in 0..pods {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": format!("cri-floor-{i}"), "namespace": "default", "uid": format!("cri-floor-{i}-{}", std::process::id())},
            "spec": {"containers": [{"name": "c", "image": image, "command": ["sleep", "3600"]}]}
        }))?;
        specs.push(pod);
    }
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for pod in specs {
        let (mut cri, slots, image, log_root) = (cri.clone(), slots.clone(), image.to_string(), log_root.to_path_buf());
        tasks.push(tokio::spawn(async move {
            let _slot = slots.acquire_owned().await?;
            let admitted = t0.elapsed();
            let sandbox = crate::pods::config::sandbox_config(&pod, 0, &log_root);
            cri.image_present(&image).await?;
            let id = cri.runtime.run_pod_sandbox(c::RunPodSandboxRequest { config: Some(sandbox.clone()), runtime_handler: String::new() }).await.context("RunPodSandbox")?.into_inner().pod_sandbox_id;
            let status = cri.runtime.pod_sandbox_status(c::PodSandboxStatusRequest { pod_sandbox_id: id.clone(), verbose: false }).await.context("PodSandboxStatus")?.into_inner();
            let ip = status.status.and_then(|s| s.network).map(|n| n.ip).unwrap_or_default();
            let container = &pod.spec.as_ref().expect("built above").containers[0];
            let config = crate::pods::config::container_config(&pod, container, &image, 0, false, &ip, "");
            let ctr = cri
                .runtime
                .create_container(c::CreateContainerRequest { pod_sandbox_id: id.clone(), config: Some(config), sandbox_config: Some(sandbox) })
                .await
                .context("CreateContainer")?
                .into_inner()
                .container_id;
            cri.runtime.start_container(c::StartContainerRequest { container_id: ctr }).await.context("StartContainer")?;
            let started = t0.elapsed();
            let name = pod.metadata.name.clone().unwrap_or_default();
            Ok::<_, anyhow::Error>((FloorPod { name, admitted_ms: ms(admitted), started_ms: ms(started) }, started, id))
        }));
    }
    let mut times = Vec::new();
    let mut per_pod = Vec::new();
    let mut ids = Vec::new();
    let mut first_error = None;
    for t in tasks {
        match t.await.context("floor task")? {
            Ok((p, d, id)) => {
                per_pod.push(p);
                times.push(d);
                ids.push(id);
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    let all = times.iter().copied().max().unwrap_or_default();
    let mut cri = cri;
    for id in ids {
        let _ = cri.runtime.stop_pod_sandbox(c::StopPodSandboxRequest { pod_sandbox_id: id.clone() }).await;
        let _ = cri.runtime.remove_pod_sandbox(c::RemovePodSandboxRequest { pod_sandbox_id: id }).await;
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    times.sort();
    Ok(FloorReport { pods, parallel, started_ms: times.into_iter().map(ms).collect(), all_started_ms: ms(all), per_pod })
}

/// Creates Deployment `name` in `default` with `replicas` busybox pods
/// (`image` must be present on the nodes) and times every pod, as a client
/// watching the pods sees it: from t0 (just before the create request) to
/// Ready, and from its own creation (ADDED) to Running and to Ready.
/// Leaves the Deployment in place (the caller tears the cluster down).
pub async fn deployment_startup(client: Client, name: &str, image: &str, replicas: usize, timeout: Duration) -> Result<StartupReport> {
    let ns = "default";
    // The ServiceAccount admission plugin needs the namespace's `default`
    // account, which upstream's serviceaccount controller would have made.
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let sa: ServiceAccount = serde_json::from_value(serde_json::json!({"metadata": {"name": "default"}}))?;
    match sas.create(&PostParams::default(), &sa).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => return Err(e).context("creating ServiceAccount default"),
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let selector = format!("app={name}");
    // Watch from the list's resourceVersion, so no event after it is missed.
    let rv = pods.list(&ListParams::default().labels(&selector)).await?.metadata.resource_version.unwrap_or_default();
    let deployment: Deployment = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [{"name": "c", "image": image, "imagePullPolicy": "IfNotPresent", "command": ["sleep", "3600"]}]
                }
            }
        }
    }))?;
    let mut stream = pods.watch(&WatchParams::default().labels(&selector).timeout(290), &rv).await?.boxed();
    let (t0, created_at) = (Instant::now(), Utc::now());
    Api::<Deployment>::namespaced(client.clone(), ns).create(&PostParams::default(), &deployment).await.context("creating the Deployment")?;
    let deadline = t0 + timeout;
    let mut seen: HashMap<String, PodTimes> = HashMap::new();
    let mut rv = rv;
    let ready = |seen: &HashMap<String, PodTimes>| seen.values().filter(|p| p.ready_ms.is_some()).count();
    while ready(&seen) < replicas {
        let next = tokio::time::timeout_at(deadline.into(), stream.try_next()).await;
        let event = match next {
            Err(_) => bail!("only {} of {replicas} pods Ready after {timeout:?}", ready(&seen)),
            Ok(r) => r.context("pod watch")?,
        };
        let now = t0.elapsed();
        let pod = match event {
            Some(WatchEvent::Added(p)) | Some(WatchEvent::Modified(p)) => p,
            Some(WatchEvent::Deleted(p)) => {
                // A pod deleted before it was Ready would never count.
                let name = p.metadata.name.unwrap_or_default();
                if seen.get(&name).is_some_and(|t| t.ready_ms.is_none()) {
                    bail!("pod {name} was deleted before it became Ready");
                }
                continue;
            }
            Some(WatchEvent::Bookmark(b)) => {
                rv = b.metadata.resource_version;
                continue;
            }
            Some(WatchEvent::Error(e)) => bail!("pod watch: {} {}", e.code, e.message),
            None => {
                // The server ended the watch (timeout): resume where it stopped.
                stream = pods.watch(&WatchParams::default().labels(&selector).timeout(290), &rv).await?.boxed();
                continue;
            }
        };
        if let Some(v) = pod.metadata.resource_version.clone() {
            rv = v;
        }
        let name = pod.metadata.name.clone().unwrap_or_default();
        let t = seen.entry(name.clone()).or_insert_with(|| PodTimes { name, node: None, pod_ip: None, created_ms: ms(now), running_ms: None, ready_ms: None });
        let status = pod.status.as_ref();
        t.node = pod.spec.as_ref().and_then(|s| s.node_name.clone()).or(t.node.take());
        t.pod_ip = status.and_then(|s| s.pod_ip.clone()).or(t.pod_ip.take());
        if t.running_ms.is_none() && status.and_then(|s| s.phase.as_deref()) == Some("Running") {
            t.running_ms = Some(ms(now));
        }
        if t.ready_ms.is_none() && condition_true(status.and_then(|s| s.conditions.as_ref()), "Ready") {
            t.ready_ms = Some(ms(now));
        }
    }
    let all_ready_ms = seen.values().filter_map(|t| t.ready_ms).fold(0.0, f64::max);
    let mut per_pod: Vec<PodTimes> = seen.into_values().filter(|t| t.ready_ms.is_some()).collect();
    per_pod.sort_by(|a, b| a.created_ms.total_cmp(&b.created_ms));
    let sorted = |f: &dyn Fn(&PodTimes) -> Option<f64>| {
        let mut v: Vec<f64> = per_pod.iter().filter_map(|t| Some(((f(t)? - t.created_ms) * 1e3).round() / 1e3)).collect();
        v.sort_by(f64::total_cmp);
        v
    };
    let running_ms = sorted(&|t| t.running_ms);
    let ready_ms = sorted(&|t| t.ready_ms);
    let mut startup_ms: Vec<f64> = per_pod.iter().filter_map(|t| t.ready_ms).collect();
    startup_ms.sort_by(f64::total_cmp);
    let deployment_created_at = created_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    Ok(StartupReport { pods: per_pod.len(), deployment_created_at, all_ready_ms, startup_ms, running_ms, ready_ms, per_pod })
}

#[derive(Clone, Debug, Serialize)]
pub struct SimulatedReport {
    pub nodes: usize,
    /// Agent started → every node has its Lease (and so its first status).
    pub registration_ms: f64,
    /// Nodes Ready when registration was complete.
    pub ready_after_registration: usize,
    pub window_ms: f64,
    /// The agent's CPU over the window, as a fraction of one core.
    pub cpu_cores: f64,
    /// The agent's resident memory: the highest sample in the window, and at its end.
    pub rss_max_mib: f64,
    pub rss_end_mib: f64,
    /// Peak resident memory over the agent's whole life (registration included).
    pub rss_hwm_mib: f64,
    /// At the end of the window: nodes Ready, Leases renewed within their duration,
    /// and Leases renewed during the window.
    pub ready_at_end: usize,
    pub leases_fresh_at_end: usize,
    pub leases_renewed_in_window: usize,
}

fn mib(b: u64) -> f64 {
    (b as f64 / 1048576.0 * 10.0).round() / 10.0
}

fn node_ready(n: &Node) -> bool {
    n.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

async fn our_leases(client: &Client, prefix: &str) -> Result<Vec<Lease>> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
    Ok(leases.list(&ListParams::default()).await?.items.into_iter().filter(|l| l.metadata.name.as_deref().is_some_and(|n| n.starts_with(prefix))).collect())
}

async fn ready_nodes(client: &Client, prefix: &str) -> Result<usize> {
    let nodes: Api<Node> = Api::all(client.clone());
    Ok(nodes.list(&ListParams::default()).await?.items.iter().filter(|n| n.metadata.name.as_deref().is_some_and(|x| x.starts_with(prefix)) && node_ready(n)).count())
}

/// Measures the simulated-nodes agent `pid` (started at `started`), which
/// registers `nodes` nodes named `<prefix><i>` with Leases of
/// `lease_duration`: registration time, then CPU and memory over `window`.
pub async fn simulated_nodes(client: Client, pid: u32, started: Instant, prefix: &str, nodes: usize, lease_duration: Duration, window: Duration, registration_timeout: Duration) -> Result<SimulatedReport> {
    // The agent registers a node, posts its status, then creates its Lease:
    // all Leases present = all nodes registered with a first status.
    loop {
        ProcSample::read(pid).context("the agent exited during registration")?;
        let have = our_leases(&client, prefix).await?.len();
        if have >= nodes {
            break;
        }
        if started.elapsed() > registration_timeout {
            bail!("only {have} of {nodes} simulated nodes registered after {registration_timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let registration = started.elapsed();
    let ready_after_registration = ready_nodes(&client, prefix).await?;

    // The window: only /proc reads here, so the bench adds nothing to the agent's load.
    let window_start_wall = Utc::now();
    let first = ProcSample::read(pid)?;
    let t0 = Instant::now();
    let mut rss_max = first.rss_bytes;
    let mut last = first;
    while t0.elapsed() < window {
        tokio::time::sleep(Duration::from_millis(500).min(window.saturating_sub(t0.elapsed()))).await;
        last = ProcSample::read(pid).context("the agent exited during the window")?;
        rss_max = rss_max.max(last.rss_bytes);
    }
    let wall = t0.elapsed();

    let now = Utc::now();
    let leases = our_leases(&client, prefix).await?;
    let renew_time = |l: &Lease| l.spec.as_ref().and_then(|s| s.renew_time.as_ref()).map(|t| t.0);
    let fresh_after = now - chrono::Duration::from_std(lease_duration)?;
    let leases_fresh_at_end = leases.iter().filter(|l| renew_time(l).is_some_and(|t| t > fresh_after)).count();
    let leases_renewed_in_window = leases.iter().filter(|l| renew_time(l).is_some_and(|t| t >= window_start_wall)).count();
    Ok(SimulatedReport {
        nodes,
        registration_ms: ms(registration),
        ready_after_registration,
        window_ms: ms(wall),
        cpu_cores: ((last.cpu.saturating_sub(first.cpu)).as_secs_f64() / wall.as_secs_f64() * 1000.0).round() / 1000.0,
        rss_max_mib: mib(rss_max),
        rss_end_mib: mib(last.rss_bytes),
        rss_hwm_mib: mib(last.hwm_bytes),
        ready_at_end: ready_nodes(&client, prefix).await?,
        leases_fresh_at_end,
        leases_renewed_in_window,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn startup(startup_ms: Vec<f64>) -> StartupReport {
        StartupReport {
            pods: startup_ms.len(),
            deployment_created_at: String::new(),
            all_ready_ms: startup_ms.iter().copied().fold(0.0, f64::max),
            running_ms: startup_ms.clone(),
            ready_ms: startup_ms.clone(),
            startup_ms,
            per_pod: Vec::new(),
        }
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        // machinery's definition: rank ceil(n·p/100); 4 samples → p50 is the 2nd.
        let r = startup(vec![100.0, 200.0, 300.0, 400.0]);
        assert_eq!((r.startup_percentile_ms(50.0), r.startup_percentile_ms(99.0)), (200.0, 400.0));
        assert_eq!(startup(vec![]).startup_percentile_ms(50.0), 0.0);
    }

    #[test]
    fn share_is_rkube_minus_floor_at_each_percentile() {
        let r = startup(vec![500.0, 900.0, 1300.0, 2000.0]);
        let f = FloorReport { pods: 4, parallel: 2, started_ms: vec![300.0, 450.0, 800.0, 1100.0], all_started_ms: 1100.0, per_pod: Vec::new() };
        let c = compare(&r, &f);
        assert_eq!((c.rkube_p50_ms, c.floor_p50_ms, c.share_p50_ms), (900.0, 450.0, 450.0));
        assert_eq!((c.rkube_p99_ms, c.floor_p99_ms, c.share_p99_ms), (2000.0, 1100.0, 900.0));
        assert_eq!((c.rkube_ms.len(), c.floor_ms.len(), c.pods), (4, 4, 4));
        // rkube faster than the floor (noise) shows as a negative share, not clamped.
        let fast = startup(vec![100.0, 200.0, 300.0, 400.0]);
        assert_eq!(compare(&fast, &f).share_p50_ms, -250.0);
    }

    #[test]
    fn proc_sample() {
        // A command name with spaces and ')' must not shift the fields.
        let stat = "42 (a b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 125 30 20 20 0 9 0 100 1000 10 18446744073709551615";
        let status = "Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n";
        let s = ProcSample::parse(stat, status).unwrap();
        assert_eq!((s.cpu, s.children_cpu), (Duration::from_millis(3750), Duration::from_millis(500)));
        assert_eq!((s.rss_bytes, s.hwm_bytes), (1024 * 1024, 2048 * 1024));
        assert!(ProcSample::parse(&stat.replace(") S ", ") Z "), status).is_err());
        let me = ProcSample::read(std::process::id()).unwrap();
        assert!(me.rss_bytes > 0 && me.hwm_bytes >= me.rss_bytes);
        assert!(machine_busy() > Duration::ZERO);
    }
}
