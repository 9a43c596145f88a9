//! The generic store (upstream `genericregistry.Store`): create, get,
//! update, patch and delete for every resource, knowing no kind. What a
//! kind adds is its strategy's ([`super::strategy`]), looked up once per
//! request; what a subresource may change is an explicit
//! [`Subresource`] ([`super::subresources`]); admission and the
//! requester's checks arrive as a [`WriteChecks`] from the handler. Lists
//! and watches are in [`super::list`] and [`super::watch`]. The
//! subresources that take a body of their own — binding, eviction, scale —
//! are handlers above the store ([`super::rest`]): they call it, it knows
//! none of them.
//!
//! Every write follows the same path: decode → server-set fields →
//! defaults → mutating admission → the strategy's prepare → validation →
//! validating admission → etcd transaction (the order is spelled out in
//! [`super::strategy`]). A rejected request returns before the transaction,
//! so it writes nothing. Updates and deletes go through one read-modify-write
//! loop, `Registry::guaranteed_update` (upstream `GuaranteedUpdate`).

use std::collections::HashMap;
use std::sync::Arc;

use machinery::resources::{self, ResourceInfo};
use serde_json::{json, Map, Value};

use super::allocator;
use super::checks::WriteChecks;
use super::kinds::Strategies;
use super::meta::{is_deleting, now};
use super::options::{forbid_force, DeleteOptions, FieldValidation, Query};
use super::output::Output;
use super::storage_form::{canonical_order, to_storage};
use super::strategy::{validate_object, BeforeDelete, Strategy};
use super::subresources::{self, Subresource};
use super::typed;
use crate::request::{RequestInfo, Verb};
use crate::status::{ApiError, ApiResult, FieldError};
use crate::storage::cache::WatchCache;
use crate::storage::etcd::{Etcd, StorageError};

pub struct Registry {
    pub etcd: Etcd,
    pub prefix: String,
    resources: HashMap<(&'static str, &'static str), Resource>,
    pub ips: allocator::ServiceIps,
    pub ports: allocator::NodePorts,
}

/// One served resource: its watch cache and its strategy.
pub(super) struct Resource {
    pub cache: Arc<WatchCache>,
    pub strategy: Arc<dyn Strategy>,
}

/// Who computes `metadata.managedFields` on a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FieldOwnership {
    /// Server-side apply has computed them (`apply.rs`): stored as given.
    Applied,
    /// Any other write: a client's list is dropped on create; an update
    /// records the manager's `Update` entry.
    Recorded,
}

/// How an update writes: through which subresource, and who owns fields.
#[derive(Debug, Clone, Copy)]
pub(super) struct UpdateOptions {
    pub subresource: Subresource,
    pub fields: FieldOwnership,
}

impl UpdateOptions {
    pub fn recorded(subresource: Subresource) -> Self {
        UpdateOptions { subresource, fields: FieldOwnership::Recorded }
    }
}

/// What one round of [`Registry::guaranteed_update`] does with the object
/// it read.
pub(super) enum Change<'a, F> {
    /// An update: `compute` makes the new object from the current one; the
    /// store prepares, validates and writes it.
    Update { compute: F, opts: UpdateOptions },
    /// A delete: graceful deletion, finalizers, propagation policy.
    Delete(&'a DeleteOptions),
}

/// The `compute` type of a [`Change::Delete`], which has none.
pub(super) type NoCompute = fn(&Value) -> ApiResult<Value>;

/// What a round decided.
enum Step {
    /// No write; the answer is this object.
    Unchanged(Value),
    /// Compare-and-swap this object in.
    Write(Value),
    /// Compare-and-swap the object away; the answer is this object.
    Delete(Value),
}

impl Registry {
    /// Starts a watch cache per resource (one etcd watch each) and gives
    /// each resource its strategy.
    pub async fn new(
        etcd: Etcd,
        prefix: String,
        ips: allocator::ServiceIps,
        ports: allocator::NodePorts,
    ) -> ApiResult<Self> {
        let strategies = Strategies::builtin(&ips, &ports);
        let mut served = HashMap::new();
        for r in resources::RESOURCES.iter().filter(|r| r.is_stored()) {
            let cache = WatchCache::start(etcd.clone(), &prefix, r).await?;
            served.insert((r.group, r.plural), Resource { cache, strategy: strategies.get(r) });
        }
        Ok(Registry { etcd, prefix, resources: served, ips, ports })
    }

    /// The resource's cache and strategy: looked up once per request.
    pub(super) fn resource(&self, r: &ResourceInfo) -> &Resource {
        &self.resources[&(r.group, r.plural)]
    }

    pub fn cache(&self, r: &ResourceInfo) -> &Arc<WatchCache> {
        &self.resource(r).cache
    }

    pub(super) fn key(&self, r: &ResourceInfo, ns: Option<&str>, name: &str) -> String {
        resources::object_key(&self.prefix, r, ns, name)
    }

    /// Reads one object straight from etcd (a quorum read, as upstream GET
    /// with no resourceVersion is): `(object, mod revision)`.
    pub async fn read(&self, r: &ResourceInfo, ns: Option<&str>, name: &str) -> ApiResult<(Value, i64)> {
        let kv = self
            .etcd
            .get(&self.key(r, ns, name))
            .await
            .map_err(storage_error)?
            .ok_or_else(|| ApiError::not_found(r.group, r.plural, name))?;
        let mut v: Value = serde_json::from_slice(&kv.value).map_err(|e| ApiError::internal(e.to_string()))?;
        v["metadata"]["resourceVersion"] = json!(kv.mod_revision.to_string());
        Ok((v, kv.mod_revision))
    }

    // ----- get -----------------------------------------------------------

    pub async fn get(&self, ri: &RequestInfo, q: &Query) -> ApiResult<Output> {
        let name = ri.name.as_deref().unwrap_or_default();
        let obj = match q.get("resourceVersion") {
            // "0": any version will do — answer from the cache.
            Some("0") => {
                let o = self
                    .cache(ri.resource)
                    .get(&self.key(ri.resource, ri.namespace.as_deref(), name))
                    .ok_or_else(|| ApiError::not_found(ri.resource.group, ri.resource.plural, name))?;
                o.value.clone()
            }
            _ => self.read(ri.resource, ri.namespace.as_deref(), name).await?.0,
        };
        Ok(Output::Object { code: 200, obj, warnings: vec![] })
    }

    // ----- create --------------------------------------------------------

    pub async fn create<C: WriteChecks>(&self, ri: &RequestInfo, q: &Query, obj: Value, checks: &C) -> ApiResult<Output> {
        self.create_as(ri, q, obj, checks, FieldOwnership::Recorded).await
    }

    pub(super) async fn create_as<C: WriteChecks>(
        &self,
        ri: &RequestInfo,
        q: &Query,
        mut obj: Value,
        checks: &C,
        fields: FieldOwnership,
    ) -> ApiResult<Output> {
        let r = ri.resource;
        let res = self.resource(r);
        let strategy = &*res.strategy;
        let fv = FieldValidation::from_query(q)?;
        check_type(r, &obj)?;
        let meta = obj.get_mut("metadata").and_then(Value::as_object_mut).ok_or_else(|| {
            ApiError::bad_request(format!("{} in version \"{}\" cannot be handled as a {}: metadata is required", r.kind, r.version, r.kind))
        })?;
        // generateName: the server picks the suffix (5 random characters, as upstream).
        if meta.get("name").and_then(Value::as_str).unwrap_or("").is_empty() {
            match meta.get("generateName").and_then(Value::as_str) {
                Some(g) if !g.is_empty() => {
                    let n = machinery::names::generate_name(g);
                    meta.insert("name".into(), json!(n));
                }
                _ => {
                    let kind = if r.group.is_empty() { r.kind.to_string() } else { format!("{}.{}", r.kind, r.group) };
                    return Err(ApiError::invalid(r.group, r.kind, "", vec![FieldError::required("metadata.name")])
                        .with_message(format!("{kind} \"\" is invalid: metadata.name: Required value: name or generateName is required")));
                }
            }
        }
        let name = meta["name"].as_str().unwrap_or_default().to_string();
        set_namespace(r, meta, ri.namespace.as_deref())?;
        let warnings = decode_strictly(r, &mut obj, fv)?;
        // An apply's managedFields are its own computation; any other
        // create's are not the client's to set.
        let applied_fields = obj["metadata"].get("managedFields").cloned().filter(|_| fields == FieldOwnership::Applied);
        fill_system_fields(strategy, &mut obj);
        if let Some(f) = applied_fields {
            obj["metadata"]["managedFields"] = f;
        }
        strategy.set_defaults(&mut obj);
        // Mutating admission, then the strategy, validation, validating
        // admission — upstream's order.
        let admitted = checks.admit_create(ri, &mut obj).await?;
        strategy.prepare_for_create(&mut obj);
        let errs = validate_object(strategy, &obj);
        if !errs.is_empty() {
            return Err(ApiError::invalid(r.group, r.kind, &name, errs));
        }
        checks.validate_create(ri, admitted, &obj, q.dry_run()).await?;
        strategy.canonicalize(&mut obj);
        obj["apiVersion"] = json!(r.api_version());
        obj["kind"] = json!(r.kind);
        let mut obj = canonical_order(obj);
        if q.dry_run() {
            return Ok(Output::Object { code: 201, obj, warnings });
        }
        let revert = match strategy.begin_create(&self.etcd, &mut obj) {
            Some(hook) => Some(hook.await?),
            None => None,
        };
        let key = self.key(r, ri.namespace.as_deref(), &name);
        match self.etcd.create(&key, to_storage(&obj)).await {
            Ok(rev) => {
                res.cache.note_own_write(rev);
                obj["metadata"]["resourceVersion"] = json!(rev.to_string());
                Ok(Output::Object { code: 201, obj, warnings })
            }
            Err(e) => {
                if let Some(revert) = revert {
                    revert.await;
                }
                Err(match e {
                    StorageError::AlreadyExists => ApiError::already_exists(r.group, r.plural, &name),
                    other => storage_error(other),
                })
            }
        }
    }

    // ----- update / patch ------------------------------------------------

    /// PUT. The body's resourceVersion, when given, must match (else 409).
    pub async fn update<C: WriteChecks>(&self, ri: &RequestInfo, q: &Query, new: Value, checks: &C) -> ApiResult<Output> {
        let fv = FieldValidation::from_query(q)?;
        let r = ri.resource;
        let name = ri.name.clone().unwrap_or_default();
        let sub = updatable(ri)?;
        if sub != Subresource::Finalize {
            check_type(r, &new)?;
        }
        check_body_name(&new, &name)?;
        let precondition = new["metadata"]["resourceVersion"].as_str().filter(|s| !s.is_empty()).map(str::to_string);
        let mut new = new;
        let warnings = decode_strictly(r, &mut new, fv)?;
        let res = self.resource(r);
        let new = Arc::new(new);
        let body = new.clone();
        let compute = move |_old: &Value| {
            let mut n = (*body).clone();
            if let Some(p) = &precondition {
                n["metadata"]["resourceVersion"] = json!(p);
            }
            Ok(n)
        };
        let change = Change::Update { compute, opts: UpdateOptions::recorded(sub) };
        match self.guaranteed_update(ri, q, res, checks, change).await {
            Ok(obj) => Ok(Output::Object { code: 200, obj, warnings }),
            // PUT of a missing object, for the kinds that allow it: a create.
            Err(e) if e.code == 404 && sub == Subresource::Main && res.strategy.allow_create_on_update() => {
                let create = RequestInfo { verb: Verb::Create, ..ri.clone() };
                self.create(&create, q, Arc::unwrap_or_clone(new), checks).await
            }
            Err(e) => Err(e),
        }
    }

    /// PATCH: applied to the current object; retried on conflict.
    pub async fn patch<C: WriteChecks>(&self, ri: &RequestInfo, q: &Query, content_type: &str, body: &[u8], checks: &C) -> ApiResult<Output> {
        let fv = FieldValidation::from_query(q)?;
        if content_type.starts_with(crate::apply::CONTENT_TYPE) {
            return self.apply_patch(ri, q, body, fv, checks).await;
        }
        forbid_force(q)?;
        let sub = updatable(ri)?;
        let r = ri.resource;
        let res = self.resource(r);
        let warnings = std::sync::Mutex::new(Vec::new());
        let compute = |old: &Value| {
            let mut patched = crate::patch::apply(content_type, old, body, r.kind)?;
            check_type(r, &patched)?;
            check_body_name(&patched, ri.name.as_deref().unwrap_or_default())?;
            // A patch is never conditional unless it carries a resourceVersion itself.
            *warnings.lock().unwrap() = decode_strictly(r, &mut patched, fv)?;
            Ok(patched)
        };
        let change = Change::Update { compute, opts: UpdateOptions::recorded(sub) };
        let obj = self.guaranteed_update(ri, q, res, checks, change).await?;
        Ok(Output::Object { code: 200, obj, warnings: warnings.into_inner().unwrap() })
    }

    /// Server-side apply (`apply.rs`): creates the object if it does not
    /// exist, else merges the applied configuration into it, with conflicts
    /// against other field managers unless `?force=true`.
    async fn apply_patch<C: WriteChecks>(&self, ri: &RequestInfo, q: &Query, body: &[u8], fv: FieldValidation, checks: &C) -> ApiResult<Output> {
        let r = ri.resource;
        let name = ri.name.clone().unwrap_or_default();
        let manager = q.get("fieldManager").unwrap_or("");
        if manager.is_empty() {
            return Err(ApiError::new(422, "Invalid", "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch"));
        }
        if manager.chars().count() > 128 {
            return Err(ApiError::new(422, "Invalid", "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Too long: may not be more than 128 bytes"));
        }
        let force = match q.get("force") {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => return Err(ApiError::bad_request(format!("invalid force {other:?}"))),
        };
        let sub = updatable(ri)?;
        let mut applied: Value = serde_yaml::from_slice(body).map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
        check_type(r, &applied)?;
        if applied["apiVersion"].is_null() || applied["kind"].is_null() {
            return Err(ApiError::bad_request("apiVersion and kind must be set in an applied configuration"));
        }
        check_body_name(&applied, &name)?;
        if !applied["metadata"]["managedFields"].is_null() {
            return Err(ApiError::invalid(r.group, r.kind, &name, vec![FieldError::forbidden("metadata.managedFields", "must be nil")]));
        }
        if !applied["metadata"].is_object() {
            applied["metadata"] = json!({});
        }
        applied["metadata"]["name"] = json!(name);
        let who = crate::apply::Manager { name: manager.to_string(), operation: "Apply", subresource: ri.subresource.clone() };
        let has_status = r.has_subresource("status");
        match self.read(r, ri.namespace.as_deref(), &name).await {
            Err(e) if e.code == 404 && sub == Subresource::Main => {
                // Apply to nothing creates: the applier owns what it sent.
                let mut obj = applied.clone();
                crate::apply::on_create_by_apply(&mut obj, &who, r.kind, has_status, &r.api_version(), &now());
                let create = RequestInfo { verb: Verb::Create, ..ri.clone() };
                return self.create_as(&create, q, obj, checks, FieldOwnership::Applied).await;
            }
            Err(e) => return Err(e),
            Ok(_) => {}
        }
        let res = self.resource(r);
        let warnings = std::sync::Mutex::new(Vec::new());
        let compute = |old: &Value| {
            let mut new = crate::apply::apply(old, &applied, &who, force, r.kind, has_status, &r.api_version(), &now())
                .map_err(|c| crate::apply::conflict_error(&c))?;
            *warnings.lock().unwrap() = decode_strictly(r, &mut new, fv)?;
            Ok(new)
        };
        let change = Change::Update { compute, opts: UpdateOptions { subresource: sub, fields: FieldOwnership::Applied } };
        let obj = self.guaranteed_update(ri, q, res, checks, change).await?;
        Ok(Output::Object { code: 200, obj, warnings: warnings.into_inner().unwrap() })
    }

    /// An internal read-modify-write of one object (the quota charge of
    /// ResourceQuota admission): `compute` makes the new object from the
    /// current one, and it is written as any update through `ri` is.
    pub async fn update_with<C, F>(&self, ri: &RequestInfo, checks: &C, compute: F) -> ApiResult<Value>
    where
        C: WriteChecks,
        F: Fn(&Value) -> ApiResult<Value>,
    {
        let sub = updatable(ri)?;
        let change = Change::Update { compute, opts: UpdateOptions::recorded(sub) };
        self.guaranteed_update(ri, &Query::default(), self.resource(ri.resource), checks, change).await
    }

    /// `metadata.managedFields` on an update (`apply.rs`): an apply's are
    /// already computed; other writes are recorded as their manager's
    /// `Update`, if the object has managed fields. A client may clear them
    /// by sending an empty list, as in Kubernetes.
    fn manage_fields(ri: &RequestInfo, q: &Query, opts: UpdateOptions, old: &Value, new: &mut Value, incoming: Option<Value>) {
        if opts.fields == FieldOwnership::Applied {
            if let Some(f) = incoming {
                new["metadata"]["managedFields"] = f;
            }
            return;
        }
        if incoming.as_ref().and_then(Value::as_array).is_some_and(|a| a.is_empty()) {
            return;
        }
        let Some(existing) = old["metadata"].get("managedFields").filter(|m| m.as_array().is_some_and(|a| !a.is_empty())) else { return };
        new["metadata"]["managedFields"] = existing.clone();
        let r = ri.resource;
        let sub = (opts.subresource == Subresource::Status).then(|| "status".to_string());
        let who = crate::apply::Manager { name: q.get("fieldManager").unwrap_or("unknown").to_string(), operation: "Update", subresource: sub };
        crate::apply::on_update(old, new, &who, r.kind, r.has_subresource("status"), &r.api_version(), &now());
    }

    /// The read-modify-write loop (upstream `GuaranteedUpdate`): read the
    /// object, decide what to do with it ([`Change`]), compare-and-swap; on
    /// a lost race, read again and decide again — unless the client pinned
    /// a resourceVersion, which makes the race its conflict. Updates start
    /// from the watch cache's copy (no etcd read; the compare-and-swap
    /// catches a stale one); a delete reads etcd first, as upstream's
    /// `Delete` does.
    pub(super) async fn guaranteed_update<C, F>(
        &self,
        ri: &RequestInfo,
        q: &Query,
        res: &Resource,
        checks: &C,
        change: Change<'_, F>,
    ) -> ApiResult<Value>
    where
        C: WriteChecks,
        F: Fn(&Value) -> ApiResult<Value>,
    {
        let r = ri.resource;
        let name = ri.name.as_deref().unwrap_or_default();
        let ns = ri.namespace.as_deref();
        let key = self.key(r, ns, name);
        let strategy = &*res.strategy;
        let (from_cache_first, dry_run) = match &change {
            Change::Update { .. } => (true, q.dry_run()),
            Change::Delete(opts) => (false, opts.dry_run),
        };
        for attempt in 0..16 {
            let cached = if attempt == 0 && from_cache_first { res.cache.get(&key) } else { None };
            let from_cache = cached.is_some();
            let (old, rev) = match cached {
                Some(o) => (o.value.clone(), o.rv),
                None => self.read(r, ns, name).await?,
            };
            let step = match &change {
                Change::Update { compute, opts } => self.try_update(ri, q, strategy, checks, compute, *opts, old, rev).await,
                Change::Delete(opts) => try_delete(ri, strategy, opts, old, rev),
            };
            let step = match step {
                // A decision made on a possibly stale copy is made again on
                // etcd's (upstream: `origStateIsCurrent`).
                Err(_) if from_cache => continue,
                other => other?,
            };
            match step {
                Step::Unchanged(obj) => return Ok(obj),
                Step::Write(mut obj) => {
                    if dry_run {
                        return Ok(obj);
                    }
                    match self.etcd.update(&key, rev, to_storage(&obj)).await {
                        Ok(new_rev) => {
                            res.cache.note_own_write(new_rev);
                            obj["metadata"]["resourceVersion"] = json!(new_rev.to_string());
                            return Ok(obj);
                        }
                        Err(StorageError::Conflict { .. }) => continue,
                        Err(StorageError::NotFound) => return Err(ApiError::not_found(r.group, r.plural, name)),
                        Err(e) => return Err(storage_error(e)),
                    }
                }
                Step::Delete(obj) => {
                    if dry_run {
                        return Ok(obj);
                    }
                    match self.etcd.delete(&key, rev).await {
                        Ok(deleted_at) => {
                            res.cache.note_own_write(deleted_at);
                            if let Some(hook) = strategy.after_delete(&self.etcd, &obj) {
                                hook.await?;
                            }
                            return Ok(obj);
                        }
                        Err(StorageError::Conflict { .. }) => continue,
                        Err(StorageError::NotFound) => return Err(ApiError::not_found(r.group, r.plural, name)),
                        Err(e) => return Err(storage_error(e)),
                    }
                }
            }
        }
        Err(ApiError::stale(r.group, r.plural, name))
    }

    /// One round of an update (upstream's `tryUpdate` with `BeforeUpdate`):
    /// the new object, prepared, defaulted and validated against `old`.
    #[allow(clippy::too_many_arguments)]
    async fn try_update<C, F>(
        &self,
        ri: &RequestInfo,
        q: &Query,
        strategy: &dyn Strategy,
        checks: &C,
        compute: &F,
        opts: UpdateOptions,
        old: Value,
        rev: i64,
    ) -> ApiResult<Step>
    where
        C: WriteChecks,
        F: Fn(&Value) -> ApiResult<Value>,
    {
        let r = ri.resource;
        let name = ri.name.as_deref().unwrap_or_default();
        let mut new = compute(&old)?;
        if let Some(p) = new["metadata"]["resourceVersion"].as_str().filter(|s| !s.is_empty()) {
            if p != rev.to_string() {
                return Err(ApiError::stale(r.group, r.plural, name));
            }
        }
        let sub = opts.subresource;
        let incoming_fields = new["metadata"].get("managedFields").cloned();
        before_update(r, sub, &mut new, &old)?;
        strategy.prepare_for_update(sub, &mut new, &old);
        strategy.set_defaults(&mut new);
        Self::manage_fields(ri, q, opts, &old, &mut new, incoming_fields);
        // The requester's checks (RBAC escalation prevention), before
        // validation as upstream.
        checks.validate_update(ri, &new, &old)?;
        let mut errs = validate_object(strategy, &new);
        errs.extend(strategy.validate_update(sub, &new, &old));
        if !errs.is_empty() {
            return Err(ApiError::invalid(r.group, r.kind, name, errs));
        }
        if sub == Subresource::Main {
            if let Some(hook) = strategy.begin_update(&self.etcd, &mut new, &old) {
                hook.await?;
            }
        }
        strategy.canonicalize(&mut new);
        new["apiVersion"] = json!(r.api_version());
        new["kind"] = json!(r.kind);
        let new = canonical_order(new);
        // The last finalizer removed from an object being deleted: it goes.
        if is_deleting(&new) && strategy.finalizers_empty(&new) {
            return Ok(Step::Delete(new));
        }
        if new == old {
            // Nothing changed: no write, no event (upstream short-circuits too).
            return Ok(Step::Unchanged(old));
        }
        Ok(Step::Write(new))
    }

    // ----- delete --------------------------------------------------------

    pub async fn delete<C: WriteChecks>(&self, ri: &RequestInfo, q: &Query, body: Option<Value>, checks: &C) -> ApiResult<Output> {
        let opts = DeleteOptions::from(q, body.as_ref())?;
        checks.admit_delete(ri)?;
        let res = self.resource(ri.resource);
        let obj = self.guaranteed_update(ri, q, res, checks, Change::<NoCompute>::Delete(&opts)).await?;
        Ok(Output::Object { code: 200, obj, warnings: vec![] })
    }

    pub async fn delete_collection<C: WriteChecks>(&self, ri: &RequestInfo, q: &Query, body: Option<Value>, checks: &C) -> ApiResult<Output> {
        let list_q = Query(q.0.iter().filter(|(k, _)| k == "labelSelector" || k == "fieldSelector").cloned().collect());
        let Output::List { items, rv, .. } = self.list(ri, &list_q).await? else { unreachable!() };
        let mut deleted = Vec::new();
        for o in &items {
            let one = RequestInfo { name: Some(o.name.clone()), namespace: (!o.namespace.is_empty()).then(|| o.namespace.clone()), ..ri.clone() };
            match self.delete(&one, q, body.clone(), checks).await {
                Ok(_) => deleted.push(o.clone()),
                Err(e) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Output::List { rv, items: deleted, continue_token: None })
    }
}

/// One round of a delete (upstream `Store.Delete` with `BeforeDelete`):
/// preconditions, the kind's step (graceful deletion), the propagation
/// policy as a finalizer for the garbage collector, then either a mark
/// (`deletionTimestamp`, while finalizers remain) or the delete itself.
fn try_delete(ri: &RequestInfo, strategy: &dyn Strategy, opts: &DeleteOptions, mut obj: Value, rev: i64) -> ApiResult<Step> {
    let r = ri.resource;
    let name = ri.name.as_deref().unwrap_or_default();
    if let Some(uid) = &opts.uid {
        let actual = obj["metadata"]["uid"].as_str().unwrap_or("");
        if uid != actual {
            return Err(ApiError::conflict(r.group, r.plural, name, &format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {actual}"
            )));
        }
    }
    if let Some(prv) = &opts.resource_version {
        if *prv != rev.to_string() {
            return Err(ApiError::conflict(r.group, r.plural, name, &format!(
                "Precondition failed: ResourceVersion in precondition: {prv}, ResourceVersion in object meta: {rev}"
            )));
        }
    }
    let (mut changed, propagate) = match strategy.before_delete(&mut obj, opts) {
        BeforeDelete::Nothing => (false, true),
        BeforeDelete::Changed => (true, true),
        // The node agent finishes a graceful deletion; nothing else is added.
        BeforeDelete::Graceful => (true, false),
        BeforeDelete::AlreadyGraceful => return Ok(Step::Unchanged(obj)),
    };
    // Propagation policy recorded as finalizers for the garbage collector.
    let finalizer = match opts.propagation.as_deref() {
        Some("Orphan") => Some("orphan"),
        Some("Foreground") => Some("foregroundDeletion"),
        Some("Background") | None => None,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "propagationPolicy: Unsupported value: \"{other}\": supported values: \"Foreground\", \"Background\", \"Orphan\""
            )))
        }
    };
    if let Some(f) = finalizer.filter(|_| propagate) {
        let list = obj["metadata"]["finalizers"].as_array().cloned().unwrap_or_default();
        if !list.iter().any(|x| x == f) {
            let mut list = list;
            list.push(json!(f));
            obj["metadata"]["finalizers"] = Value::Array(list);
            changed = true;
        }
    }
    if !changed && strategy.finalizers_empty(&obj) {
        return Ok(Step::Delete(obj));
    }
    // Finalizers hold the object: it is marked deleted and stays until
    // their controllers remove them.
    if !is_deleting(&obj) {
        obj["metadata"]["deletionTimestamp"] = json!(now());
        obj["metadata"]["deletionGracePeriodSeconds"] = json!(0);
        changed = true;
    }
    Ok(if changed { Step::Write(obj) } else { Step::Unchanged(obj) })
}

/// The subresource of an update or patch. A binding and an eviction are
/// created, never updated (upstream's binding and eviction REST serve POST
/// only).
fn updatable(ri: &RequestInfo) -> ApiResult<Subresource> {
    match Subresource::parse(ri.subresource.as_deref())? {
        Subresource::Binding | Subresource::Eviction => {
            Err(ApiError::method_not_allowed("the server does not allow this method on the requested resource"))
        }
        sub => Ok(sub),
    }
}

/// Server-set metadata of a new object (upstream `BeforeCreate` and
/// `FillObjectMetaSystemFields`): a fresh uid and creationTimestamp, and
/// nothing a client may not set about versions, deletion or field
/// ownership. `metadata.generation` starts at 1 for objects with a spec.
fn fill_system_fields(strategy: &dyn Strategy, obj: &mut Value) {
    let has_spec = obj.get("spec").is_some();
    let meta = obj["metadata"].as_object_mut().expect("checked by caller");
    meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
    meta.insert("creationTimestamp".into(), json!(now()));
    meta.remove("resourceVersion");
    meta.remove("deletionTimestamp");
    meta.remove("deletionGracePeriodSeconds");
    meta.remove("managedFields");
    meta.remove("selfLink");
    if has_spec || strategy.tracks_generation() {
        obj["metadata"]["generation"] = json!(1);
    }
}

/// Server-set fields on update (upstream `BeforeUpdate`): what the
/// subresource may not change, the metadata no client may change, and the
/// generation, which counts spec changes (controllers compare it with
/// `status.observedGeneration`).
pub(super) fn before_update(r: &ResourceInfo, sub: Subresource, new: &mut Value, old: &Value) -> ApiResult<()> {
    if !new.is_object() {
        return Err(ApiError::bad_request("the body of the request must be a JSON object"));
    }
    if !new["metadata"].is_object() {
        new["metadata"] = json!({});
    }
    subresources::reset(sub, r, new, old);
    for k in ["uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "namespace", "name"] {
        match old["metadata"].get(k) {
            Some(v) => new["metadata"][k] = v.clone(),
            None => {
                new["metadata"].as_object_mut().unwrap().remove(k);
            }
        }
    }
    new["metadata"].as_object_mut().unwrap().remove("managedFields");
    let generation = old["metadata"]["generation"].as_i64();
    match generation {
        Some(g) if new.get("spec") != old.get("spec") => new["metadata"]["generation"] = json!(g + 1),
        Some(g) => new["metadata"]["generation"] = json!(g),
        None => {}
    }
    new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
    Ok(())
}

/// Decodes through the typed struct (see `typed`): type errors → 400,
/// unknown fields → 400 (Strict) or a warning (Warn), and dropped.
pub(super) fn decode_strictly(r: &ResourceInfo, obj: &mut Value, fv: FieldValidation) -> ApiResult<Vec<String>> {
    let normalized = typed::normalize(r.kind, obj).map_err(|e| {
        ApiError::bad_request(format!("{} in version \"{}\" cannot be handled as a {}: {}", r.kind, r.version, r.kind, e))
    })?;
    let unknown = typed::unknown_fields(obj, &normalized);
    *obj = normalized;
    if unknown.is_empty() || fv == FieldValidation::Ignore {
        return Ok(vec![]);
    }
    if fv == FieldValidation::Strict {
        let list = unknown.iter().map(|u| format!("unknown field \"{u}\"")).collect::<Vec<_>>().join(", ");
        return Err(ApiError::bad_request(format!(
            "{} in version \"{}\" cannot be handled as a {}: strict decoding error: {}",
            r.kind, r.version, r.kind, list
        )));
    }
    Ok(unknown.iter().map(|u| format!("unknown field \"{u}\"")).collect())
}

pub fn storage_error(e: StorageError) -> ApiError {
    match e {
        // etcd did not answer in time (lost quorum, say): upstream's
        // request-timeout answer, 504 with reason Timeout; the cause is logged.
        StorageError::Timeout(m) => {
            tracing::warn!("etcd: {m}");
            ApiError::timeout("Timeout: request did not complete within the allotted timeout")
        }
        StorageError::Etcd(m) if m.contains("deadline") || m.contains("timed out") => ApiError::timeout(format!(
            "The request timed out waiting for etcd: {m}"
        )),
        StorageError::Etcd(m) => ApiError::unavailable(format!("etcd is unavailable: {m}")),
        other => ApiError::internal(other.to_string()),
    }
}

/// The body's apiVersion and kind, when present, must be the URL's.
fn check_type(r: &ResourceInfo, obj: &Value) -> ApiResult<()> {
    if !obj.is_object() {
        return Err(ApiError::bad_request("the body of the request must be a JSON object"));
    }
    if let Some(av) = obj["apiVersion"].as_str() {
        if av != r.api_version() {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({av}) does not match the expected API version ({})",
                r.api_version()
            )));
        }
    }
    if let Some(k) = obj["kind"].as_str() {
        if k != r.kind {
            return Err(ApiError::bad_request(format!(
                "{k} in version \"{}\" cannot be handled as a {}: the kind in the data ({k}) does not match the expected kind ({})",
                r.version, r.kind, r.kind
            )));
        }
    }
    Ok(())
}

fn check_body_name(obj: &Value, name: &str) -> ApiResult<()> {
    match obj["metadata"]["name"].as_str() {
        Some(n) if !n.is_empty() && n != name => Err(ApiError::bad_request(format!(
            "the name of the object ({n}) does not match the name on the URL ({name})"
        ))),
        _ => Ok(()),
    }
}

fn set_namespace(r: &ResourceInfo, meta: &mut Map<String, Value>, url_ns: Option<&str>) -> ApiResult<()> {
    if !r.namespaced {
        meta.remove("namespace");
        return Ok(());
    }
    let url_ns = url_ns.unwrap_or("");
    match meta.get("namespace").and_then(Value::as_str) {
        Some(ns) if !ns.is_empty() && ns != url_ns => Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        )),
        _ => {
            meta.insert("namespace".into(), json!(url_ns));
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_update_changes_only_status() {
        let r = resources::find("apps", "v1", "deployments").unwrap();
        let old = json!({"metadata": {"name": "d", "generation": 1, "uid": "u"}, "spec": {"replicas": 1}, "status": {"replicas": 0}});
        let mut new = json!({"metadata": {"name": "d"}, "spec": {"replicas": 5}, "status": {"replicas": 1}});
        before_update(r, Subresource::Status, &mut new, &old).unwrap();
        assert_eq!(new["spec"]["replicas"], 1);
        assert_eq!(new["status"]["replicas"], 1);
        let mut new = json!({"metadata": {"name": "d"}, "spec": {"replicas": 5}, "status": {"replicas": 9}});
        before_update(r, Subresource::Main, &mut new, &old).unwrap();
        assert_eq!((new["spec"]["replicas"].clone(), new["status"]["replicas"].clone()), (json!(5), json!(0)));
        assert_eq!(new["metadata"]["generation"], 2);
        assert_eq!(new["metadata"]["uid"], "u");
    }
}
