//! `rkube chaos`: a soak test for an `rkube up --ha` cluster. For a given
//! time it runs a workload while killing (-9) and pausing (SIGSTOP … SIGCONT)
//! random control-plane processes, then heals everything and checks the
//! invariants an HA control plane exists to keep:
//!
//! - **pods = replicas**: the Deployment it kept scaling converges to its
//!   last acknowledged replica count, every pod Running;
//! - **no double binding**: no pod was ever bound to two nodes, and none has
//!   more than one `Scheduled` event;
//! - **no lost objects**: a ledger of acknowledged writes (ConfigMaps
//!   created, updated, deleted) matches what the API holds afterwards.
//!
//! Faults keep the cluster survivable, as an HA control plane promises: at most
//! one etcd member and one apiserver out at a time. A pause can be longer
//! than the leader lease (15 s), so a paused leader loses its lease and must
//! stand down; components that exit (a leader that lost its lease does) are
//! started again, as a kubelet restarts a static pod. Writes are retried
//! (up to 3 attempts), as clients do; the run prints how many needed it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::TryStreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Namespace, Pod, ServiceAccount};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::{Api, Client};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::json;

use crate::cluster::spec::Spec;
use crate::cluster::supervise::Supervisor;

#[derive(clap::Args, Debug, Clone)]
pub struct Options {
    /// The cluster's state directory (default /var/lib/rkube as root, else ~/.rkube).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// How long to inject faults (Go duration: 60s, 5m).
    #[arg(long, default_value = "60s", value_parser = machinery::duration::parse)]
    pub duration: Duration,
    /// Mean time between two faults.
    #[arg(long, default_value = "4s", value_parser = machinery::duration::parse)]
    pub interval: Duration,
    /// Seed of the fault schedule (default: from the clock); printed, so a run can be repeated.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Namespace of the workload (made, and deleted at the end).
    #[arg(long, default_value = "rkube-chaos")]
    pub namespace: String,
}

/// A small deterministic generator (xorshift64*): the same seed gives the
/// same fault schedule.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> Option<&'a T> {
        (!v.is_empty()).then(|| &v[self.below(v.len() as u64) as usize])
    }
    fn duration(&mut self, lo: Duration, hi: Duration) -> Duration {
        lo + Duration::from_millis(self.below((hi - lo).as_millis() as u64 + 1))
    }
}

/// Something to do later: start a killed component again, or thaw a paused one.
enum Pending {
    Restart(String),
    Thaw(String, u32),
}

struct Log {
    start: Instant,
    lines: Vec<String>,
}

impl Log {
    fn say(&mut self, what: String) {
        let line = format!("  [{:>6.1}s] {what}", self.start.elapsed().as_secs_f64());
        println!("{line}");
        self.lines.push(line);
    }
}

/// The acknowledged writes.
#[derive(Default)]
struct Ledger {
    /// name → the data value last acknowledged (None: deleted, acknowledged).
    objects: BTreeMap<String, Option<String>>,
    /// Objects whose last write has an unknown outcome (every attempt
    /// failed): either value is acceptable.
    uncertain: BTreeMap<String, Vec<Option<String>>>,
    acked: usize,
    retried: usize,
    failed: usize,
    worst: Duration,
}

/// What the pod recorder saw.
#[derive(Default)]
struct PodHistory {
    nodes: BTreeMap<String, Vec<String>>,
    relists: usize,
}

pub fn run(o: Options) -> anyhow::Result<()> {
    let state_dir = o.state_dir.clone().unwrap_or_else(crate::cluster::default_state_dir);
    let spec = Spec::load(&state_dir)?.with_context(|| format!("no cluster in {}: run `rkube up --ha` first", state_dir.display()))?;
    if spec.ha.is_none() {
        bail!("the cluster in {} was not made with --ha: chaos needs a control plane that can lose a member", state_dir.display());
    }
    let sup = Supervisor::new(spec.run_dir(), spec.logs());
    let down: Vec<String> = spec.control_plane().into_iter().filter(|c| sup.pid(c).is_none()).collect();
    for c in &down {
        sup.restart(c).with_context(|| format!("starting {c}, which was not running"))?;
    }
    for c in spec.control_plane() {
        crate::cluster::wait::wait_component_healthy(&spec, &sup, &c)?;
    }
    let seed = o.seed.unwrap_or_else(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1));
    println!("rkube chaos: {:?} of faults against the cluster in {} (seed {seed}){}", o.duration, state_dir.display(),
        if down.is_empty() { String::new() } else { format!("; first restarted {}", down.join(", ")) });
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(chaos(&o, &spec, &sup, seed))
}

async fn with_retries<T, F, Fut>(ledger: &Mutex<Ledger>, mut f: F) -> Result<T, kube::Error>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = Result<T, kube::Error>>,
{
    let started = Instant::now();
    let mut last = None;
    for attempt in 0..3 {
        match tokio::time::timeout(Duration::from_secs(15), f(attempt)).await {
            Ok(Ok(v)) => {
                let mut l = ledger.lock().unwrap();
                l.acked += 1;
                l.retried += (attempt > 0) as usize;
                l.worst = l.worst.max(started.elapsed());
                return Ok(v);
            }
            Ok(Err(e)) => last = Some(e),
            Err(_) => last = Some(kube::Error::Service("timed out after 15s".into())),
        }
        tokio::time::sleep(Duration::from_millis(300 * (attempt as u64 + 1))).await;
    }
    ledger.lock().unwrap().failed += 1;
    Err(last.unwrap())
}

fn is_code(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

/// Creates, updates and deletes ConfigMaps, remembering what was acknowledged.
async fn ledger_writer(client: Client, ns: String, ledger: Arc<Mutex<Ledger>>, stop: Arc<std::sync::atomic::AtomicBool>) {
    let api: Api<ConfigMap> = Api::namespaced(client, &ns);
    let mut n = 0u64;
    let mut live: Vec<String> = Vec::new();
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        n += 1;
        let name = format!("ledger-{n}");
        let value = format!("v{n}");
        let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": name}, "data": {"value": value}})).unwrap();
        // A retried create that finds its object already there was committed
        // the first time (the answer was lost): acknowledged if it is ours.
        let r = with_retries(&ledger, |attempt| {
            let (api, cm, name, value) = (api.clone(), cm.clone(), name.clone(), value.clone());
            async move {
                match api.create(&PostParams::default(), &cm).await {
                    Err(e) if attempt > 0 && is_code(&e, 409) => {
                        let got = api.get(&name).await?;
                        if got.data.and_then(|d| d.get("value").cloned()) == Some(value) {
                            Ok(())
                        } else {
                            Err(e)
                        }
                    }
                    other => other.map(|_| ()),
                }
            }
        })
        .await;
        {
            let mut l = ledger.lock().unwrap();
            match r {
                Ok(()) => {
                    l.objects.insert(name.clone(), Some(value));
                    live.push(name);
                }
                Err(_) => {
                    l.uncertain.insert(name, vec![None, Some(value)]);
                }
            }
        }
        // Every 4th round, update an older object; every 6th, delete one.
        if n % 4 == 0 && !live.is_empty() {
            let target = live[(n as usize * 7) % live.len()].clone();
            let value = format!("u{n}");
            let r = with_retries(&ledger, |_| {
                let (api, target, value) = (api.clone(), target.clone(), value.clone());
                async move { api.patch(&target, &PatchParams::default(), &Patch::Merge(json!({"data": {"value": value}}))).await.map(|_| ()) }
            })
            .await;
            let mut l = ledger.lock().unwrap();
            let before = l.objects.get(&target).cloned().flatten();
            match r {
                Ok(()) => {
                    l.objects.insert(target, Some(value));
                }
                Err(_) => {
                    l.objects.remove(&target);
                    l.uncertain.insert(target.clone(), vec![before, Some(value)]);
                    live.retain(|x| *x != target);
                }
            }
        }
        if n % 6 == 0 && live.len() > 1 {
            let target = live.remove(0);
            let r = with_retries(&ledger, |attempt| {
                let (api, target) = (api.clone(), target.clone());
                async move {
                    match api.delete(&target, &DeleteParams::default()).await {
                        // A retried delete that finds nothing: the first one took.
                        Err(e) if attempt > 0 && is_code(&e, 404) => Ok(()),
                        other => other.map(|_| ()),
                    }
                }
            })
            .await;
            let mut l = ledger.lock().unwrap();
            let before = l.objects.get(&target).cloned().flatten();
            match r {
                Ok(()) => {
                    l.objects.insert(target, None);
                }
                Err(_) => {
                    l.objects.remove(&target);
                    l.uncertain.insert(target, vec![before, None]);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Follows the namespace's pods, resuming from the last resourceVersion
/// (re-listing on 410), and records every node each pod was bound to.
async fn pod_recorder(client: Client, ns: String, h: Arc<Mutex<PodHistory>>) {
    let api: Api<Pod> = Api::namespaced(client, &ns);
    let mut rv: Option<String> = None;
    loop {
        if rv.is_none() {
            match api.list(&ListParams::default()).await {
                Ok(l) => {
                    let mut h = h.lock().unwrap();
                    for p in &l.items {
                        note_binding(&mut h, p);
                    }
                    rv = l.metadata.resource_version;
                }
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            }
        }
        let from = rv.clone().unwrap_or_default();
        let Ok(stream) = api.watch(&WatchParams::default().timeout(60), &from).await else {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        futures::pin_mut!(stream);
        loop {
            match stream.try_next().await {
                Ok(Some(WatchEvent::Added(p) | WatchEvent::Modified(p) | WatchEvent::Deleted(p))) => {
                    rv = p.metadata.resource_version.clone();
                    note_binding(&mut h.lock().unwrap(), &p);
                }
                Ok(Some(WatchEvent::Error(e))) if e.code == 410 => {
                    h.lock().unwrap().relists += 1;
                    rv = None;
                    break;
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
    }
}

fn note_binding(h: &mut PodHistory, p: &Pod) {
    let Some(node) = p.spec.as_ref().and_then(|s| s.node_name.clone()).filter(|n| !n.is_empty()) else { return };
    let seen = h.nodes.entry(p.metadata.name.clone().unwrap_or_default()).or_default();
    if seen.last() != Some(&node) {
        seen.push(node);
    }
}

/// The running component (controller-N / scheduler-N) holding `lease`:
/// its log names the identity it acquired the lease with.
async fn leader_of(client: &Client, spec: &Spec, sup: &Supervisor, lease: &str, kind: &str) -> Option<String> {
    let l = Api::<Lease>::namespaced(client.clone(), "kube-system").get(lease).await.ok()?;
    let holder = l.spec?.holder_identity.filter(|h| !h.is_empty())?;
    spec.control_plane()
        .into_iter()
        .filter(|c| c.starts_with(kind) && sup.pid(c).is_some())
        .find(|c| {
            let log = std::fs::read_to_string(spec.log(c)).unwrap_or_default();
            crate::cluster::supervise::since_last_start(&log).lines().any(|l| l.contains("acquired lease") && l.contains(lease) && l.contains(&holder))
        })
}

async fn chaos(o: &Options, spec: &Spec, sup: &Supervisor, seed: u64) -> anyhow::Result<()> {
    let client = machinery::client::connect_as("chaos", None, Some(&spec.admin_kubeconfig())).await?;
    let ns = o.namespace.clone();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    if namespaces.get_opt(&ns).await?.is_some() {
        bail!("namespace {ns} exists (a previous run?): delete it or pass --namespace");
    }
    namespaces.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": ns}}))?).await?;
    // The ServiceAccount admission plugin wants the namespace's default account first.
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
    let t = Instant::now();
    while sas.get_opt("default").await?.is_none() {
        if t.elapsed() > Duration::from_secs(60) {
            bail!("no default ServiceAccount in {ns} after 60s (is the controller manager running?)");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    // The demo's backend Deployment (busybox httpd, readiness probe), renamed.
    let mut deploy = crate::cluster::demo::backend(3)["items"][1].clone();
    deploy["metadata"]["name"] = json!("chaos");
    deploy["metadata"]["labels"] = json!({"app": "chaos"});
    deploy["spec"]["selector"] = json!({"matchLabels": {"app": "chaos"}});
    deploy["spec"]["template"]["metadata"]["labels"] = json!({"app": "chaos"});
    deployments.create(&PostParams::default(), &serde_json::from_value(deploy)?).await?;

    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let pods = Arc::new(Mutex::new(PodHistory::default()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = tokio::spawn(ledger_writer(client.clone(), ns.clone(), ledger.clone(), stop.clone()));
    let recorder = tokio::spawn(pod_recorder(client.clone(), ns.clone(), pods.clone()));

    let mut rng = Rng(seed.max(1));
    let mut log = Log { start: Instant::now(), lines: Vec::new() };
    log.say(format!("workload: Deployment {ns}/chaos (3 replicas, rescaled), a ledger of ConfigMap writes"));
    let mut pending: Vec<(Instant, Pending)> = Vec::new();
    // Acknowledged replica counts (the last one is what must hold).
    let mut replicas: Vec<i32> = vec![3];
    let mut uncertain_replicas: Vec<i32> = Vec::new();
    let mut next_fault = Instant::now() + rng.duration(o.interval / 2, o.interval * 3 / 2);
    let mut next_scale = Instant::now() + Duration::from_secs(5);
    let end = Instant::now() + o.duration;
    let (mut faults, mut restarts) = (0, 0);
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = Instant::now();
        // Due restarts and thaws.
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut pending).into_iter().partition(|(t, _)| *t <= now);
        pending = later;
        for (_, p) in due {
            match p {
                Pending::Restart(c) => match sup.restart(&c) {
                    Ok(pid) => log.say(format!("restart {c} (pid {pid})")),
                    Err(e) => log.say(format!("restart {c}: {e:#}")),
                },
                Pending::Thaw(c, pid) => {
                    let _ = kill(Pid::from_raw(pid as i32), Signal::SIGCONT);
                    log.say(format!("SIGCONT {c}"));
                }
            }
        }
        // Components that exited by themselves (a leader that lost its lease
        // does) are started again.
        let scheduled: BTreeSet<String> = pending.iter().filter_map(|(_, p)| if let Pending::Restart(c) = p { Some(c.clone()) } else { None }).collect();
        for c in spec.control_plane() {
            if sup.pid(&c).is_none() && !scheduled.contains(&c) {
                let text = std::fs::read_to_string(spec.log(&c)).unwrap_or_default();
                let why = if crate::cluster::supervise::since_last_start(&text).contains("leaderelection lost") { "exited: lost its lease" } else { "exited" };
                match sup.restart(&c) {
                    Ok(pid) => log.say(format!("restart {c} ({why}; pid {pid})")),
                    Err(e) => log.say(format!("restart {c}: {e:#}")),
                }
                restarts += 1;
            }
        }
        if now >= next_scale {
            next_scale = now + Duration::from_secs(6);
            let r = 1 + rng.below(4) as i32;
            let res = with_retries(&ledger, |_| {
                let d = deployments.clone();
                async move { d.patch("chaos", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": r}}))).await.map(|_| ()) }
            })
            .await;
            match res {
                Ok(()) => {
                    replicas.push(r);
                    uncertain_replicas.clear();
                    log.say(format!("scale chaos to {r}"));
                }
                Err(e) => {
                    uncertain_replicas.push(r);
                    log.say(format!("scale chaos to {r}: failed ({e}); either count may hold"));
                }
            }
        }
        if now < next_fault {
            continue;
        }
        next_fault = now + rng.duration(o.interval / 2, o.interval * 3 / 2);
        // What is out right now (killed or paused), by kind.
        let out: BTreeSet<String> = pending.iter().map(|(_, p)| match p { Pending::Restart(c) | Pending::Thaw(c, _) => c.clone() }).collect();
        let kind_out = |k: &str| out.iter().any(|c| c.starts_with(k));
        let mut candidates: Vec<&str> = vec!["kill-leader", "pause-leader", "pause-any"];
        if !kind_out("apiserver") {
            candidates.push("kill-apiserver");
        }
        if !kind_out("etcd") {
            candidates.push("kill-etcd");
        }
        let what = *rng.pick(&candidates).unwrap();
        let running = |k: &str| -> Vec<String> { spec.control_plane().into_iter().filter(|c| c.starts_with(k) && !out.contains(c) && sup.pid(c).is_some()).collect() };
        let target = match what {
            "kill-apiserver" => rng.pick(&running("apiserver")).cloned(),
            "kill-etcd" => rng.pick(&running("etcd")).cloned(),
            "kill-leader" | "pause-leader" => {
                let (lease, kind) = if rng.below(2) == 0 { ("kube-scheduler", "scheduler") } else { ("kube-controller-manager", "controller") };
                let l = leader_of(&client, spec, sup, lease, kind).await;
                l.filter(|c| !out.contains(c))
            }
            _ => {
                let mut any: Vec<String> = Vec::new();
                for k in ["controller", "scheduler"] {
                    any.extend(running(k));
                }
                if !kind_out("apiserver") {
                    any.extend(running("apiserver"));
                }
                if !kind_out("etcd") {
                    any.extend(running("etcd"));
                }
                rng.pick(&any).cloned()
            }
        };
        let Some(target) = target else { continue };
        let Some(pid) = sup.pid(&target) else { continue };
        faults += 1;
        if what.starts_with("kill") {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            let back = rng.duration(Duration::from_secs(2), Duration::from_secs(6));
            log.say(format!("kill -9 {target}{} (back in {:.0?})", if what == "kill-leader" { " (the leader)" } else { "" }, back));
            pending.push((Instant::now() + back, Pending::Restart(target)));
        } else {
            // Up to 20 s: longer than the 15 s lease, now and then.
            let for_ = rng.duration(Duration::from_secs(2), Duration::from_secs(20));
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGSTOP);
            log.say(format!("SIGSTOP {target}{} for {:.0?}", if what == "pause-leader" { " (the leader)" } else { "" }, for_));
            pending.push((Instant::now() + for_, Pending::Thaw(target, pid)));
        }
    }

    // Heal: thaw and restart everything, wait until all is healthy.
    for (_, p) in std::mem::take(&mut pending) {
        match p {
            Pending::Thaw(c, pid) => {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGCONT);
                log.say(format!("SIGCONT {c} (end of run)"));
            }
            Pending::Restart(c) => {
                if sup.pid(&c).is_none() {
                    sup.restart(&c)?;
                    log.say(format!("restart {c} (end of run)"));
                }
            }
        }
    }
    log.say("faults stopped; healing".into());
    // A thawed leader that lost its lease exits at its next renew tick (2 s).
    tokio::time::sleep(Duration::from_secs(3)).await;
    for c in spec.control_plane() {
        if sup.pid(&c).is_none() {
            sup.restart(&c)?;
            restarts += 1;
            log.say(format!("restart {c} (exited)"));
        }
    }
    for c in spec.control_plane() {
        tokio::task::block_in_place(|| crate::cluster::wait::wait_component_healthy(spec, sup, &c))?;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = writer.await;
    log.say("all components healthy; workload stopped; waiting for the Deployment to converge".into());

    // Invariant 1: pods = replicas.
    let pods_api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let converge = Instant::now();
    let (want, running) = loop {
        let d = deployments.get("chaos").await?;
        let want = d.spec.and_then(|s| s.replicas).unwrap_or(1);
        let l = pods_api.list(&ListParams::default()).await?;
        let active: Vec<&Pod> = l.items.iter().filter(|p| p.metadata.deletion_timestamp.is_none()).collect();
        let running = active.iter().filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")).count();
        let st = d.status.unwrap_or_default();
        if running as i32 == want && active.len() as i32 == want && l.items.len() as i32 == want && st.ready_replicas.unwrap_or(0) == want {
            break (want, running);
        }
        if converge.elapsed() > Duration::from_secs(180) {
            break (want, running);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    recorder.abort();
    let mut failures = Vec::new();
    let last = *replicas.last().unwrap();
    let acceptable: Vec<i32> = std::iter::once(last).chain(uncertain_replicas.iter().copied()).collect();
    let ok1 = running as i32 == want && acceptable.contains(&want);
    let line1 = format!("pods = replicas: {running} Running pods for {want} replicas (last acknowledged scale: {last}), converged in {:.1?}", converge.elapsed());
    if !ok1 {
        failures.push(line1.clone());
    }

    // Invariant 2: no double binding.
    let h = pods.lock().unwrap();
    let twice: Vec<String> = h.nodes.iter().filter(|(_, v)| v.len() > 1).map(|(p, v)| format!("{p}: {}", v.join(" then "))).collect();
    let events = Api::<Event>::namespaced(client.clone(), &ns).list(&ListParams::default()).await?;
    let mut scheduled: BTreeMap<String, i32> = BTreeMap::new();
    for e in events.items.iter().filter(|e| e.reason.as_deref() == Some("Scheduled")) {
        *scheduled.entry(e.involved_object.name.clone().unwrap_or_default()).or_default() += e.count.unwrap_or(1);
    }
    let twice_events: Vec<String> = scheduled.iter().filter(|(_, n)| **n > 1).map(|(p, n)| format!("{p}: {n} Scheduled events")).collect();
    let ok2 = twice.is_empty() && twice_events.is_empty();
    let line2 = format!(
        "no double binding: {} pods bound, each to one node ({} Scheduled events{})",
        h.nodes.len(),
        scheduled.values().sum::<i32>(),
        if h.relists > 0 { format!("; the recorder re-listed {} time(s) after 410", h.relists) } else { String::new() }
    );
    if !ok2 {
        failures.push(format!("{line2}: {}", twice.iter().chain(&twice_events).cloned().collect::<Vec<_>>().join("; ")));
    }
    drop(h);

    // Invariant 3: no lost objects.
    let l = ledger.lock().unwrap();
    let have: BTreeMap<String, String> = Api::<ConfigMap>::namespaced(client.clone(), &ns)
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter_map(|c| Some((c.metadata.name?, c.data.and_then(|d| d.get("value").cloned()).unwrap_or_default())))
        .filter(|(n, _)| n.starts_with("ledger-"))
        .collect();
    let mut lost = Vec::new();
    let (mut present, mut deleted) = (0, 0);
    for (name, want) in &l.objects {
        match (want, have.get(name)) {
            (Some(v), Some(got)) if got == v => present += 1,
            (None, None) => deleted += 1,
            (w, g) => lost.push(format!("{name}: acknowledged {w:?}, found {g:?}")),
        }
    }
    for (name, options) in &l.uncertain {
        let got = have.get(name).cloned();
        if !options.contains(&got) {
            lost.push(format!("{name}: unknown outcome, but found {got:?}, none of {options:?}"));
        }
    }
    let unexpected: Vec<&String> = have.keys().filter(|n| !l.objects.contains_key(*n) && !l.uncertain.contains_key(*n)).collect();
    for n in unexpected {
        lost.push(format!("{n}: present but never written"));
    }
    let ok3 = lost.is_empty();
    let line3 = format!("no lost objects: {present} acknowledged ConfigMaps hold their last acknowledged value, {deleted} acknowledged deletions hold ({} writes with an unknown outcome checked against both values)", l.uncertain.len());
    if !ok3 {
        failures.push(format!("{line3}: {}", lost.join("; ")));
    }
    println!("\nWhat happened: {faults} faults, {restarts} component restart(s) after an exit, {} scale(s).", replicas.len() - 1);
    println!(
        "Writes: {} acknowledged, {} needed a retry, {} failed after 3 attempts; slowest acknowledged write {:.2?}.",
        l.acked, l.retried, l.failed, l.worst
    );
    println!("Invariants:");
    for (ok, line) in [(ok1, line1), (ok2, line2), (ok3, line3)] {
        println!("  {} {line}", if ok { "✓" } else { "✗" });
    }
    drop(l);
    let _ = namespaces.delete(&ns, &DeleteParams::default()).await;
    if !failures.is_empty() {
        bail!("invariants broken (seed {seed}):\n  {}", failures.join("\n  "));
    }
    Ok(())
}
