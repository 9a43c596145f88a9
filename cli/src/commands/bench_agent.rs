//! `rkube bench agent`: the node agent's two targets, measured with the
//! release binaries beside `rkube` (library code: `agent/src/bench.rs`).
//!
//! 1. **Pod startup**: etcd, rkube-apiserver, rkube-controller and
//!    rkube-scheduler; one real node (a private containerd with the
//!    project's busybox and pause images imported, and `rkube-agent` on it);
//!    a Deployment of `--pods` pods. Targets, for 20 pods: p50 creation →
//!    Ready < 1 s, p99 < 3 s. Before that (`--cri-floor`), as many pods
//!    straight through CRI on the same runtime, as many at a time as the
//!    agent starts them, and removed again: the floor. Both are timed per
//!    pod from one common t0, when all pods are requested at once, to the
//!    benchmark learning that the pod's container runs (rkube: the watch
//!    sees it Ready; floor: StartContainer returned), on this process's
//!    monotonic clock (`agent/src/bench.rs` has the exact events); rkube's
//!    share is the difference at p50 and p99.
//! 2. **Simulated nodes**: one `rkube-agent --runtime fake --nodes N`
//!    process; time until all N are registered, then that process's CPU and
//!    resident memory (`/proc/<pid>`) over `--window` seconds while it renews
//!    their Leases. Targets, for 5000 nodes: < 1 core, < 500 MiB.
//!
//! The JSON report (`--json`) has the common shape of every `rkube bench`:
//! `bench`, `environment` (captured before any measured work), `figures`
//! (a flat list of this run's headline numbers under stable keys, see
//! [`figures`]), then the detailed parts (`pod_startup`, `cri_floor`,
//! `startup_vs_floor`, `simulated_nodes`).
//!
//! Everything, this command's own client included, runs inside a throwaway
//! network namespace (`rkube-bench-<pid>`, loopback only, no route out): the
//! node's CNI bridge, pod veths and the CNI plugins' iptables rules live and
//! die there. Tear-down runs on success, on error and on Ctrl-C / SIGTERM:
//! agents first, then the controllers, then containerd with every pod
//! sandbox, shim and mount, then the apiserver and etcd, then the namespace.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rkube_agent::bench::{machine_busy, FloorReport, ProcSample, SimulatedReport, StartupComparison, StartupReport};
use rkube_agent::runtime::containerd::{PrivateContainerd, PrivateContainerdConfig};
use rkube_agent::runtime::images::BUSYBOX_IMAGE;
use serde_json::{json, Value};

use crate::bench_env::{load_average, Environment};
use crate::cluster::supervise::pids_with_arg;
use crate::procs::{self, free_port, sibling_binary, Netns, Proc};

#[derive(clap::Args, Debug, Clone)]
pub struct Options {
    /// Pods in the Deployment (0 skips the pod-startup part).
    #[arg(long, default_value_t = 20)]
    pub pods: usize,
    /// Simulated nodes in one `rkube-agent --runtime fake` (0 skips that part).
    #[arg(long, default_value_t = 5000)]
    pub simulated_nodes: usize,
    /// Seconds the simulated nodes' agent is measured, once all are registered.
    #[arg(long, default_value_t = 60.0)]
    pub window: f64,
    /// The real node's podCIDR (its bridge exists only in the bench's namespace).
    #[arg(long, default_value = "10.244.0.0/24")]
    pub pod_cidr: String,
    /// Where the real node's containerd keeps its root (metadata, snapshots)
    /// and state: `tmpfs`, a tmpfs mounted for the run, or `disk`, under /tmp.
    /// The runtime is thrown away after the run either way.
    #[arg(long, value_enum, default_value_t = Storage::Tmpfs)]
    pub containerd_storage: Storage,
    /// Passed to the real node's agent: pods starting at once (0: no bound).
    #[arg(long, default_value_t = 4)]
    pub max_parallel_pod_starts: usize,
    /// Before the Deployment, start (and remove) the same number of pods
    /// straight through CRI on the same runtime (`--max-parallel-pod-starts`
    /// at a time, no control plane): the floor under the startup latency.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub cri_floor: bool,
    /// Write the figures as JSON here too.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Keep every component's log here (containerd's included); by default
    /// they go to a temporary directory, removed unless the run fails.
    #[arg(long)]
    pub log_dir: Option<PathBuf>,
}

/// See [`Options::containerd_storage`].
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    Tmpfs,
    Disk,
}

const NODE: &str = "bench-node";
const SIM_PREFIX: &str = "bench-sim-";
/// The simulated Leases' duration (the kubelet's default); renewed every quarter of it.
const LEASE_SECONDS: u64 = 40;

pub fn run(o: Options) -> Result<()> {
    if !crate::cluster::is_root() {
        bail!("rkube bench agent needs root: it makes a network namespace and runs containers");
    }
    let env = Environment::capture();
    let tmp = tempfile::Builder::new().prefix("rkube-bench-agent-").tempdir()?;
    let dir = match &o.log_dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            d.clone()
        }
        None => tmp.path().to_path_buf(),
    };
    let netns = Netns::create(&format!("rkube-bench-{}", std::process::id()))?;
    // One thread enters the namespace and runs everything from there: its
    // runtime's threads and every process they start inherit it.
    let result = std::thread::scope(|s| {
        s.spawn(|| -> Result<Value> {
            netns.enter()?;
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            rt.block_on(until_interrupted(bench(&o, &dir, &env)))
        })
        .join()
        .unwrap_or_else(|_| Err(anyhow::anyhow!("benchmark thread panicked")))
    });
    drop(netns);
    match result {
        Ok(report) => {
            if let Some(p) = &o.json {
                std::fs::write(p, serde_json::to_vec_pretty(&report)?)?;
                println!("figures written to {}", p.display());
            }
            Ok(())
        }
        Err(e) => {
            let _ = tmp.keep();
            Err(e.context(format!("logs kept in {}", dir.display())))
        }
    }
}

/// Runs `f`; on Ctrl-C or SIGTERM drops it, which stops what it started.
async fn until_interrupted<T>(f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = f => r,
        _ = tokio::signal::ctrl_c() => bail!("interrupted"),
        _ = term.recv() => bail!("terminated"),
    }
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    format!("{} (last lines):\n{}", path.display(), lines[lines.len().saturating_sub(30)..].join("\n"))
}

async fn bench(o: &Options, dir: &Path, env: &Environment) -> Result<Value> {
    let (cores, load_before) = (env.cores, env.load_average_start);
    println!("rkube bench agent: {} pods, {} simulated nodes, {} s window ({cores} cores, load average {load_before:?})", o.pods, o.simulated_nodes, o.window);
    let (etcd, etcd_url) = procs::start_etcd(dir)?;
    let (apiserver, base) = procs::start_apiserver(dir, &etcd_url).await?;
    let client = machinery::client::connect_as("rkube-bench", Some(&base), None).await?;
    let mut report = json!({"bench": "agent", "environment": env, "figures": [], "cores": cores, "load_average_before": load_before});
    let mut startup = None;
    let mut comparison = None;
    let mut simulated_report = None;
    if o.pods > 0 {
        let (r, cpu, floor) = pod_startup(o, dir, &base, client.clone(), &[etcd.pid(), apiserver.pid()]).await?;
        print_startup(&r, &cpu);
        report["pod_startup"] = startup_json(&r, &cpu);
        if let Some(f) = floor {
            let c = rkube_agent::bench::compare(&r, &f);
            print_floor(&f, &c);
            let mut v = serde_json::to_value(&f)?;
            for (k, p) in [("p50_ms", 50.0), ("p99_ms", 99.0), ("max_ms", 100.0)] {
                v[k] = json!(f.percentile_ms(p));
            }
            report["cri_floor"] = v;
            report["startup_vs_floor"] = serde_json::to_value(&c)?;
            comparison = Some(c);
        }
        startup = Some((r, cpu));
    }
    if o.simulated_nodes > 0 {
        let r = simulated(o, dir, &base, client).await?;
        print_simulated(&r);
        report["simulated_nodes"] = serde_json::to_value(&r)?;
        simulated_report = Some(r);
    }
    report["figures"] = serde_json::to_value(figures(startup.as_ref().map(|(r, c)| (r, c)), comparison.as_ref(), simulated_report.as_ref()))?;
    report["load_average_after"] = json!(load_average());
    if o.log_dir.is_some() {
        // Keep the logs, not etcd's data.
        let _ = std::fs::remove_dir_all(dir.join("etcd"));
    }
    Ok(report)
}

pub use machinery::stats::{Better, Figure};

/// This run's figures (only finite values; a part that did not run gives none):
///
/// | key | unit | better |
/// |---|---|---|
/// | `agent.startup_p50_ms`, `agent.startup_p99_ms` — t0 (all pods requested) → Ready | ms | lower |
/// | `agent.creation_to_ready_p50_ms`, `…_p99_ms` — each pod's own creation → Ready (upstream's SLI) | ms | lower |
/// | `agent.all_ready_ms` — Deployment created → the last pod Ready | ms | lower |
/// | `agent.floor_p50_ms`, `agent.floor_p99_ms` — bare CRI, t0 → started | ms | lower |
/// | `agent.overhead_p50_ms`, `agent.overhead_p99_ms` — rkube's share: startup − floor | ms | lower |
/// | `agent.cpu_core_s_per_pod` — the agent process's CPU while the pods started, per pod | core-s | lower |
/// | `agent.machine_cpu_core_s_per_pod` — the whole machine's busy CPU meanwhile, per pod | core-s | lower |
/// | `agent.simulated_nodes.registration_s.<N>` | s | lower |
/// | `agent.simulated_nodes.cpu_cores.<N>` — over the window | cores | lower |
/// | `agent.simulated_nodes.rss_max_mib.<N>` — highest sample in the window | MiB | lower |
/// | `agent.simulated_nodes.ready_fraction.<N>` — nodes Ready at the window's end / N | fraction | higher |
fn figures(startup: Option<(&StartupReport, &StartupCpu)>, cmp: Option<&StartupComparison>, sim: Option<&SimulatedReport>) -> Vec<Figure> {
    use Better::*;
    let mut f = Vec::new();
    if let Some((r, cpu)) = startup {
        let n = r.pods;
        f.push(Figure::new("agent.startup_p50_ms", format!("pod startup p50 (all {n} requested → Ready)"), "ms", r.startup_percentile_ms(50.0), Lower));
        f.push(Figure::new("agent.startup_p99_ms", format!("pod startup p99 (all {n} requested → Ready)"), "ms", r.startup_percentile_ms(99.0), Lower));
        f.push(Figure::new("agent.creation_to_ready_p50_ms", format!("pod creation → Ready p50 ({n} pods)"), "ms", r.ready_percentile_ms(50.0), Lower));
        f.push(Figure::new("agent.creation_to_ready_p99_ms", format!("pod creation → Ready p99 ({n} pods)"), "ms", r.ready_percentile_ms(99.0), Lower));
        f.push(Figure::new("agent.all_ready_ms", format!("Deployment created → all {n} pods Ready"), "ms", r.all_ready_ms, Lower));
        if n > 0 {
            let per_pod = |v: f64| ((v / n as f64) * 1e4).round() / 1e4;
            f.push(Figure::new("agent.cpu_core_s_per_pod", "agent CPU per pod started", "core-s", per_pod(cpu.agent), Lower));
            f.push(Figure::new("agent.machine_cpu_core_s_per_pod", "machine CPU per pod started (every process)", "core-s", per_pod(cpu.machine_busy), Lower));
        }
    }
    if let Some(c) = cmp {
        f.push(Figure::new("agent.floor_p50_ms", format!("bare CRI floor p50 (all {} requested → started)", c.pods), "ms", c.floor_p50_ms, Lower));
        f.push(Figure::new("agent.floor_p99_ms", format!("bare CRI floor p99 (all {} requested → started)", c.pods), "ms", c.floor_p99_ms, Lower));
        f.push(Figure::new("agent.overhead_p50_ms", "rkube's share of pod startup p50 (startup − floor)", "ms", c.share_p50_ms, Lower));
        f.push(Figure::new("agent.overhead_p99_ms", "rkube's share of pod startup p99 (startup − floor)", "ms", c.share_p99_ms, Lower));
    }
    if let Some(s) = sim {
        let n = s.nodes;
        f.push(Figure::new(format!("agent.simulated_nodes.registration_s.{n}"), format!("{n} simulated nodes: all registered"), "s", (s.registration_ms / 1e2).round() / 10.0, Lower));
        f.push(Figure::new(format!("agent.simulated_nodes.cpu_cores.{n}"), format!("{n} simulated nodes: agent CPU"), "cores", s.cpu_cores, Lower));
        f.push(Figure::new(format!("agent.simulated_nodes.rss_max_mib.{n}"), format!("{n} simulated nodes: agent RSS max"), "MiB", s.rss_max_mib, Lower));
        if n > 0 {
            f.push(Figure::new(format!("agent.simulated_nodes.ready_fraction.{n}"), format!("{n} simulated nodes: Ready at the end"), "fraction", s.ready_at_end as f64 / n as f64, Higher));
        }
    }
    f.retain(|x| x.value.is_finite());
    f
}

/// A control-plane component beside `rkube`, serving plain HTTP `/healthz` on a free port.
async fn start_component(name: &str, dir: &Path, base: &str) -> Result<Proc> {
    let port = free_port()?;
    let mut cmd = Command::new(sibling_binary(name)?);
    cmd.arg(format!("--master={base}")).args(["--leader-elect=false", "--bind-address=127.0.0.1"]).arg(format!("--secure-port={port}"));
    if name == "rkube-controller" {
        // The node brings its podCIDR (--pod-cidr), matching its CNI bridge.
        cmd.arg("--allocate-node-cidrs=false");
    }
    let log = dir.join(format!("{name}.log"));
    let p = Proc::spawn(name, cmd, &log)?;
    procs::wait_http_ok(&format!("http://127.0.0.1:{port}/healthz"), Duration::from_secs(60)).await.with_context(|| log_tail(&log))?;
    Ok(p)
}

/// Where the CPU went while the pods started (core-seconds).
#[derive(Clone, Debug, Default, serde::Serialize)]
struct StartupCpu {
    wall_s: f64,
    /// The whole machine (every process, other users' included).
    machine_busy: f64,
    agent: f64,
    /// containerd and the CNI plugins it ran (not the shims or runc).
    containerd_and_cni: f64,
    /// The pods' containerd shims and the runc runs they waited for (all
    /// started in the window).
    shims_and_runc: f64,
    /// etcd, apiserver, controller, scheduler.
    control_plane: f64,
    /// `tmpfs` or `disk` (--containerd-storage).
    containerd_storage: &'static str,
}

fn cpu_of(pids: &[u32]) -> Duration {
    pids.iter().filter_map(|p| ProcSample::read(*p).ok()).map(|s| s.cpu + s.children_cpu).sum()
}

async fn pod_startup(o: &Options, dir: &Path, base: &str, client: kube::Client, control_plane: &[u32]) -> Result<(StartupReport, StartupCpu, Option<FloorReport>)> {
    let started = Instant::now();
    // A throwaway runtime needs no disk. On this project's VM, ext4's
    // directory allocation (each container makes several directories) cost
    // the runtime about a fifth of its CPU per pod (docs/benchmarks.md).
    let tmpfs = match o.containerd_storage {
        Storage::Tmpfs => Some(procs::Tmpfs::mount("rkube-bench-ctrd-")?),
        Storage::Disk => None,
    };
    let mut config = PrivateContainerdConfig::new(o.pod_cidr.parse().context("--pod-cidr")?);
    if let Some(t) = &tmpfs {
        config.parent_dir = t.path.clone();
    }
    let ctrd = PrivateContainerd::start(config).await?;
    // The floor first, on the fresh runtime, before any agent exists (so
    // nothing else touches these sandboxes); they are gone again before the
    // Deployment starts on the same, equally fresh runtime.
    let floor = if o.cri_floor {
        let cri = rkube_agent::runtime::cri::CriClient::connect(&ctrd.endpoint()).await;
        match cri {
            Ok(cri) => Some(rkube_agent::bench::cri_floor(cri, BUSYBOX_IMAGE, o.pods, o.max_parallel_pod_starts, &ctrd.layout().pod_logs).await),
            Err(e) => Some(Err(e)),
        }
    } else {
        None
    };
    let floor = match floor.transpose() {
        Ok(f) => f,
        Err(e) => {
            let _ = ctrd.stop().await;
            return Err(e.context("bare CRI pod starts"));
        }
    };
    if floor.is_some() {
        // The kernel frees removed network namespaces and mounts in the
        // background: let that finish before the measured run.
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    let controller = start_component("rkube-controller", dir, base).await?;
    let scheduler = start_component("rkube-scheduler", dir, base).await?;
    let (port, healthz) = (free_port()?, free_port()?);
    let mut cmd = Command::new(sibling_binary("rkube-agent")?);
    cmd.arg(format!("--master={base}"))
        .arg(format!("--node-name={NODE}"))
        .arg(format!("--container-runtime-endpoint={}", ctrd.endpoint()))
        .arg(format!("--pod-cidr={}", o.pod_cidr))
        .arg(format!("--root-dir={}", dir.join("agent").display()))
        .arg(format!("--pod-log-dir={}", ctrd.layout().pod_logs.display()))
        .args(["--node-ip=127.0.0.1", "--address=127.0.0.1", "--healthz-bind-address=127.0.0.1"])
        .arg(format!("--port={port}"))
        .arg(format!("--healthz-port={healthz}"))
        .arg(format!("--max-parallel-pod-starts={}", o.max_parallel_pod_starts));
    let agent_log = dir.join("rkube-agent.log");
    let agent = Proc::spawn("rkube-agent", cmd, &agent_log)?;
    let nodes: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(client.clone());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let node = nodes.get_opt(NODE).await?;
        let ready = node.and_then(|n| n.status?.conditions).is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        if ready {
            break;
        }
        if Instant::now() > deadline {
            bail!("node {NODE} not Ready after 60 s; {}", log_tail(&agent_log));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("  node {NODE} Ready (containerd, images, controller, scheduler, agent) in {:.1} s", started.elapsed().as_secs_f64());
    let timeout = Duration::from_secs(120 + 3 * o.pods as u64);
    let control_plane: Vec<u32> = control_plane.iter().copied().chain([controller.pid(), scheduler.pid()]).collect();
    let containerd = ctrd.pid().into_iter().collect::<Vec<_>>();
    let sample = || (Instant::now(), machine_busy(), cpu_of(&[agent.pid()]), cpu_of(&containerd), cpu_of(&control_plane));
    let before = sample();
    let result = rkube_agent::bench::deployment_startup(client, "bench", BUSYBOX_IMAGE, o.pods, timeout).await;
    let after = sample();
    let cs = |a: Duration, b: Duration| (b.saturating_sub(a).as_secs_f64() * 100.0).round() / 100.0;
    let cpu = StartupCpu {
        wall_s: cs(Duration::ZERO, after.0 - before.0),
        machine_busy: cs(before.1, after.1),
        agent: cs(before.2, after.2),
        containerd_and_cni: cs(before.3, after.3),
        shims_and_runc: cs(Duration::ZERO, cpu_of(&pids_with_arg(&ctrd.socket().to_string_lossy()))),
        control_plane: cs(before.4, after.4),
        containerd_storage: match o.containerd_storage {
            Storage::Tmpfs => "tmpfs",
            Storage::Disk => "disk",
        },
    };
    let result = result.with_context(|| log_tail(&agent_log));
    // Stop whatever would react to pods disappearing, then the runtime with every pod.
    drop(agent);
    drop(scheduler);
    drop(controller);
    let _ = std::fs::copy(&ctrd.layout().log, dir.join("containerd.log"));
    let stopped = ctrd.stop().await;
    drop(tmpfs);
    let r = result?;
    stopped.context("stopping containerd")?;
    Ok((r, cpu, floor))
}

async fn simulated(o: &Options, dir: &Path, base: &str, client: kube::Client) -> Result<SimulatedReport> {
    let mut cmd = Command::new(sibling_binary("rkube-agent")?);
    cmd.arg(format!("--master={base}"))
        .args(["--runtime=fake", "--node-ip=127.0.0.1", "--healthz-port=0"])
        .arg(format!("--nodes={}", o.simulated_nodes))
        .arg(format!("--node-name-prefix={SIM_PREFIX}"))
        .arg(format!("--node-lease-duration-seconds={LEASE_SECONDS}"));
    let log = dir.join("rkube-agent-simulated.log");
    let started = Instant::now();
    let agent = Proc::spawn("rkube-agent --runtime fake", cmd, &log)?;
    let window = Duration::from_secs_f64(o.window);
    let r = rkube_agent::bench::simulated_nodes(client, agent.pid(), started, SIM_PREFIX, o.simulated_nodes, Duration::from_secs(LEASE_SECONDS), window, Duration::from_secs(600))
        .await
        .with_context(|| log_tail(&log))?;
    Ok(r)
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "NOT MET"
    }
}

fn startup_json(r: &StartupReport, cpu: &StartupCpu) -> Value {
    let mut v = serde_json::to_value(r).unwrap_or_default();
    v["cpu_seconds"] = serde_json::to_value(cpu).unwrap_or_default();
    for (k, val) in [
        ("startup_p50_ms", r.startup_percentile_ms(50.0)),
        ("startup_p99_ms", r.startup_percentile_ms(99.0)),
        ("startup_max_ms", r.startup_percentile_ms(100.0)),
        ("running_p50_ms", r.running_percentile_ms(50.0)),
        ("running_p99_ms", r.running_percentile_ms(99.0)),
        ("ready_p50_ms", r.ready_percentile_ms(50.0)),
        ("ready_p99_ms", r.ready_percentile_ms(99.0)),
        ("ready_max_ms", r.ready_percentile_ms(100.0)),
    ] {
        v[k] = json!(val);
    }
    v
}

fn print_startup(r: &StartupReport, cpu: &StartupCpu) {
    let pct = |f: &dyn Fn(f64) -> f64| format!("{:.0} / {:.0} / {:.0} ms", f(50.0), f(99.0), f(100.0));
    let (p50, p99) = (r.ready_percentile_ms(50.0), r.ready_percentile_ms(99.0));
    let (s50, s99) = (r.startup_percentile_ms(50.0), r.startup_percentile_ms(99.0));
    println!("## pod startup: Deployment of {} pods, one node on containerd (images present; its storage on {})", r.pods, cpu.containerd_storage);
    println!("  {:<40} {:>22}   {}", "figure", "measured", "target");
    println!("  {:<40} {:>22}", "all requested → Ready p50 / p99 / max", pct(&|p| r.startup_percentile_ms(p)));
    println!("  {:<40} {:>22}   < 1000 ms: {}", "  all requested → Ready p50", format!("{s50:.0} ms"), verdict(s50 < 1000.0));
    println!("  {:<40} {:>22}   < 3000 ms: {}", "  all requested → Ready p99", format!("{s99:.0} ms"), verdict(s99 < 3000.0));
    println!("  {:<40} {:>22}", "creation → Running p50 / p99 / max", pct(&|p| r.running_percentile_ms(p)));
    println!("  {:<40} {:>22}", "creation → Ready p50 / p99 / max", pct(&|p| r.ready_percentile_ms(p)));
    println!("  {:<40} {:>22}   < 1000 ms: {}", "  creation → Ready p50", format!("{p50:.0} ms"), verdict(p50 < 1000.0));
    println!("  {:<40} {:>22}   < 3000 ms: {}", "  creation → Ready p99", format!("{p99:.0} ms"), verdict(p99 < 3000.0));
    println!("  {:<40} {:>22}", format!("Deployment created → all {} Ready", r.pods), format!("{:.0} ms", r.all_ready_ms));
    println!(
        "  CPU meanwhile (core-seconds over {:.1} s): machine {:.2} of {:.2}; agent {:.2}, containerd + CNI {:.2}, shims + runc {:.2}, control plane {:.2}, the rest (the pods' own processes incl. runc init, the kernel, other users) {:.2}",
        cpu.wall_s,
        cpu.machine_busy,
        cpu.wall_s * std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as f64,
        cpu.agent,
        cpu.containerd_and_cni,
        cpu.shims_and_runc,
        cpu.control_plane,
        cpu.machine_busy - cpu.agent - cpu.containerd_and_cni - cpu.shims_and_runc - cpu.control_plane
    );
}

fn print_floor(f: &FloorReport, c: &StartupComparison) {
    let at_once = if f.parallel == 0 { "all at once".to_string() } else { format!("{} at a time", f.parallel) };
    println!("## the floor: {} pods straight through CRI on the same runtime ({at_once}; no apiserver, scheduler, controllers or watches)", f.pods);
    println!("  {:<40} {:>22}", "all requested → started p50 / p99 / max", format!("{:.0} / {:.0} / {:.0} ms", f.percentile_ms(50.0), f.percentile_ms(99.0), f.percentile_ms(100.0)));
    println!("  {:<40} {:>22}", "all started", format!("{:.0} ms", f.all_started_ms));
    let share = |s: f64, r: f64| format!("{s:.0} ms ({:.0} %)", 100.0 * s / r.max(1.0));
    println!("  {:<40} {:>22}", "rkube's share of the p50 (rkube − floor)", share(c.share_p50_ms, c.rkube_p50_ms));
    println!("  {:<40} {:>22}", "rkube's share of the p99 (rkube − floor)", share(c.share_p99_ms, c.rkube_p99_ms));
}

fn print_simulated(r: &SimulatedReport) {
    println!("## simulated nodes: {} in one rkube-agent --runtime fake", r.nodes);
    println!("  {:<34} {:>22}   {}", "figure", "measured", "target");
    println!("  {:<34} {:>22}", "registered (all Leases)", format!("{:.1} s", r.registration_ms / 1e3));
    println!("  {:<34} {:>22}   < 1 core: {}", format!("agent CPU over {:.0} s", r.window_ms / 1e3), format!("{:.3} cores", r.cpu_cores), verdict(r.cpu_cores < 1.0));
    println!("  {:<34} {:>22}   < 500 MiB: {}", "agent RSS max in window", format!("{:.1} MiB", r.rss_max_mib), verdict(r.rss_max_mib < 500.0));
    println!("  {:<34} {:>22}", "agent RSS peak (whole life)", format!("{:.1} MiB", r.rss_hwm_mib));
    println!("  {:<34} {:>22}", "Ready / Lease fresh at end", format!("{} / {} of {}", r.ready_at_end, r.leases_fresh_at_end, r.nodes));
    println!("  {:<34} {:>22}", "Leases renewed in the window", format!("{} of {}", r.leases_renewed_in_window, r.nodes));
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
    fn figures_have_stable_keys_and_finite_values() {
        let r = startup(vec![400.0, 600.0, 800.0, 1000.0]);
        let cpu = StartupCpu { agent: 0.4, machine_busy: 2.0, ..Default::default() };
        let floor = FloorReport { pods: 4, parallel: 4, started_ms: vec![300.0, 400.0, 500.0, 600.0], all_started_ms: 600.0, per_pod: Vec::new() };
        let c = rkube_agent::bench::compare(&r, &floor);
        let sim = SimulatedReport {
            nodes: 50,
            registration_ms: 1234.0,
            ready_after_registration: 50,
            window_ms: 3000.0,
            cpu_cores: 0.05,
            rss_max_mib: 20.0,
            rss_end_mib: 19.0,
            rss_hwm_mib: 25.0,
            ready_at_end: 50,
            leases_fresh_at_end: 50,
            leases_renewed_in_window: 50,
        };
        let f = figures(Some((&r, &cpu)), Some(&c), Some(&sim));
        let get = |k: &str| f.iter().find(|x| x.key == k).unwrap_or_else(|| panic!("{k} missing in {f:?}")).value;
        assert_eq!((get("agent.startup_p50_ms"), get("agent.startup_p99_ms")), (600.0, 1000.0));
        assert_eq!((get("agent.floor_p50_ms"), get("agent.floor_p99_ms")), (400.0, 600.0));
        assert_eq!((get("agent.overhead_p50_ms"), get("agent.overhead_p99_ms")), (200.0, 400.0));
        assert_eq!((get("agent.cpu_core_s_per_pod"), get("agent.machine_cpu_core_s_per_pod")), (0.1, 0.5));
        assert_eq!(get("agent.simulated_nodes.registration_s.50"), 1.2);
        assert_eq!(get("agent.simulated_nodes.ready_fraction.50"), 1.0);
        let v = serde_json::to_value(&f).unwrap();
        assert_eq!(v[0]["better"], "lower");
        assert!(f.iter().all(|x| x.value.is_finite()));
        let mut keys: Vec<&str> = f.iter().map(|x| x.key.as_str()).collect();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), f.len(), "duplicate keys");
        // Parts that did not run give no figures.
        assert!(figures(None, None, None).is_empty());
    }
}
