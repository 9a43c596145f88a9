//! The garbage collector (upstream `pkg/controller/garbagecollector`):
//! cascading deletion through `metadata.ownerReferences`.
//!
//! An object whose owners are all gone is deleted (*Background*
//! propagation: `kubectl delete deployment x` removes the Deployment at
//! once; the GC then deletes its ReplicaSets, and then their pods). The
//! apiserver records the other two policies as finalizers on the owner,
//! which stays (with a deletionTimestamp) until the GC has done its part:
//!
//! - `orphan` (*Orphan*, `--cascade=orphan`): remove the owner's
//!   reference from every dependent, then the finalizer — the dependents
//!   live on, ownerless.
//! - `foregroundDeletion` (*Foreground*): delete every dependent, and
//!   remove the finalizer only when no dependent with
//!   `blockOwnerDeletion: true` is left. Dependents that own objects
//!   themselves are deleted in the foreground too, so the whole tree goes
//!   bottom-up.
//!
//! Which objects: like upstream (whose `GraphBuilder` runs a metadata
//! informer for every deletable resource discovery finds), the collector
//! watches every stored resource of the API table except Events
//! (upstream's default ignored resources). The kinds other controllers
//! already cache (pods, ReplicaSets, ...) reuse those typed informers;
//! the others get metadata-only informers. So a `--cascade=orphan` or
//! `--cascade=foreground` delete of any kind completes, and dependents of
//! any kind are collected when their owner goes. Like upstream, an owner
//! that the cache does not show is confirmed absent by a live GET (with
//! its UID) before anything is deleted, so a lagging watch never causes a
//! deletion; an owner of a kind rkube does not serve is never guessed gone.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Context as _;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions, PropagationPolicy};
use kube::{Api, Client, Resource};
use machinery::informer::{HandlerFns, Informer, Store};
use machinery::resources::{self, ResourceInfo};
use machinery::workqueue::WorkQueue;
use serde_json::json;

use crate::context::Context;
use crate::controller_utils::*;
use crate::informers::BY_OWNER;

/// Upstream's default `--gc-ignored-resources`: events are never owners
/// worth collecting for, and there are many of them.
fn ignored(r: &ResourceInfo) -> bool {
    r.group.is_empty() && r.plural == "events"
}

/// What the collector reads from a cache: object metadata, by key and by
/// owner UID. Typed and metadata-only stores look the same through it.
trait MetaCache: Send + Sync {
    fn get(&self, key: &str) -> Option<ObjectMeta>;
    fn dependents(&self, owner_uid: &str) -> Vec<ObjectMeta>;
}

impl<K: Resource + Send + Sync> MetaCache for Store<K> {
    fn get(&self, key: &str) -> Option<ObjectMeta> {
        Store::get(self, key).map(|o| o.meta().clone())
    }
    fn dependents(&self, owner_uid: &str) -> Vec<ObjectMeta> {
        self.by_index(BY_OWNER, owner_uid).iter().map(|o| o.meta().clone()).collect()
    }
}

/// One watched resource: its API facts and its cache.
struct Watched {
    info: &'static ResourceInfo,
    cache: Box<dyn MetaCache>,
}

/// The collector's view of the cluster (upstream's dependency graph, here
/// read straight from the informer caches): every watched kind, by kind
/// (kinds are unique in the resource table).
#[derive(Default)]
struct Graph {
    kinds: HashMap<&'static str, Watched>,
}

impl Graph {
    /// The watched resource an owner reference points to, matching its
    /// group too (a `ConfigMap` of another group is not ours).
    fn resource_of(&self, r: &OwnerReference) -> Option<&'static ResourceInfo> {
        let group = r.api_version.split_once('/').map_or("", |(g, _)| g);
        resources::find_kind(group, &r.kind)
    }

    /// The cached object `name` of `kind` (namespace ignored for
    /// cluster-scoped kinds).
    fn get(&self, kind: &str, namespace: &str, name: &str) -> Option<ObjectMeta> {
        let w = self.kinds.get(kind)?;
        let key = if w.info.namespaced { format!("{namespace}/{name}") } else { name.to_string() };
        w.cache.get(&key)
    }

    /// Every cached object with an ownerReference to `uid`: (kind, meta).
    fn dependents(&self, uid: &str) -> Vec<(&'static str, ObjectMeta)> {
        self.kinds.iter().flat_map(|(kind, w)| w.cache.dependents(uid).into_iter().map(move |m| (*kind, m))).collect()
    }
}

/// Queue key: `Kind/namespace/name`.
fn item_key(kind: &str, meta: &ObjectMeta) -> String {
    format!("{kind}/{}/{}", ns(meta), name(meta))
}

fn has_finalizer(meta: &ObjectMeta, f: &str) -> bool {
    meta.finalizers.iter().flatten().any(|x| x == f)
}

fn api_resource(r: &ResourceInfo) -> ApiResource {
    ApiResource { group: r.group.into(), version: r.version.into(), api_version: r.api_version(), kind: r.kind.into(), plural: r.plural.into() }
}

pub struct GarbageCollector {
    client: Client,
    graph: Graph,
    pub queue: WorkQueue<String>,
}

/// Watch one kind: enqueue the object (its owners may be gone, or it may
/// carry a GC finalizer), its dependents when it goes or starts going, and
/// its owners when it goes (a foreground deletion may be waiting for it).
fn watch<K>(inf: &Informer<K>, kind: &'static str, queue: &WorkQueue<String>)
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    let touch = {
        let queue = queue.clone();
        move |meta: &ObjectMeta, gone: bool| {
            if (meta.owner_references.as_ref().is_some_and(|r| !r.is_empty()) || is_deleting(meta)) && !gone {
                queue.add(item_key(kind, meta));
            }
            if gone || is_deleting(meta) {
                for r in meta.owner_references.iter().flatten() {
                    queue.add(format!("{}/{}/{}", r.kind, ns(meta), r.name));
                }
            }
        }
    };
    let (t1, t2, t3) = (touch.clone(), touch.clone(), touch);
    let (q2, q3) = (queue.clone(), queue.clone());
    inf.add_event_handler(
        HandlerFns::new()
            .on_add(move |o: &Arc<K>| t1(o.meta(), false))
            .on_update(move |old: &Arc<K>, new: &Arc<K>| {
                // Only what the collector acts on (upstream's GraphBuilder
                // compares the same): owners, deletion, finalizers — or a
                // resync (same object). A Lease renewal or a pod status
                // update is not the collector's business.
                let (o, n) = (old.meta(), new.meta());
                let relevant = o.resource_version == n.resource_version
                    || o.owner_references != n.owner_references
                    || o.deletion_timestamp != n.deletion_timestamp
                    || o.finalizers != n.finalizers;
                if !relevant {
                    return;
                }
                t2(new.meta(), false);
                // Owner references removed: the old owners may be waiting.
                for r in old.meta().owner_references.iter().flatten() {
                    if !new.meta().owner_references.iter().flatten().any(|n| n.uid == r.uid) {
                        q2.add(format!("{}/{}/{}", r.kind, ns(old.meta()), r.name));
                    }
                }
                if !is_deleting(old.meta()) && is_deleting(new.meta()) {
                    let uid = new.meta().uid.clone().unwrap_or_default();
                    q2.add(format!("dependents:{uid}"));
                }
            })
            .on_delete(move |o: &Arc<K>| {
                t3(o.meta(), true);
                q3.add(format!("dependents:{}", o.meta().uid.clone().unwrap_or_default()));
            }),
    );
}

impl GarbageCollector {
    pub fn new(ctx: &Context) -> Arc<Self> {
        let queue = ctx.queue("garbagecollector");
        let f = &ctx.informers;
        let mut graph = Graph::default();
        for info in resources::RESOURCES.iter().filter(|r| r.is_stored() && !ignored(r)) {
            // Share the typed caches other controllers keep anyway; a
            // metadata-only informer for the rest.
            macro_rules! typed {
                ($inf:expr) => {{
                    let inf = $inf;
                    watch(&inf, info.kind, &queue);
                    Box::new(inf.store()) as Box<dyn MetaCache>
                }};
            }
            let cache = match (info.group, info.kind) {
                ("", "Pod") => typed!(f.pods()),
                ("apps", "ReplicaSet") => typed!(f.replicasets()),
                ("apps", "Deployment") => typed!(f.deployments()),
                ("", "Service") => typed!(f.services()),
                ("", "Endpoints") => typed!(f.endpoints()),
                ("", "ServiceAccount") => typed!(f.service_accounts()),
                ("", "Node") => typed!(f.nodes()),
                ("", "Namespace") => typed!(f.namespaces()),
                _ => typed!(f.metadata(info)),
            };
            graph.kinds.insert(info.kind, Watched { info, cache });
        }
        Arc::new(GarbageCollector { client: ctx.client.clone(), graph, queue })
    }

    pub async fn run(self: Arc<Self>, workers: usize, gate: Gate) {
        let c = self.clone();
        run_workers("garbagecollector", self.queue.clone(), workers, gate, move |key| {
            let c = c.clone();
            async move { c.sync(&key).await }
        })
        .await
    }

    fn api(&self, r: &ResourceInfo, namespace: &str) -> Api<DynamicObject> {
        if r.namespaced {
            Api::namespaced_with(self.client.clone(), namespace, &api_resource(r))
        } else {
            Api::all_with(self.client.clone(), &api_resource(r))
        }
    }

    fn api_for_kind(&self, kind: &str, namespace: &str) -> Option<Api<DynamicObject>> {
        Some(self.api(self.graph.kinds.get(kind)?.info, namespace))
    }

    pub async fn sync(&self, key: &str) -> anyhow::Result<()> {
        if let Some(uid) = key.strip_prefix("dependents:") {
            // An owner went or is going: look at each dependent.
            for (kind, meta) in self.graph.dependents(uid) {
                self.queue.add(item_key(kind, &meta));
            }
            return Ok(());
        }
        let mut parts = key.splitn(3, '/');
        let (kind, namespace, obj_name) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let Some(meta) = self.graph.get(kind, namespace, obj_name) else { return Ok(()) };
        let Some(api) = self.api_for_kind(kind, namespace) else { return Ok(()) };
        let uid = meta.uid.clone().unwrap_or_default();

        if is_deleting(&meta) && has_finalizer(&meta, "orphan") {
            return self.orphan_dependents(&api, &meta, &uid).await;
        }
        if is_deleting(&meta) && has_finalizer(&meta, "foregroundDeletion") {
            return self.delete_dependents_in_foreground(&api, &meta, &uid).await;
        }
        self.attempt_to_delete(kind, &api, &meta).await
    }

    /// Orphan: drop our reference from each dependent, then the finalizer.
    async fn orphan_dependents(&self, api: &Api<DynamicObject>, meta: &ObjectMeta, uid: &str) -> anyhow::Result<()> {
        for (kind, dep) in self.graph.dependents(uid) {
            let Some(dapi) = self.api_for_kind(kind, ns(&dep)) else { continue };
            let refs: Vec<OwnerReference> = dep.owner_references.iter().flatten().filter(|r| r.uid != uid).cloned().collect();
            match set_owner_refs(&dapi, name(&dep), dep.resource_version.as_deref().unwrap_or(""), &refs).await {
                Ok(()) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(e).context("orphaning dependent"),
            }
        }
        self.remove_finalizer(api, meta, "orphan").await
    }

    /// Foreground: delete dependents; finish when none blocks any more.
    async fn delete_dependents_in_foreground(&self, api: &Api<DynamicObject>, meta: &ObjectMeta, uid: &str) -> anyhow::Result<()> {
        let deps = self.graph.dependents(uid);
        let mut blocking = 0;
        for (kind, dep) in &deps {
            let r = dep.owner_references.iter().flatten().find(|r| r.uid == uid);
            if r.and_then(|r| r.block_owner_deletion) == Some(true) {
                blocking += 1;
            }
            if is_deleting(dep) {
                continue;
            }
            let Some(dapi) = self.api_for_kind(kind, ns(dep)) else { continue };
            // A dependent with dependents of its own goes in the foreground
            // too, so the owner waits for the whole subtree.
            let has_own = !self.graph.dependents(dep.uid.as_deref().unwrap_or("")).is_empty();
            let policy = if has_own { PropagationPolicy::Foreground } else { PropagationPolicy::Background };
            self.delete(&dapi, dep, policy).await?;
        }
        if blocking == 0 {
            return self.remove_finalizer(api, meta, "foregroundDeletion").await;
        }
        Ok(())
    }

    /// Upstream `attemptToDeleteItem` for an object that is not itself
    /// being finalized: classify its owners and delete it if none is left.
    async fn attempt_to_delete(&self, kind: &str, api: &Api<DynamicObject>, meta: &ObjectMeta) -> anyhow::Result<()> {
        let refs = meta.owner_references.clone().unwrap_or_default();
        if refs.is_empty() || is_deleting(meta) {
            return Ok(());
        }
        let (mut solid, mut dangling, mut waiting) = (Vec::new(), Vec::new(), Vec::new());
        for r in &refs {
            match self.owner_state(r, ns(meta)).await? {
                OwnerState::Absent => dangling.push(r.clone()),
                OwnerState::WaitingForDependents => waiting.push(r.clone()),
                OwnerState::Present => solid.push(r.clone()),
            }
        }
        if !solid.is_empty() {
            if dangling.is_empty() && waiting.is_empty() {
                return Ok(());
            }
            // Still owned: just drop the references that no longer hold.
            let keep: Vec<OwnerReference> = refs.iter().filter(|r| solid.iter().any(|s| s.uid == r.uid)).cloned().collect();
            return match set_owner_refs(api, name(meta), meta.resource_version.as_deref().unwrap_or(""), &keep).await {
                Err(e) if !is_not_found(&e) => Err(e).context("removing dangling owner references"),
                _ => Ok(()),
            };
        }
        let uid = meta.uid.clone().unwrap_or_default();
        let has_dependents = !self.graph.dependents(&uid).is_empty();
        let policy = if !waiting.is_empty() && has_dependents {
            PropagationPolicy::Foreground
        } else if has_finalizer(meta, "orphan") {
            PropagationPolicy::Orphan
        } else if has_finalizer(meta, "foregroundDeletion") || !waiting.is_empty() {
            PropagationPolicy::Foreground
        } else {
            PropagationPolicy::Background
        };
        tracing::info!(kind, object = %format!("{}/{}", ns(meta), name(meta)), ?policy, "deleting object whose owners are gone");
        self.delete(api, meta, policy).await
    }

    async fn owner_state(&self, r: &OwnerReference, namespace: &str) -> anyhow::Result<OwnerState> {
        let Some(info) = self.graph.resource_of(r) else {
            return Ok(OwnerState::Present); // a kind we cannot check: never delete on a guess
        };
        let cached = self.graph.get(info.kind, namespace, &r.name);
        let meta = match cached.filter(|m| m.uid.as_deref() == Some(r.uid.as_str())) {
            Some(m) => Some(m),
            // Not in the cache (or another UID): ask the apiserver.
            None => {
                let api = self.api(info, namespace);
                api.get_opt(&r.name).await.context("reading owner")?.map(|o| o.metadata).filter(|m| m.uid.as_deref() == Some(r.uid.as_str()))
            }
        };
        Ok(match meta {
            None => OwnerState::Absent,
            Some(m) if is_deleting(&m) && has_finalizer(&m, "foregroundDeletion") => OwnerState::WaitingForDependents,
            Some(_) => OwnerState::Present,
        })
    }

    async fn delete(&self, api: &Api<DynamicObject>, meta: &ObjectMeta, policy: PropagationPolicy) -> anyhow::Result<()> {
        let dp = DeleteParams {
            propagation_policy: Some(policy),
            // Only this very object, not a new one with the same name.
            preconditions: Some(Preconditions { uid: meta.uid.clone(), resource_version: None }),
            ..Default::default()
        };
        match api.delete(name(meta), &dp).await {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) || is_conflict(&e) => Ok(()),
            Err(e) => Err(e).context("deleting dependent"),
        }
    }

    async fn remove_finalizer(&self, api: &Api<DynamicObject>, meta: &ObjectMeta, f: &str) -> anyhow::Result<()> {
        let rest: Vec<&String> = meta.finalizers.iter().flatten().filter(|x| *x != f).collect();
        let patch = json!({"metadata": {"finalizers": rest, "resourceVersion": meta.resource_version}});
        match api.patch(name(meta), &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(e).context("removing finalizer"),
        }
    }
}

enum OwnerState {
    Present,
    Absent,
    WaitingForDependents,
}
