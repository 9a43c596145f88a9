//! The **scheduling queue**: which pending pod to schedule next. Upstream:
//! `pkg/scheduler/backend/queue/scheduling_queue.go` (`PriorityQueue`).
//! Three sub-queues:
//!
//! * **activeQ** — pods ready to be tried, a heap ordered by pod priority
//!   (`spec.priority`, higher first) then by when they were queued (earlier
//!   first): upstream's default `PrioritySort` queue-sort plugin.
//! * **backoffQ** — pods that failed recently and wait out an exponential
//!   backoff (1 s, 2 s, 4 s… capped at 10 s by default) before going back to
//!   activeQ, so a pod that cannot fit does not hog the scheduler.
//! * **unschedulablePods** — pods no node can take *right now*. Retrying them
//!   is pointless until the cluster changes, so they are parked until a
//!   relevant cluster event (node added/updated, a pod deleted — see
//!   [`ClusterEvent`]) moves them back, or until they have waited
//!   `podMaxInUnschedulablePodsDuration` (60 s) as a safety net.
//!
//! A subtle race, handled as upstream: an event may arrive *while* a pod is
//! being scheduled (the cycle used an older snapshot). If the pod then fails,
//! parking it would miss that event, so a pod whose cycle started before the
//! latest move request goes to backoffQ instead (`moveRequestCycle`).
//!
//! Differs from upstream: every event moves every parked pod (upstream asks
//! each plugin's *queueing hints* whether the event can help that pod).
//!
//! The clock is injected ([`Clock`]) so tests advance time without sleeping.
//! The queue is not synchronized and does not block: the owner wraps it in a
//! mutex, calls [`SchedulingQueue::pop`], and when it returns `None` waits
//! for an `add`/event or [`SchedulingQueue::next_wakeup`].

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::SchedulerConfig;
use crate::node_info::PodInfo;

/// Source of time.
pub trait Clock: Send + Sync {
    fn now(&self) -> Instant;
}

/// The real monotonic clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealClock;

impl Clock for RealClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that only moves when told to.
#[derive(Debug)]
pub struct FakeClock {
    base: Instant,
    offset: Mutex<Duration>,
}

impl Default for FakeClock {
    fn default() -> Self {
        FakeClock { base: Instant::now(), offset: Mutex::new(Duration::ZERO) }
    }
}

impl FakeClock {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn advance(&self, d: Duration) {
        *self.offset.lock().unwrap() += d;
    }
}

impl Clock for FakeClock {
    fn now(&self) -> Instant {
        self.base + *self.offset.lock().unwrap()
    }
}

/// Cluster changes that may make parked pods schedulable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterEvent {
    NodeAdd,
    NodeUpdate,
    /// An assigned pod was deleted (frees resources, ports, anti-affinity).
    AssignedPodDelete,
    /// A Service changed (spreading) or anything else worth a retry.
    Other,
}

/// A pod in the queue with its bookkeeping.
#[derive(Debug, Clone)]
pub struct QueuedPodInfo {
    pub info: Arc<PodInfo>,
    /// When it was last (re)queued; orders activeQ and starts the backoff.
    pub timestamp: Instant,
    /// When it was first queued (for end-to-end scheduling latency).
    pub initial_timestamp: Instant,
    /// Scheduling attempts so far (incremented by `pop`).
    pub attempts: u32,
    /// The scheduling cycle in which it was last popped.
    pub cycle: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Loc {
    Active,
    Backoff,
    Unschedulable,
    /// Popped and being scheduled.
    InFlight,
}

struct Entry {
    qp: QueuedPodInfo,
    loc: Loc,
    /// Distinguishes live heap items from stale ones (lazy deletion).
    seq: u64,
}

#[derive(PartialEq, Eq)]
struct ActiveItem {
    priority: i32,
    timestamp: Instant,
    seq: u64,
    key: String,
}

impl Ord for ActiveItem {
    fn cmp(&self, o: &Self) -> Ordering {
        // Max-heap: higher priority first, then earlier timestamp, then FIFO.
        self.priority
            .cmp(&o.priority)
            .then_with(|| o.timestamp.cmp(&self.timestamp))
            .then_with(|| o.seq.cmp(&self.seq))
    }
}
impl PartialOrd for ActiveItem {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

/// Sizes of the three sub-queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueLengths {
    pub active: usize,
    pub backoff: usize,
    pub unschedulable: usize,
}

pub struct SchedulingQueue {
    clock: Arc<dyn Clock>,
    pods: HashMap<String, Entry>,
    active: BinaryHeap<ActiveItem>,
    backoff: BinaryHeap<Reverse<(Instant, u64, String)>>,
    seq: u64,
    scheduling_cycle: u64,
    move_request_cycle: u64,
    initial_backoff: Duration,
    max_backoff: Duration,
    max_in_unschedulable: Duration,
    lengths: QueueLengths,
    last_leftover_flush: Option<Instant>,
}

impl SchedulingQueue {
    pub fn new(clock: Arc<dyn Clock>, config: &SchedulerConfig) -> Self {
        SchedulingQueue {
            clock,
            pods: HashMap::new(),
            active: BinaryHeap::new(),
            backoff: BinaryHeap::new(),
            seq: 0,
            scheduling_cycle: 0,
            move_request_cycle: 0,
            initial_backoff: Duration::from_secs_f64(config.pod_initial_backoff_seconds),
            max_backoff: Duration::from_secs_f64(config.pod_max_backoff_seconds),
            max_in_unschedulable: Duration::from_secs_f64(config.pod_max_in_unschedulable_pods_seconds),
            lengths: QueueLengths::default(),
            last_leftover_flush: None,
        }
    }

    pub fn with_real_clock(config: &SchedulerConfig) -> Self {
        Self::new(Arc::new(RealClock), config)
    }

    pub fn lengths(&self) -> QueueLengths {
        self.lengths
    }

    pub fn scheduling_cycle(&self) -> u64 {
        self.scheduling_cycle
    }

    /// Upstream `calculateBackoffDuration`: initial × 2^(attempts-1), capped.
    pub fn backoff_duration(&self, attempts: u32) -> Duration {
        let mut d = self.initial_backoff;
        for _ in 1..attempts {
            if d > self.max_backoff.saturating_sub(d) {
                return self.max_backoff;
            }
            d += d;
        }
        d.min(self.max_backoff)
    }

    fn backoff_expiry(&self, qp: &QueuedPodInfo) -> Instant {
        qp.timestamp + self.backoff_duration(qp.attempts)
    }

    fn count(&mut self, loc: Loc, delta: isize) {
        let c = match loc {
            Loc::Active => &mut self.lengths.active,
            Loc::Backoff => &mut self.lengths.backoff,
            Loc::Unschedulable => &mut self.lengths.unschedulable,
            Loc::InFlight => return,
        };
        *c = (*c as isize + delta) as usize;
    }

    /// Put `qp` (already in `pods` or not) into sub-queue `loc`.
    fn place(&mut self, key: String, qp: QueuedPodInfo, loc: Loc) {
        self.seq += 1;
        let seq = self.seq;
        if let Some(old) = self.pods.get(&key) {
            let l = old.loc;
            self.count(l, -1);
        }
        match loc {
            Loc::Active => self.active.push(ActiveItem {
                priority: qp.info.priority,
                timestamp: qp.timestamp,
                seq,
                key: key.clone(),
            }),
            Loc::Backoff => {
                let exp = self.backoff_expiry(&qp);
                self.backoff.push(Reverse((exp, seq, key.clone())));
            }
            Loc::Unschedulable | Loc::InFlight => {}
        }
        self.count(loc, 1);
        self.pods.insert(key, Entry { qp, loc, seq });
    }

    /// A new pending pod (informer add of an unassigned pod).
    pub fn add(&mut self, info: Arc<PodInfo>) {
        let now = self.clock.now();
        let key = info.key();
        if self.pods.contains_key(&key) {
            self.update(info);
            return;
        }
        let qp = QueuedPodInfo { info, timestamp: now, initial_timestamp: now, attempts: 0, cycle: 0 };
        self.place(key, qp, Loc::Active);
    }

    /// The pending pod changed. An update may make it schedulable, so a
    /// parked pod goes back to activeQ (or backoffQ if still backing off).
    pub fn update(&mut self, info: Arc<PodInfo>) {
        let key = info.key();
        let Some(e) = self.pods.get_mut(&key) else {
            self.add(info);
            return;
        };
        e.qp.info = info;
        if e.loc == Loc::Unschedulable {
            let qp = e.qp.clone();
            let now = self.clock.now();
            let loc = if self.backoff_expiry(&qp) > now { Loc::Backoff } else { Loc::Active };
            self.place(key, qp, loc);
        }
    }

    /// The pod was deleted or got bound by someone else.
    pub fn delete(&mut self, namespace: &str, name: &str) {
        let key = format!("{namespace}/{name}");
        if let Some(e) = self.pods.remove(&key) {
            self.count(e.loc, -1);
        }
    }

    /// Move backoffQ pods whose backoff is over to activeQ.
    pub fn flush_backoff_completed(&mut self) {
        let now = self.clock.now();
        while let Some(Reverse((exp, seq, _))) = self.backoff.peek() {
            if *exp > now {
                break;
            }
            let seq = *seq;
            let Reverse((_, _, key)) = self.backoff.pop().unwrap();
            if let Some(e) = self.pods.get(&key) {
                if e.seq == seq && e.loc == Loc::Backoff {
                    let qp = e.qp.clone();
                    self.place(key, qp, Loc::Active);
                }
            }
        }
    }

    /// Pods parked longer than podMaxInUnschedulablePodsDuration go back.
    pub fn flush_unschedulable_leftover(&mut self) {
        let now = self.clock.now();
        let stale: Vec<String> = self
            .pods
            .iter()
            .filter(|(_, e)| e.loc == Loc::Unschedulable && now.duration_since(e.qp.timestamp) >= self.max_in_unschedulable)
            .map(|(k, _)| k.clone())
            .collect();
        for key in stale {
            self.requeue_parked(key, now);
        }
    }

    fn requeue_parked(&mut self, key: String, now: Instant) {
        let qp = self.pods[&key].qp.clone();
        let loc = if self.backoff_expiry(&qp) > now { Loc::Backoff } else { Loc::Active };
        self.place(key, qp, loc);
    }

    /// A cluster event that may help parked pods: move them all back
    /// (to backoffQ if their backoff has not expired yet).
    pub fn move_all_to_active_or_backoff(&mut self, _event: ClusterEvent) {
        let now = self.clock.now();
        let parked: Vec<String> =
            self.pods.iter().filter(|(_, e)| e.loc == Loc::Unschedulable).map(|(k, _)| k.clone()).collect();
        for key in parked {
            self.requeue_parked(key, now);
        }
        self.move_request_cycle = self.scheduling_cycle;
    }

    /// Next pod to schedule, if any is ready. Flushes completed backoffs and
    /// long-parked pods first.
    pub fn pop(&mut self) -> Option<QueuedPodInfo> {
        self.flush_backoff_completed();
        // The leftover scan is O(queued pods): at most once a second
        // (upstream runs it every 30 s).
        let now = self.clock.now();
        if self.lengths.unschedulable > 0
            && self.last_leftover_flush.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1))
        {
            self.last_leftover_flush = Some(now);
            self.flush_unschedulable_leftover();
        }
        while let Some(item) = self.active.pop() {
            let Some(e) = self.pods.get_mut(&item.key) else { continue };
            if e.seq != item.seq || e.loc != Loc::Active {
                continue; // stale heap entry
            }
            self.scheduling_cycle += 1;
            e.loc = Loc::InFlight;
            e.qp.attempts += 1;
            e.qp.cycle = self.scheduling_cycle;
            let qp = e.qp.clone();
            self.lengths.active -= 1;
            return Some(qp);
        }
        None
    }

    /// The attempt failed because no node fits: park the pod, or send it to
    /// backoffQ if a move request arrived during its cycle (see module doc).
    pub fn add_unschedulable(&mut self, mut qp: QueuedPodInfo) {
        let key = qp.info.key();
        if !self.pods.contains_key(&key) {
            return; // deleted meanwhile
        }
        qp.timestamp = self.clock.now();
        let loc = if self.move_request_cycle >= qp.cycle { Loc::Backoff } else { Loc::Unschedulable };
        self.place(key, qp, loc);
    }

    /// The attempt failed for another reason (e.g. binding error): retry
    /// after backoff.
    pub fn add_backoff(&mut self, mut qp: QueuedPodInfo) {
        let key = qp.info.key();
        if !self.pods.contains_key(&key) {
            return;
        }
        qp.timestamp = self.clock.now();
        self.place(key, qp, Loc::Backoff);
    }

    /// The binding of an assumed pod failed after it had left the queue
    /// ([`SchedulingQueue::done`]): put it back, to be retried after its
    /// backoff (upstream `handleSchedulingFailure` →
    /// `AddUnschedulableIfNotPresent`). A no-op if the pod is queued again
    /// already (an informer update re-added it).
    pub fn requeue_after_binding_failure(&mut self, mut qp: QueuedPodInfo) {
        let key = qp.info.key();
        if self.pods.contains_key(&key) {
            return;
        }
        qp.timestamp = self.clock.now();
        self.place(key, qp, Loc::Backoff);
    }

    /// Is the pod queued (in any sub-queue, or being scheduled)?
    pub fn contains(&self, key: &str) -> bool {
        self.pods.contains_key(key)
    }

    /// The pod was scheduled (assumed): it leaves the queue.
    pub fn done(&mut self, key: &str) {
        if let Some(e) = self.pods.remove(key) {
            self.count(e.loc, -1);
        }
    }

    /// When something in backoffQ becomes ready (for the caller's sleep).
    pub fn next_wakeup(&self) -> Option<Instant> {
        self.backoff.peek().map(|Reverse((exp, _, _))| *exp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node_info::testutil::*;

    fn pod_prio(name: &str, prio: i32) -> Arc<PodInfo> {
        let mut p = pod_req(name, &[]);
        p.spec.as_mut().unwrap().priority = Some(prio);
        Arc::new(pinfo(p))
    }

    fn queue() -> (SchedulingQueue, Arc<FakeClock>) {
        let clock = Arc::new(FakeClock::new());
        (SchedulingQueue::new(clock.clone(), &SchedulerConfig::default()), clock)
    }

    fn pop_names(q: &mut SchedulingQueue) -> Vec<String> {
        let mut out = vec![];
        while let Some(p) = q.pop() {
            out.push(p.info.name.clone());
            q.done(&p.info.key());
        }
        out
    }

    #[test]
    fn active_queue_orders_by_priority_then_arrival() {
        let (mut q, clock) = queue();
        for (name, prio) in [("low1", 0), ("high", 100), ("low2", 0), ("mid", 10)] {
            q.add(pod_prio(name, prio));
            clock.advance(Duration::from_millis(1));
        }
        assert_eq!(pop_names(&mut q), ["high", "mid", "low1", "low2"]);
    }

    #[test]
    fn backoff_doubles_from_1s_to_10s() {
        let (q, _) = queue();
        let got: Vec<u64> = (1..=7).map(|a| q.backoff_duration(a).as_secs()).collect();
        assert_eq!(got, [1, 2, 4, 8, 10, 10, 10]);
    }

    #[test]
    fn failed_pod_waits_out_its_backoff() {
        let (mut q, clock) = queue();
        q.add(pod_prio("p", 0));
        let p = q.pop().unwrap();
        assert_eq!(p.attempts, 1);
        q.add_backoff(p);
        assert_eq!(q.lengths(), QueueLengths { active: 0, backoff: 1, unschedulable: 0 });
        assert!(q.pop().is_none());
        clock.advance(Duration::from_millis(999));
        assert!(q.pop().is_none());
        clock.advance(Duration::from_millis(1));
        let p = q.pop().unwrap();
        assert_eq!(p.attempts, 2);
        // Second failure: 2 s.
        q.add_backoff(p);
        clock.advance(Duration::from_millis(1999));
        assert!(q.pop().is_none());
        clock.advance(Duration::from_millis(1));
        assert!(q.pop().is_some());
    }

    #[test]
    fn unschedulable_pods_wait_for_an_event() {
        let (mut q, clock) = queue();
        q.add(pod_prio("p", 0));
        let p = q.pop().unwrap();
        q.add_unschedulable(p);
        assert_eq!(q.lengths(), QueueLengths { active: 0, backoff: 0, unschedulable: 1 });
        // Time alone (short of 60 s) does not bring it back, even after backoff.
        clock.advance(Duration::from_secs(30));
        assert!(q.pop().is_none());
        // A node is added: back to activeQ (backoff of 1 s long over).
        q.move_all_to_active_or_backoff(ClusterEvent::NodeAdd);
        assert_eq!(q.lengths(), QueueLengths { active: 1, backoff: 0, unschedulable: 0 });
        assert_eq!(q.pop().unwrap().attempts, 2);
    }

    #[test]
    fn event_during_backoff_goes_through_backoff_queue() {
        let (mut q, clock) = queue();
        q.add(pod_prio("p", 0));
        let p = q.pop().unwrap();
        q.add_unschedulable(p);
        // Event 0.5 s after failure: still backing off (1 s).
        clock.advance(Duration::from_millis(500));
        // A second pod popped so the move request is not in p's cycle.
        q.add(pod_prio("other", 0));
        let o = q.pop().unwrap();
        q.done(&o.info.key());
        q.move_all_to_active_or_backoff(ClusterEvent::AssignedPodDelete);
        assert_eq!(q.lengths(), QueueLengths { active: 0, backoff: 1, unschedulable: 0 });
        assert!(q.pop().is_none());
        clock.advance(Duration::from_millis(500));
        assert_eq!(q.pop().unwrap().info.name, "p");
    }

    #[test]
    fn parked_pods_return_after_60s() {
        let (mut q, clock) = queue();
        q.add(pod_prio("p", 0));
        let p = q.pop().unwrap();
        q.add_unschedulable(p);
        clock.advance(Duration::from_secs(59));
        assert!(q.pop().is_none());
        clock.advance(Duration::from_secs(1));
        assert_eq!(q.pop().unwrap().info.name, "p");
    }

    #[test]
    fn move_request_during_cycle_sends_pod_to_backoff() {
        let (mut q, clock) = queue();
        q.add(pod_prio("p", 0));
        let p = q.pop().unwrap();
        // A node is added while p is being scheduled on an older snapshot.
        q.move_all_to_active_or_backoff(ClusterEvent::NodeAdd);
        q.add_unschedulable(p);
        assert_eq!(q.lengths(), QueueLengths { active: 0, backoff: 1, unschedulable: 0 });
        clock.advance(Duration::from_secs(1));
        assert!(q.pop().is_some());
    }

    #[test]
    fn failed_binding_goes_back_through_backoff() {
        let (mut q, clock) = queue();
        q.add(pod_prio("p", 0));
        let p = q.pop().unwrap();
        q.done(&p.info.key());
        assert!(!q.contains("default/p"));
        q.requeue_after_binding_failure(p.clone());
        assert_eq!(q.lengths(), QueueLengths { active: 0, backoff: 1, unschedulable: 0 });
        // Requeued twice (informer re-added it meanwhile): still one entry.
        q.requeue_after_binding_failure(p);
        assert_eq!(q.lengths().backoff, 1);
        assert!(q.pop().is_none());
        clock.advance(Duration::from_secs(1));
        assert_eq!(q.pop().unwrap().attempts, 2);
    }

    #[test]
    fn update_and_delete() {
        let (mut q, _clock) = queue();
        q.add(pod_prio("p", 0));
        q.add(pod_prio("q", 0));
        q.delete("default", "q");
        let p = q.pop().unwrap();
        q.add_unschedulable(p);
        assert!(q.pop().is_none());
        // An update to a parked pod may make it schedulable: retried (after backoff).
        q.update(pod_prio("p", 5));
        assert_eq!(q.lengths().unschedulable, 0);
        // Deleting while in flight: the failure report is dropped.
        let (mut q2, _) = queue();
        q2.add(pod_prio("r", 0));
        let r = q2.pop().unwrap();
        q2.delete("default", "r");
        q2.add_unschedulable(r);
        assert_eq!(q2.lengths(), QueueLengths::default());
    }
}
