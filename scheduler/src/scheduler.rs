//! The scheduler on the API: informers → queue → cycle → assume → async bind.
//! Upstream: `pkg/scheduler/scheduler.go`, `eventhandlers.go`,
//! `schedule_one.go`.
//!
//! ```text
//!  pod/node/service informers ──handlers──▶ Cache (NodeInfo, assumed pods)
//!        (list+watch)             │                     │ update_snapshot
//!                                 └──▶ SchedulingQueue  ▼
//!                                          │ pop     Snapshot ──▶ GenericScheduler
//!                                          ▼                         │
//!               scheduling thread: one pod at a time ◀───────────────┘
//!                 ok:  assume in cache, spawn the binding, next pod at once
//!                 err: FailedScheduling event, PodScheduled=False, park the pod
//!               binding task: POST pods/<name>/binding
//!                 ok:  finish_binding; event Scheduled
//!                 err: forget the assumption; requeue (backoff)
//! ```
//!
//! **One pod informer for all pods** (except finished ones:
//! `status.phase!=Succeeded,status.phase!=Failed`, as upstream): the
//! handlers route each pod. *Assigned* pods (`spec.nodeName` set) go to the
//! cache, because they use resources, host ports and carry anti-affinity on
//! their node. *Unassigned* pods whose `spec.schedulerName` is ours go to the
//! queue; pods for another scheduler are ignored. A pending pod that becomes
//! assigned (our binding, or someone else's) leaves the queue and enters the
//! cache, which *confirms* our assumption if we made one.
//!
//! **Assume, then bind.** The cycle runs on its own OS thread (it is CPU
//! work, parallelised with rayon inside); the binding, a network round trip
//! of a millisecond or more, runs on the tokio runtime. Because the pod was
//! assumed into the cache first, the next cycle already sees the node's
//! resources as taken, so the thread never waits for the apiserver.
//!
//! **Writes per pod.** etcd is the bottleneck of the whole system: every pod
//! costs its create and its binding. Events are a third write, so they are
//! rate-limited (`--event-qps`, default 50/s, burst 100, as upstream's client
//! QPS limit throttles its events) and the overflow is dropped — events are
//! diagnostics, not state. The PodScheduled=False condition is written only
//! when it changes, not on every failed retry.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod, Service};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use machinery::events::{EventRecorder, EventType};
use machinery::informer::{EventHandler, Informer, Store};
use machinery::leader_election::{self, LeaderElectionConfig, Leadership, Outcome};
use machinery::workqueue::TokenBucket;
use serde_json::{json, Value};
use tokio::sync::Semaphore;

use crate::algorithm::GenericScheduler;
use crate::cache::{Cache, Snapshot};
use crate::config::SchedulerConfig;
use crate::framework::ScheduleError;
use crate::metrics::{self, Metrics};
use crate::node_info::PodInfo;
use crate::options::Options;
use crate::queue::{ClusterEvent, QueuedPodInfo, SchedulingQueue};
use crate::server::{self, Status};

/// How long the scheduling thread sleeps at most when the queue is empty:
/// long-parked pods are flushed back on `pop`, so it must look now and then.
const IDLE_WAKEUP: Duration = Duration::from_secs(1);

struct State {
    cache: Cache,
    queue: SchedulingQueue,
    stopped: bool,
}

/// What the informer handlers, the scheduling thread and the binding tasks share.
struct Shared {
    state: Mutex<State>,
    /// Signalled when the queue may have something to pop.
    wake: Condvar,
    scheduler_name: String,
    metrics: Arc<Metrics>,
}

impl Shared {
    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let mut st = self.state.lock().unwrap();
        f(&mut st)
    }

    fn notify(&self) {
        self.wake.notify_one();
    }
}

fn is_assigned(pod: &Pod) -> bool {
    pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).is_some_and(|n| !n.is_empty())
}

fn scheduler_name_of(pod: &Pod) -> &str {
    pod.spec.as_ref().and_then(|s| s.scheduler_name.as_deref()).filter(|n| !n.is_empty()).unwrap_or(crate::options::DEFAULT_SCHEDULER_NAME)
}

fn key_of(pod: &Pod) -> String {
    format!("{}/{}", pod.metadata.namespace.as_deref().unwrap_or("default"), pod.metadata.name.as_deref().unwrap_or(""))
}

/// Did anything the scheduler reads change? Status-only updates (ours: the
/// PodScheduled condition) must not send a parked pod back to the queue.
fn pod_spec_changed(old: &Pod, new: &Pod) -> bool {
    old.spec != new.spec || old.metadata.labels != new.metadata.labels || old.metadata.deletion_timestamp != new.metadata.deletion_timestamp
}

// ---------------------------------------------------------------------------
// Informer handlers (upstream eventhandlers.go)
// ---------------------------------------------------------------------------

struct PodHandler(Arc<Shared>);

impl PodHandler {
    fn responsible(&self, pod: &Pod) -> bool {
        scheduler_name_of(pod) == self.0.scheduler_name
    }

    fn enqueue(&self, st: &mut State, pod: &Arc<Pod>) {
        if pod.metadata.deletion_timestamp.is_some() {
            st.queue.delete(pod.metadata.namespace.as_deref().unwrap_or("default"), pod.metadata.name.as_deref().unwrap_or(""));
            return;
        }
        // Assumed and binding in flight: not pending any more for us.
        if st.cache.is_assumed(&key_of(pod)) {
            return;
        }
        st.queue.update(Arc::new(PodInfo::new(pod.clone())));
        self.0.notify();
    }
}

impl EventHandler<Pod> for PodHandler {
    fn on_add(&self, pod: &Arc<Pod>) {
        if is_assigned(pod) {
            self.0.with(|st| st.cache.add_pod(pod.clone()));
        } else if self.responsible(pod) {
            self.0.with(|st| self.enqueue(st, pod));
        }
    }

    fn on_update(&self, old: &Arc<Pod>, new: &Arc<Pod>) {
        if old.metadata.resource_version == new.metadata.resource_version && is_assigned(old) == is_assigned(new) {
            return; // a resync: nothing new
        }
        if is_assigned(new) {
            self.0.with(|st| {
                if !is_assigned(old) {
                    // Bound (by us: confirms the assumption; or by someone else).
                    st.queue.delete(new.metadata.namespace.as_deref().unwrap_or("default"), new.metadata.name.as_deref().unwrap_or(""));
                }
                st.cache.update_pod(new.clone());
            });
        } else if self.responsible(new) && pod_spec_changed(old, new) {
            self.0.with(|st| self.enqueue(st, new));
        } else if !self.responsible(new) && self.responsible(old) {
            // schedulerName cannot change, but be safe.
            self.0.with(|st| st.queue.delete(new.metadata.namespace.as_deref().unwrap_or("default"), new.metadata.name.as_deref().unwrap_or("")));
        }
    }

    fn on_delete(&self, pod: &Arc<Pod>) {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let name = pod.metadata.name.as_deref().unwrap_or("");
        self.0.with(|st| {
            st.queue.delete(ns, name);
            if is_assigned(pod) || st.cache.pod_node(&key_of(pod)).is_some() {
                // Also the case of a pod deleted while its binding was in
                // flight and the bound version never reached us.
                if st.cache.is_assumed(&key_of(pod)) {
                    let _ = st.cache.forget_pod(&key_of(pod));
                } else {
                    let _ = st.cache.remove_pod(ns, name);
                }
                // Freed resources may let parked pods fit.
                st.queue.move_all_to_active_or_backoff(ClusterEvent::AssignedPodDelete);
                self.0.notify();
            }
        });
    }
}

struct NodeHandler(Arc<Shared>);

fn node_changed(old: &Node, new: &Node) -> bool {
    old.spec != new.spec
        || old.metadata.labels != new.metadata.labels
        || old.status.as_ref().map(|s| &s.allocatable) != new.status.as_ref().map(|s| &s.allocatable)
        || old.status.as_ref().map(|s| &s.images) != new.status.as_ref().map(|s| &s.images)
}

impl EventHandler<Node> for NodeHandler {
    fn on_add(&self, node: &Arc<Node>) {
        self.0.with(|st| {
            st.cache.add_node(node.clone());
            st.queue.move_all_to_active_or_backoff(ClusterEvent::NodeAdd);
        });
        self.0.notify();
    }

    fn on_update(&self, old: &Arc<Node>, new: &Arc<Node>) {
        if old.metadata.resource_version == new.metadata.resource_version {
            return;
        }
        let changed = node_changed(old, new);
        self.0.with(|st| {
            st.cache.update_node(new.clone());
            if changed {
                st.queue.move_all_to_active_or_backoff(ClusterEvent::NodeUpdate);
            }
        });
        if changed {
            self.0.notify();
        }
    }

    fn on_delete(&self, node: &Arc<Node>) {
        self.0.with(|st| st.cache.remove_node(node.metadata.name.as_deref().unwrap_or("")));
    }
}

struct ServiceHandler(Arc<Shared>);

impl EventHandler<Service> for ServiceHandler {
    fn on_add(&self, svc: &Arc<Service>) {
        let ns = svc.metadata.namespace.as_deref().unwrap_or("default");
        let name = svc.metadata.name.as_deref().unwrap_or("");
        let sel = svc.spec.as_ref().and_then(|s| s.selector.as_ref());
        self.0.with(|st| {
            st.cache.set_service(ns, name, sel);
            st.queue.move_all_to_active_or_backoff(ClusterEvent::Other);
        });
        self.0.notify();
    }

    fn on_update(&self, old: &Arc<Service>, new: &Arc<Service>) {
        if old.spec.as_ref().map(|s| &s.selector) != new.spec.as_ref().map(|s| &s.selector) {
            self.on_add(new);
        }
    }

    fn on_delete(&self, svc: &Arc<Service>) {
        let ns = svc.metadata.namespace.as_deref().unwrap_or("default");
        self.0.with(|st| st.cache.remove_service(ns, svc.metadata.name.as_deref().unwrap_or("")));
    }
}

// ---------------------------------------------------------------------------
// Events, rate-limited
// ---------------------------------------------------------------------------

#[derive(Clone)]
struct Events {
    recorder: EventRecorder,
    bucket: Arc<TokenBucket>,
    metrics: Arc<Metrics>,
}

impl Events {
    fn record(&self, pod: &Pod, type_: EventType, reason: &str, message: &str) {
        if self.bucket.try_accept_at(tokio::time::Instant::now()) {
            self.recorder.event(pod, type_, reason, message);
        } else {
            self.metrics.events_dropped.inc();
        }
    }
}

// ---------------------------------------------------------------------------
// The scheduler
// ---------------------------------------------------------------------------

/// The scheduler's moving parts, built by [`Scheduler::new`], started by
/// [`Scheduler::start_informers`] and [`Scheduler::run`].
pub struct Scheduler {
    shared: Arc<Shared>,
    client: Client,
    config: SchedulerConfig,
    pods: Informer<Pod>,
    nodes: Informer<Node>,
    services: Informer<Service>,
    events: Events,
    parallel_bindings: usize,
}

impl Scheduler {
    /// Build the cache, queue and informers (not started). Must be called
    /// inside a tokio runtime (the event recorder spawns its writer).
    pub fn new(client: Client, config: SchedulerConfig, opts: &Options) -> anyhow::Result<Self> {
        config.validate()?;
        let metrics = Arc::new(Metrics::new(&opts.scheduler_name));
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                cache: Cache::new(),
                queue: SchedulingQueue::with_real_clock(&config),
                stopped: false,
            }),
            wake: Condvar::new(),
            scheduler_name: opts.scheduler_name.clone(),
            metrics: metrics.clone(),
        });
        let drop_managed = |meta: &mut kube::api::ObjectMeta| meta.managed_fields = None;
        let pods = Informer::<Pod>::new(Api::all(client.clone()))
            .fields("status.phase!=Succeeded,status.phase!=Failed")
            .transform(move |p: &mut Pod| drop_managed(&mut p.metadata));
        let nodes = Informer::<Node>::new(Api::all(client.clone())).transform(move |n: &mut Node| drop_managed(&mut n.metadata));
        let services = Informer::<Service>::new(Api::all(client.clone()));
        pods.add_event_handler(PodHandler(shared.clone()));
        nodes.add_event_handler(NodeHandler(shared.clone()));
        services.add_event_handler(ServiceHandler(shared.clone()));
        let events = Events {
            recorder: EventRecorder::new(client.clone(), &opts.scheduler_name, ""),
            bucket: Arc::new(TokenBucket::new(opts.event_qps.max(0.001), opts.event_burst)),
            metrics: metrics.clone(),
        };
        Ok(Scheduler {
            shared,
            client,
            config,
            pods,
            nodes,
            services,
            events,
            parallel_bindings: opts.parallel_bindings.max(1),
        })
    }

    pub fn metrics(&self) -> Arc<Metrics> {
        self.shared.metrics.clone()
    }

    /// For `/metrics`: refresh the pending-pods gauges from the queue.
    pub fn refresher(&self) -> impl Fn() + Send + Sync + 'static {
        let shared = self.shared.clone();
        move || {
            let l = shared.with(|st| st.queue.lengths());
            shared.metrics.set_pending(l);
        }
    }

    /// Start the informers and wait until each has listed everything.
    pub async fn start_informers(&self) {
        self.nodes.spawn();
        self.services.spawn();
        self.pods.spawn();
        self.nodes.wait_for_sync().await;
        self.services.wait_for_sync().await;
        self.pods.wait_for_sync().await;
    }

    /// Schedule until the returned future is dropped (leadership lost) —
    /// it never finishes on its own. `leadership` (with `--leader-elect`) is
    /// checked before every binding.
    pub async fn run(&self, leadership: Option<Leadership>) {
        let algo = match GenericScheduler::new(&self.config) {
            Ok(a) => a,
            Err(e) => {
                tracing::error!(error = %e, "invalid configuration");
                return;
            }
        };
        self.shared.with(|st| st.stopped = false);
        let binder = Binder {
            shared: self.shared.clone(),
            client: self.client.clone(),
            sem: Arc::new(Semaphore::new(self.parallel_bindings)),
            events: self.events.clone(),
            pods: self.pods.store(),
            leadership,
            rt: tokio::runtime::Handle::current(),
        };
        let shared = self.shared.clone();
        let thread = std::thread::Builder::new()
            .name("schedule-one".into())
            .spawn(move || schedule_loop(shared, algo, binder))
            .expect("spawn the scheduling thread");
        // Stop the thread when this future is dropped.
        struct StopOnDrop(Arc<Shared>);
        impl Drop for StopOnDrop {
            fn drop(&mut self) {
                self.0.with(|st| st.stopped = true);
                self.0.wake.notify_all();
            }
        }
        let _stop = StopOnDrop(self.shared.clone());
        let _thread = thread;
        std::future::pending::<()>().await;
    }
}

/// Upstream's `scheduleOne`, in a loop, on its own thread.
fn schedule_loop(shared: Arc<Shared>, mut algo: GenericScheduler, binder: Binder) {
    let mut snapshot = Snapshot::default();
    loop {
        // ---- pop (wait for work) ----
        let qp = {
            let mut st = shared.state.lock().unwrap();
            loop {
                if st.stopped {
                    return;
                }
                if let Some(qp) = st.queue.pop() {
                    break qp;
                }
                let now = Instant::now();
                let wait = st.queue.next_wakeup().map_or(IDLE_WAKEUP, |t| t.saturating_duration_since(now)).min(IDLE_WAKEUP);
                st = shared.wake.wait_timeout(st, wait.max(Duration::from_millis(1))).unwrap().0;
            }
        };
        let start = Instant::now();
        let key = qp.info.key();
        // ---- snapshot (O(changed nodes)) ----
        shared.with(|st| st.cache.update_snapshot(&mut snapshot));
        // ---- filter, score, select: no lock held ----
        let result = algo.schedule(&qp.info, &snapshot);
        match result {
            Ok(r) => {
                let assumed = shared.with(|st| {
                    let res = st.cache.assume_pod(qp.info.clone(), &r.suggested_host);
                    st.queue.done(&key);
                    res
                });
                match assumed {
                    Ok(()) => {
                        shared.metrics.attempt(metrics::SCHEDULED, start.elapsed().as_secs_f64());
                        binder.bind(qp, r.suggested_host);
                    }
                    Err(e) => {
                        // Already in the cache: bound meanwhile (our watch
                        // raced the cycle). Nothing to do.
                        tracing::debug!(pod = %key, error = %e, "skipping pod already in the cache");
                        shared.metrics.attempt(metrics::ERROR, start.elapsed().as_secs_f64());
                    }
                }
            }
            Err(e) => {
                shared.metrics.attempt(metrics::UNSCHEDULABLE, start.elapsed().as_secs_f64());
                tracing::debug!(pod = %key, reason = %e, "unschedulable");
                shared.with(|st| st.queue.add_unschedulable(qp.clone()));
                binder.record_failure(&qp, &e);
            }
        }
    }
}

/// Binding tasks and failure reporting, on the tokio runtime.
struct Binder {
    shared: Arc<Shared>,
    client: Client,
    sem: Arc<Semaphore>,
    events: Events,
    pods: Store<Pod>,
    leadership: Option<Leadership>,
    rt: tokio::runtime::Handle,
}

impl Binder {
    fn leading(&self) -> bool {
        self.leadership.as_ref().is_none_or(|l| l.is_leading())
    }

    /// POST pods/<name>/binding in the background.
    fn bind(&self, qp: QueuedPodInfo, node: String) {
        let in_flight = self.shared.metrics.bindings_in_flight();
        in_flight.inc();
        let shared = self.shared.clone();
        let client = self.client.clone();
        let sem = self.sem.clone();
        let events = self.events.clone();
        let pods = self.pods.clone();
        let leadership = self.leadership.clone();
        self.rt.spawn(async move {
            let _permit = sem.acquire().await;
            let info = &qp.info;
            let key = info.key();
            if leadership.as_ref().is_some_and(|l| !l.is_leading()) {
                // Lost the lease: another scheduler may be acting. Write nothing.
                shared.with(|st| {
                    let _ = st.cache.forget_pod(&key);
                });
                in_flight.dec();
                return;
            }
            let body = json!({
                "apiVersion": "v1",
                "kind": "Binding",
                "metadata": {"name": info.name, "namespace": info.namespace, "uid": info.uid},
                "target": {"apiVersion": "v1", "kind": "Node", "name": node},
            });
            let api: Api<Pod> = Api::namespaced(client, &info.namespace);
            let t = Instant::now();
            let res = api
                .create_subresource::<Value>("binding", &info.name, &PostParams::default(), serde_json::to_vec(&body).expect("json"))
                .await;
            shared.metrics.binding_duration.observe(t.elapsed().as_secs_f64());
            match res {
                Ok(_) => {
                    shared.with(|st| {
                        let _ = st.cache.finish_binding(&key);
                    });
                    shared.metrics.pod_scheduling_sli.observe(qp.initial_timestamp.elapsed().as_secs_f64());
                    events.record(
                        &info.pod,
                        EventType::Normal,
                        "Scheduled",
                        &format!("Successfully assigned {}/{} to {}", info.namespace, info.name, node),
                    );
                }
                Err(e) => {
                    tracing::info!(pod = %key, %node, error = %e, "binding rejected");
                    // Still pending (same pod, not bound, not being deleted)?
                    let still_pending = pods.get(&key).is_some_and(|p| {
                        p.metadata.uid.as_deref().unwrap_or("") == info.uid
                            && !is_assigned(&p)
                            && p.metadata.deletion_timestamp.is_none()
                    });
                    shared.with(|st| {
                        let _ = st.cache.forget_pod(&key);
                        if still_pending {
                            st.queue.requeue_after_binding_failure(qp.clone());
                        }
                    });
                    shared.notify();
                    if still_pending {
                        events.record(&info.pod, EventType::Warning, "FailedScheduling", &format!("Binding rejected: {e}"));
                    }
                }
            }
            in_flight.dec();
        });
    }

    /// FailedScheduling event, and PodScheduled=False (reason Unschedulable)
    /// through the status subresource if it is not already so.
    fn record_failure(&self, qp: &QueuedPodInfo, err: &ScheduleError) {
        if !self.leading() {
            return;
        }
        let info = &qp.info;
        let message = err.to_string();
        self.events.record(&info.pod, EventType::Warning, "FailedScheduling", &message);
        let current = self.pods.get(&info.key()).unwrap_or_else(|| info.pod.clone());
        let already = current
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "PodScheduled"))
            .is_some_and(|c| {
                c.status == "False" && c.reason.as_deref() == Some(err.condition_reason()) && c.message.as_deref() == Some(message.as_str())
            });
        if already {
            return;
        }
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &info.namespace);
        let name = info.name.clone();
        let patch = json!({"status": {"conditions": [{
            "type": "PodScheduled",
            "status": "False",
            "reason": err.condition_reason(),
            "message": message,
            "lastProbeTime": null,
            "lastTransitionTime": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        }]}});
        self.rt.spawn(async move {
            if let Err(e) = api.patch_status(&name, &PatchParams::default(), &Patch::Strategic(&patch)).await {
                tracing::info!(pod = %name, error = %e, "could not update the PodScheduled condition");
            }
        });
    }
}

/// Serve `/healthz`, `/readyz`, `/metrics` on `addr:port` (0 = disabled).
async fn serve_on(addr: &str, port: u16, status: Arc<Status>) -> anyhow::Result<()> {
    if port == 0 {
        return Ok(());
    }
    Arc::new(server::health_server(status)).start(addr, port).await?;
    Ok(())
}

/// The whole component, as `main` runs it. Returns an error when
/// leadership is lost (the process must exit, as upstream's does).
pub async fn run(opts: Options) -> anyhow::Result<()> {
    let config = match &opts.config {
        Some(p) => SchedulerConfig::load(p)?,
        None => SchedulerConfig::default(),
    };
    let client = machinery::client::connect_as("scheduler", opts.master.as_deref(), opts.kubeconfig.as_deref()).await?;
    let sched = Scheduler::new(client.clone(), config, &opts)?;
    let status = Arc::new(Status {
        metrics: sched.metrics(),
        ready: Default::default(),
        refresh: Box::new(sched.refresher()),
    });
    serve_on(&opts.bind_address, opts.secure_port, status.clone()).await?;
    serve_on(&opts.bind_address, opts.port, status.clone()).await?;

    sched.start_informers().await;
    status.ready.store(true, Ordering::Relaxed);
    tracing::info!("informers synced");

    if !opts.leader_elect {
        sched.run(None).await;
        return Ok(());
    }
    let le = LeaderElectionConfig {
        lease_duration: opts.leader_elect_lease_duration,
        renew_deadline: opts.leader_elect_renew_deadline,
        retry_period: opts.leader_elect_retry_period,
        // Upstream kube-scheduler does not release on cancel by default.
        release_on_cancel: false,
    };
    let identity = leader_election::default_identity();
    let lease = opts.leader_elect_resource_name.clone();
    let metrics = sched.metrics();
    let m2 = metrics.clone();
    let l2 = lease.clone();
    let outcome = leader_election::run(
        client,
        &opts.leader_elect_resource_namespace,
        &lease,
        &identity,
        le,
        |leadership| {
            metrics.set_leader(&lease, true);
            tracing::info!(%identity, "started leading");
            let sched = &sched;
            async move { sched.run(Some(leadership)).await }
        },
        move || m2.set_leader(&l2, false),
    )
    .await?;
    match outcome {
        Outcome::LostLeadership => anyhow::bail!("leaderelection lost"),
        Outcome::Finished => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(json: Value) -> Pod {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn routing_predicates() {
        let check = |p: Value, expected: (bool, &str)| {
            let p = pod(p);
            assert_eq!((is_assigned(&p), scheduler_name_of(&p)), expected);
        };
        check(json!({"metadata": {"name": "a"}}), (false, "default-scheduler"));
        check(json!({"metadata": {"name": "a"}, "spec": {"containers": [], "nodeName": ""}}), (false, "default-scheduler"));
        check(json!({"metadata": {"name": "a"}, "spec": {"containers": [], "nodeName": "n1", "schedulerName": "other"}}), (true, "other"));
    }

    #[test]
    fn status_only_updates_are_not_spec_changes() {
        let a = pod(json!({"metadata": {"name": "a", "resourceVersion": "1"}, "spec": {"containers": []}}));
        let mut b = a.clone();
        b.metadata.resource_version = Some("2".into());
        b.status = Some(Default::default());
        assert!(!pod_spec_changed(&a, &b));
        b.metadata.labels = Some([("x".to_string(), "y".to_string())].into());
        assert!(pod_spec_changed(&a, &b));
    }
}
