//! The event recorder: what `kubectl describe` shows under "Events"
//! (client-go's `tools/record`, writing core/v1 `Event` objects).
//!
//! A component calls [`EventRecorder::event`] ("Scheduled: Successfully
//! assigned default/web-1 to node-2") and moves on: recording never blocks
//! and never fails the caller. Events go through a bounded channel to a
//! background task, which drops them (with a log line) if the channel is
//! full — events are best-effort diagnostics, not state.
//!
//! The background task runs client-go's `EventCorrelator`, which exists so a
//! crash-looping pod or an unschedulable pod retried every second does not
//! flood etcd with Event objects:
//!
//! 1. **Spam filter** — a token bucket per (source, involved object): 25
//!    events at once, then one per 5 minutes. Events over the limit are
//!    dropped.
//! 2. **Aggregation of similar events** — once one object has had 10
//!    events with the same type and reason but *different* messages within
//!    10 minutes, further ones become a single event with the message
//!    `(combined from similar events): <latest message>`.
//! 3. **Deduplication of identical events** — an event identical to one
//!    already written (same object, type, reason, message) is not created
//!    again: the existing object is PATCHed with `count + 1` and a new
//!    `lastTimestamp`. That is why `kubectl get events` shows
//!    "x12 over 3m".
//!
//! Steps 1–3 are a pure [`Correlator`] (tested without a server); the task
//! around it does the API calls.
//!
//! 4. **Write rate** — the writer takes a token from a bucket before each
//!    API call, as client-go's REST client does with the component's
//!    `--kube-api-qps`/`--kube-api-burst` (kube-scheduler: 50/100). While it
//!    waits the queue fills, and events beyond its 1000 are dropped: a
//!    scheduler binding 1000 pods/s writes 50 `Scheduled` events per second,
//!    not 1000 — etcd's writes go to the bindings, as in upstream.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::workqueue::TokenBucket;

/// `type` of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// A reference to `obj` for `involvedObject` (client-go's `GetReference`).
pub fn object_reference<K: Resource<DynamicType = ()>>(obj: &K) -> ObjectReference {
    let mut r = obj.object_ref(&());
    r.resource_version = obj.meta().resource_version.clone();
    r
}

// ---------------------------------------------------------------------------
// The correlator (client-go `events_cache.go`), no IO
// ---------------------------------------------------------------------------

/// Tunables; the defaults are client-go's.
#[derive(Debug, Clone)]
pub struct CorrelatorConfig {
    /// Spam filter: events allowed at once per (source, object)…
    pub spam_burst: u32,
    /// …and the refill rate after that, per second (1/300 = one per 5 min).
    pub spam_qps: f64,
    /// Aggregate after this many distinct messages for one object+reason…
    pub aggregate_max_events: usize,
    /// …seen within this interval.
    pub aggregate_interval: Duration,
    /// How many distinct events are remembered for deduplication.
    pub max_cache_entries: usize,
}

impl Default for CorrelatorConfig {
    fn default() -> Self {
        CorrelatorConfig {
            spam_burst: 25,
            spam_qps: 1.0 / 300.0,
            aggregate_max_events: 10,
            aggregate_interval: Duration::from_secs(600),
            max_cache_entries: 4096,
        }
    }
}

/// What to do with an event.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Create this new Event object.
    Create(Event),
    /// An identical event exists: bump its count (a merge patch with
    /// `count`, `lastTimestamp` and `message`). `event` is the full updated
    /// object, used if the old one has gone (e.g. expired by TTL).
    Patch { namespace: String, name: String, event: Event },
    /// Over the spam limit: drop it.
    Drop,
}

struct Observed {
    name: String,
    count: i32,
    first_timestamp: Option<Time>,
}

struct Aggregate {
    messages: HashSet<String>,
    last: Instant,
}

/// Spam filter + aggregation + deduplication state.
pub struct Correlator {
    config: CorrelatorConfig,
    spam: HashMap<String, TokenBucket>,
    aggregates: HashMap<String, Aggregate>,
    /// Dedup key → the Event object already written for it.
    observed: HashMap<String, Observed>,
    /// Insertion order of `observed`, to forget the oldest when full.
    observed_order: std::collections::VecDeque<String>,
}

fn join(parts: &[&str]) -> String {
    parts.join("\u{0}")
}

fn s(o: &Option<String>) -> &str {
    o.as_deref().unwrap_or("")
}

impl Correlator {
    pub fn new(config: CorrelatorConfig) -> Self {
        Correlator {
            config,
            spam: HashMap::new(),
            aggregates: HashMap::new(),
            observed: HashMap::new(),
            observed_order: Default::default(),
        }
    }

    /// Decide what to do with a freshly made `event`, seen at `now`.
    pub fn observe(&mut self, mut event: Event, now: Instant) -> Action {
        let src = event.source.clone().unwrap_or_default();
        let io = &event.involved_object;
        let object = [s(&src.component), s(&src.host), s(&io.kind), s(&io.namespace), s(&io.name), s(&io.uid), s(&io.api_version)];

        // 1. Spam filter, per source + involved object.
        let spam_key = join(&object);
        let bucket = self
            .spam
            .entry(spam_key)
            .or_insert_with(|| TokenBucket::new_at(self.config.spam_qps, self.config.spam_burst, now));
        if !bucket.try_accept_at(now) {
            return Action::Drop;
        }

        // 2. Aggregation of similar events (same object, type and reason).
        let mut agg_parts = object.to_vec();
        agg_parts.extend([s(&event.type_), s(&event.reason), s(&event.reporting_component), s(&event.reporting_instance)]);
        let agg_key = join(&agg_parts);
        let interval = self.config.aggregate_interval;
        let agg = self.aggregates.entry(agg_key.clone()).or_insert_with(|| Aggregate { messages: HashSet::new(), last: now });
        if now.saturating_duration_since(agg.last) > interval {
            agg.messages.clear();
        }
        agg.last = now;
        agg.messages.insert(s(&event.message).to_string());
        let dedup_key = if agg.messages.len() >= self.config.aggregate_max_events {
            event.message = Some(format!("(combined from similar events): {}", s(&event.message)));
            agg_key
        } else {
            let mut parts = agg_parts[..7].to_vec();
            parts.extend([s(&io.field_path), s(&event.type_), s(&event.reason), s(&event.message)]);
            join(&parts)
        };

        // 3. Deduplication: an identical event becomes count + 1.
        match self.observed.get_mut(&dedup_key) {
            Some(seen) => {
                seen.count += 1;
                event.count = Some(seen.count);
                event.first_timestamp = seen.first_timestamp.clone();
                event.metadata.name = Some(seen.name.clone());
                Action::Patch {
                    namespace: event.metadata.namespace.clone().unwrap_or_default(),
                    name: seen.name.clone(),
                    event,
                }
            }
            None => {
                if self.observed.len() >= self.config.max_cache_entries {
                    if let Some(oldest) = self.observed_order.pop_front() {
                        self.observed.remove(&oldest);
                    }
                }
                self.observed.insert(
                    dedup_key.clone(),
                    Observed {
                        name: event.metadata.name.clone().unwrap_or_default(),
                        count: event.count.unwrap_or(1),
                        first_timestamp: event.first_timestamp.clone(),
                    },
                );
                self.observed_order.push_back(dedup_key);
                Action::Create(event)
            }
        }
    }
}

/// Build the Event object client-go's recorder would write.
fn make_event(
    source: &EventSource,
    involved: ObjectReference,
    type_: EventType,
    reason: &str,
    message: &str,
    now: DateTime<Utc>,
) -> Event {
    let namespace = involved.namespace.clone().filter(|n| !n.is_empty()).unwrap_or_else(|| "default".into());
    // `<object name>.<unix nanos in hex>`, unique enough and sortable.
    let name = format!("{}.{:x}", s(&involved.name), now.timestamp_nanos_opt().unwrap_or_default());
    let ts = Time(now.with_nanosecond_trunc());
    Event {
        metadata: ObjectMeta { name: Some(name), namespace: Some(namespace), ..Default::default() },
        involved_object: involved,
        reason: Some(reason.to_string()),
        message: Some(message.to_string()),
        source: Some(source.clone()),
        first_timestamp: Some(ts.clone()),
        last_timestamp: Some(ts),
        count: Some(1),
        type_: Some(type_.as_str().to_string()),
        reporting_component: source.component.clone(),
        reporting_instance: source.host.clone(),
        ..Default::default()
    }
}

/// `Time` is serialised with whole seconds; keep the value consistent.
trait TruncSecs {
    fn with_nanosecond_trunc(self) -> Self;
}
impl TruncSecs for DateTime<Utc> {
    fn with_nanosecond_trunc(self) -> Self {
        DateTime::from_timestamp(self.timestamp(), 0).unwrap_or(self)
    }
}

// ---------------------------------------------------------------------------
// The recorder
// ---------------------------------------------------------------------------

/// Records events for one component. Cheap to clone; all clones share the
/// background writer task, which ends when the last clone is dropped.
#[derive(Clone)]
pub struct EventRecorder {
    source: EventSource,
    tx: mpsc::Sender<Event>,
    /// Events dropped because the queue was full (logged now and then).
    dropped: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// client-go's broadcaster queue length.
const QUEUE_LEN: usize = 1000;

/// How fast the writer may call the apiserver: kube-scheduler's default
/// `--kube-api-qps` and `--kube-api-burst`, which its event client shares.
#[derive(Debug, Clone, Copy)]
pub struct WriteLimits {
    pub qps: f64,
    pub burst: u32,
}

impl Default for WriteLimits {
    fn default() -> Self {
        WriteLimits { qps: 50.0, burst: 100 }
    }
}

impl EventRecorder {
    /// A recorder reporting as `component` (e.g. `default-scheduler`) on
    /// `host` (usually the node or host name, may be empty). Must be called
    /// inside a tokio runtime: it spawns the writer task.
    pub fn new(client: Client, component: &str, host: &str) -> Self {
        Self::with_config(client, component, host, CorrelatorConfig::default())
    }

    pub fn with_config(client: Client, component: &str, host: &str, config: CorrelatorConfig) -> Self {
        Self::with_limits(client, component, host, config, WriteLimits::default())
    }

    pub fn with_limits(client: Client, component: &str, host: &str, config: CorrelatorConfig, limits: WriteLimits) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE_LEN);
        let bucket = TokenBucket::new(limits.qps, limits.burst);
        tokio::spawn(writer(client, Correlator::new(config), bucket, rx));
        let source = EventSource {
            component: Some(component.to_string()),
            host: Some(host.to_string()).filter(|h| !h.is_empty()),
        };
        EventRecorder { source, tx, dropped: Default::default() }
    }

    /// Record an event about `obj`. Never blocks, never fails.
    pub fn event<K: Resource<DynamicType = ()>>(&self, obj: &K, type_: EventType, reason: &str, message: &str) {
        self.event_for(object_reference(obj), type_, reason, message)
    }

    /// Record an event about the object `involved` refers to.
    pub fn event_for(&self, involved: ObjectReference, type_: EventType, reason: &str, message: &str) {
        let event = make_event(&self.source, involved, type_, reason, message, Utc::now());
        if self.tx.try_send(event).is_err() {
            // One line per 1000 drops: a busy scheduler drops hundreds a second.
            let n = self.dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if n % 1000 == 0 {
                tracing::warn!(reason, dropped = n + 1, "event queue full (write rate limit); dropping events");
            }
        }
    }
}

/// The background task: correlate, then create or patch.
async fn writer(client: Client, mut correlator: Correlator, bucket: TokenBucket, mut rx: mpsc::Receiver<Event>) {
    while let Some(event) = rx.recv().await {
        let action = correlator.observe(event, Instant::now());
        if matches!(action, Action::Drop) {
            continue;
        }
        let wait = bucket.reserve();
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        if let Err(e) = write(&client, action).await {
            tracing::warn!(error = %e, "could not write event");
        }
    }
}

async fn write(client: &Client, action: Action) -> kube::Result<()> {
    match action {
        Action::Drop => Ok(()),
        Action::Create(event) => {
            let api: Api<Event> = Api::namespaced(client.clone(), s(&event.metadata.namespace));
            api.create(&PostParams::default(), &event).await.map(drop)
        }
        Action::Patch { namespace, name, event } => {
            let api: Api<Event> = Api::namespaced(client.clone(), &namespace);
            let patch = serde_json::json!({
                "count": event.count,
                "lastTimestamp": event.last_timestamp,
                "message": event.message,
            });
            match api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                Ok(_) => Ok(()),
                // The original is gone (events expire): create it again,
                // keeping the count, as client-go does.
                Err(kube::Error::Api(e)) if e.code == 404 => {
                    let mut event = event;
                    event.metadata.resource_version = None;
                    api.create(&PostParams::default(), &event).await.map(drop)
                }
                Err(e) => Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod_ref(name: &str) -> ObjectReference {
        ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            namespace: Some("default".into()),
            name: Some(name.into()),
            uid: Some(format!("uid-{name}")),
            ..Default::default()
        }
    }

    fn source() -> EventSource {
        EventSource { component: Some("default-scheduler".into()), host: None }
    }

    /// `web.<hex nanos>` → `web@<script line>` (event i is made at base + i s).
    fn short(name: &str) -> String {
        let (obj, hex) = name.rsplit_once('.').unwrap();
        let nanos = i64::from_str_radix(hex, 16).unwrap();
        format!("{obj}@{}", nanos / 1_000_000_000 - 1_700_000_000)
    }

    /// Feeds events "POD TYPE REASON MESSAGE…" (one per line, `+N` lines
    /// advance the clock by N seconds) through a correlator with small
    /// limits (burst 5, 1 token per 10 s, aggregate after 3 messages within
    /// 60 s) and compares the actions, written as `create NAME count=…
    /// msg=…`, `patch NAME count=… msg=…`, or `drop`.
    fn check(script: &str, expect: &[&str]) {
        let config = CorrelatorConfig {
            spam_burst: 5,
            spam_qps: 0.1,
            aggregate_max_events: 3,
            aggregate_interval: Duration::from_secs(60),
            max_cache_entries: 100,
        };
        let mut c = Correlator::new(config);
        let start = Instant::now();
        let mut now = start;
        let mut got = Vec::new();
        for (i, line) in script.lines().map(str::trim).filter(|l| !l.is_empty()).enumerate() {
            if let Some(secs) = line.strip_prefix('+') {
                now += Duration::from_secs(secs.parse().unwrap());
                continue;
            }
            let mut w = line.splitn(4, ' ');
            let (pod, ty, reason, msg) = (w.next().unwrap(), w.next().unwrap(), w.next().unwrap(), w.next().unwrap());
            let ty = if ty == "W" { EventType::Warning } else { EventType::Normal };
            // Distinct names per call, as timestamps would make them.
            let wall = DateTime::from_timestamp(1_700_000_000 + i as i64, 0).unwrap();
            let e = make_event(&source(), pod_ref(pod), ty, reason, msg, wall);
            got.push(match c.observe(e, now) {
                Action::Drop => "drop".to_string(),
                Action::Create(e) => format!("create {} count={} msg={}", short(s(&e.metadata.name)), e.count.unwrap(), s(&e.message)),
                Action::Patch { name, event, .. } => {
                    assert_eq!(event.metadata.name.as_deref(), Some(name.as_str()));
                    format!("patch {} count={} msg={}", short(&name), event.count.unwrap(), s(&event.message))
                }
            });
        }
        assert_eq!(got, expect, "script:\n{script}");
    }

    #[test]
    fn identical_events_are_counted_not_duplicated() {
        check(
            "web W FailedScheduling 0/3 nodes are available
             web W FailedScheduling 0/3 nodes are available
             web W FailedScheduling 0/3 nodes are available
             db W FailedScheduling 0/3 nodes are available
             web N Scheduled assigned to n1",
            &[
                "create web@0 count=1 msg=0/3 nodes are available",
                "patch web@0 count=2 msg=0/3 nodes are available",
                "patch web@0 count=3 msg=0/3 nodes are available",
                "create db@3 count=1 msg=0/3 nodes are available",
                "create web@4 count=1 msg=assigned to n1",
            ],
        );
    }

    #[test]
    fn spam_filter_limits_each_object() {
        // Burst of 5 per object, then one every 10 s; other objects unaffected.
        check(
            "web N A m
             web N A m
             web N A m
             web N A m
             web N A m
             web N A m
             db N A m
             +10
             web N A m
             web N A m",
            &[
                "create web@0 count=1 msg=m",
                "patch web@0 count=2 msg=m",
                "patch web@0 count=3 msg=m",
                "patch web@0 count=4 msg=m",
                "patch web@0 count=5 msg=m",
                "drop",
                "create db@6 count=1 msg=m",
                "patch web@0 count=6 msg=m",
                "drop",
            ],
        );
    }

    #[test]
    fn similar_events_are_aggregated() {
        // Three distinct messages for one object+reason: the third and later
        // become one "combined" event, itself deduplicated.
        check(
            "web W BackOff m1
             web W BackOff m2
             web W BackOff m3
             web W BackOff m4
             web W BackOff m1",
            &[
                "create web@0 count=1 msg=m1",
                "create web@1 count=1 msg=m2",
                "create web@2 count=1 msg=(combined from similar events): m3",
                "patch web@2 count=2 msg=(combined from similar events): m4",
                "patch web@2 count=3 msg=(combined from similar events): m1",
            ],
        );
        // Aggregation forgets after the interval of silence.
        check(
            "web W BackOff m1
             web W BackOff m2
             +61
             web W BackOff m3",
            &["create web@0 count=1 msg=m1", "create web@1 count=1 msg=m2", "create web@3 count=1 msg=m3"],
        );
    }

    #[test]
    fn event_object_looks_like_kubernetes_writes_it() {
        let wall = DateTime::from_timestamp(1_700_000_000, 123_456_789).unwrap();
        let mut involved = pod_ref("web");
        involved.namespace = None; // cluster-scoped objects' events go to "default"
        let e = make_event(&source(), involved, EventType::Warning, "Failed", "boom", wall);
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["metadata"]["name"], format!("web.{:x}", 1_700_000_000_123_456_789i64));
        assert_eq!(json["metadata"]["namespace"], "default");
        assert_eq!(json["type"], "Warning");
        assert_eq!(json["reason"], "Failed");
        assert_eq!(json["count"], 1);
        assert_eq!(json["firstTimestamp"], "2023-11-14T22:13:20Z");
        assert_eq!(json["lastTimestamp"], "2023-11-14T22:13:20Z");
        assert_eq!(json["source"]["component"], "default-scheduler");
        assert_eq!(json["reportingComponent"], "default-scheduler");
        assert_eq!(json["involvedObject"]["kind"], "Pod");
    }
}
