//! The watch cache (kube-apiserver's `cacher`): one etcd watch per resource
//! feeds an in-memory copy of every object plus a window of recent events.
//! Lists and watches are served from here, so a thousand watchers cost one
//! etcd watch, and a LIST of 10,000 pods never touches etcd.
//!
//! Invariants:
//! - `rv` is the newest etcd revision the cache has fully applied; lists
//!   served from the cache carry it as their resourceVersion.
//! - `events` holds every change with revision in `(oldest, rv]`. A watch
//!   from an older revision cannot be replayed: 410 Gone (`Expired`), exactly
//!   as upstream answers `too old resource version`.
//! - Each object is serialised once, when it enters the cache; list and watch
//!   responses are built by concatenating those bytes.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use machinery::resources::ResourceInfo;
use serde_json::Value;
use tokio::sync::{broadcast, mpsc, watch};

use super::etcd::{Etcd, Kv};
use crate::status::ApiError;

/// How many past events a watch can resume from (upstream sizes the cache
/// window dynamically; a fixed window is simpler and enough here).
const EVENT_WINDOW: usize = 20_000;
/// A watcher that falls this far behind is closed, as upstream closes slow
/// watchers; the client re-watches from its last resourceVersion.
const BROADCAST_CAPACITY: usize = 32_768;
/// How `follow_once` reports that the revision to resume from is compacted.
const COMPACTED: &str = "compacted";

/// One object as the cache holds it.
#[derive(Debug)]
pub struct CachedObject {
    pub key: String,
    pub namespace: String,
    pub name: String,
    pub rv: i64,
    pub value: Value,
    /// `value` serialised, with `metadata.resourceVersion` set.
    pub json: Bytes,
}

impl CachedObject {
    /// Builds the cached form of a stored value: the object's
    /// resourceVersion is the revision at which it was written (or deleted).
    pub fn from_stored(key: &str, raw: &[u8], rv: i64) -> Option<Self> {
        let mut value: Value = serde_json::from_slice(raw).ok()?;
        value.get_mut("metadata")?.as_object_mut()?.insert("resourceVersion".into(), Value::String(rv.to_string()));
        let meta = &value["metadata"];
        let namespace = meta["namespace"].as_str().unwrap_or("").to_string();
        let name = meta["name"].as_str().unwrap_or("").to_string();
        let json = Bytes::from(serde_json::to_vec(&value).ok()?);
        Some(CachedObject { key: key.to_string(), namespace, name, rv, value, json })
    }

    pub fn labels(&self) -> Option<BTreeMap<String, String>> {
        self.value["metadata"]["labels"]
            .as_object()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string())).collect())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

#[derive(Debug)]
pub struct CacheEvent {
    pub kind: EventType,
    pub object: Arc<CachedObject>,
    /// The object before this change (for selector-filtered watches, which
    /// must turn "stopped matching" into DELETED).
    pub prev: Option<Arc<CachedObject>>,
}

struct Inner {
    objects: BTreeMap<String, Arc<CachedObject>>,
    events: VecDeque<Arc<CacheEvent>>,
    rv: i64,
    /// Events cover revisions after this one.
    oldest: i64,
}

pub struct WatchCache {
    pub resource: &'static ResourceInfo,
    prefix: String,
    inner: RwLock<Inner>,
    events_tx: broadcast::Sender<Arc<CacheEvent>>,
    rv_tx: watch::Sender<i64>,
    progress_tx: mpsc::UnboundedSender<()>,
    /// The newest revision this apiserver itself wrote to the resource: a
    /// cache behind it would not show a client its own write yet.
    own_write_rv: std::sync::atomic::AtomicI64,
}

/// What a list or watch asks for.
pub struct Snapshot {
    pub rv: i64,
    pub items: Vec<Arc<CachedObject>>,
}

impl WatchCache {
    /// Lists the resource from etcd, then keeps following it with one etcd
    /// watch. Returns once the initial list is loaded.
    pub async fn start(etcd: Etcd, prefix: &str, resource: &'static ResourceInfo) -> Result<Arc<Self>, ApiError> {
        let prefix = machinery::resources::collection_key(prefix, resource, None);
        let (events_tx, _) = broadcast::channel(BROADCAST_CAPACITY);
        let (rv_tx, _) = watch::channel(0);
        let (progress_tx, progress_rx) = mpsc::unbounded_channel();
        let cache = Arc::new(WatchCache {
            own_write_rv: Default::default(),
            resource,
            prefix: prefix.clone(),
            inner: RwLock::new(Inner { objects: BTreeMap::new(), events: VecDeque::new(), rv: 0, oldest: 0 }),
            events_tx,
            rv_tx,
            progress_tx,
        });
        let rv = cache.relist(&etcd).await?;
        let c = cache.clone();
        tokio::spawn(async move { c.follow(etcd, rv, progress_rx).await });
        Ok(cache)
    }

    /// (Re)loads every object from etcd and makes that the cache's state.
    /// Differences from the previous state become events, so watchers see a
    /// consistent stream even across an etcd watch restart.
    async fn relist(&self, etcd: &Etcd) -> Result<i64, ApiError> {
        let (kvs, rv, _) = etcd
            .range(&self.prefix, None, 0, 0)
            .await
            .map_err(|e| ApiError::internal(format!("initial list of {}: {e}", self.resource.plural)))?;
        let mut fresh = BTreeMap::new();
        for Kv { key, value, mod_revision } in kvs {
            if let Some(o) = CachedObject::from_stored(&key, &value, mod_revision) {
                fresh.insert(key, Arc::new(o));
            }
        }
        let mut inner = self.inner.write().unwrap();
        let first_load = inner.rv == 0;
        if !first_load {
            let old = std::mem::take(&mut inner.objects);
            for (k, o) in &fresh {
                match old.get(k) {
                    None => self.push(&mut inner, EventType::Added, o.clone(), None),
                    Some(p) if p.rv != o.rv => self.push(&mut inner, EventType::Modified, o.clone(), Some(p.clone())),
                    _ => {}
                }
            }
            for (k, p) in &old {
                if !fresh.contains_key(k) {
                    let gone = Arc::new(with_rv(p, rv));
                    self.push(&mut inner, EventType::Deleted, gone, Some(p.clone()));
                }
            }
        } else {
            inner.oldest = rv;
        }
        inner.objects = fresh;
        inner.rv = rv;
        drop(inner);
        self.rv_tx.send_replace(rv);
        Ok(rv)
    }

    async fn follow(self: Arc<Self>, etcd: Etcd, mut rv: i64, mut progress_rx: mpsc::UnboundedReceiver<()>) {
        loop {
            match self.follow_once(&etcd, rv, &mut progress_rx).await {
                Ok(()) => return,
                Err(e) => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    // Resume from the last applied revision (another etcd
                    // member has the same history), so watchers get every
                    // event in order with its own resourceVersion, as on
                    // every other apiserver. Only a compacted history
                    // forces a re-list.
                    if !e.starts_with(COMPACTED) {
                        tracing::warn!(resource = self.resource.plural, "etcd watch ended: {e}; resuming");
                        rv = self.current_rv();
                        continue;
                    }
                    tracing::warn!(resource = self.resource.plural, "etcd watch ended: {e}; re-listing");
                    match self.relist(&etcd).await {
                        Ok(r) => rv = r,
                        Err(e) => tracing::warn!("re-list failed: {}", e.message),
                    }
                }
            }
        }
    }

    async fn follow_once(
        &self,
        etcd: &Etcd,
        rv: i64,
        progress_rx: &mut mpsc::UnboundedReceiver<()>,
    ) -> Result<(), String> {
        let (mut watcher, mut stream) = etcd.watch_prefix(&self.prefix, rv + 1).await.map_err(|e| e.to_string())?;
        loop {
            tokio::select! {
                msg = stream.message() => {
                    let resp = match msg {
                        Ok(Some(r)) => r,
                        Ok(None) => return Err("stream closed".into()),
                        Err(e) => return Err(e.to_string()),
                    };
                    if resp.compact_revision() > 0 {
                        return Err(format!("{COMPACTED} (at {})", resp.compact_revision()));
                    }
                    if resp.canceled() {
                        return Err(format!("watch canceled: {}", resp.cancel_reason()));
                    }
                    // The "created" answer carries the store's current
                    // revision, but the events up to it have not been sent
                    // yet: it is not a progress notification.
                    if resp.created() {
                        continue;
                    }
                    let header_rv = resp.header().map(|h| h.revision()).unwrap_or(0);
                    self.apply(resp.events(), header_rv);
                }
                Some(()) = progress_rx.recv() => {
                    // Coalesce a burst of requests into one.
                    while progress_rx.try_recv().is_ok() {}
                    watcher.request_progress().await.map_err(|e| e.to_string())?;
                }
            }
        }
    }

    /// Applies one etcd watch response. A response without events is a
    /// progress notification: etcd promises every change up to its header
    /// revision has been sent, so the cache is current up to there.
    fn apply(&self, events: &[etcd_client::Event], header_rv: i64) {
        let mut inner = self.inner.write().unwrap();
        for ev in events {
            let Some(kv) = ev.kv() else { continue };
            let key = String::from_utf8_lossy(kv.key()).into_owned();
            let rev = kv.mod_revision();
            match ev.event_type() {
                etcd_client::EventType::Put => {
                    let Some(obj) = CachedObject::from_stored(&key, kv.value(), rev) else {
                        tracing::warn!(%key, "undecodable value in etcd; skipped");
                        continue;
                    };
                    let obj = Arc::new(obj);
                    let prev = inner.objects.insert(key, obj.clone());
                    let kind = if prev.is_some() { EventType::Modified } else { EventType::Added };
                    self.push(&mut inner, kind, obj, prev);
                }
                etcd_client::EventType::Delete => {
                    if let Some(prev) = inner.objects.remove(&key) {
                        let gone = Arc::new(with_rv(&prev, rev));
                        self.push(&mut inner, EventType::Deleted, gone, Some(prev));
                    }
                }
            }
            inner.rv = inner.rv.max(rev);
        }
        if events.is_empty() || header_rv > inner.rv {
            // Progress notify, or the header of the last batch.
            if events.is_empty() {
                inner.rv = inner.rv.max(header_rv);
            }
        }
        let rv = inner.rv;
        drop(inner);
        self.rv_tx.send_if_modified(|cur| {
            if *cur != rv {
                *cur = rv;
                true
            } else {
                false
            }
        });
    }

    fn push(&self, inner: &mut Inner, kind: EventType, object: Arc<CachedObject>, prev: Option<Arc<CachedObject>>) {
        let ev = Arc::new(CacheEvent { kind, object, prev });
        inner.events.push_back(ev.clone());
        if inner.events.len() > EVENT_WINDOW {
            if let Some(old) = inner.events.pop_front() {
                inner.oldest = old.object.rv;
            }
        }
        // No receivers is fine: nobody is watching.
        let _ = self.events_tx.send(ev);
    }

    /// Waits until the cache has caught up with etcd revision `rv` — the
    /// "consistent read from cache" of KEP-2340: ask etcd for a progress
    /// notification rather than re-reading the data.
    pub async fn wait_for(&self, rv: i64, timeout: Duration) -> Result<(), ApiError> {
        let mut rx = self.rv_tx.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if *rx.borrow_and_update() >= rv {
                return Ok(());
            }
            let _ = self.progress_tx.send(());
            match tokio::time::timeout_at(deadline.min(tokio::time::Instant::now() + Duration::from_millis(100)), rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(ApiError::internal("watch cache stopped")),
                Err(_) if tokio::time::Instant::now() >= deadline => {
                    return Err(ApiError::timeout(format!(
                        "Too large resource version: {rv}, current: {}",
                        *rx.borrow()
                    )))
                }
                Err(_) => {}
            }
        }
    }

    /// Records that this apiserver wrote the resource at revision `rv`.
    pub fn note_own_write(&self, rv: i64) {
        self.own_write_rv.fetch_max(rv, std::sync::atomic::Ordering::Relaxed);
    }

    /// Waits (at most `timeout`) until the cache has seen this apiserver's
    /// own writes — upstream's quota admission does a live lookup for the
    /// same reason: a ResourceQuota created a moment ago must already count.
    pub async fn catch_up_own_writes(&self, timeout: Duration) -> Result<(), ApiError> {
        let want = self.own_write_rv.load(std::sync::atomic::Ordering::Relaxed);
        if self.current_rv() >= want {
            return Ok(());
        }
        self.wait_for(want, timeout).await
    }

    pub fn current_rv(&self) -> i64 {
        self.inner.read().unwrap().rv
    }

    pub fn get(&self, key: &str) -> Option<Arc<CachedObject>> {
        self.inner.read().unwrap().objects.get(key).cloned()
    }

    /// Every object in `namespace` (or all), filtered, with the cache's rv.
    pub fn list(&self, namespace: Option<&str>, filter: &dyn Fn(&CachedObject) -> bool) -> Snapshot {
        let inner = self.inner.read().unwrap();
        let prefix = match namespace {
            Some(ns) if self.resource.namespaced => format!("{}{}/", self.prefix, ns),
            _ => self.prefix.clone(),
        };
        let items = inner
            .objects
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter(|(_, o)| filter(o))
            .map(|(_, o)| o.clone())
            .collect();
        Snapshot { rv: inner.rv, items }
    }

    /// Starts a watch. With `from = None` the watcher first gets the current
    /// state as ADDED events (what upstream does for resourceVersion "0" or
    /// unset); with `Some(rv)` it gets every change after `rv`, or 410 if the
    /// window no longer reaches back that far.
    pub fn watch(
        &self,
        from: Option<i64>,
        namespace: Option<&str>,
        filter: &dyn Fn(&CachedObject) -> bool,
    ) -> Result<(Vec<Arc<CacheEvent>>, broadcast::Receiver<Arc<CacheEvent>>, i64), ApiError> {
        // Holding the lock while subscribing guarantees no event is missed
        // or delivered twice between the replay and the live stream.
        let inner = self.inner.read().unwrap();
        let rx = self.events_tx.subscribe();
        let in_ns = |o: &CachedObject| match namespace {
            Some(ns) if self.resource.namespaced => o.namespace == ns,
            _ => true,
        };
        let replay = match from {
            None => inner
                .objects
                .values()
                .filter(|o| in_ns(o) && filter(o))
                .map(|o| Arc::new(CacheEvent { kind: EventType::Added, object: o.clone(), prev: None }))
                .collect(),
            Some(rv) if rv < inner.oldest => {
                return Err(ApiError::gone(format!("too old resource version: {} ({})", rv, inner.oldest + 1)));
            }
            Some(rv) => inner
                .events
                .iter()
                .filter(|e| e.object.rv > rv && in_ns(&e.object))
                .cloned()
                .collect(),
        };
        Ok((replay, rx, inner.rv))
    }
}

/// A copy of an object with another resourceVersion: a deleted object is
/// reported at the revision of its deletion.
fn with_rv(o: &CachedObject, rv: i64) -> CachedObject {
    let mut value = o.value.clone();
    value["metadata"]["resourceVersion"] = Value::String(rv.to_string());
    let json = Bytes::from(serde_json::to_vec(&value).unwrap_or_default());
    CachedObject { key: o.key.clone(), namespace: o.namespace.clone(), name: o.name.clone(), rv, value, json }
}
