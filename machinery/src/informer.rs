//! Informers: a local, always-up-to-date copy of some API objects, and
//! callbacks when they change (client-go's `SharedIndexInformer`).
//!
//! Controllers never poll the apiserver. Each one *lists* the objects it
//! cares about once, then *watches* for changes from the list's
//! resourceVersion on, keeping a cache in memory. Reads ("all pods on node
//! n1") are served from that cache; changes are delivered to event handlers,
//! which usually just put the object's key into a [`WorkQueue`].
//!
//! The parts, with client-go's names:
//!
//! - **Reflector** — the list + watch loop. We use kube-runtime's
//!   [`watcher`](kube::runtime::watcher): it lists in pages, watches from the
//!   list's resourceVersion, resumes the watch from the last seen
//!   resourceVersion when the connection drops (an apiserver restart), and
//!   re-lists from scratch when the apiserver answers `410 Gone` (the
//!   version was compacted away) inside the watch stream. It backs off
//!   between failures. kube-runtime stays stuck if the 410 comes as the HTTP
//!   status of the watch request itself; [`Informer::run`] handles that case
//!   by starting a fresh watcher.
//! - **Store / Indexer** — [`Store`]: a thread-safe map from key
//!   (`"namespace/name"`, or `"name"` for cluster-scoped objects, client-go's
//!   `MetaNamespaceKeyFunc`) to `Arc<K>`, plus named secondary indexes
//!   ("pods by nodeName"). Objects are shared, never copied: a read hands
//!   out an `Arc`, so an informer over 10,000 pods costs one copy of each.
//!   We do not use kube-runtime's reflector store because it has no
//!   secondary indexes and does not tell us the *old* object on an update.
//! - **Event handlers** — [`EventHandler`]: `on_add`, `on_update(old, new)`,
//!   `on_delete`, called after the store has been updated. A re-list
//!   (start-up, or after 410) is diffed against the store, as client-go's
//!   `DeltaFIFO.Replace` does: new keys are adds, known keys are updates,
//!   and keys missing from the fresh list are deletes — a delete that
//!   happened while we were disconnected is not lost.
//! - **Resync** — every resync period, `on_update(obj, obj)` for every object
//!   in the store, so a controller periodically re-checks everything even if
//!   it dropped an event (a bug, a failed action) — the "level-triggered"
//!   safety net. Handlers that only care about real changes compare
//!   `resourceVersion`.
//! - **HasSynced** — [`Informer::has_synced`] / [`Informer::wait_for_sync`]:
//!   true once the first full list is in the store. Controllers must wait for
//!   it before acting, or they would act on a partial view ("this node has no
//!   pods" when the list simply has not arrived yet).
//!
//! [`WorkQueue`]: crate::workqueue::WorkQueue

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt;
use kube::runtime::watcher::{self, watcher, Event as WatchEvent};
use kube::runtime::WatchStreamExt;
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, watch};

use crate::workqueue::WorkQueue;

/// client-go's `MetaNamespaceKeyFunc`: `"namespace/name"`, or `"name"` for
/// cluster-scoped objects.
pub fn key_of<K: Resource>(obj: &K) -> String {
    let meta = obj.meta();
    let name = meta.name.as_deref().unwrap_or_default();
    match meta.namespace.as_deref() {
        Some(ns) if !ns.is_empty() => format!("{ns}/{name}"),
        _ => name.to_string(),
    }
}

/// Splits a key back into (namespace, name); namespace is None for
/// cluster-scoped keys.
pub fn split_key(key: &str) -> (Option<&str>, &str) {
    match key.split_once('/') {
        Some((ns, name)) => (Some(ns), name),
        None => (None, key),
    }
}

// ---------------------------------------------------------------------------
// Store (client-go `cache.Indexer`)
// ---------------------------------------------------------------------------

type IndexFn<K> = Arc<dyn Fn(&K) -> Vec<String> + Send + Sync>;

struct StoreInner<K> {
    items: HashMap<String, Arc<K>>,
    indexers: HashMap<String, IndexFn<K>>,
    /// index name → indexed value → keys of the objects with that value.
    indices: HashMap<String, HashMap<String, HashSet<String>>>,
}

impl<K> StoreInner<K> {
    fn index_add(&mut self, key: &str, obj: &K) {
        for (name, f) in &self.indexers {
            let index = self.indices.entry(name.clone()).or_default();
            for value in f(obj) {
                index.entry(value).or_default().insert(key.to_string());
            }
        }
    }

    fn index_remove(&mut self, key: &str, obj: &K) {
        for (name, f) in &self.indexers {
            let Some(index) = self.indices.get_mut(name) else { continue };
            for value in f(obj) {
                if let Some(keys) = index.get_mut(&value) {
                    keys.remove(key);
                    if keys.is_empty() {
                        index.remove(&value);
                    }
                }
            }
        }
    }

    fn insert(&mut self, key: String, obj: Arc<K>) -> Option<Arc<K>> {
        let old = self.items.insert(key.clone(), obj.clone());
        if let Some(old) = &old {
            self.index_remove(&key, old);
        }
        self.index_add(&key, &obj);
        old
    }

    fn remove(&mut self, key: &str) -> Option<Arc<K>> {
        let old = self.items.remove(key)?;
        self.index_remove(key, &old);
        Some(old)
    }
}

/// The informer's local cache: thread-safe, cheap to clone (all clones are
/// the same store), objects shared as `Arc<K>`.
pub struct Store<K> {
    inner: Arc<RwLock<StoreInner<K>>>,
}

impl<K> Clone for Store<K> {
    fn clone(&self) -> Self {
        Store { inner: self.inner.clone() }
    }
}

impl<K> Default for Store<K> {
    fn default() -> Self {
        Store {
            inner: Arc::new(RwLock::new(StoreInner {
                items: HashMap::new(),
                indexers: HashMap::new(),
                indices: HashMap::new(),
            })),
        }
    }
}

impl<K> Store<K> {
    /// The object with key `"namespace/name"` (or `"name"`).
    pub fn get(&self, key: &str) -> Option<Arc<K>> {
        self.inner.read().unwrap().items.get(key).cloned()
    }

    /// The object `name` in `namespace` (None for cluster-scoped objects).
    pub fn get_named(&self, namespace: Option<&str>, name: &str) -> Option<Arc<K>> {
        match namespace {
            Some(ns) => self.get(&format!("{ns}/{name}")),
            None => self.get(name),
        }
    }

    /// All objects, in no particular order.
    pub fn list(&self) -> Vec<Arc<K>> {
        self.inner.read().unwrap().items.values().cloned().collect()
    }

    pub fn keys(&self) -> Vec<String> {
        self.inner.read().unwrap().items.keys().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.inner.read().unwrap().items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Add a named index: `f` gives the values an object is indexed under
    /// (none, one or several). Existing objects are indexed right away.
    pub fn add_index(&self, name: &str, f: impl Fn(&K) -> Vec<String> + Send + Sync + 'static) {
        let mut inner = self.inner.write().unwrap();
        let f: IndexFn<K> = Arc::new(f);
        let mut index: HashMap<String, HashSet<String>> = HashMap::new();
        for (key, obj) in &inner.items {
            for value in f(obj) {
                index.entry(value).or_default().insert(key.clone());
            }
        }
        inner.indices.insert(name.to_string(), index);
        inner.indexers.insert(name.to_string(), f);
    }

    /// Objects whose index `name` contains `value` ("pods on node n1").
    /// Empty if there is no such index.
    pub fn by_index(&self, name: &str, value: &str) -> Vec<Arc<K>> {
        let inner = self.inner.read().unwrap();
        let Some(keys) = inner.indices.get(name).and_then(|i| i.get(value)) else { return Vec::new() };
        keys.iter().filter_map(|k| inner.items.get(k).cloned()).collect()
    }

    /// Keys of the objects whose index `name` contains `value`.
    pub fn index_keys(&self, name: &str, value: &str) -> Vec<String> {
        let inner = self.inner.read().unwrap();
        inner.indices.get(name).and_then(|i| i.get(value)).map(|s| s.iter().cloned().collect()).unwrap_or_default()
    }

    /// The values present in index `name` (e.g. every node that has pods).
    pub fn index_values(&self, name: &str) -> Vec<String> {
        let inner = self.inner.read().unwrap();
        inner.indices.get(name).map(|i| i.keys().cloned().collect()).unwrap_or_default()
    }
}

// ---------------------------------------------------------------------------
// Event handlers (client-go `ResourceEventHandler`)
// ---------------------------------------------------------------------------

/// Callbacks for changes, called after the store reflects the change. They
/// run on the informer's task: keep them quick (typically: enqueue a key)
/// and never block. They must not call [`Informer::add_event_handler`].
pub trait EventHandler<K>: Send + Sync {
    fn on_add(&self, _obj: &Arc<K>) {}
    fn on_update(&self, _old: &Arc<K>, _new: &Arc<K>) {}
    /// `obj` is the last state the informer knew; if the delete happened
    /// while disconnected (found by a re-list), it may be older than the
    /// object's final state (client-go's `DeletedFinalStateUnknown`).
    fn on_delete(&self, _obj: &Arc<K>) {}
}

type AddFn<K> = Box<dyn Fn(&Arc<K>) + Send + Sync>;
type UpdateFn<K> = Box<dyn Fn(&Arc<K>, &Arc<K>) + Send + Sync>;

/// An [`EventHandler`] made of closures (client-go's
/// `ResourceEventHandlerFuncs`); unset callbacks do nothing.
pub struct HandlerFns<K> {
    add: Option<AddFn<K>>,
    update: Option<UpdateFn<K>>,
    delete: Option<AddFn<K>>,
}

impl<K> Default for HandlerFns<K> {
    fn default() -> Self {
        HandlerFns { add: None, update: None, delete: None }
    }
}

impl<K> HandlerFns<K> {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn on_add(mut self, f: impl Fn(&Arc<K>) + Send + Sync + 'static) -> Self {
        self.add = Some(Box::new(f));
        self
    }
    pub fn on_update(mut self, f: impl Fn(&Arc<K>, &Arc<K>) + Send + Sync + 'static) -> Self {
        self.update = Some(Box::new(f));
        self
    }
    pub fn on_delete(mut self, f: impl Fn(&Arc<K>) + Send + Sync + 'static) -> Self {
        self.delete = Some(Box::new(f));
        self
    }
}

impl<K> EventHandler<K> for HandlerFns<K> {
    fn on_add(&self, obj: &Arc<K>) {
        if let Some(f) = &self.add {
            f(obj)
        }
    }
    fn on_update(&self, old: &Arc<K>, new: &Arc<K>) {
        if let Some(f) = &self.update {
            f(old, new)
        }
    }
    fn on_delete(&self, obj: &Arc<K>) {
        if let Some(f) = &self.delete {
            f(obj)
        }
    }
}

/// The most common handler: put the object's key into a work queue on every
/// add, update and delete. The worker then reads the current state from
/// the store (absent = deleted).
pub struct EnqueueKeys(pub WorkQueue<String>);

impl<K: Resource> EventHandler<K> for EnqueueKeys {
    fn on_add(&self, obj: &Arc<K>) {
        self.0.add(key_of(obj.as_ref()));
    }
    fn on_update(&self, _old: &Arc<K>, new: &Arc<K>) {
        self.0.add(key_of(new.as_ref()));
    }
    fn on_delete(&self, obj: &Arc<K>) {
        self.0.add(key_of(obj.as_ref()));
    }
}

/// A change, for consumers that prefer a channel to callbacks
/// ([`Informer::events`]).
#[derive(Debug, Clone)]
pub enum Event<K> {
    Added(Arc<K>),
    Updated { old: Arc<K>, new: Arc<K> },
    Deleted(Arc<K>),
}

struct ChannelHandler<K>(mpsc::UnboundedSender<Event<K>>);

impl<K: Send + Sync> EventHandler<K> for ChannelHandler<K> {
    fn on_add(&self, obj: &Arc<K>) {
        let _ = self.0.send(Event::Added(obj.clone()));
    }
    fn on_update(&self, old: &Arc<K>, new: &Arc<K>) {
        let _ = self.0.send(Event::Updated { old: old.clone(), new: new.clone() });
    }
    fn on_delete(&self, obj: &Arc<K>) {
        let _ = self.0.send(Event::Deleted(obj.clone()));
    }
}

// ---------------------------------------------------------------------------
// Applying watcher events to the store (sans IO, unit-tested)
// ---------------------------------------------------------------------------

type Handlers<K> = Arc<RwLock<Vec<Arc<dyn EventHandler<K>>>>>;
type TransformFn<K> = Arc<dyn Fn(&mut K) + Send + Sync>;

/// Turns the watcher's event stream into store updates and handler calls.
/// No IO: [`Informer::run`] feeds it, tests feed it directly.
struct Reflector<K> {
    store: Store<K>,
    handlers: Handlers<K>,
    transform: Option<TransformFn<K>>,
    /// Objects of a re-list in progress (between `Init` and `InitDone`).
    relist: Option<HashMap<String, Arc<K>>>,
    synced: watch::Sender<bool>,
}

impl<K: Resource> Reflector<K> {
    fn prepare(&self, mut obj: K) -> (String, Arc<K>) {
        if let Some(t) = &self.transform {
            t(&mut obj);
        }
        (key_of(&obj), Arc::new(obj))
    }

    fn apply(&mut self, event: WatchEvent<K>) {
        // Handlers are read-locked for the whole change so that a handler
        // being added sees either the store before it (and is replayed the
        // new state) or gets the notification — never neither, never both.
        let handlers = self.handlers.clone();
        let handlers = handlers.read().unwrap();
        match event {
            WatchEvent::Init => self.relist = Some(HashMap::new()),
            WatchEvent::InitApply(obj) => {
                let (key, obj) = self.prepare(obj);
                self.relist.get_or_insert_with(HashMap::new).insert(key, obj);
            }
            WatchEvent::InitDone => {
                let fresh = self.relist.take().unwrap_or_default();
                self.replace(fresh, &handlers);
                self.synced.send_replace(true);
            }
            WatchEvent::Apply(obj) => {
                let (key, obj) = self.prepare(obj);
                let old = self.store.inner.write().unwrap().insert(key, obj.clone());
                for h in handlers.iter() {
                    match &old {
                        Some(old) => h.on_update(old, &obj),
                        None => h.on_add(&obj),
                    }
                }
            }
            WatchEvent::Delete(obj) => {
                let (key, obj) = self.prepare(obj);
                // Report the deleted object as the watch sent it (its final
                // state); it may be absent from the store if we never saw it.
                if self.store.inner.write().unwrap().remove(&key).is_some() {
                    for h in handlers.iter() {
                        h.on_delete(&obj);
                    }
                }
            }
        }
    }

    /// Replace the store's content with a fresh list (client-go's
    /// `Replace`): adds for new keys, updates for known keys, deletes for
    /// keys the list no longer has.
    fn replace(&mut self, fresh: HashMap<String, Arc<K>>, handlers: &[Arc<dyn EventHandler<K>>]) {
        let mut added = Vec::new();
        let mut updated = Vec::new();
        let mut deleted = Vec::new();
        {
            let mut inner = self.store.inner.write().unwrap();
            let gone: Vec<String> = inner.items.keys().filter(|k| !fresh.contains_key(*k)).cloned().collect();
            for key in gone {
                if let Some(old) = inner.remove(&key) {
                    deleted.push(old);
                }
            }
            for (key, obj) in fresh {
                match inner.insert(key, obj.clone()) {
                    Some(old) => updated.push((old, obj)),
                    None => added.push(obj),
                }
            }
        }
        for h in handlers {
            deleted.iter().for_each(|o| h.on_delete(o));
            updated.iter().for_each(|(old, new)| h.on_update(old, new));
            added.iter().for_each(|o| h.on_add(o));
        }
    }

    /// Resync: `on_update(obj, obj)` for everything in the store.
    fn resync(&self) {
        if !*self.synced.borrow() {
            return;
        }
        let handlers = self.handlers.read().unwrap();
        for obj in self.store.list() {
            for h in handlers.iter() {
                h.on_update(&obj, &obj);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The informer
// ---------------------------------------------------------------------------

struct Shared<K> {
    store: Store<K>,
    handlers: Handlers<K>,
    synced: watch::Sender<bool>,
}

/// List + watch + cache + handlers for one kind of object. Build it, add
/// indexes and handlers, then spawn [`Informer::run`] (or call
/// [`Informer::spawn`]) and [`Informer::wait_for_sync`].
///
/// ```no_run
/// # async fn demo(client: kube::Client) {
/// use k8s_openapi::api::core::v1::Pod;
/// use machinery::{informer::{EnqueueKeys, Informer}, workqueue::WorkQueue};
/// let queue = WorkQueue::new();
/// let pods = Informer::<Pod>::new(kube::Api::all(client))
///     .fields("spec.nodeName=node-1")
///     .resync(std::time::Duration::from_secs(300));
/// pods.add_event_handler(EnqueueKeys(queue.clone()));
/// pods.spawn();
/// pods.wait_for_sync().await;
/// # }
/// ```
pub struct Informer<K> {
    api: Api<K>,
    config: watcher::Config,
    resync: Option<Duration>,
    transform: Option<TransformFn<K>>,
    shared: Arc<Shared<K>>,
}

impl<K: Clone> Clone for Informer<K> {
    fn clone(&self) -> Self {
        Informer {
            api: self.api.clone(),
            config: self.config.clone(),
            resync: self.resync,
            transform: self.transform.clone(),
            shared: self.shared.clone(),
        }
    }
}

// No bound on `K::DynamicType`: dynamic kinds (`DynamicObject`, whose
// type is only known at run time) get informers too — the garbage
// collector watches every resource in the table through them.
impl<K> Informer<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    /// An informer over everything `api` can see: `Api::all` for all
    /// namespaces (or cluster-scoped kinds), `Api::namespaced` for one.
    pub fn new(api: Api<K>) -> Self {
        let (synced, _) = watch::channel(false);
        Informer {
            api,
            // MostRecent (a quorum list, no resourceVersion=0): a re-list after
            // 410 must not go back in time.
            config: watcher::Config::default(),
            resync: None,
            transform: None,
            shared: Arc::new(Shared { store: Store::default(), handlers: Arc::default(), synced }),
        }
    }

    /// Only objects matching this label selector (`app=web,tier!=db`).
    pub fn labels(mut self, selector: &str) -> Self {
        self.config = self.config.labels(selector);
        self
    }

    /// Only objects matching this field selector (`spec.nodeName=n1`).
    pub fn fields(mut self, selector: &str) -> Self {
        self.config = self.config.fields(selector);
        self
    }

    /// Full control over list/watch options (page size, timeouts, bookmarks).
    pub fn watcher_config(mut self, config: watcher::Config) -> Self {
        self.config = config;
        self
    }

    /// Deliver `on_update(obj, obj)` for every cached object this often.
    pub fn resync(mut self, period: Duration) -> Self {
        self.resync = Some(period);
        self
    }

    /// Change each object before it is cached (client-go's `SetTransform`),
    /// e.g. drop `metadata.managedFields` to save memory at scale.
    pub fn transform(mut self, f: impl Fn(&mut K) + Send + Sync + 'static) -> Self {
        self.transform = Some(Arc::new(f));
        self
    }

    /// Add a named index to the store (see [`Store::add_index`]).
    pub fn index(self, name: &str, f: impl Fn(&K) -> Vec<String> + Send + Sync + 'static) -> Self {
        self.shared.store.add_index(name, f);
        self
    }

    /// The local cache. Reads are consistent with what handlers were told.
    pub fn store(&self) -> Store<K> {
        self.shared.store.clone()
    }

    /// Register a handler. If the informer already has objects, the handler
    /// first gets `on_add` for each of them (as client-go does), so late
    /// handlers see the same world as early ones.
    pub fn add_event_handler(&self, handler: impl EventHandler<K> + 'static) {
        let handler: Arc<dyn EventHandler<K>> = Arc::new(handler);
        let mut handlers = self.shared.handlers.write().unwrap();
        for obj in self.shared.store.list() {
            handler.on_add(&obj);
        }
        handlers.push(handler);
    }

    /// A channel of changes, as an alternative to callbacks. The channel is
    /// unbounded: consume it promptly.
    pub fn events(&self) -> mpsc::UnboundedReceiver<Event<K>> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.add_event_handler(ChannelHandler(tx));
        rx
    }

    /// True once the first complete list is in the store.
    pub fn has_synced(&self) -> bool {
        *self.shared.synced.borrow()
    }

    /// Wait until [`Informer::has_synced`].
    pub async fn wait_for_sync(&self) {
        let mut rx = self.shared.synced.subscribe();
        // The sender lives in `shared`, which we hold: this cannot fail.
        let _ = rx.wait_for(|s| *s).await;
    }

    /// Run the informer on a new task. Aborting the handle stops it.
    pub fn spawn(&self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(self.clone().run())
    }

    /// List, watch and keep the store up to date, forever. Connection
    /// problems are logged and retried with backoff; they never end the loop.
    pub async fn run(self) {
        let mut reflector = Reflector {
            store: self.shared.store.clone(),
            handlers: self.shared.handlers.clone(),
            transform: self.transform.clone(),
            relist: None,
            synced: self.shared.synced.clone(),
        };
        let kind = self.api.resource_url().to_string();
        let mut resync = self.resync.map(|p| {
            let mut t = tokio::time::interval_at(tokio::time::Instant::now() + p, p);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        });
        loop {
            // A new watcher starts with a full list.
            let stream = watcher(self.api.clone(), self.config.clone()).default_backoff();
            futures::pin_mut!(stream);
            loop {
                let tick = async {
                    match resync.as_mut() {
                        Some(t) => {
                            t.tick().await;
                        }
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    event = stream.next() => match event {
                        Some(Ok(event)) => reflector.apply(event),
                        Some(Err(watcher::Error::WatchStartFailed(kube::Error::Api(e)))) if e.code == 410 => {
                            // 410 as the HTTP status of the watch request:
                            // kube-runtime would retry the same stale
                            // resourceVersion forever. Start over with a list.
                            tracing::info!(kind, "watch: resourceVersion too old (410), re-listing");
                            break;
                        }
                        Some(Err(e)) => tracing::warn!(kind, error = %e, "list/watch failed, retrying"),
                        None => break,
                    },
                    _ = tick => reflector.resync(),
                }
            }
        }
    }
}

impl<K: Resource> Informer<K> {
    /// The API this informer lists and watches.
    pub fn api(&self) -> &Api<K> {
        &self.api
    }
}

/// For `by_index`: the common "pods by node" index function.
pub fn pod_node_name(pod: &k8s_openapi::api::core::v1::Pod) -> Vec<String> {
    pod.spec.as_ref().and_then(|s| s.node_name.clone()).filter(|n| !n.is_empty()).into_iter().collect()
}

/// For `by_index`: the namespace index (client-go's `NamespaceIndex`).
pub fn namespace<K: Resource>(obj: &K) -> Vec<String> {
    obj.namespace().into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Pod, PodSpec};
    use kube::api::ObjectMeta;
    use std::sync::Mutex;

    /// `ns/name@rv` on node `node` ("" = unscheduled).
    fn pod(id: &str, node: &str) -> Pod {
        let (key, rv) = id.split_once('@').unwrap();
        let (ns, name) = key.split_once('/').unwrap();
        Pod {
            metadata: ObjectMeta {
                namespace: Some(ns.into()),
                name: Some(name.into()),
                resource_version: Some(rv.into()),
                ..Default::default()
            },
            spec: Some(PodSpec { node_name: Some(node.into()), ..Default::default() }),
            ..Default::default()
        }
    }

    fn id(p: &Pod) -> String {
        format!("{}@{}", key_of(p), p.metadata.resource_version.as_deref().unwrap())
    }

    /// Records handler calls as strings.
    struct Recorder(Arc<Mutex<Vec<String>>>);
    impl EventHandler<Pod> for Recorder {
        fn on_add(&self, o: &Arc<Pod>) {
            self.0.lock().unwrap().push(format!("add {}", id(o)));
        }
        fn on_update(&self, old: &Arc<Pod>, new: &Arc<Pod>) {
            self.0.lock().unwrap().push(format!("update {}->{}", id(old), id(new)));
        }
        fn on_delete(&self, o: &Arc<Pod>) {
            self.0.lock().unwrap().push(format!("delete {}", id(o)));
        }
    }

    /// Feeds watcher events to a reflector with a Recorder and a by-node
    /// index. Script lines: `init`, `initapply ID NODE`, `initdone`,
    /// `apply ID NODE`, `delete ID NODE`, `resync`. Returns the trace of
    /// handler calls (re-list diffs sorted within each group for a stable
    /// order), then `synced=…`, the store, and the node index.
    fn check(script: &str, expect: &[&str]) {
        let (synced, _) = watch::channel(false);
        let store = Store::default();
        store.add_index("node", pod_node_name);
        let trace = Arc::new(Mutex::new(Vec::new()));
        let handlers: Handlers<Pod> = Arc::new(RwLock::new(vec![Arc::new(Recorder(trace.clone()))]));
        let mut r = Reflector { store: store.clone(), handlers, transform: None, relist: None, synced };
        for line in script.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let w: Vec<&str> = line.split_whitespace().collect();
            let node = w.get(2).copied().unwrap_or("");
            let before = trace.lock().unwrap().len();
            match w[0] {
                "init" => r.apply(WatchEvent::Init),
                "initapply" => r.apply(WatchEvent::InitApply(pod(w[1], node))),
                "initdone" => r.apply(WatchEvent::InitDone),
                "apply" => r.apply(WatchEvent::Apply(pod(w[1], node))),
                "delete" => r.apply(WatchEvent::Delete(pod(w[1], node))),
                "resync" => r.resync(),
                _ => panic!("bad op {line}"),
            }
            trace.lock().unwrap()[before..].sort();
        }
        let mut got = trace.lock().unwrap().clone();
        got.push(format!("synced={}", *r.synced.borrow()));
        let mut items: Vec<String> = store.list().iter().map(|p| id(p)).collect();
        items.sort();
        got.push(format!("store: {}", items.join(" ")));
        let mut nodes = store.index_values("node");
        nodes.sort();
        for n in nodes {
            let mut keys = store.index_keys("node", &n);
            keys.sort();
            got.push(format!("{n}: {}", keys.join(" ")));
        }
        assert_eq!(got, expect, "script:\n{script}");
    }

    #[test]
    fn initial_list_then_watch() {
        check(
            "init
             initapply ns/a@1 n1
             initapply ns/b@2
             initdone
             apply ns/c@3 n1
             apply ns/b@4 n2
             delete ns/a@5 n1",
            &[
                "add ns/a@1",
                "add ns/b@2",
                "add ns/c@3",
                "update ns/b@2->ns/b@4",
                "delete ns/a@5",
                "synced=true",
                "store: ns/b@4 ns/c@3",
                "n1: ns/c",
                "n2: ns/b",
            ],
        );
    }

    #[test]
    fn not_synced_until_the_list_is_complete() {
        // Objects of an unfinished list are neither stored nor announced.
        check("init\ninitapply ns/a@1 n1", &["synced=false", "store: "]);
    }

    #[test]
    fn relist_after_410_is_diffed_against_the_store() {
        // While disconnected: a deleted, b changed, c unchanged, d created.
        check(
            "init
             initapply ns/a@1 n1
             initapply ns/b@2 n1
             initapply ns/c@3 n2
             initdone
             init
             initapply ns/b@7 n2
             initapply ns/c@3 n2
             initapply ns/d@8 n1
             initdone",
            &[
                "add ns/a@1",
                "add ns/b@2",
                "add ns/c@3",
                "add ns/d@8",
                "delete ns/a@1",
                "update ns/b@2->ns/b@7",
                "update ns/c@3->ns/c@3",
                "synced=true",
                "store: ns/b@7 ns/c@3 ns/d@8",
                "n1: ns/d",
                "n2: ns/b ns/c",
            ],
        );
    }

    #[test]
    fn store_keeps_old_state_during_a_relist() {
        check(
            "init\ninitapply ns/a@1 n1\ninitdone\ninit\ninitapply ns/b@2 n1",
            &["add ns/a@1", "synced=true", "store: ns/a@1", "n1: ns/a"],
        );
    }

    #[test]
    fn resync_redelivers_everything_as_updates() {
        check(
            "resync
             init\ninitapply ns/a@1\ninitapply ns/b@2\ninitdone
             resync",
            &[
                "add ns/a@1",
                "add ns/b@2",
                "update ns/a@1->ns/a@1",
                "update ns/b@2->ns/b@2",
                "synced=true",
                "store: ns/a@1 ns/b@2",
            ],
        );
    }

    #[test]
    fn delete_of_unknown_object_is_ignored() {
        check("init\ninitdone\ndelete ns/x@3", &["synced=true", "store: "]);
    }

    #[test]
    fn keys() {
        let mut node = k8s_openapi::api::core::v1::Node::default();
        node.metadata.name = Some("n1".into());
        assert_eq!(key_of(&node), "n1");
        assert_eq!(key_of(&pod("kube-system/dns@1", "")), "kube-system/dns");
        assert_eq!(split_key("kube-system/dns"), (Some("kube-system"), "dns"));
        assert_eq!(split_key("n1"), (None, "n1"));
    }

    #[test]
    fn store_shares_objects_and_reindexes() {
        let store: Store<Pod> = Store::default();
        let p = Arc::new(pod("ns/a@1", "n1"));
        store.inner.write().unwrap().insert("ns/a".into(), p.clone());
        // Index added after the fact covers existing objects.
        store.add_index("node", pod_node_name);
        assert_eq!(store.by_index("node", "n1").len(), 1);
        // Reads hand out the same allocation, not a copy.
        assert!(Arc::ptr_eq(&store.get("ns/a").unwrap(), &p));
        assert!(Arc::ptr_eq(&store.get_named(Some("ns"), "a").unwrap(), &p));
        assert!(store.by_index("nope", "n1").is_empty());
    }

    /// 10,000 pods on 5,000 nodes through list, updates and a re-list.
    /// Checks the store and index stay exact at that size; prints how long
    /// it took (figures, not asserted).
    #[test]
    fn ten_thousand_pods() {
        let (synced, _) = watch::channel(false);
        let store = Store::default();
        store.add_index("node", pod_node_name);
        let counts = Arc::new(Mutex::new([0usize; 3]));
        let c = counts.clone();
        let handler = HandlerFns::new()
            .on_add({
                let c = c.clone();
                move |_| c.lock().unwrap()[0] += 1
            })
            .on_update({
                let c = c.clone();
                move |_, _| c.lock().unwrap()[1] += 1
            })
            .on_delete(move |_| c.lock().unwrap()[2] += 1);
        let handlers: Handlers<Pod> = Arc::new(RwLock::new(vec![Arc::new(handler)]));
        let mut r = Reflector { store: store.clone(), handlers, transform: None, relist: None, synced };
        let start = std::time::Instant::now();
        r.apply(WatchEvent::Init);
        for i in 0..10_000 {
            r.apply(WatchEvent::InitApply(pod(&format!("ns/p{i}@1"), &format!("n{}", i % 5000))));
        }
        r.apply(WatchEvent::InitDone);
        let listed = start.elapsed();
        // Move every even pod to another node.
        for i in (0..10_000).step_by(2) {
            r.apply(WatchEvent::Apply(pod(&format!("ns/p{i}@2"), &format!("n{}", (i + 1) % 5000))));
        }
        // Re-list without the first 1,000 pods.
        r.apply(WatchEvent::Init);
        for i in 1000..10_000 {
            r.apply(WatchEvent::InitApply(pod(&format!("ns/p{i}@3"), &format!("n{}", i % 5000))));
        }
        r.apply(WatchEvent::InitDone);
        let total = start.elapsed();
        assert_eq!(*counts.lock().unwrap(), [10_000, 5_000 + 9_000, 1_000]);
        assert_eq!(store.len(), 9_000);
        // Node n1000 had p1000 and p6000 (both kept) and nothing else.
        let mut on = store.index_keys("node", "n1000");
        on.sort();
        assert_eq!(on, ["ns/p1000", "ns/p6000"]);
        assert_eq!(store.index_values("node").len(), 5000);
        eprintln!("10k pods: list {listed:?}, list + 5k updates + re-list {total:?} (debug build)");
    }

    #[tokio::test]
    async fn late_handlers_are_replayed_the_store_and_channel_works() {
        let client = kube::Client::try_from(kube::Config::new("http://127.0.0.1:1".parse().unwrap())).unwrap();
        let informer = Informer::<Pod>::new(Api::all(client));
        let mut r = Reflector {
            store: informer.store(),
            handlers: informer.shared.handlers.clone(),
            transform: None,
            relist: None,
            synced: informer.shared.synced.clone(),
        };
        r.apply(WatchEvent::Init);
        r.apply(WatchEvent::InitApply(pod("ns/a@1", "")));
        r.apply(WatchEvent::InitDone);
        assert!(informer.has_synced());
        informer.wait_for_sync().await;
        let mut events = informer.events();
        r.apply(WatchEvent::Apply(pod("ns/a@2", "")));
        match events.recv().await.unwrap() {
            Event::Added(p) => assert_eq!(id(&p), "ns/a@1"),
            e => panic!("{e:?}"),
        }
        match events.recv().await.unwrap() {
            Event::Updated { old, new } => assert_eq!((id(&old), id(&new)), ("ns/a@1".into(), "ns/a@2".into())),
            e => panic!("{e:?}"),
        }
        let queue = WorkQueue::new();
        informer.add_event_handler(EnqueueKeys(queue.clone()));
        assert_eq!(queue.get().await.as_deref(), Some("ns/a"));
    }
}
