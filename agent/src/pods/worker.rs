//! The pod worker: one task per pod, driving the runtime towards the pod's
//! spec (the kubelet's `podWorkers` + `SyncPod`).
//!
//! Each pass ("sync") is level-triggered: it looks at what the runtime has
//! (sandboxes and containers labelled with the pod's UID) and at the pod
//! spec, does the next steps, then computes the pod status from the runtime
//! again and posts it if it changed. A worker wakes on a pod update (not on
//! the watch's echo of the status it posted itself), on a probe result
//! change, or on a timer (a second after a start, the next back-off expiry
//! or `--sync-frequency`). Workers share nothing but the CRI connection, so a
//! slow or failing pod never holds up another.
//!
//! One sync, in order:
//! 1. pod being deleted → stop containers with the grace period, stop and
//!    remove the sandbox, delete the pod object with grace 0, finish;
//! 2. no ready sandbox → (kill what is left of the old one) RunPodSandbox;
//! 3. init containers, in order, each to completion before the next;
//! 4. then every regular container: start what is missing, restart what
//!    exited (per `restartPolicy`, with crash-loop back-off), kill what
//!    failed its liveness probe;
//! 5. status.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus, HostIP, Pod, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DeleteParams, Preconditions};
use kube::{Api, Client};
use machinery::events::{EventRecorder, EventType};
use proto::runtime::v1 as cri;
use tokio::sync::{watch, Notify};

use super::config;
use crate::labels::{CONTAINER_NAME_LABEL, INIT_CONTAINER_LABEL, POD_UID_LABEL};
use crate::pod_status::{pod_conditions, qos_class, status_changed};
use crate::probes::{self, ProbeResults};
use crate::runtime::cri::CriClient;

/// Back-off settings.
#[derive(Clone, Debug)]
pub struct Backoff {
    pub crash_base: Duration,
    pub crash_max: Duration,
    pub image_base: Duration,
    pub image_max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { crash_base: Duration::from_secs(10), crash_max: Duration::from_secs(300), image_base: Duration::from_secs(10), image_max: Duration::from_secs(300) }
    }
}

/// What all pod workers of a node share.
pub struct PodContext {
    pub cri: CriClient,
    pub client: Client,
    pub node_name: String,
    pub host_ip: String,
    /// `containerd` (from CRI Version): container IDs are `containerd://<id>`.
    pub runtime_name: String,
    pub log_root: PathBuf,
    pub recorder: EventRecorder,
    pub backoff: Backoff,
    pub sync_frequency: Duration,
    /// Pods starting at once (`--max-parallel-pod-starts`): starting a pod
    /// (sandbox, CNI, runc, shim) is CPU-bound work in the runtime, so
    /// starting more pods than the machine has cores for only makes every
    /// one of them late; with a bound the first ones are Running early and
    /// the last no later. `None`: no bound, as the kubelet does.
    pub starts: Option<Arc<tokio::sync::Semaphore>>,
}

impl PodContext {
    fn event(&self, pod: &Pod, container: Option<&str>, init: bool, ty: EventType, reason: &str, message: &str) {
        let mut r = machinery::events::object_reference(pod);
        if let Some(c) = container {
            r.field_path = Some(if init { format!("spec.initContainers{{{c}}}") } else { format!("spec.containers{{{c}}}") });
        }
        self.recorder.event_for(r, ty, reason, message);
    }
}

/// Per container name: back-offs and the last error to show as "waiting".
#[derive(Default)]
struct ContainerMemory {
    crash_backoff: Option<Duration>,
    image_backoff: Option<Duration>,
    image_retry_at: Option<Instant>,
    /// (reason, message) of the last failure to get the container going.
    waiting: Option<(String, String)>,
}

struct ProbeHandle {
    container_id: String,
    results: Arc<Mutex<ProbeResults>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ProbeHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// CRI view of one container attempt.
#[derive(Clone, Debug)]
struct Attempt {
    attempt: u32,
    status: cri::ContainerStatus,
}

impl Attempt {
    fn state(&self) -> cri::ContainerState {
        cri::ContainerState::try_from(self.status.state).unwrap_or(cri::ContainerState::ContainerUnknown)
    }
}

fn nanos_to_time(n: i64) -> Option<Time> {
    (n > 0).then(|| Time(DateTime::from_timestamp(n / 1_000_000_000, (n % 1_000_000_000) as u32).unwrap_or_default()))
}

/// Does `restartPolicy` restart a container that exited with `code`?
pub fn should_restart(policy: &str, code: i32) -> bool {
    match policy {
        "Never" => false,
        "OnFailure" => code != 0,
        _ => true,
    }
}

/// The pull policy, with Kubernetes' defaulting (`:latest` or no tag → Always).
pub fn pull_policy(c: &Container) -> String {
    if let Some(p) = &c.image_pull_policy {
        return p.clone();
    }
    let image = c.image.as_deref().unwrap_or("");
    let last = image.rsplit('/').next().unwrap_or("");
    let tagged = last.contains(':') && !last.ends_with(":latest");
    if image.contains('@') || tagged {
        "IfNotPresent".into()
    } else {
        "Always".into()
    }
}

/// How a sync ended.
pub enum Next {
    /// Look again after this long (or earlier, on an update).
    Wait(Duration),
    /// The pod is gone: the worker ends.
    Done,
}

pub struct Worker {
    ctx: Arc<PodContext>,
    pod: Arc<Pod>,
    uid: String,
    sandbox: Option<(String, String, u32)>, // (id, ip, attempt)
    memory: HashMap<String, ContainerMemory>,
    probes: HashMap<String, ProbeHandle>,
    notify: Arc<Notify>,
    last_posted: Option<PodStatus>,
    start_time: Option<Time>,
    wake: Option<Instant>,
}

impl Worker {
    pub fn new(ctx: Arc<PodContext>, pod: Arc<Pod>) -> Self {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let start_time = pod.status.as_ref().and_then(|s| s.start_time.clone());
        Self { ctx, pod, uid, sandbox: None, memory: HashMap::new(), probes: HashMap::new(), notify: Arc::new(Notify::new()), last_posted: None, start_time, wake: None }
    }

    /// Runs until the pod is deleted (from the API, or through `None` on `rx`).
    pub async fn run(mut self, mut rx: watch::Receiver<Option<Arc<Pod>>>) {
        let (mut sync, mut deadline) = (true, Instant::now());
        loop {
            if sync {
                let wait = match self.sync().await {
                    Ok(Next::Done) => return,
                    Ok(Next::Wait(d)) => d,
                    Err(e) => {
                        tracing::warn!(pod = self.name(), error = %format!("{e:#}"), "pod sync failed");
                        Duration::from_secs(1)
                    }
                };
                deadline = Instant::now() + wait;
            }
            sync = true;
            tokio::select! {
                changed = rx.changed() => {
                    let latest = rx.borrow_and_update().clone();
                    match (changed, latest) {
                        (Ok(()), Some(p)) => {
                            // The watch echoes our own status update: nothing
                            // for the runtime to do, keep the timer.
                            sync = !self.is_echo(&p);
                            self.pod = p;
                        }
                        _ => {
                            // The pod object is gone (force-deleted): clean up the runtime.
                            if let Err(e) = self.kill_pod(Duration::from_secs(2)).await {
                                tracing::warn!(pod = self.name(), error = %format!("{e:#}"), "cleaning up deleted pod");
                            }
                            return;
                        }
                    }
                }
                _ = self.notify.notified() => {}
                _ = tokio::time::sleep_until(deadline.into()) => {}
            }
        }
    }

    /// Is `new` the pod as we last saw it plus the status we last posted
    /// (as the API stores it: times to the second)?
    fn is_echo(&self, new: &Pod) -> bool {
        let Some(posted) = &self.last_posted else { return false };
        let Ok(stored) = serde_json::to_value(posted).and_then(serde_json::from_value::<PodStatus>) else { return false };
        new.spec == self.pod.spec
            && new.metadata.deletion_timestamp == self.pod.metadata.deletion_timestamp
            && new.metadata.labels == self.pod.metadata.labels
            && new.status.as_ref().is_some_and(|s| !status_changed(Some(&stored), s))
    }

    fn name(&self) -> String {
        format!("{}/{}", self.pod.metadata.namespace.as_deref().unwrap_or(""), self.pod.metadata.name.as_deref().unwrap_or(""))
    }

    fn api(&self) -> Api<Pod> {
        Api::namespaced(self.ctx.client.clone(), self.pod.metadata.namespace.as_deref().unwrap_or("default"))
    }

    fn wake_at(&mut self, at: Instant) {
        self.wake = Some(self.wake.map_or(at, |w| w.min(at)));
    }

    /// One pass; see the module docs.
    pub async fn sync(&mut self) -> Result<Next> {
        self.wake = None;
        if self.pod.metadata.deletion_timestamp.is_some() {
            let grace = self
                .pod
                .metadata
                .deletion_grace_period_seconds
                .or(self.pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds))
                .unwrap_or(30)
                .max(0);
            self.kill_pod(Duration::from_secs(grace as u64)).await?;
            let dp = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions { uid: Some(self.uid.clone()), resource_version: None }),
                ..Default::default()
            };
            match self.api().delete(self.pod.metadata.name.as_deref().unwrap_or(""), &dp).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
                Err(e) => return Err(e).context("deleting the pod object"),
            }
            return Ok(Next::Done);
        }
        let phase = self.pod.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default();
        let terminal = matches!(phase.as_str(), "Succeeded" | "Failed");
        // The runtime's containers, if this pass changed nothing there.
        let mut current = None;
        if !terminal {
            // A pod with no sandbox yet is starting: wait for a start slot.
            let _slot = match (&self.ctx.starts, &self.sandbox) {
                (Some(sem), None) => sem.clone().acquire_owned().await.ok(),
                _ => None,
            };
            self.ensure_sandbox().await?;
            current = self.sync_containers().await?;
        }
        let status = self.compute_status(current).await?;
        let unchanged_api = !status_changed(self.pod.status.as_ref(), &status);
        let unchanged_posted = self.last_posted.as_ref().is_some_and(|p| !status_changed(Some(p), &status));
        if !unchanged_api && !unchanged_posted {
            let name = self.pod.metadata.name.clone().unwrap_or_default();
            super::patch_status(&self.api(), &name, &status).await?;
            self.last_posted = Some(status.clone());
        }
        if matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")) && !terminal {
            // Terminal: nothing will run again; free the sandbox (containers stay for logs).
            self.probes.clear();
            if let Some((id, _, _)) = &self.sandbox {
                let mut c = self.ctx.cri.clone();
                let _ = c.runtime.stop_pod_sandbox(cri::StopPodSandboxRequest { pod_sandbox_id: id.clone() }).await;
            }
        }
        let now = Instant::now();
        let wait = self.wake.map(|w| w.saturating_duration_since(now)).unwrap_or(self.ctx.sync_frequency).min(self.ctx.sync_frequency);
        Ok(Next::Wait(wait.max(Duration::from_millis(50))))
    }

    async fn sandboxes(&self) -> Result<Vec<cri::PodSandbox>> {
        let mut c = self.ctx.cri.clone();
        let filter = cri::PodSandboxFilter { label_selector: [(POD_UID_LABEL.to_string(), self.uid.clone())].into(), ..Default::default() };
        let mut items = c.runtime.list_pod_sandbox(cri::ListPodSandboxRequest { filter: Some(filter) }).await.context("ListPodSandbox")?.into_inner().items;
        items.sort_by_key(|s| s.created_at);
        Ok(items)
    }

    /// Every container attempt of this pod (all sandboxes), by container name, oldest first.
    async fn attempts(&self) -> Result<HashMap<String, Vec<Attempt>>> {
        let mut c = self.ctx.cri.clone();
        let mut filter = cri::ContainerFilter { label_selector: [(POD_UID_LABEL.to_string(), self.uid.clone())].into(), ..Default::default() };
        if let Some((id, _, _)) = &self.sandbox {
            filter.pod_sandbox_id = id.clone();
        }
        let list = c.runtime.list_containers(cri::ListContainersRequest { filter: Some(filter) }).await.context("ListContainers")?.into_inner().containers;
        let mut out: HashMap<String, Vec<Attempt>> = HashMap::new();
        for ctr in list {
            let name = ctr.labels.get(CONTAINER_NAME_LABEL).cloned().unwrap_or_default();
            let attempt = ctr.metadata.as_ref().map(|m| m.attempt).unwrap_or(0);
            let Ok(resp) = c.runtime.container_status(cri::ContainerStatusRequest { container_id: ctr.id.clone(), verbose: false }).await else { continue };
            if let Some(status) = resp.into_inner().status {
                out.entry(name).or_default().push(Attempt { attempt, status });
            }
        }
        for v in out.values_mut() {
            v.sort_by_key(|a| (a.attempt, a.status.created_at));
        }
        Ok(out)
    }

    async fn ensure_sandbox(&mut self) -> Result<()> {
        let sandboxes = self.sandboxes().await?;
        let latest = sandboxes.last();
        let ready = latest.filter(|s| s.state == cri::PodSandboxState::SandboxReady as i32);
        if let Some(s) = ready {
            if self.sandbox.as_ref().map(|x| &x.0) != Some(&s.id) {
                let mut c = self.ctx.cri.clone();
                let st = c.runtime.pod_sandbox_status(cri::PodSandboxStatusRequest { pod_sandbox_id: s.id.clone(), verbose: false }).await?.into_inner();
                let ip = st.status.and_then(|s| s.network).map(|n| n.ip).unwrap_or_default();
                self.sandbox = Some((s.id.clone(), ip, s.metadata.as_ref().map(|m| m.attempt).unwrap_or(0)));
            }
            return Ok(());
        }
        // No ready sandbox: kill what the old one left, then a new attempt.
        let attempt = latest.and_then(|s| s.metadata.as_ref()).map(|m| m.attempt + 1).unwrap_or(0);
        if latest.is_some() {
            self.ctx.event(&self.pod, None, false, EventType::Normal, "SandboxChanged", "Pod sandbox changed, it will be killed and re-created.");
            self.kill_pod(Duration::from_secs(2)).await?;
        }
        let config = config::sandbox_config(&self.pod, attempt, &self.ctx.log_root);
        std::fs::create_dir_all(&config.log_directory).with_context(|| format!("creating {}", config.log_directory))?;
        let mut c = self.ctx.cri.clone();
        let id = match c.runtime.run_pod_sandbox(cri::RunPodSandboxRequest { config: Some(config), runtime_handler: String::new() }).await {
            Ok(r) => r.into_inner().pod_sandbox_id,
            Err(e) => {
                let msg = format!("Failed to create pod sandbox: {}", e.message());
                self.ctx.event(&self.pod, None, false, EventType::Warning, "FailedCreatePodSandBox", &msg);
                anyhow::bail!(msg);
            }
        };
        let st = c.runtime.pod_sandbox_status(cri::PodSandboxStatusRequest { pod_sandbox_id: id.clone(), verbose: false }).await?.into_inner();
        let ip = st.status.and_then(|s| s.network).map(|n| n.ip).unwrap_or_default();
        self.sandbox = Some((id, ip, attempt));
        self.probes.clear();
        Ok(())
    }

    /// Returns the containers it saw if it did nothing to them (so the
    /// status can be computed without asking the runtime again).
    async fn sync_containers(&mut self) -> Result<Option<HashMap<String, Vec<Attempt>>>> {
        let spec = self.pod.spec.clone().unwrap_or_default();
        let policy = spec.restart_policy.clone().unwrap_or_else(|| "Always".into());
        let attempts = self.attempts().await?;
        // Init containers: one at a time, in order, each to success.
        for c in spec.init_containers.iter().flatten() {
            let latest = attempts.get(&c.name).and_then(|v| v.last()).cloned();
            match latest {
                Some(a) if a.state() == cri::ContainerState::ContainerExited && a.status.exit_code == 0 => continue,
                Some(a) if a.state() == cri::ContainerState::ContainerRunning => return Ok(Some(attempts)),
                Some(a) if a.state() == cri::ContainerState::ContainerExited => {
                    // A failed init container: the pod fails (Never) or it runs again.
                    if policy != "Never" {
                        self.restart_with_backoff(c, true, &a).await;
                    }
                    return Ok(None);
                }
                Some(a) if a.state() == cri::ContainerState::ContainerCreated => {
                    self.start_existing(c, true, &a).await;
                    return Ok(None);
                }
                _ => {
                    self.start_container(c, true, 0).await;
                    return Ok(None);
                }
            }
        }
        let mut acted = false;
        for c in &spec.containers {
            let latest = attempts.get(&c.name).and_then(|v| v.last()).cloned();
            match latest {
                None => {
                    self.start_container(c, false, 0).await;
                    acted = true;
                }
                Some(a) => match a.state() {
                    cri::ContainerState::ContainerRunning => {
                        self.ensure_probes(c, &a.status.id);
                        let failed = self.probes.get(&c.name).and_then(|p| p.results.lock().unwrap().failed.clone());
                        if let Some(msg) = failed {
                            self.ctx.event(&self.pod, Some(&c.name), false, EventType::Normal, "Killing", &msg);
                            let grace = spec.termination_grace_period_seconds.unwrap_or(30).max(0);
                            self.stop_container(&a.status.id, grace).await;
                            self.probes.remove(&c.name);
                            self.notify.notify_one();
                            acted = true;
                        }
                    }
                    cri::ContainerState::ContainerExited => {
                        self.probes.remove(&c.name);
                        if should_restart(&policy, a.status.exit_code) {
                            self.restart_with_backoff(c, false, &a).await;
                            acted = true;
                        }
                    }
                    cri::ContainerState::ContainerCreated => {
                        self.start_existing(c, false, &a).await;
                        acted = true;
                    }
                    _ => {}
                },
            }
        }
        // Ephemeral containers (`kubectl debug`): started once, in the
        // running pod's sandbox, never restarted.
        for (c, target) in ephemeral_containers(&spec) {
            if attempts.get(&c.name).is_none_or(|v| v.is_empty()) {
                let target_id = target.and_then(|t| attempts.get(&t)?.iter().rev().find(|a| a.state() == cri::ContainerState::ContainerRunning).map(|a| a.status.id.clone()));
                self.start_ephemeral(&c, target_id).await;
                acted = true;
            }
        }
        Ok((!acted).then_some(attempts))
    }

    /// Starts an ephemeral container; with a target, in the target
    /// container's process namespace (CRI `NamespaceMode::Target`), so the
    /// debugger sees its processes.
    async fn start_ephemeral(&mut self, c: &Container, target_id: Option<String>) {
        self.start_container_in(c, false, 0, target_id.as_deref()).await;
    }

    fn ensure_probes(&mut self, c: &Container, container_id: &str) {
        if self.probes.get(&c.name).is_some_and(|p| p.container_id == container_id) {
            return;
        }
        let results = Arc::new(Mutex::new(ProbeResults::default()));
        let pod_ip = self.sandbox.as_ref().map(|s| s.1.clone()).unwrap_or_default();
        let (ctx, pod, name) = (self.ctx.clone(), self.pod.clone(), c.name.clone());
        let report: probes::Reporter = Arc::new(move |kind: &str, msg: &str| {
            ctx.event(&pod, Some(&name), false, EventType::Warning, "Unhealthy", &format!("{kind} probe failed: {msg}"));
        });
        let task = tokio::spawn(probes::run_container_probes(self.ctx.cri.clone(), container_id.to_string(), c.clone(), pod_ip, results.clone(), self.notify.clone(), report));
        self.probes.insert(c.name.clone(), ProbeHandle { container_id: container_id.to_string(), results, task });
    }

    /// The restart of an exited container, after its crash-loop back-off.
    async fn restart_with_backoff(&mut self, c: &Container, init: bool, last: &Attempt) {
        let finished = nanos_to_time(last.status.finished_at).map(|t| t.0).unwrap_or_else(Utc::now);
        let mem = self.memory.entry(c.name.clone()).or_default();
        if let Some(b) = mem.crash_backoff {
            let due = finished + chrono::Duration::from_std(b).unwrap_or_default();
            let now = Utc::now();
            if now < due {
                let left = (due - now).to_std().unwrap_or_default();
                let msg = format!("back-off {} restarting failed container={} pod={}_{}({})", fmt_backoff(b), c.name, self.pod.metadata.name.as_deref().unwrap_or(""), self.pod.metadata.namespace.as_deref().unwrap_or(""), self.uid);
                if mem.waiting.as_ref().map(|w| w.0.as_str()) != Some("CrashLoopBackOff") {
                    self.ctx.event(&self.pod, Some(&c.name), init, EventType::Warning, "BackOff", "Back-off restarting failed container");
                }
                mem.waiting = Some(("CrashLoopBackOff".into(), msg));
                self.wake_at(Instant::now() + left);
                return;
            }
        }
        let next = mem.crash_backoff.map(|b| (b * 2).min(self.ctx.backoff.crash_max)).unwrap_or(self.ctx.backoff.crash_base);
        mem.crash_backoff = Some(next);
        self.start_container(c, init, last.attempt + 1).await;
    }

    async fn start_existing(&mut self, c: &Container, init: bool, a: &Attempt) {
        let mut cli = self.ctx.cri.clone();
        match cli.runtime.start_container(cri::StartContainerRequest { container_id: a.status.id.clone() }).await {
            Ok(_) => self.ctx.event(&self.pod, Some(&c.name), init, EventType::Normal, "Started", &format!("Started container {}", c.name)),
            Err(e) => self.fail(c, init, "RunContainerError", e.message()),
        }
    }

    fn fail(&mut self, c: &Container, init: bool, reason: &str, message: &str) {
        self.ctx.event(&self.pod, Some(&c.name), init, EventType::Warning, "Failed", &format!("Error: {message}"));
        self.memory.entry(c.name.clone()).or_default().waiting = Some((reason.into(), message.into()));
        self.wake_at(Instant::now() + Duration::from_secs(2));
    }

    /// Pulls the image if the policy says so. Errors are (reason, message).
    async fn ensure_image(&mut self, c: &Container, init: bool) -> std::result::Result<(), (String, String)> {
        let image = c.image.clone().unwrap_or_default();
        let policy = pull_policy(c);
        let mut cli = self.ctx.cri.clone();
        let mem = self.memory.entry(c.name.clone()).or_default();
        if let Some(at) = mem.image_retry_at {
            if Instant::now() < at {
                let msg = format!("Back-off pulling image \"{image}\"");
                self.ctx.event(&self.pod, Some(&c.name), init, EventType::Normal, "BackOff", &msg);
                self.wake = Some(self.wake.map_or(at, |w| w.min(at)));
                return Err(("ImagePullBackOff".into(), msg));
            }
        }
        let present = match cli.image_present(&image).await {
            Ok(p) => p,
            Err(e) => return Err(("ErrImagePull".into(), format!("{e:#}"))),
        };
        if policy == "Never" {
            if present {
                return Ok(());
            }
            let msg = format!("Container image \"{image}\" is not present with pull policy of Never");
            self.ctx.event(&self.pod, Some(&c.name), init, EventType::Warning, "ErrImageNeverPull", &msg);
            return Err(("ErrImageNeverPull".into(), msg));
        }
        if policy == "IfNotPresent" && present {
            self.ctx.event(&self.pod, Some(&c.name), init, EventType::Normal, "Pulled", &format!("Container image \"{image}\" already present on machine"));
            return Ok(());
        }
        self.ctx.event(&self.pod, Some(&c.name), init, EventType::Normal, "Pulling", &format!("Pulling image \"{image}\""));
        let started = Instant::now();
        let req = cri::PullImageRequest { image: Some(cri::ImageSpec { image: image.clone(), ..Default::default() }), auth: None, sandbox_config: None };
        match cli.image.pull_image(req).await {
            Ok(_) => {
                let mem = self.memory.entry(c.name.clone()).or_default();
                mem.image_backoff = None;
                mem.image_retry_at = None;
                self.ctx.event(&self.pod, Some(&c.name), init, EventType::Normal, "Pulled", &format!("Successfully pulled image \"{image}\" in {:?}", started.elapsed()));
                Ok(())
            }
            Err(e) => {
                let msg = format!("Failed to pull image \"{image}\": {}", e.message());
                self.ctx.event(&self.pod, Some(&c.name), init, EventType::Warning, "Failed", &msg);
                self.ctx.event(&self.pod, Some(&c.name), init, EventType::Warning, "Failed", "Error: ErrImagePull");
                let (base, max) = (self.ctx.backoff.image_base, self.ctx.backoff.image_max);
                let mem = self.memory.entry(c.name.clone()).or_default();
                let b = mem.image_backoff.map(|b| (b * 2).min(max)).unwrap_or(base);
                mem.image_backoff = Some(b);
                mem.image_retry_at = Some(Instant::now() + b);
                self.wake_at(Instant::now() + b);
                Err(("ErrImagePull".into(), msg))
            }
        }
    }

    /// Image, CreateContainer, StartContainer for attempt `attempt` of `c`.
    async fn start_container(&mut self, c: &Container, init: bool, attempt: u32) {
        self.start_container_in(c, init, attempt, None).await
    }

    /// Creates and starts a container; `target`: the id of a container whose
    /// process namespace it joins (an ephemeral container's target).
    async fn start_container_in(&mut self, c: &Container, init: bool, attempt: u32, target: Option<&str>) {
        let Some((sandbox_id, pod_ip, sandbox_attempt)) = self.sandbox.clone() else { return };
        if let Err((reason, msg)) = self.ensure_image(c, init).await {
            self.memory.entry(c.name.clone()).or_default().waiting = Some((reason, msg));
            return;
        }
        let image = c.image.clone().unwrap_or_default();
        let mut config = config::container_config(&self.pod, c, &image, attempt, init, &pod_ip, &self.ctx.host_ip);
        if let Some(target) = target {
            if let Some(ns) = config.linux.as_mut().and_then(|l| l.security_context.as_mut()).and_then(|sc| sc.namespace_options.as_mut()) {
                ns.pid = cri::NamespaceMode::Target as i32;
                ns.target_id = target.to_string();
            }
        }
        let sandbox_config = config::sandbox_config(&self.pod, sandbox_attempt, &self.ctx.log_root);
        let mut cli = self.ctx.cri.clone();
        let req = cri::CreateContainerRequest { pod_sandbox_id: sandbox_id.clone(), config: Some(config), sandbox_config: Some(sandbox_config) };
        let id = match cli.runtime.create_container(req).await {
            Ok(r) => r.into_inner().container_id,
            Err(e) => return self.fail(c, init, "CreateContainerError", e.message()),
        };
        self.ctx.event(&self.pod, Some(&c.name), init, EventType::Normal, "Created", &format!("Created container {}", c.name));
        if let Err(e) = cli.runtime.start_container(cri::StartContainerRequest { container_id: id.clone() }).await {
            return self.fail(c, init, "RunContainerError", e.message());
        }
        self.ctx.event(&self.pod, Some(&c.name), init, EventType::Normal, "Started", &format!("Started container {}", c.name));
        self.memory.entry(c.name.clone()).or_default().waiting = None;
        // Keep the previous attempt (for `logs --previous`), remove older ones.
        if attempt >= 2 {
            if let Ok(all) = self.attempts().await {
                for a in all.get(&c.name).into_iter().flatten().filter(|a| a.attempt + 1 < attempt) {
                    let _ = cli.runtime.remove_container(cri::RemoveContainerRequest { container_id: a.status.id.clone() }).await;
                }
            }
        }
        if !init {
            self.ensure_probes(c, &id);
        }
        // Look again in a second (the kubelet's PLEG relists every second):
        // a container that exits at once shows up then, not at the next
        // periodic sync.
        self.wake_at(Instant::now() + Duration::from_secs(1));
    }

    async fn stop_container(&self, id: &str, grace: i64) {
        let mut cli = self.ctx.cri.clone();
        let _ = cli.runtime.stop_container(cri::StopContainerRequest { container_id: id.into(), timeout: grace }).await;
    }

    /// Stops every container (in parallel, with `grace`), then stops and
    /// removes the pod's sandboxes and containers.
    pub async fn kill_pod(&mut self, grace: Duration) -> Result<()> {
        self.probes.clear();
        self.sandbox = None;
        let mut cli = self.ctx.cri.clone();
        let filter = cri::ContainerFilter { label_selector: [(POD_UID_LABEL.to_string(), self.uid.clone())].into(), ..Default::default() };
        let containers = cli.runtime.list_containers(cri::ListContainersRequest { filter: Some(filter) }).await.context("ListContainers")?.into_inner().containers;
        let stops = containers.iter().filter(|c| c.state == cri::ContainerState::ContainerRunning as i32).map(|c| {
            let name = c.labels.get(CONTAINER_NAME_LABEL).cloned().unwrap_or_default();
            let init = c.labels.contains_key(INIT_CONTAINER_LABEL);
            self.ctx.event(&self.pod, Some(&name), init, EventType::Normal, "Killing", &format!("Stopping container {name}"));
            let mut cli = self.ctx.cri.clone();
            let id = c.id.clone();
            async move { cli.runtime.stop_container(cri::StopContainerRequest { container_id: id, timeout: grace.as_secs() as i64 }).await }
        });
        for r in futures::future::join_all(stops).await {
            r.context("StopContainer")?;
        }
        for s in self.sandboxes().await? {
            cli.runtime.stop_pod_sandbox(cri::StopPodSandboxRequest { pod_sandbox_id: s.id.clone() }).await.context("StopPodSandbox")?;
        }
        for c in &containers {
            cli.runtime.remove_container(cri::RemoveContainerRequest { container_id: c.id.clone() }).await.context("RemoveContainer")?;
        }
        for s in self.sandboxes().await? {
            cli.runtime.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: s.id.clone() }).await.context("RemovePodSandbox")?;
        }
        Ok(())
    }

    fn container_status(&self, c: &Container, init: bool, attempts: Option<&Vec<Attempt>>, policy: &str) -> ContainerStatus {
        let latest = attempts.and_then(|v| v.last());
        let previous = attempts.and_then(|v| v.len().checked_sub(2).map(|i| &v[i]));
        let terminated = |a: &Attempt| ContainerStateTerminated {
            container_id: Some(format!("{}://{}", self.ctx.runtime_name, a.status.id)),
            exit_code: a.status.exit_code,
            finished_at: nanos_to_time(a.status.finished_at),
            message: Some(a.status.message.clone()).filter(|m| !m.is_empty()),
            reason: Some(if a.status.reason.is_empty() { if a.status.exit_code == 0 { "Completed".into() } else { "Error".into() } } else { a.status.reason.clone() }),
            signal: None,
            started_at: nanos_to_time(a.status.started_at),
        };
        let waiting_override = self.memory.get(&c.name).and_then(|m| m.waiting.clone());
        let probe = self.probes.get(&c.name).map(|p| p.results.lock().unwrap().clone());
        let mut st = ContainerStatus {
            name: c.name.clone(),
            image: c.image.clone().unwrap_or_default(),
            image_id: String::new(),
            restart_count: latest.map(|a| a.attempt as i32).unwrap_or(0),
            ready: false,
            started: Some(false),
            ..Default::default()
        };
        let waiting = |reason: &str, message: Option<String>| ContainerState { waiting: Some(ContainerStateWaiting { reason: Some(reason.into()), message }), ..Default::default() };
        match latest {
            None => {
                st.state = Some(match waiting_override {
                    Some((r, m)) => waiting(&r, Some(m)),
                    None => waiting(if init || self.sandbox.is_none() { "PodInitializing" } else { "ContainerCreating" }, None),
                });
            }
            Some(a) => {
                st.container_id = Some(format!("{}://{}", self.ctx.runtime_name, a.status.id));
                if let Some(img) = &a.status.image {
                    st.image = img.image.clone();
                }
                st.image_id = a.status.image_ref.clone();
                match a.state() {
                    cri::ContainerState::ContainerRunning => {
                        st.state = Some(ContainerState { running: Some(ContainerStateRunning { started_at: nanos_to_time(a.status.started_at) }), ..Default::default() });
                        let (started, ready) = match (&probe, init) {
                            (_, true) => (true, false),
                            (Some(p), _) => (p.started, p.ready && p.failed.is_none()),
                            (None, _) => (c.startup_probe.is_none(), c.startup_probe.is_none() && c.readiness_probe.is_none()),
                        };
                        st.started = Some(started);
                        st.ready = ready;
                        st.last_state = previous.map(|p| ContainerState { terminated: Some(terminated(p)), ..Default::default() });
                    }
                    cri::ContainerState::ContainerExited => {
                        let restarting = should_restart(policy, a.status.exit_code) && !(init && a.status.exit_code == 0);
                        match (restarting, waiting_override) {
                            (true, Some((r, m))) => {
                                st.state = Some(waiting(&r, Some(m)));
                                st.last_state = Some(ContainerState { terminated: Some(terminated(a)), ..Default::default() });
                            }
                            _ => {
                                st.state = Some(ContainerState { terminated: Some(terminated(a)), ..Default::default() });
                                st.last_state = previous.map(|p| ContainerState { terminated: Some(terminated(p)), ..Default::default() });
                            }
                        }
                        st.ready = init && a.status.exit_code == 0;
                    }
                    _ => st.state = Some(waiting("ContainerCreating", None)),
                }
            }
        }
        st
    }

    /// The pod status from the runtime's containers (`current`, when the
    /// caller has them fresh, else asked for).
    async fn compute_status(&self, current: Option<HashMap<String, Vec<Attempt>>>) -> Result<PodStatus> {
        let now = Utc::now();
        let spec = self.pod.spec.clone().unwrap_or_default();
        let policy = spec.restart_policy.clone().unwrap_or_else(|| "Always".into());
        let attempts = match current {
            Some(a) => a,
            None if self.sandbox.is_some() => self.attempts().await?,
            None => HashMap::new(),
        };
        let prev = self.pod.status.as_ref();
        let init_statuses: Vec<ContainerStatus> = spec.init_containers.iter().flatten().map(|c| self.container_status(c, true, attempts.get(&c.name), &policy)).collect();
        let statuses: Vec<ContainerStatus> = spec.containers.iter().map(|c| self.container_status(c, false, attempts.get(&c.name), &policy)).collect();
        let ephemeral: Vec<ContainerStatus> = ephemeral_containers(&spec)
            .iter()
            .map(|(c, _)| ContainerStatus { ready: false, ..self.container_status(c, false, attempts.get(&c.name), "Never") })
            .collect();
        let exited_ok = |s: &ContainerStatus| s.state.as_ref().and_then(|st| st.terminated.as_ref()).is_some_and(|t| t.exit_code == 0);
        let init_failed = policy == "Never" && init_statuses.iter().any(|s| s.state.as_ref().and_then(|st| st.terminated.as_ref()).is_some_and(|t| t.exit_code != 0));
        let initialized = init_statuses.iter().all(exited_ok);
        let phase = if init_failed {
            "Failed"
        } else if !initialized {
            "Pending"
        } else {
            get_phase(&statuses, &policy)
        };
        let incomplete: Vec<&str> = init_statuses.iter().filter(|s| !exited_ok(s)).map(|s| s.name.as_str()).collect();
        let unready: Vec<&str> = statuses.iter().filter(|s| !s.ready).map(|s| s.name.as_str()).collect();
        let list = |v: &[&str]| format!("[{}]", v.join(" "));
        let init_msg = (!incomplete.is_empty()).then(|| format!("containers with incomplete status: {}", list(&incomplete)));
        let ready_msg = if !initialized { init_msg.clone() } else { (!unready.is_empty()).then(|| format!("containers with unready status: {}", list(&unready))) };
        let pod_ip = self.sandbox.as_ref().map(|s| s.1.clone()).filter(|ip| !ip.is_empty()).or_else(|| prev.and_then(|p| p.pod_ip.clone()));
        Ok(PodStatus {
            phase: Some(phase.into()),
            conditions: Some(pod_conditions(prev, (initialized, init_msg), (initialized && unready.is_empty() && phase == "Running", ready_msg), now)),
            container_statuses: Some(statuses),
            init_container_statuses: Some(init_statuses).filter(|v| !v.is_empty()),
            ephemeral_container_statuses: Some(ephemeral).filter(|v| !v.is_empty()),
            host_ip: Some(self.ctx.host_ip.clone()),
            host_ips: Some(vec![HostIP { ip: self.ctx.host_ip.clone() }]),
            pod_ip: pod_ip.clone(),
            pod_ips: pod_ip.map(|ip| vec![PodIP { ip }]),
            qos_class: Some(qos_class(&self.pod).into()),
            start_time: Some(self.start_time.clone().unwrap_or(Time(now))),
            ..Default::default()
        })
    }
}

/// The pod's ephemeral containers as containers (the same fields, minus
/// `targetContainerName`, returned beside each).
pub fn ephemeral_containers(spec: &k8s_openapi::api::core::v1::PodSpec) -> Vec<(Container, Option<String>)> {
    spec.ephemeral_containers
        .iter()
        .flatten()
        .filter_map(|e| {
            let c: Container = serde_json::from_value(serde_json::to_value(e).ok()?).ok()?;
            Some((c, e.target_container_name.clone().filter(|t| !t.is_empty())))
        })
        .collect()
}

fn fmt_backoff(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 && s % 60 == 0 {
        format!("{}m0s", s / 60)
    } else if s >= 60 {
        format!("{}m{}s", s / 60, s % 60)
    } else {
        format!("{}s", d.as_secs_f64())
    }
}

/// The pod phase from its (regular) container statuses (`getPhase`).
pub fn get_phase(statuses: &[ContainerStatus], policy: &str) -> &'static str {
    let (mut waiting, mut running, mut succeeded, mut failed) = (0, 0, 0, 0);
    for s in statuses {
        let st = s.state.clone().unwrap_or_default();
        if st.running.is_some() {
            running += 1;
        } else if let Some(t) = &st.terminated {
            if t.exit_code == 0 {
                succeeded += 1
            } else {
                failed += 1
            }
        } else if st.waiting.is_some() {
            // Waiting after having run (restarting) counts as running.
            if s.last_state.as_ref().and_then(|l| l.terminated.as_ref()).is_some() {
                running += 1;
            } else {
                waiting += 1;
            }
        }
    }
    if waiting > 0 {
        "Pending"
    } else if running > 0 {
        "Running"
    } else if succeeded + failed == statuses.len() && !statuses.is_empty() {
        match policy {
            "Always" => "Running",
            "OnFailure" if failed > 0 => "Running",
            _ if failed > 0 => "Failed",
            _ => "Succeeded",
        }
    } else {
        "Pending"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cs(state: &str, code: i32, restarted: bool) -> ContainerStatus {
        let st = match state {
            "running" => ContainerState { running: Some(Default::default()), ..Default::default() },
            "terminated" => ContainerState { terminated: Some(ContainerStateTerminated { exit_code: code, ..Default::default() }), ..Default::default() },
            _ => ContainerState { waiting: Some(Default::default()), ..Default::default() },
        };
        ContainerStatus {
            state: Some(st),
            last_state: restarted.then(|| ContainerState { terminated: Some(Default::default()), ..Default::default() }),
            ..Default::default()
        }
    }

    fn check(statuses: &[ContainerStatus], policy: &str, expected: &str) {
        assert_eq!(get_phase(statuses, policy), expected, "{policy}");
    }

    #[test]
    fn phases() {
        check(&[cs("waiting", 0, false)], "Always", "Pending");
        check(&[cs("running", 0, false), cs("waiting", 0, false)], "Always", "Pending");
        check(&[cs("running", 0, false)], "Always", "Running");
        check(&[cs("waiting", 0, true)], "Always", "Running");
        check(&[cs("terminated", 0, false)], "Never", "Succeeded");
        check(&[cs("terminated", 1, false)], "Never", "Failed");
        check(&[cs("terminated", 1, false)], "OnFailure", "Running");
        check(&[cs("terminated", 0, false)], "OnFailure", "Succeeded");
        check(&[cs("terminated", 0, false), cs("running", 0, false)], "Never", "Running");
    }

    fn check_restart(policy: &str, code: i32, expected: bool) {
        assert_eq!(should_restart(policy, code), expected, "{policy} {code}");
    }

    #[test]
    fn restarts() {
        check_restart("Always", 0, true);
        check_restart("OnFailure", 0, false);
        check_restart("OnFailure", 2, true);
        check_restart("Never", 2, false);
    }

    fn check_policy(image: &str, explicit: Option<&str>, expected: &str) {
        let c = Container { image: Some(image.into()), image_pull_policy: explicit.map(String::from), ..Default::default() };
        assert_eq!(pull_policy(&c), expected, "{image}");
    }

    #[test]
    fn pull_policies() {
        check_policy("busybox", None, "Always");
        check_policy("busybox:latest", None, "Always");
        check_policy("busybox:1", None, "IfNotPresent");
        check_policy("localhost:5000/busybox", None, "Always");
        check_policy("busybox@sha256:abc", None, "IfNotPresent");
        check_policy("busybox", Some("Never"), "Never");
    }

    #[test]
    fn backoff_text() {
        assert_eq!(fmt_backoff(Duration::from_secs(10)), "10s");
        assert_eq!(fmt_backoff(Duration::from_secs(300)), "5m0s");
        assert_eq!(fmt_backoff(Duration::from_secs(80)), "1m20s");
    }
}
