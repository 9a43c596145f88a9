//! The work queue every controller pulls keys from (client-go's
//! `workqueue.TypedRateLimitingInterface`).
//!
//! A controller does not act on watch events directly. Its informer event
//! handlers only put a *key* (usually `"namespace/name"`) into this queue, and
//! a few worker tasks take keys out, read the current object from the
//! informer's store and reconcile it. The queue gives the guarantees that make
//! that loop simple to write correctly:
//!
//! - **De-duplication.** Adding a key that is already waiting in the queue is
//!   a no-op: ten updates to one pod while the workers are busy cause one
//!   reconcile, of the latest state, not ten.
//! - **No concurrent processing of one key.** Between [`WorkQueue::get`] and
//!   [`WorkQueue::done`] a key is *processing*. Adding it again meanwhile only
//!   marks it *dirty*; `done` puts it back in the queue. So two workers never
//!   reconcile the same object at the same time, and no change is lost.
//! - **Delays** ([`WorkQueue::add_after`]): "look at this again in 30 s".
//! - **Rate-limited retries** ([`WorkQueue::add_rate_limited`]): a failing key
//!   is retried after a per-key exponential backoff (5 ms, 10 ms, 20 ms … up
//!   to 1000 s by default) until the controller calls [`WorkQueue::forget`]
//!   after a success.
//! - **Shutdown** ([`WorkQueue::shut_down`]): workers drain what is queued,
//!   then `get` returns `None`.
//!
//! The three sets are client-go's names: `queue` (ordered, ready to hand
//! out), `dirty` (needs processing; every queued key is dirty), `processing`
//! (handed out, `done` not yet called).
//!
//! Delayed keys wait in a time-ordered map inside the same state; there is no
//! background task: whoever calls `get` (or `len`) first moves keys whose time
//! has come into the queue, and idle workers sleep until the earliest one is
//! due. All time is `tokio::time`, so tests run with paused time.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tokio::sync::Notify;
use tokio::time::Instant;

/// What can be queued: cheap to clone and hash. Controllers use `String` keys.
pub trait QueueKey: Clone + Eq + Hash + Debug + Send + Sync + 'static {}
impl<T: Clone + Eq + Hash + Debug + Send + Sync + 'static> QueueKey for T {}

// ---------------------------------------------------------------------------
// Rate limiters (client-go `workqueue/default_rate_limiters.go`)
// ---------------------------------------------------------------------------

/// Decides how long a key waits before its next retry.
pub trait RateLimiter<T>: Send + Sync {
    /// How long `item` should wait now. Calling it counts one more failure.
    fn when(&self, item: &T) -> Duration;
    /// The item succeeded: reset its failure count.
    fn forget(&self, item: &T);
    /// How many times the item has failed since it was last forgotten.
    fn num_requeues(&self, item: &T) -> u32;
}

/// Per-item exponential backoff: `base * 2^failures`, capped at `max`
/// (client-go `ItemExponentialFailureRateLimiter`).
pub struct ExponentialBackoff<T> {
    base: Duration,
    max: Duration,
    failures: Mutex<HashMap<T, u32>>,
}

impl<T: QueueKey> ExponentialBackoff<T> {
    pub fn new(base: Duration, max: Duration) -> Self {
        ExponentialBackoff { base, max, failures: Mutex::new(HashMap::new()) }
    }
}

impl<T: QueueKey> RateLimiter<T> for ExponentialBackoff<T> {
    fn when(&self, item: &T) -> Duration {
        let mut failures = self.failures.lock().unwrap();
        let n = failures.entry(item.clone()).or_insert(0);
        let exp = *n;
        *n = n.saturating_add(1);
        // 2^exp overflows quickly; anything past 2^32 is certainly past max.
        if exp >= 32 {
            return self.max;
        }
        self.base.checked_mul(1u32 << exp).map_or(self.max, |d| d.min(self.max))
    }
    fn forget(&self, item: &T) {
        self.failures.lock().unwrap().remove(item);
    }
    fn num_requeues(&self, item: &T) -> u32 {
        self.failures.lock().unwrap().get(item).copied().unwrap_or(0)
    }
}

/// An overall token bucket shared by all items: `qps` tokens per second,
/// at most `burst` saved up (client-go `BucketRateLimiter`, a wrapper of
/// Go's `rate.Limiter`). It protects the apiserver when *many* keys fail at
/// once, which per-item backoff alone does not.
pub struct TokenBucket {
    qps: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>, // (tokens, last refill)
}

impl TokenBucket {
    pub fn new(qps: f64, burst: u32) -> Self {
        Self::new_at(qps, burst, Instant::now())
    }

    /// A full bucket whose clock starts at `now`.
    pub fn new_at(qps: f64, burst: u32, now: Instant) -> Self {
        TokenBucket { qps, burst: burst as f64, state: Mutex::new((burst as f64, now)) }
    }

    /// Take one token, returning how long the caller must wait for it
    /// (`rate.Limiter.Reserve().Delay()`): tokens may go negative, which is
    /// how later callers queue up behind earlier ones.
    pub fn reserve(&self) -> Duration {
        let now = Instant::now();
        let mut st = self.state.lock().unwrap();
        self.refill(&mut st, now);
        st.0 -= 1.0;
        if st.0 >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-st.0 / self.qps)
        }
    }
}

impl TokenBucket {
    fn refill(&self, st: &mut (f64, Instant), now: Instant) {
        let elapsed = now.saturating_duration_since(st.1).as_secs_f64();
        st.0 = (st.0 + elapsed * self.qps).min(self.burst);
        st.1 = st.1.max(now);
    }

    /// Take a token only if one is available now (`rate.Limiter.AllowN`,
    /// client-go's `TryAccept`): for dropping, not delaying.
    pub fn try_accept_at(&self, now: Instant) -> bool {
        let mut st = self.state.lock().unwrap();
        self.refill(&mut st, now);
        if st.0 >= 1.0 {
            st.0 -= 1.0;
            true
        } else {
            false
        }
    }
}

impl<T> RateLimiter<T> for TokenBucket {
    fn when(&self, _item: &T) -> Duration {
        self.reserve()
    }
    fn forget(&self, _item: &T) {}
    fn num_requeues(&self, _item: &T) -> u32 {
        0
    }
}

/// The longest wait any of the limiters asks for (client-go `MaxOfRateLimiter`).
pub struct MaxOf<T>(pub Vec<Box<dyn RateLimiter<T>>>);

impl<T> RateLimiter<T> for MaxOf<T> {
    fn when(&self, item: &T) -> Duration {
        self.0.iter().map(|l| l.when(item)).max().unwrap_or(Duration::ZERO)
    }
    fn forget(&self, item: &T) {
        self.0.iter().for_each(|l| l.forget(item));
    }
    fn num_requeues(&self, item: &T) -> u32 {
        self.0.iter().map(|l| l.num_requeues(item)).max().unwrap_or(0)
    }
}

/// client-go's `DefaultControllerRateLimiter`: per-item exponential backoff
/// from 5 ms to 1000 s, and an overall 10 qps / burst 100 bucket.
pub fn default_rate_limiter<T: QueueKey>() -> MaxOf<T> {
    MaxOf(vec![
        Box::new(ExponentialBackoff::new(Duration::from_millis(5), Duration::from_secs(1000))),
        Box::new(TokenBucket::new(10.0, 100)),
    ])
}

// ---------------------------------------------------------------------------
// Metrics (client-go `workqueue/metrics.go`, same metric names)
// ---------------------------------------------------------------------------

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabel {
    name: String,
}

/// Prometheus metrics for work queues, labelled by queue name. Register once
/// per process with [`WorkQueueMetrics::register`] and hand clones to each
/// queue via [`WorkQueue::with_metrics`].
#[derive(Clone)]
pub struct WorkQueueMetrics {
    depth: Family<QueueLabel, Gauge>,
    adds: Family<QueueLabel, Counter>,
    retries: Family<QueueLabel, Counter>,
    queue_duration: Family<QueueLabel, Histogram>,
    work_duration: Family<QueueLabel, Histogram>,
}

fn seconds_histogram() -> Histogram {
    // 10 ns … 100 s, as client-go's buckets.
    Histogram::new(exponential_buckets(1e-8, 10.0, 11))
}

impl WorkQueueMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = WorkQueueMetrics {
            depth: Family::default(),
            adds: Family::default(),
            retries: Family::default(),
            queue_duration: Family::new_with_constructor(seconds_histogram),
            work_duration: Family::new_with_constructor(seconds_histogram),
        };
        registry.register("workqueue_depth", "Current depth of workqueue", m.depth.clone());
        // prometheus-client appends `_total` to counters.
        registry.register("workqueue_adds", "Total number of adds handled by workqueue", m.adds.clone());
        registry.register("workqueue_retries", "Total number of retries handled by workqueue", m.retries.clone());
        registry.register(
            "workqueue_queue_duration_seconds",
            "How long in seconds an item stays in workqueue before being requested",
            m.queue_duration.clone(),
        );
        registry.register(
            "workqueue_work_duration_seconds",
            "How long in seconds processing an item from workqueue takes",
            m.work_duration.clone(),
        );
        m
    }
}

struct BoundMetrics {
    depth: Gauge,
    adds: Counter,
    retries: Counter,
    queue_duration: Histogram,
    work_duration: Histogram,
}

// ---------------------------------------------------------------------------
// The queue
// ---------------------------------------------------------------------------

struct State<T> {
    /// Ready to hand out, in order. Every key here is also in `dirty`.
    queue: VecDeque<T>,
    /// Needs processing (queued, or re-added while processing).
    dirty: HashSet<T>,
    /// Handed out by `get`, `done` not called yet.
    processing: HashSet<T>,
    /// Delayed keys, ordered by due time; `seq` breaks ties FIFO.
    waiting: BTreeMap<(Instant, u64), T>,
    /// Each delayed key's entry in `waiting` (one per key: the earliest).
    waiting_at: HashMap<T, (Instant, u64)>,
    seq: u64,
    /// For metrics: when each queued key was added / handed out.
    added_at: HashMap<T, Instant>,
    started_at: HashMap<T, Instant>,
    shutting_down: bool,
}

struct Inner<T> {
    state: Mutex<State<T>>,
    /// Wakes workers blocked in `get`.
    notify: Notify,
    /// Wakes `shut_down_with_drain` when a key is done.
    drained: Notify,
    limiter: Box<dyn RateLimiter<T>>,
    metrics: Option<BoundMetrics>,
}

/// A rate-limited, de-duplicating, delaying work queue. Cheap to clone: all
/// clones are the same queue.
pub struct WorkQueue<T> {
    inner: Arc<Inner<T>>,
}

impl<T> Clone for WorkQueue<T> {
    fn clone(&self) -> Self {
        WorkQueue { inner: self.inner.clone() }
    }
}

impl<T: QueueKey> Default for WorkQueue<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: QueueKey> WorkQueue<T> {
    /// A queue with client-go's default controller rate limiter.
    pub fn new() -> Self {
        Self::with_rate_limiter(default_rate_limiter())
    }

    pub fn with_rate_limiter(limiter: impl RateLimiter<T> + 'static) -> Self {
        Self::build(Box::new(limiter), None)
    }

    /// A queue reporting to `metrics` under the label `name="<name>"`.
    pub fn with_metrics(name: &str, limiter: impl RateLimiter<T> + 'static, metrics: &WorkQueueMetrics) -> Self {
        let l = QueueLabel { name: name.to_string() };
        let bound = BoundMetrics {
            depth: metrics.depth.get_or_create(&l).clone(),
            adds: metrics.adds.get_or_create(&l).clone(),
            retries: metrics.retries.get_or_create(&l).clone(),
            queue_duration: metrics.queue_duration.get_or_create(&l).clone(),
            work_duration: metrics.work_duration.get_or_create(&l).clone(),
        };
        Self::build(Box::new(limiter), Some(bound))
    }

    fn build(limiter: Box<dyn RateLimiter<T>>, metrics: Option<BoundMetrics>) -> Self {
        WorkQueue {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    queue: VecDeque::new(),
                    dirty: HashSet::new(),
                    processing: HashSet::new(),
                    waiting: BTreeMap::new(),
                    waiting_at: HashMap::new(),
                    seq: 0,
                    added_at: HashMap::new(),
                    started_at: HashMap::new(),
                    shutting_down: false,
                }),
                notify: Notify::new(),
                drained: Notify::new(),
                limiter,
                metrics,
            }),
        }
    }

    /// Mark `item` as needing processing. A no-op if it is already queued;
    /// deferred until `done` if it is being processed; ignored after shutdown.
    pub fn add(&self, item: T) {
        let mut st = self.inner.state.lock().unwrap();
        if self.add_locked(&mut st, item) {
            drop(st);
            self.inner.notify.notify_one();
        }
    }

    /// Returns true when the item went into `queue` (a worker should wake).
    fn add_locked(&self, st: &mut State<T>, item: T) -> bool {
        if st.shutting_down || st.dirty.contains(&item) {
            return false;
        }
        if let Some(m) = &self.inner.metrics {
            m.adds.inc();
        }
        st.dirty.insert(item.clone());
        if st.processing.contains(&item) {
            // `done` will queue it again; never hand it to a second worker.
            return false;
        }
        if let Some(m) = &self.inner.metrics {
            m.depth.inc();
        }
        st.added_at.insert(item.clone(), Instant::now());
        st.queue.push_back(item);
        true
    }

    /// Add `item` once `delay` has passed. If it is already waiting, the
    /// earlier of the two due times wins (client-go's delaying queue).
    pub fn add_after(&self, item: T, delay: Duration) {
        if delay.is_zero() {
            return self.add(item);
        }
        let due = Instant::now() + delay;
        let mut st = self.inner.state.lock().unwrap();
        if st.shutting_down {
            return;
        }
        if let Some(&(at, seq)) = st.waiting_at.get(&item) {
            if at <= due {
                return;
            }
            st.waiting.remove(&(at, seq));
        }
        st.seq += 1;
        let slot = (due, st.seq);
        st.waiting.insert(slot, item.clone());
        st.waiting_at.insert(item, slot);
        drop(st);
        // Sleeping workers recompute when the next delayed key is due.
        self.inner.notify.notify_waiters();
    }

    /// Add `item` after the rate limiter's delay for it (a retry).
    pub fn add_rate_limited(&self, item: T) {
        let delay = self.inner.limiter.when(&item);
        if let Some(m) = &self.inner.metrics {
            m.retries.inc();
        }
        self.add_after(item, delay);
    }

    /// Stop tracking retries of `item` (call after it was processed successfully).
    /// It does not remove the item from the queue.
    pub fn forget(&self, item: &T) {
        self.inner.limiter.forget(item);
    }

    /// How many times `item` was retried since it was last forgotten.
    pub fn num_requeues(&self, item: &T) -> u32 {
        self.inner.limiter.num_requeues(item)
    }

    /// Move delayed keys whose time has come into the queue.
    /// Returns the due time of the next one still waiting.
    fn promote_due(&self, st: &mut State<T>) -> (bool, Option<Instant>) {
        let now = Instant::now();
        let mut woke = false;
        while let Some((&(at, seq), _)) = st.waiting.first_key_value() {
            if at > now {
                return (woke, Some(at));
            }
            let item = st.waiting.remove(&(at, seq)).unwrap();
            st.waiting_at.remove(&item);
            woke |= self.add_locked(st, item);
        }
        (woke, None)
    }

    /// Wait for the next key to process. Returns `None` once the queue is shut
    /// down and everything queued before that has been handed out. The caller
    /// must call [`WorkQueue::done`] with the key when finished.
    pub async fn get(&self) -> Option<T> {
        loop {
            // Register interest *before* looking at the state, so an `add`
            // between the check and the wait is not missed.
            let notified = self.inner.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let next_due = {
                let mut st = self.inner.state.lock().unwrap();
                let (promoted, next_due) = self.promote_due(&mut st);
                if let Some(item) = st.queue.pop_front() {
                    // More than one key may have become due at once: let
                    // another sleeping worker pick up the rest.
                    if promoted && !st.queue.is_empty() {
                        self.inner.notify.notify_one();
                    }
                    st.dirty.remove(&item);
                    st.processing.insert(item.clone());
                    let now = Instant::now();
                    if let Some(m) = &self.inner.metrics {
                        m.depth.dec();
                        if let Some(t) = st.added_at.remove(&item) {
                            m.queue_duration.observe((now - t).as_secs_f64());
                        }
                    } else {
                        st.added_at.remove(&item);
                    }
                    st.started_at.insert(item.clone(), now);
                    return Some(item);
                }
                if st.shutting_down {
                    return None;
                }
                next_due
            };
            match next_due {
                Some(at) => {
                    tokio::select! {
                        _ = &mut notified => {}
                        _ = tokio::time::sleep_until(at) => {}
                    }
                }
                None => notified.await,
            }
        }
    }

    /// The worker finished `item`. If it was added again while processing,
    /// it goes back into the queue now.
    pub fn done(&self, item: &T) {
        let mut st = self.inner.state.lock().unwrap();
        if !st.processing.remove(item) {
            return;
        }
        self.inner.drained.notify_waiters();
        let started = st.started_at.remove(item);
        if let (Some(m), Some(t)) = (&self.inner.metrics, started) {
            m.work_duration.observe(t.elapsed().as_secs_f64());
        }
        if st.dirty.contains(item) {
            if let Some(m) = &self.inner.metrics {
                m.depth.inc();
            }
            st.added_at.insert(item.clone(), Instant::now());
            st.queue.push_back(item.clone());
            drop(st);
            self.inner.notify.notify_one();
        }
    }

    /// Keys ready to be handed out (not those waiting for a delay, nor those
    /// being processed) — client-go's `Len`.
    pub fn len(&self) -> usize {
        let mut st = self.inner.state.lock().unwrap();
        let (promoted, _) = self.promote_due(&mut st);
        let n = st.queue.len();
        drop(st);
        if promoted {
            self.inner.notify.notify_waiters();
        }
        n
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stop accepting keys. Delayed keys are dropped; keys already queued are
    /// still handed out, then every `get` returns `None`.
    pub fn shut_down(&self) {
        let mut st = self.inner.state.lock().unwrap();
        st.shutting_down = true;
        st.waiting.clear();
        st.waiting_at.clear();
        drop(st);
        self.inner.notify.notify_waiters();
    }

    /// Shut down, then wait until every key handed out has been `done` and
    /// the queue is empty (client-go's `ShutDownWithDrain`): for a graceful
    /// stop where in-flight work must finish. Workers must keep running
    /// until `get` returns `None`, or this waits forever.
    pub async fn shut_down_with_drain(&self) {
        self.shut_down();
        loop {
            let drained = self.inner.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            {
                let st = self.inner.state.lock().unwrap();
                if st.processing.is_empty() && st.queue.is_empty() {
                    return;
                }
            }
            drained.await;
        }
    }

    pub fn is_shutting_down(&self) -> bool {
        self.inner.state.lock().unwrap().shutting_down
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;
    use prometheus_client::encoding::text::encode;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Runs a script of queue operations, one per line, against a queue with
    /// a pure exponential limiter (base 5 ms, max 1 s), and compares the
    /// trace of what `get`, `len` and `requeues` returned with `expect`.
    ///
    /// Ops: `add K`, `after K MS`, `retry K`, `forget K`, `done K`,
    /// `get` (polled once: prints the key, `-` if it would block, or
    /// `shutdown`), `len`, `requeues K`, `sleep MS` (advances paused time),
    /// `shutdown`.
    async fn check(script: &str, expect: &str) {
        let q: WorkQueue<String> = WorkQueue::with_rate_limiter(ExponentialBackoff::new(ms(5), ms(1000)));
        let mut trace = Vec::new();
        for line in script.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["add", k] => q.add(k.to_string()),
                ["after", k, n] => q.add_after(k.to_string(), ms(n.parse().unwrap())),
                ["retry", k] => q.add_rate_limited(k.to_string()),
                ["forget", k] => q.forget(&k.to_string()),
                ["done", k] => q.done(&k.to_string()),
                ["get"] => trace.push(match q.get().now_or_never() {
                    None => "-".to_string(),
                    Some(None) => "shutdown".to_string(),
                    Some(Some(k)) => k,
                }),
                ["len"] => trace.push(format!("len={}", q.len())),
                ["requeues", k] => trace.push(format!("requeues={}", q.num_requeues(&k.to_string()))),
                ["sleep", n] => tokio::time::advance(ms(n.parse().unwrap())).await,
                ["shutdown"] => q.shut_down(),
                _ => panic!("bad op {line:?}"),
            }
        }
        assert_eq!(trace.join(" "), expect, "script:\n{script}");
    }

    #[tokio::test(start_paused = true)]
    async fn fifo_order() {
        check("add a\nadd b\nadd c\nlen\nget\nget\nget\nget", "len=3 a b c -").await;
    }

    #[tokio::test(start_paused = true)]
    async fn adding_a_queued_key_is_a_noop() {
        check("add a\nadd b\nadd a\nadd a\nlen\nget\nget\nget", "len=2 a b -").await;
    }

    #[tokio::test(start_paused = true)]
    async fn key_being_processed_is_not_handed_out_twice() {
        // `a` is added again while a worker holds it: nobody else gets it…
        check("add a\nget\nadd a\nlen\nget", "a len=0 -").await;
        // …until `done`, which puts it back exactly once.
        check("add a\nget\nadd a\nadd a\ndone a\nlen\nget\nget", "a len=1 a -").await;
        // Done without a re-add: gone for good.
        check("add a\nget\ndone a\nlen\nget", "a len=0 -").await;
    }

    #[tokio::test(start_paused = true)]
    async fn add_after_waits_for_the_delay() {
        check("after a 100\nlen\nget\nsleep 99\nget\nsleep 1\nlen\nget", "len=0 - - len=1 a").await;
    }

    #[tokio::test(start_paused = true)]
    async fn add_after_keeps_the_earliest_due_time() {
        // The second, later add_after does not postpone the first…
        check("after a 10\nafter a 500\nsleep 10\nget\nsleep 1000\nget", "a -").await;
        // …and an earlier one brings it forward.
        check("after a 500\nafter a 10\nsleep 10\nget\nsleep 1000\nget", "a -").await;
    }

    #[tokio::test(start_paused = true)]
    async fn delayed_keys_come_out_in_due_order() {
        check("after c 30\nafter a 10\nafter b 20\nsleep 30\nget\nget\nget", "a b c").await;
    }

    #[tokio::test(start_paused = true)]
    async fn retries_back_off_exponentially_until_forgotten() {
        check(
            "retry a\nsleep 4\nget\nsleep 1\nget\ndone a
             retry a\nsleep 9\nget\nsleep 1\nget\ndone a
             retry a\nsleep 19\nget\nsleep 1\nget\ndone a
             requeues a\nforget a\nrequeues a
             retry a\nsleep 5\nget",
            "- a - a - a requeues=3 requeues=0 a",
        )
        .await;
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_drains_queue_then_returns_none() {
        check("add a\nafter b 10\nshutdown\nadd c\nget\nsleep 20\nget\nget", "a shutdown shutdown").await;
    }

    /// The exponential limiter on its own: 5 ms doubling, capped.
    #[test]
    fn exponential_backoff_sequence() {
        let l = ExponentialBackoff::new(ms(5), Duration::from_secs(1000));
        let got: Vec<Duration> = (0..20).map(|_| l.when(&"k")).collect();
        assert_eq!(got[0], ms(5));
        assert_eq!(got[1], ms(10));
        assert_eq!(got[7], ms(640));
        // 5 ms * 2^17 = 655.36 s; 2^18 would be 1310 s, capped at 1000 s.
        assert_eq!(got[17], Duration::from_micros(655_360_000));
        assert_eq!(got[18], Duration::from_secs(1000));
        assert_eq!(l.num_requeues(&"k"), 20);
        // Far past any shift width: still the cap, no overflow.
        for _ in 0..100 {
            l.when(&"k");
        }
        assert_eq!(l.when(&"k"), Duration::from_secs(1000));
        // Items are independent.
        assert_eq!(l.when(&"other"), ms(5));
    }

    #[tokio::test(start_paused = true)]
    async fn token_bucket_allows_burst_then_paces() {
        let b = TokenBucket::new(10.0, 3);
        let got: Vec<Duration> = (0..5).map(|_| b.reserve()).collect();
        assert_eq!(got, vec![Duration::ZERO, Duration::ZERO, Duration::ZERO, ms(100), ms(200)]);
        // After a second the bucket refilled to its burst (3), not to 10.
        tokio::time::advance(Duration::from_secs(2)).await;
        let got: Vec<Duration> = (0..4).map(|_| b.reserve()).collect();
        assert_eq!(got, vec![Duration::ZERO, Duration::ZERO, Duration::ZERO, ms(100)]);
    }

    #[tokio::test(start_paused = true)]
    async fn default_limiter_is_max_of_backoff_and_bucket() {
        let l: MaxOf<&str> = default_rate_limiter();
        // While the bucket has tokens, per-item backoff rules.
        let got: Vec<Duration> = (0..4).map(|_| l.when(&"a")).collect();
        assert_eq!(got, vec![ms(5), ms(10), ms(20), ms(40)]);
        // Many distinct keys failing at once: the bucket paces them at 10/s.
        let l: MaxOf<u32> = default_rate_limiter();
        let delays: Vec<Duration> = (0..102).map(|k| l.when(&k)).collect();
        assert_eq!(delays[99], ms(5));
        assert_eq!(delays[100], ms(100));
        assert_eq!(delays[101], ms(200));
    }

    /// Blocking `get` wakes up for a plain add and for a delayed key.
    #[tokio::test(start_paused = true)]
    async fn blocked_worker_wakes_up() {
        let q: WorkQueue<u32> = WorkQueue::new();
        let worker = tokio::spawn({
            let q = q.clone();
            async move { (q.get().await, Instant::now()) }
        });
        tokio::task::yield_now().await;
        let t0 = Instant::now();
        q.add_after(7, ms(250));
        let (got, at) = worker.await.unwrap();
        assert_eq!(got, Some(7));
        assert_eq!(at - t0, ms(250));

        let worker = tokio::spawn({
            let q = q.clone();
            async move { q.get().await }
        });
        tokio::task::yield_now().await;
        q.add(8);
        assert_eq!(worker.await.unwrap(), Some(8));
    }

    /// Many workers, many re-adds: no key is ever processed by two workers at
    /// once, and every add made while a key was processing leads to one more
    /// processing of it afterwards.
    #[tokio::test(start_paused = true)]
    async fn concurrent_workers_never_share_a_key() {
        let q: WorkQueue<u32> = WorkQueue::new();
        let in_flight = Arc::new(Mutex::new(HashSet::new()));
        let processed = Arc::new(Mutex::new(HashMap::<u32, u32>::new()));
        let mut workers = Vec::new();
        for _ in 0..4 {
            let (q, in_flight, processed) = (q.clone(), in_flight.clone(), processed.clone());
            workers.push(tokio::spawn(async move {
                while let Some(k) = q.get().await {
                    assert!(in_flight.lock().unwrap().insert(k), "key {k} processed twice at once");
                    tokio::time::sleep(ms(3)).await;
                    in_flight.lock().unwrap().remove(&k);
                    *processed.lock().unwrap().entry(k).or_default() += 1;
                    q.done(&k);
                }
            }));
        }
        for round in 0..50 {
            for k in 0..5 {
                q.add(k);
            }
            tokio::time::sleep(ms(1 + round % 3)).await;
        }
        // Let everything settle, then shut down and join.
        tokio::time::sleep(ms(100)).await;
        q.shut_down();
        for w in workers {
            w.await.unwrap();
        }
        let processed = processed.lock().unwrap();
        for k in 0..5 {
            let n = processed[&k];
            // De-duplicated: far fewer than the 50 adds, but more than once.
            assert!(n > 1 && n < 50, "key {k} processed {n} times");
        }
        assert!(q.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn shut_down_with_drain_waits_for_in_flight_work() {
        let q: WorkQueue<u32> = WorkQueue::new();
        q.add(1);
        q.add(2);
        let worker = tokio::spawn({
            let q = q.clone();
            async move {
                let mut finished = Vec::new();
                while let Some(k) = q.get().await {
                    tokio::time::sleep(ms(100)).await;
                    finished.push((k, Instant::now()));
                    q.done(&k);
                }
                finished
            }
        });
        tokio::task::yield_now().await; // worker takes key 1
        let t0 = Instant::now();
        q.shut_down_with_drain().await;
        // Both keys (one in flight, one queued) finished before it returned.
        assert_eq!(Instant::now() - t0, ms(200));
        let finished = worker.await.unwrap();
        assert_eq!(finished.iter().map(|f| f.0).collect::<Vec<_>>(), vec![1, 2]);
        assert!(q.get().await.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn metrics_are_exported() {
        let mut registry = Registry::default();
        let metrics = WorkQueueMetrics::register(&mut registry);
        let q: WorkQueue<&str> =
            WorkQueue::with_metrics("pods", ExponentialBackoff::new(ms(5), ms(1000)), &metrics);
        q.add("a");
        q.add("b");
        q.add("a"); // de-duplicated: not counted as an add
        tokio::time::advance(ms(20)).await;
        let k = q.get().await.unwrap();
        tokio::time::advance(ms(30)).await;
        q.done(&k);
        q.add_rate_limited("c");
        let mut out = String::new();
        encode(&mut out, &registry).unwrap();
        for want in [
            r#"workqueue_depth{name="pods"} 1"#,
            r#"workqueue_adds_total{name="pods"} 2"#,
            r#"workqueue_retries_total{name="pods"} 1"#,
            r#"workqueue_queue_duration_seconds_sum{name="pods"} 0.02"#,
            r#"workqueue_queue_duration_seconds_count{name="pods"} 1"#,
            r#"workqueue_work_duration_seconds_sum{name="pods"} 0.03"#,
        ] {
            assert!(out.contains(want), "missing {want:?} in\n{out}");
        }
    }
}
