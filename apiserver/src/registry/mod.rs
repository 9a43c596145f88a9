//! The registry: the generic REST storage behind every resource, plus the
//! per-resource strategy (defaults, validation, what create/update/delete
//! mean for that kind). kube-apiserver's `genericregistry.Store` plus its
//! `RESTCreateStrategy`/`RESTUpdateStrategy`, in one place.
//!
//! Every write follows the same path:
//! decode → admission → prepare (server-set fields) → default → validate →
//! etcd transaction. A rejected request returns before the transaction, so
//! it writes nothing.

pub mod allocator;
pub mod defaults;
pub mod repair;
pub mod typed;
pub mod validation;
mod services;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use machinery::resources::{self, ResourceInfo};
use machinery::selector::{FieldSelector, Selector};
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;

use crate::fields;
use crate::request::RequestInfo;
use crate::status::{ApiError, ApiResult, FieldError};
use crate::storage::cache::{CacheEvent, CachedObject, EventType, WatchCache};
use crate::storage::etcd::{Etcd, StorageError};

/// Namespaces that exist from the start (the apiserver creates them).
pub const SYSTEM_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];

/// Namespaces NamespaceLifecycle refuses to delete. Upstream's immortal set
/// is `default`, `kube-system` and `kube-public`; rkube also keeps
/// `kube-node-lease`, because it has no system-namespaces controller to make
/// it again at once, and without it no node can renew its heartbeat Lease.
pub const IMMORTAL_NAMESPACES: &[&str] = SYSTEM_NAMESPACES;

/// Query parameters, decoded once.
#[derive(Debug, Default, Clone)]
pub struct Query(pub Vec<(String, String)>);

impl Query {
    pub fn parse(q: Option<&str>) -> Self {
        Query(form_urlencoded::parse(q.unwrap_or("").as_bytes()).into_owned().collect())
    }
    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.iter().rev().find(|(key, _)| key == k).map(|(_, v)| v.as_str())
    }
    pub fn flag(&self, k: &str) -> bool {
        matches!(self.get(k), Some("true" | "1"))
    }
    pub fn dry_run(&self) -> bool {
        self.get("dryRun") == Some("All")
    }
}

/// How strictly unknown fields are treated (`?fieldValidation=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldValidation {
    Ignore,
    Warn,
    Strict,
}

impl FieldValidation {
    pub fn from_query(q: &Query) -> ApiResult<Self> {
        match q.get("fieldValidation") {
            None | Some("") | Some("Warn") => Ok(FieldValidation::Warn),
            Some("Ignore") => Ok(FieldValidation::Ignore),
            Some("Strict") => Ok(FieldValidation::Strict),
            Some(other) => Err(ApiError::bad_request(format!(
                "fieldValidation parameter unsupported: {other}. Must be one of Ignore, Warn, Strict"
            ))),
        }
    }
}

/// What a registry call produces; the server renders it (JSON or Table).
pub enum Output {
    Object { code: u16, obj: Value, warnings: Vec<String> },
    List { rv: i64, items: Vec<Arc<CachedObject>>, continue_token: Option<String> },
    Watch(mpsc::Receiver<WatchEvent>),
}

/// One event on a watch stream.
pub enum WatchEvent {
    Event(EventType, Arc<CachedObject>),
    Bookmark(i64),
    Error(ApiError),
}

pub struct Registry {
    pub etcd: Etcd,
    pub prefix: String,
    caches: HashMap<(&'static str, &'static str), Arc<WatchCache>>,
    pub ips: allocator::ServiceIps,
    pub ports: allocator::NodePorts,
    /// The admission chain (mutating, then validating plugins); `None` in
    /// unit setups that exercise the registry alone.
    pub admission: Option<crate::admission::Chain>,
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

impl Registry {
    /// Starts a watch cache per resource (one etcd watch each).
    pub async fn new(
        etcd: Etcd,
        prefix: String,
        ips: allocator::ServiceIps,
        ports: allocator::NodePorts,
    ) -> ApiResult<Self> {
        let mut caches = HashMap::new();
        for r in resources::RESOURCES.iter().filter(|r| r.is_stored()) {
            caches.insert((r.group, r.plural), WatchCache::start(etcd.clone(), &prefix, r).await?);
        }
        Ok(Registry { etcd, prefix, caches, ips, ports, admission: None })
    }

    pub fn cache(&self, r: &ResourceInfo) -> &Arc<WatchCache> {
        &self.caches[&(r.group, r.plural)]
    }

    fn key(&self, r: &ResourceInfo, ns: Option<&str>, name: &str) -> String {
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

    // ----- get / list / watch -------------------------------------------

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

    /// Builds the filter for label/field selectors, rejecting unsupported fields.
    fn filter(r: &ResourceInfo, q: &Query) -> ApiResult<Box<dyn Fn(&CachedObject) -> bool + Send + Sync>> {
        let labels = Selector::parse(q.get("labelSelector").unwrap_or(""))
            .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))?;
        let fields = FieldSelector::parse(q.get("fieldSelector").unwrap_or("")).map_err(|e| ApiError::bad_request(e.0))?;
        fields::check_supported(r, &fields)?;
        Ok(Box::new(move |o: &CachedObject| {
            (labels.is_empty() || labels.matches_opt(o.labels().as_ref()))
                && (fields.is_empty()
                    || fields.matches(|f| match f {
                        "metadata.name" => Some(o.name.clone()),
                        "metadata.namespace" => Some(o.namespace.clone()),
                        other => fields::get(&o.value, other),
                    }))
        }))
    }

    pub async fn list(&self, ri: &RequestInfo, q: &Query) -> ApiResult<Output> {
        let r = ri.resource;
        let filter = Self::filter(r, q)?;
        let ns = ri.namespace.as_deref();
        let limit: i64 = match q.get("limit") {
            None | Some("") => 0,
            Some(l) => l.parse().map_err(|_| ApiError::bad_request(format!("invalid limit {l:?}")))?,
        };
        let rv_param = q.get("resourceVersion").filter(|s| !s.is_empty());
        let exact = q.get("resourceVersionMatch") == Some("Exact");
        if let Some(m) = q.get("resourceVersionMatch") {
            if !matches!(m, "Exact" | "NotOlderThan") {
                return Err(ApiError::bad_request(format!("resourceVersionMatch: unsupported value {m:?}")));
            }
            if rv_param.is_none() {
                return Err(ApiError::bad_request("resourceVersionMatch is forbidden unless resourceVersion is provided"));
            }
        }
        // Paginated and exact-revision lists read etcd at a fixed revision,
        // as upstream does; everything else is served from the watch cache.
        if let Some(token) = q.get("continue").filter(|s| !s.is_empty()) {
            if rv_param.is_some_and(|v| v != "0") {
                return Err(ApiError::bad_request("specifying resource version is not allowed when using continue"));
            }
            let prefix = resources::collection_key(&self.prefix, r, ns);
            let (rev, start) = decode_continue(token, &prefix)?;
            return self.list_from_etcd(r, ns, Some(start), rev, limit, &*filter).await;
        }
        let requested_rv = match rv_param {
            Some(v) => Some(v.parse::<i64>().map_err(|_| ApiError::bad_request(format!("invalid resource version {v:?}")))?),
            None => None,
        };
        if exact || (limit > 0 && requested_rv != Some(0)) {
            return self.list_from_etcd(r, ns, None, requested_rv.unwrap_or(0), limit, &*filter).await;
        }
        let cache = self.cache(r);
        match requested_rv {
            // Consistent read: the cache must have caught up with etcd's current revision.
            None => {
                let now = self.etcd.current_revision().await.map_err(storage_error)?;
                cache.wait_for(now, Duration::from_secs(3)).await?;
            }
            Some(0) => {}
            Some(v) => cache.wait_for(v, Duration::from_secs(3)).await?,
        }
        let snap = cache.list(ns, &*filter);
        Ok(Output::List { rv: snap.rv, items: snap.items, continue_token: None })
    }

    async fn list_from_etcd(
        &self,
        r: &'static ResourceInfo,
        ns: Option<&str>,
        start: Option<String>,
        rev: i64,
        limit: i64,
        filter: &(dyn Fn(&CachedObject) -> bool + Send + Sync),
    ) -> ApiResult<Output> {
        let prefix = resources::collection_key(&self.prefix, r, ns);
        let mut start = start;
        let mut rev = rev;
        let mut items = Vec::new();
        loop {
            let (kvs, read_rev, more) = self
                .etcd
                .range(&prefix, start.as_deref(), rev, if limit > 0 { limit + 1 } else { 0 })
                .await
                .map_err(|e| match e {
                    StorageError::Compacted(_) => ApiError::gone(
                        "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.",
                    ),
                    other => storage_error(other),
                })?;
            if rev == 0 {
                rev = read_rev;
            }
            let n = kvs.len();
            for (i, kv) in kvs.into_iter().enumerate() {
                if limit > 0 && items.len() as i64 == limit {
                    // There is at least this key left: continue from it.
                    let token = encode_continue(rev, &kv.key, &prefix);
                    let _ = i;
                    return Ok(Output::List { rv: rev, items, continue_token: Some(token) });
                }
                if let Some(o) = CachedObject::from_stored(&kv.key, &kv.value, kv.mod_revision) {
                    if filter(&o) {
                        items.push(Arc::new(o));
                    }
                }
                start = Some(format!("{}\0", kv.key));
            }
            if !(more || (limit > 0 && n as i64 > limit)) || n == 0 {
                return Ok(Output::List { rv: rev, items, continue_token: None });
            }
        }
    }

    pub async fn watch(&self, ri: &RequestInfo, q: &Query) -> ApiResult<Output> {
        let r = ri.resource;
        if q.get("sendInitialEvents").is_some() {
            return Err(ApiError::bad_request(
                "sendInitialEvents is not supported by rkube-apiserver; list, then watch from the list's resourceVersion",
            ));
        }
        let filter = Self::filter(r, q)?;
        let mut ns = ri.namespace.clone();
        // A watch on one object (`/watch/namespaces/x/pods/name`) is a watch
        // with a name field selector.
        let name = ri.name.clone();
        let from = match q.get("resourceVersion").filter(|s| !s.is_empty()) {
            None | Some("0") => None,
            Some(v) => Some(v.parse::<i64>().map_err(|_| ApiError::bad_request(format!("invalid resource version {v:?}")))?),
        };
        let timeout = match q.get("timeoutSeconds") {
            Some(t) => Duration::from_secs(t.parse().map_err(|_| ApiError::bad_request(format!("invalid timeoutSeconds {t:?}")))?),
            // Upstream spreads watch lifetimes over [30m, 60m].
            None => Duration::from_secs(1800 + rand::random::<u64>() % 1800),
        };
        let bookmarks = q.flag("allowWatchBookmarks");
        let cache = self.cache(r).clone();
        if let Some(v) = from {
            if v > cache.current_rv() {
                cache.wait_for(v, Duration::from_secs(3)).await?;
            }
        }
        let full_filter = move |o: &CachedObject| name.as_ref().is_none_or(|n| &o.name == n) && filter(o);
        let (tx, rx) = mpsc::channel(256);
        let (replay, mut live, start_rv) = match cache.watch(from, ns.as_deref(), &full_filter) {
            Ok(w) => w,
            // As upstream: a watch that cannot start from the requested
            // revision is a 200 stream carrying one ERROR event (410 Expired).
            Err(e) if e.code == 410 => {
                let _ = tx.try_send(WatchEvent::Error(e));
                return Ok(Output::Watch(rx));
            }
            Err(e) => return Err(e),
        };
        let ns = ns.take();
        tokio::spawn(async move {
            let deadline = tokio::time::sleep(timeout);
            tokio::pin!(deadline);
            let mut last_rv = start_rv;
            for ev in replay {
                last_rv = last_rv.max(ev.object.rv);
                // The initial state is already filtered; replayed history
                // goes through the same transitions as live events.
                let out = if from.is_none() {
                    Some(WatchEvent::Event(ev.kind, ev.object.clone()))
                } else {
                    filter_event(&ev, ns.as_deref(), &full_filter)
                };
                if let Some(out) = out {
                    if tx.send(out).await.is_err() {
                        return;
                    }
                }
            }
            let mut ticker = tokio::time::interval(Duration::from_secs(5));
            ticker.tick().await;
            loop {
                tokio::select! {
                    _ = &mut deadline => return,
                    _ = tx.closed() => return,
                    _ = ticker.tick(), if bookmarks => {
                        let rv = cache.current_rv().max(last_rv);
                        if tx.send(WatchEvent::Bookmark(rv)).await.is_err() { return; }
                    }
                    ev = live.recv() => {
                        let ev = match ev {
                            Ok(ev) => ev,
                            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                                // Too slow: end the watch; the client resumes from its last rv.
                                return;
                            }
                            Err(_) => return,
                        };
                        if ev.object.rv <= last_rv && from.is_some() && ev.object.rv <= start_rv {
                            continue;
                        }
                        last_rv = last_rv.max(ev.object.rv);
                        if let Some(out) = filter_event(&ev, ns.as_deref(), &full_filter) {
                            if tx.send(out).await.is_err() { return; }
                        }
                    }
                }
            }
        });
        Ok(Output::Watch(rx))
    }

    // ----- create --------------------------------------------------------

    pub async fn create(&self, ri: &RequestInfo, q: &Query, mut obj: Value) -> ApiResult<Output> {
        let r = ri.resource;
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
        let warnings = self.decode_strictly(r, &mut obj, fv)?;
        if self.plugin_enabled(crate::admission::Plugin::NamespaceLifecycle) {
            self.admit_namespace(r, ri.namespace.as_deref()).await?;
        }
        let applied_fields = obj["metadata"].get("managedFields").cloned().filter(|_| APPLYING.try_with(|a| *a).unwrap_or(false));
        prepare_for_create(r, &mut obj);
        if let Some(f) = applied_fields {
            obj["metadata"]["managedFields"] = f;
        }
        defaults::apply(r.kind, &mut obj);
        // Mutating admission, then validation, then validating admission —
        // upstream's order.
        let ns_name = ri.namespace.clone().unwrap_or_default();
        let adm_req = crate::admission::Request::create(r.group, r.plural, &ns_name);
        let admission_inputs = match &self.admission {
            Some(chain) => Some(crate::security::NamespaceInputs::read(self, chain, &adm_req, &obj).await?),
            None => None,
        };
        if let (Some(chain), Some(inputs)) = (&self.admission, &admission_inputs) {
            chain.admit(&adm_req, &mut obj, &inputs.state()).map_err(admission_error)?;
        }
        // RBAC privilege-escalation prevention, before validation as upstream.
        crate::security::check_rbac_write(self, ri, &obj, None)?;
        let errs = validation::validate(r.kind, &obj);
        if !errs.is_empty() {
            return Err(ApiError::invalid(r.group, r.kind, &name, errs));
        }
        let charges = match (&self.admission, &admission_inputs) {
            (Some(chain), Some(inputs)) => chain.validate(&adm_req, &obj, &inputs.state()).map_err(admission_error)?,
            _ => vec![],
        };
        if !q.dry_run() {
            for (quota, _) in charges {
                self.charge_quota(&adm_req, &quota, &obj).await?;
            }
        }
        if r.kind == "Pod" {
            set_qos_class(&mut obj);
        }
        obj["apiVersion"] = json!(r.api_version());
        obj["kind"] = json!(r.kind);
        let mut obj = canonical_order(obj);
        let allocated = if r.kind == "Service" && !q.dry_run() {
            services::allocate(self, &mut obj, None).await?
        } else {
            services::Allocated::default()
        };
        if q.dry_run() {
            return Ok(Output::Object { code: 201, obj, warnings });
        }
        let key = self.key(r, ri.namespace.as_deref(), &name);
        match self.etcd.create(&key, to_storage(&obj)).await {
            Ok(rev) => {
                self.cache(r).note_own_write(rev);
                obj["metadata"]["resourceVersion"] = json!(rev.to_string());
                Ok(Output::Object { code: 201, obj, warnings })
            }
            Err(e) => {
                services::release(self, &allocated).await;
                Err(match e {
                    StorageError::AlreadyExists => ApiError::already_exists(r.group, r.plural, &name),
                    other => storage_error(other),
                })
            }
        }
    }

    /// ResourceQuota accounting: charges `obj` to the quota's `status.used`
    /// before the object is stored, as upstream's quota admission does. The
    /// charge is a compare-and-swap on the quota's resourceVersion that
    /// re-checks the object against the usage it is adding to: two creates
    /// racing for the last unit cannot both win, and a lost race re-reads
    /// the quota and checks again (so the loser may now be refused with
    /// "exceeded quota"). Usage is never released here: the resourcequota
    /// controller recounts it (deletes, and charges for objects that then
    /// failed to store).
    async fn charge_quota(&self, req: &crate::admission::Request<'_>, quota: &str, obj: &Value) -> ApiResult<()> {
        let rq = resources::find("", "v1", "resourcequotas").unwrap();
        let ri = RequestInfo {
            verb: crate::request::Verb::Update,
            resource: rq,
            namespace: Some(req.namespace.to_string()),
            name: Some(quota.to_string()),
            subresource: Some("status".into()),
        };
        self.guaranteed_update(&ri, &Query::default(), vec![], |old, _| {
            let current: k8s_openapi::api::core::v1::ResourceQuota =
                serde_json::from_value(old.clone()).map_err(|e| ApiError::internal(format!("resourcequota {quota}: {e}")))?;
            let used = crate::admission::resource_quota::recheck(req, &current, obj).map_err(admission_error)?;
            let used: Map<String, Value> =
                used.iter().map(|(k, m)| (k.clone(), json!(crate::admission::format_milli(k, *m)))).collect();
            let mut n = old.clone();
            n["status"]["used"] = Value::Object(used);
            if n["status"]["hard"].is_null() {
                n["status"]["hard"] = old["spec"]["hard"].clone();
            }
            Ok(n)
        }, false)
        .await
        .map(|_| ())
    }

    /// Decodes through the typed struct (see `typed`): type errors → 400,
    /// unknown fields → 400 (Strict) or a warning (Warn), and dropped.
    fn decode_strictly(&self, r: &ResourceInfo, obj: &mut Value, fv: FieldValidation) -> ApiResult<Vec<String>> {
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

    /// Whether an admission plugin is on; with no chain (unit setups of the
    /// registry alone) every plugin the registry runs itself is.
    fn plugin_enabled(&self, p: crate::admission::Plugin) -> bool {
        self.admission.as_ref().is_none_or(|c| c.plugins.contains(&p))
    }

    /// NamespaceLifecycle admission: no new objects in a namespace that does
    /// not exist or is being deleted.
    async fn admit_namespace(&self, r: &ResourceInfo, ns: Option<&str>) -> ApiResult<()> {
        let Some(ns) = ns.filter(|_| r.namespaced) else { return Ok(()) };
        let nsr = resources::find("", "v1", "namespaces").unwrap();
        let key = self.key(nsr, None, ns);
        let cache = self.cache(nsr);
        // Read-your-writes: `kubectl delete ns x` then a create in x must be
        // refused, so the cache must have seen this apiserver's own writes.
        cache.catch_up_own_writes(std::time::Duration::from_secs(2)).await?;
        let cached = match cache.get(&key) {
            Some(o) => Some(o.value.clone()),
            // A namespace created a moment ago through another apiserver: ask etcd.
            None => self.read(nsr, None, ns).await.ok().map(|(v, _)| v),
        };
        match cached {
            None => Err(ApiError::not_found("", "namespaces", ns)),
            Some(v) if v["status"]["phase"] == "Terminating" || !v["metadata"]["deletionTimestamp"].is_null() => {
                // Objects the namespace controller writes while emptying a
                // namespace are still fine; new ones are not.
                Err(ApiError::forbidden(
                    r.group,
                    r.plural,
                    "",
                    &format!("unable to create new content in namespace {ns} because it is being terminated"),
                ))
            }
            Some(_) => Ok(()),
        }
    }

    // ----- update / patch ------------------------------------------------

    /// PUT. The body's resourceVersion, when given, must match (else 409).
    pub async fn update(&self, ri: &RequestInfo, q: &Query, new: Value) -> ApiResult<Output> {
        let fv = FieldValidation::from_query(q)?;
        let r = ri.resource;
        let name = ri.name.clone().unwrap_or_default();
        if ri.subresource.as_deref() == Some("scale") {
            return self.update_scale(ri, q, new).await;
        }
        if ri.subresource.is_none() || ri.subresource.as_deref() != Some("finalize") {
            check_type(r, &new)?;
        }
        check_body_name(&new, &name)?;
        let precondition = new["metadata"]["resourceVersion"].as_str().filter(|s| !s.is_empty()).map(str::to_string);
        let mut new = new;
        let warnings = self.decode_strictly(r, &mut new, fv)?;
        let new = Arc::new(new);
        self.guaranteed_update(ri, q, warnings, move |_old, _| {
            let mut n = (*new).clone();
            if let Some(p) = &precondition {
                n["metadata"]["resourceVersion"] = json!(p);
            }
            Ok(n)
        }, true)
        .await
    }

    /// PATCH: applied to the current object; retried on conflict.
    pub async fn patch(&self, ri: &RequestInfo, q: &Query, content_type: &str, body: &[u8]) -> ApiResult<Output> {
        let fv = FieldValidation::from_query(q)?;
        if content_type.starts_with(crate::apply::CONTENT_TYPE) {
            return self.apply_patch(ri, q, body, fv).await;
        }
        if q.get("force").is_some() {
            return Err(ApiError::new(422, "Invalid", "PatchOptions.meta.k8s.io \"\" is invalid: force: Forbidden: may not be specified for non-apply patch"));
        }
        if ri.subresource.as_deref() == Some("scale") {
            let (scale, _) = self.get_scale(ri).await?;
            let patched = crate::patch::apply(content_type, &scale, body, "Scale")?;
            return self.update_scale(ri, q, patched).await;
        }
        let r = ri.resource;
        let body = body.to_vec();
        let ct = content_type.to_string();
        let warnings = std::sync::Mutex::new(Vec::new());
        let out = self
            .guaranteed_update(ri, q, vec![], |old, this| {
                let mut patched = crate::patch::apply(&ct, old, &body, r.kind)?;
                check_type(r, &patched)?;
                check_body_name(&patched, ri.name.as_deref().unwrap_or_default())?;
                // A patch is never conditional unless it carries a resourceVersion itself.
                let w = this.decode_strictly(r, &mut patched, fv)?;
                *warnings.lock().unwrap() = w;
                Ok(patched)
            }, false)
            .await?;
        Ok(match out {
            Output::Object { code, obj, .. } => Output::Object { code, obj, warnings: warnings.into_inner().unwrap() },
            other => other,
        })
    }

    /// `metadata.managedFields` on an update (`apply.rs`): an apply's are
    /// already computed; other writes are recorded as their manager's
    /// `Update`, if the object has managed fields. A client may clear them
    /// by sending an empty list, as in Kubernetes.
    fn manage_fields(&self, ri: &RequestInfo, q: &Query, old: &Value, new: &mut Value, incoming: Option<Value>) {
        if APPLYING.try_with(|a| *a).unwrap_or(false) {
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
        let sub = ri.subresource.clone().filter(|s| s == "status");
        let who = crate::apply::Manager { name: q.get("fieldManager").unwrap_or("unknown").to_string(), operation: "Update", subresource: sub };
        crate::apply::on_update(old, new, &who, r.kind, r.has_subresource("status"), &r.api_version(), &now());
    }

    /// Server-side apply (`apply.rs`): creates the object if it does not
    /// exist, else merges the applied configuration into it, with conflicts
    /// against other field managers unless `?force=true`.
    async fn apply_patch(&self, ri: &RequestInfo, q: &Query, body: &[u8], fv: FieldValidation) -> ApiResult<Output> {
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
            Err(e) if e.code == 404 && ri.subresource.is_none() => {
                // Apply to nothing creates: the applier owns what it sent.
                let mut obj = applied.clone();
                crate::apply::on_create_by_apply(&mut obj, &who, r.kind, has_status, &r.api_version(), &now());
                let create = RequestInfo { verb: crate::request::Verb::Create, ..ri.clone() };
                return APPLYING.scope(true, self.create(&create, q, obj)).await;
            }
            Err(e) => return Err(e),
            Ok(_) => {}
        }
        let warnings = std::sync::Mutex::new(Vec::new());
        let update = self.guaranteed_update(ri, q, vec![], |old, this| {
            let mut new = crate::apply::apply(old, &applied, &who, force, r.kind, has_status, &r.api_version(), &now()).map_err(|c| crate::apply::conflict_error(&c))?;
            *warnings.lock().unwrap() = this.decode_strictly(r, &mut new, fv)?;
            Ok(new)
        }, false);
        let out = APPLYING.scope(true, update).await?;
        Ok(match out {
            Output::Object { code, obj, .. } => Output::Object { code, obj, warnings: warnings.into_inner().unwrap() },
            other => other,
        })
    }

    /// The read-modify-write loop (`GuaranteedUpdate`): read, compute the new
    /// object from the old, validate, compare-and-swap; on a lost race, try
    /// again — unless the client pinned a resourceVersion, which makes the
    /// race its conflict.
    async fn guaranteed_update<F>(&self, ri: &RequestInfo, q: &Query, warnings: Vec<String>, compute: F, is_put: bool) -> ApiResult<Output>
    where
        F: Fn(&Value, &Self) -> ApiResult<Value>,
    {
        let r = ri.resource;
        let name = ri.name.clone().unwrap_or_default();
        let ns = ri.namespace.as_deref();
        let key = self.key(r, ns, &name);
        for attempt in 0..16 {
            // As upstream's GuaranteedUpdate, start from the watch cache's
            // copy (no etcd read); the compare-and-swap catches a stale copy,
            // and every retry reads etcd.
            let cached = if attempt == 0 { self.cache(r).get(&key) } else { None };
            let from_cache = cached.is_some();
            let (old, rev) = match cached {
                Some(o) => (o.value.clone(), o.rv),
                None => self.read(r, ns, &name).await?,
            };
            let mut new = match compute(&old, self) {
                // A decision made on a possibly stale copy is re-made on etcd's.
                Err(_) if from_cache => continue,
                other => other?,
            };
            if let Some(p) = new["metadata"]["resourceVersion"].as_str().filter(|s| !s.is_empty()) {
                if p != rev.to_string() {
                    if from_cache {
                        continue;
                    }
                    return Err(ApiError::stale(r.group, r.plural, &name));
                }
            }
            let incoming_fields = new["metadata"].get("managedFields").cloned();
            prepare_for_update(r, ri.subresource.as_deref(), &mut new, &old)?;
            defaults::apply(r.kind, &mut new);
            self.manage_fields(ri, q, &old, &mut new, incoming_fields);
            // RBAC privilege-escalation prevention, before validation as upstream.
            match crate::security::check_rbac_write(self, ri, &new, Some(&old)) {
                Err(_) if from_cache => continue,
                other => other?,
            }
            let mut errs = validation::validate(r.kind, &new);
            errs.extend(validate_update(r, ri.subresource.as_deref(), &new, &old));
            if !errs.is_empty() {
                return Err(ApiError::invalid(r.group, r.kind, &name, errs));
            }
            if r.kind == "Service" && ri.subresource.is_none() {
                services::update_allocations(self, &mut new, &old).await?;
            }
            if r.kind == "Pod" {
                set_qos_class(&mut new);
            }
            new["apiVersion"] = json!(r.api_version());
            new["kind"] = json!(r.kind);
            let mut new = canonical_order(new);
            if q.dry_run() {
                return Ok(Output::Object { code: 200, obj: new, warnings });
            }
            // The last finalizer removed from an object being deleted: it goes.
            if is_deleting(&new) && finalizers_empty(r, &new) {
                return match self.etcd.delete(&key, rev).await {
                    Ok(deleted_at) => {
                        self.cache(r).note_own_write(deleted_at);
                        self.after_delete(r, &new).await;
                        Ok(Output::Object { code: 200, obj: new, warnings })
                    }
                    Err(StorageError::Conflict { .. }) => continue,
                    Err(StorageError::NotFound) => Err(ApiError::not_found(r.group, r.plural, &name)),
                    Err(e) => Err(storage_error(e)),
                };
            }
            if new == old {
                // Nothing changed: no write, no event (upstream short-circuits too).
                return Ok(Output::Object { code: 200, obj: old, warnings });
            }
            match self.etcd.update(&key, rev, to_storage(&new)).await {
                Ok(new_rev) => {
                    self.cache(r).note_own_write(new_rev);
                    new["metadata"]["resourceVersion"] = json!(new_rev.to_string());
                    return Ok(Output::Object { code: 200, obj: new, warnings });
                }
                Err(StorageError::Conflict { .. }) => {
                    let _ = is_put;
                    continue;
                }
                Err(StorageError::NotFound) => return Err(ApiError::not_found(r.group, r.plural, &name)),
                Err(e) => return Err(storage_error(e)),
            }
        }
        Err(ApiError::stale(r.group, r.plural, &name))
    }

    // ----- scale subresource ---------------------------------------------

    async fn get_scale(&self, ri: &RequestInfo) -> ApiResult<(Value, i64)> {
        let name = ri.name.as_deref().unwrap_or_default();
        let (obj, rev) = self.read(ri.resource, ri.namespace.as_deref(), name).await?;
        Ok((scale_of(&obj), rev))
    }

    pub async fn read_scale(&self, ri: &RequestInfo) -> ApiResult<Output> {
        Ok(Output::Object { code: 200, obj: self.get_scale(ri).await?.0, warnings: vec![] })
    }

    async fn update_scale(&self, ri: &RequestInfo, q: &Query, scale: Value) -> ApiResult<Output> {
        let replicas = scale["spec"]["replicas"].as_i64().unwrap_or(0);
        if replicas < 0 {
            return Err(ApiError::invalid("autoscaling", "Scale", ri.name.as_deref().unwrap_or(""), vec![FieldError::invalid(
                "spec.replicas",
                replicas.to_string(),
                "must be greater than or equal to 0",
            )]));
        }
        let pinned = scale["metadata"]["resourceVersion"].as_str().filter(|s| !s.is_empty()).map(str::to_string);
        let main = RequestInfo { subresource: None, ..ri.clone() };
        let out = self
            .guaranteed_update(&main, q, vec![], |old, _| {
                let mut n = old.clone();
                n["spec"]["replicas"] = json!(replicas);
                if let Some(p) = &pinned {
                    n["metadata"]["resourceVersion"] = json!(p);
                }
                Ok(n)
            }, true)
            .await?;
        match out {
            Output::Object { code, obj, warnings } => Ok(Output::Object { code, obj: scale_of(&obj), warnings }),
            other => Ok(other),
        }
    }

    // ----- binding -------------------------------------------------------

    /// POST pods/<name>/binding: sets spec.nodeName once and records
    /// PodScheduled=True — the scheduler's one write per pod.
    pub async fn bind(&self, ri: &RequestInfo, q: &Query, binding: Value) -> ApiResult<Output> {
        let name = ri.name.clone().unwrap_or_default();
        let normalized = typed::normalize("Binding", &binding)
            .map_err(|e| ApiError::bad_request(format!("Binding in version \"v1\" cannot be handled as a Binding: {e}")))?;
        let node = normalized["target"]["name"].as_str().unwrap_or("").to_string();
        if node.is_empty() {
            return Err(ApiError::invalid("", "Binding", &name, vec![FieldError::required("target.name")]));
        }
        let main = RequestInfo { subresource: Some("binding".into()), ..ri.clone() };
        let node2 = node.clone();
        let out = self
            .guaranteed_update(&main, q, vec![], move |old, _| {
                if is_deleting(old) {
                    return Err(ApiError::conflict("", "pods", &name, "pod is being deleted, cannot be assigned to a host"));
                }
                if let Some(cur) = old["spec"]["nodeName"].as_str().filter(|s| !s.is_empty()) {
                    return Err(ApiError::conflict("", "pods/binding", &name, &format!("pod {name} is already assigned to node \"{cur}\"")));
                }
                let mut n = old.clone();
                n["spec"]["nodeName"] = json!(node2);
                set_condition(&mut n, "PodScheduled", "True", None, None);
                Ok(n)
            }, false);
        // The binding itself goes through the pod's main resource path, so
        // allow the nodeName change there by marking it.
        let out = BINDING.scope(true, out).await?;
        drop(out);
        Ok(Output::Object {
            code: 201,
            obj: json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
            warnings: vec![],
        })
    }

    // ----- eviction ------------------------------------------------------

    /// POST pods/<name>/eviction (a `policy/v1` Eviction): the API-initiated
    /// eviction that `kubectl drain` uses. Kubernetes first checks the
    /// PodDisruptionBudgets that cover the pod (429 TooManyRequests when one
    /// would be violated); rkube serves no PodDisruptionBudgets, so nothing
    /// guards a pod and every eviction goes on to be a graceful delete with
    /// the Eviction's `deleteOptions`. Answers 201 with a Success Status.
    pub async fn evict(&self, ri: &RequestInfo, q: &Query, eviction: Value) -> ApiResult<Output> {
        let name = ri.name.clone().unwrap_or_default();
        let api_version = eviction["apiVersion"].as_str().unwrap_or("");
        if eviction["kind"] != "Eviction" || !matches!(api_version, "policy/v1" | "policy/v1beta1") {
            return Err(ApiError::bad_request(format!(
                "not a Eviction object: {} {}",
                api_version,
                eviction["kind"].as_str().unwrap_or("")
            )));
        }
        if eviction["metadata"]["name"].as_str().unwrap_or("") != name {
            return Err(ApiError::bad_request("name in URL does not match name in Eviction object"));
        }
        if let Some(ns) = eviction["metadata"]["namespace"].as_str().filter(|n| !n.is_empty()) {
            if Some(ns) != ri.namespace.as_deref() {
                return Err(ApiError::bad_request("the namespace of the provided object does not match the namespace sent on the request"));
            }
        }
        let options = eviction.get("deleteOptions").filter(|o| o.is_object()).cloned();
        let pod = RequestInfo { verb: crate::request::Verb::Delete, subresource: None, ..ri.clone() };
        self.delete(&pod, q, options).await?;
        Ok(Output::Object {
            code: 201,
            obj: json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
            warnings: vec![],
        })
    }

    // ----- delete --------------------------------------------------------

    pub async fn delete(&self, ri: &RequestInfo, q: &Query, body: Option<Value>) -> ApiResult<Output> {
        let r = ri.resource;
        let name = ri.name.clone().unwrap_or_default();
        let ns = ri.namespace.as_deref();
        let opts = DeleteOptions::from(q, body.as_ref())?;
        if r.kind == "Namespace"
            && IMMORTAL_NAMESPACES.contains(&name.as_str())
            && self.plugin_enabled(crate::admission::Plugin::NamespaceLifecycle)
        {
            return Err(ApiError::forbidden("", "namespaces", &name, "this namespace may not be deleted"));
        }
        let key = self.key(r, ns, &name);
        for _ in 0..16 {
            let (mut obj, rev) = self.read(r, ns, &name).await?;
            if let Some(uid) = &opts.uid {
                let actual = obj["metadata"]["uid"].as_str().unwrap_or("");
                if uid != actual {
                    return Err(ApiError::conflict(r.group, r.plural, &name, &format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {actual}"
                    )));
                }
            }
            if let Some(prv) = &opts.resource_version {
                if *prv != rev.to_string() {
                    return Err(ApiError::conflict(r.group, r.plural, &name, &format!(
                        "Precondition failed: ResourceVersion in precondition: {prv}, ResourceVersion in object meta: {rev}"
                    )));
                }
            }
            let mut changed = false;
            // Graceful deletion: a pod on a node gets a deletionTimestamp and
            // waits for its node agent to stop it (or for grace 0).
            if r.kind == "Pod" {
                let bound = obj["spec"]["nodeName"].as_str().is_some_and(|n| !n.is_empty());
                let terminal = matches!(obj["status"]["phase"].as_str(), Some("Succeeded" | "Failed"));
                let default_grace = obj["spec"]["terminationGracePeriodSeconds"].as_i64().unwrap_or(30);
                let grace = opts.grace_period.unwrap_or(default_grace).max(0);
                if bound && !terminal && grace > 0 {
                    let cur = obj["metadata"]["deletionGracePeriodSeconds"].as_i64();
                    if cur.is_none_or(|c| grace < c) {
                        let at = chrono::Utc::now() + chrono::Duration::seconds(grace);
                        obj["metadata"]["deletionTimestamp"] = json!(at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
                        obj["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
                        changed = true;
                    }
                    if !changed {
                        return Ok(Output::Object { code: 200, obj, warnings: vec![] });
                    }
                }
            }
            if r.kind == "Namespace" {
                // Namespace deletion is two-phase: Terminating until the
                // namespace controller has emptied it and removed the
                // `kubernetes` finalizer from spec.finalizers.
                let has_spec_finalizers = obj["spec"]["finalizers"].as_array().is_some_and(|a| !a.is_empty());
                if has_spec_finalizers && obj["status"]["phase"] != "Terminating" {
                    obj["status"]["phase"] = json!("Terminating");
                    changed = true;
                }
            }
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
            if let Some(f) = finalizer {
                if !changed || r.kind != "Pod" {
                    let list = obj["metadata"]["finalizers"].as_array().cloned().unwrap_or_default();
                    if !list.iter().any(|x| x == f) {
                        let mut list = list;
                        list.push(json!(f));
                        obj["metadata"]["finalizers"] = Value::Array(list);
                        changed = true;
                    }
                }
            }
            let keep = changed || !finalizers_empty(r, &obj);
            if keep {
                if obj["metadata"]["deletionTimestamp"].is_null() {
                    obj["metadata"]["deletionTimestamp"] = json!(now());
                    obj["metadata"]["deletionGracePeriodSeconds"] = json!(0);
                    changed = true;
                }
                if !changed {
                    return Ok(Output::Object { code: 200, obj, warnings: vec![] });
                }
                if opts.dry_run {
                    return Ok(Output::Object { code: 200, obj, warnings: vec![] });
                }
                match self.etcd.update(&key, rev, to_storage(&obj)).await {
                    Ok(new_rev) => {
                        self.cache(r).note_own_write(new_rev);
                        obj["metadata"]["resourceVersion"] = json!(new_rev.to_string());
                        return Ok(Output::Object { code: 200, obj, warnings: vec![] });
                    }
                    Err(StorageError::Conflict { .. }) => continue,
                    Err(StorageError::NotFound) => return Err(ApiError::not_found(r.group, r.plural, &name)),
                    Err(e) => return Err(storage_error(e)),
                }
            }
            if opts.dry_run {
                return Ok(Output::Object { code: 200, obj, warnings: vec![] });
            }
            match self.etcd.delete(&key, rev).await {
                Ok(deleted_at) => {
                    self.cache(r).note_own_write(deleted_at);
                    self.after_delete(r, &obj).await;
                    return Ok(Output::Object { code: 200, obj, warnings: vec![] });
                }
                Err(StorageError::Conflict { .. }) => continue,
                Err(StorageError::NotFound) => return Err(ApiError::not_found(r.group, r.plural, &name)),
                Err(e) => return Err(storage_error(e)),
            }
        }
        Err(ApiError::stale(r.group, r.plural, &name))
    }

    /// Frees what an object held (a service's ClusterIP and NodePorts).
    async fn after_delete(&self, r: &ResourceInfo, obj: &Value) {
        if r.kind == "Service" {
            services::release(self, &services::Allocated::of(obj)).await;
        }
    }

    pub async fn delete_collection(&self, ri: &RequestInfo, q: &Query, body: Option<Value>) -> ApiResult<Output> {
        let list_q = Query(q.0.iter().filter(|(k, _)| k == "labelSelector" || k == "fieldSelector").cloned().collect());
        let Output::List { items, rv, .. } = self.list(ri, &list_q).await? else { unreachable!() };
        let mut deleted = Vec::new();
        for o in &items {
            let one = RequestInfo { name: Some(o.name.clone()), namespace: (!o.namespace.is_empty()).then(|| o.namespace.clone()), ..ri.clone() };
            match self.delete(&one, q, body.clone()).await {
                Ok(_) => deleted.push(o.clone()),
                Err(e) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Output::List { rv, items: deleted, continue_token: None })
    }

    /// Creates the system namespaces and the `kubernetes` service if missing.
    pub async fn bootstrap(&self) -> ApiResult<()> {
        let nsr = resources::find("", "v1", "namespaces").unwrap();
        let q = Query::default();
        for ns in SYSTEM_NAMESPACES {
            let ri = RequestInfo { verb: crate::request::Verb::Create, resource: nsr, namespace: None, name: None, subresource: None };
            let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
            match self.create(&ri, &q, obj).await {
                Ok(_) => {}
                Err(e) if e.code == 409 => {}
                Err(e) => return Err(e),
            }
        }
        // The bootstrap policy: cluster roles and bindings Kubernetes starts with.
        for obj in crate::auth::bootstrap::all() {
            let kind = obj["kind"].as_str().unwrap_or("");
            let Some(r) = resources::find_kind("rbac.authorization.k8s.io", kind) else { continue };
            let ri = RequestInfo { verb: crate::request::Verb::Create, resource: r, namespace: None, name: None, subresource: None };
            match self.create(&ri, &q, obj).await {
                Ok(_) => {}
                Err(e) if e.code == 409 => {}
                Err(e) => return Err(e),
            }
        }
        let svc = resources::find("", "v1", "services").unwrap();
        let ri = RequestInfo { verb: crate::request::Verb::Create, resource: svc, namespace: Some("default".into()), name: None, subresource: None };
        let obj = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "kubernetes", "namespace": "default",
            "labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {"clusterIP": self.ips.first().to_string(), "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}]}});
        match self.create(&ri, &q, obj).await {
            Ok(_) => Ok(()),
            Err(e) if e.code == 409 => Ok(()),
            Err(e) if e.code == 422 => Ok(()), // address taken by an older incarnation
            Err(e) => Err(e),
        }
    }
}

tokio::task_local! {
    /// Set while a binding is being written: the one path allowed to change
    /// a pod's `spec.nodeName`.
    static BINDING: bool;
    /// Set while a server-side apply writes: its managedFields are the
    /// apply's own computation, not the client's.
    static APPLYING: bool;
}

/// Decides whether a watch event is delivered, and as what: a selector-
/// filtered watch turns "stopped matching" into DELETED and "started
/// matching" into ADDED, as upstream's cacher does.
fn filter_event(ev: &CacheEvent, ns: Option<&str>, filter: &dyn Fn(&CachedObject) -> bool) -> Option<WatchEvent> {
    if let Some(ns) = ns {
        if !ev.object.namespace.is_empty() && ev.object.namespace != ns {
            return None;
        }
    }
    let now = filter(&ev.object);
    let before = ev.prev.as_ref().is_some_and(|p| filter(p));
    match ev.kind {
        EventType::Added if now => Some(WatchEvent::Event(EventType::Added, ev.object.clone())),
        EventType::Deleted if before || now => Some(WatchEvent::Event(EventType::Deleted, ev.object.clone())),
        EventType::Modified => match (before, now) {
            (true, true) => Some(WatchEvent::Event(EventType::Modified, ev.object.clone())),
            (false, true) => Some(WatchEvent::Event(EventType::Added, ev.object.clone())),
            (true, false) => Some(WatchEvent::Event(EventType::Deleted, ev.object.clone())),
            (false, false) => None,
        },
        _ => None,
    }
}

struct DeleteOptions {
    grace_period: Option<i64>,
    propagation: Option<String>,
    uid: Option<String>,
    resource_version: Option<String>,
    dry_run: bool,
}

impl DeleteOptions {
    fn from(q: &Query, body: Option<&Value>) -> ApiResult<Self> {
        let empty = json!({});
        let b = body.unwrap_or(&empty);
        let grace = match (b["gracePeriodSeconds"].as_i64(), q.get("gracePeriodSeconds")) {
            (Some(g), _) => Some(g),
            (None, Some(s)) => Some(s.parse().map_err(|_| ApiError::bad_request(format!("invalid gracePeriodSeconds {s:?}")))?),
            _ => None,
        };
        let mut propagation = b["propagationPolicy"].as_str().map(str::to_string).or_else(|| q.get("propagationPolicy").map(str::to_string));
        // The deprecated orphanDependents flag means the same as Orphan.
        if propagation.is_none() {
            if b["orphanDependents"] == json!(true) || q.get("orphanDependents") == Some("true") {
                propagation = Some("Orphan".into());
            }
        }
        Ok(DeleteOptions {
            grace_period: grace,
            propagation,
            uid: b["preconditions"]["uid"].as_str().map(str::to_string),
            resource_version: b["preconditions"]["resourceVersion"].as_str().map(str::to_string),
            dry_run: q.dry_run() || b["dryRun"].as_array().is_some_and(|a| a.iter().any(|x| x == "All")),
        })
    }
}

fn is_deleting(obj: &Value) -> bool {
    !obj["metadata"]["deletionTimestamp"].is_null()
}

/// No finalizers left: neither `metadata.finalizers` nor, for namespaces,
/// `spec.finalizers`.
fn finalizers_empty(r: &ResourceInfo, obj: &Value) -> bool {
    let meta_empty = obj["metadata"]["finalizers"].as_array().is_none_or(|a| a.is_empty());
    let spec_empty = r.kind != "Namespace" || obj["spec"]["finalizers"].as_array().is_none_or(|a| a.is_empty());
    meta_empty && spec_empty
}

/// What goes to etcd: the object without its resourceVersion (the mod
/// revision is the resourceVersion, so storing it would be stale at once).
fn to_storage(obj: &Value) -> Vec<u8> {
    serde_json::to_vec(&StorageView(obj)).expect("JSON value serialises")
}

/// Top-level fields in the order Kubernetes writes them; the rest (data,
/// subsets, ...) follow in their own order.
const TOP_LEVEL_ORDER: [&str; 5] = ["apiVersion", "kind", "metadata", "spec", "status"];

/// An object as etcd stores it, serialised straight from the request's
/// value without copying it: top-level fields in Kubernetes' order and no
/// `metadata.resourceVersion` (the key's mod revision is the version).
struct StorageView<'a>(&'a Value);

impl serde::Serialize for StorageView<'_> {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let Some(m) = self.0.as_object() else { return self.0.serialize(ser) };
        let mut out = ser.serialize_map(Some(m.len()))?;
        let ordered = TOP_LEVEL_ORDER.iter().filter_map(|k| m.get_key_value(*k));
        let rest = m.iter().filter(|(k, _)| !TOP_LEVEL_ORDER.contains(&k.as_str()));
        for (k, v) in ordered.chain(rest) {
            match (k.as_str(), v.as_object()) {
                ("metadata", Some(meta)) => {
                    out.serialize_entry(k, &MetaWithoutVersion(meta))?;
                }
                _ => out.serialize_entry(k, v)?,
            }
        }
        out.end()
    }
}

struct MetaWithoutVersion<'a>(&'a Map<String, Value>);

impl serde::Serialize for MetaWithoutVersion<'_> {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut out = ser.serialize_map(None)?;
        for (k, v) in self.0.iter().filter(|(k, _)| k.as_str() != "resourceVersion") {
            out.serialize_entry(k, v)?;
        }
        out.end()
    }
}

/// `obj` with its top-level fields in Kubernetes' order, moving (not
/// copying) the values; objects already in order come back as they are.
fn canonical_order(obj: Value) -> Value {
    let Value::Object(mut m) = obj else { return obj };
    let present: Vec<&str> = TOP_LEVEL_ORDER.iter().copied().filter(|k| m.contains_key(*k)).collect();
    if m.keys().take(present.len()).map(String::as_str).eq(present.iter().copied()) {
        return Value::Object(m);
    }
    let mut out = Map::with_capacity(m.len());
    for k in present {
        if let Some(v) = m.shift_remove(k) {
            out.insert(k.to_string(), v);
        }
    }
    out.extend(m);
    Value::Object(out)
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
        Some(ns) if !ns.is_empty() && ns != url_ns => Err(ApiError::bad_request(format!(
            "the namespace of the provided object does not match the namespace sent on the request"
        ))),
        _ => {
            meta.insert("namespace".into(), json!(url_ns));
            Ok(())
        }
    }
}

/// Server-set fields on create (`BeforeCreate`): uid, creationTimestamp,
/// generation; the status a new object starts with.
fn prepare_for_create(r: &ResourceInfo, obj: &mut Value) {
    let meta = obj["metadata"].as_object_mut().expect("checked by caller");
    meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
    meta.insert("creationTimestamp".into(), json!(now()));
    meta.remove("resourceVersion");
    meta.remove("deletionTimestamp");
    meta.remove("deletionGracePeriodSeconds");
    meta.remove("managedFields");
    meta.remove("selfLink");
    if obj.get("spec").is_some() || matches!(r.kind, "Deployment" | "ReplicaSet" | "Service" | "Pod") {
        obj["metadata"]["generation"] = json!(1);
    }
    match r.kind {
        "Pod" => obj["status"] = json!({"phase": "Pending"}),
        "Deployment" | "ReplicaSet" => {
            obj.as_object_mut().unwrap().remove("status");
        }
        "Service" => obj["status"] = json!({"loadBalancer": {}}),
        "Namespace" => obj["status"] = json!({"phase": "Active"}),
        _ => {}
    }
}

/// Server-set fields on update (`BeforeUpdate`): what the client may not
/// change, and the spec/status split between a resource and its `status`
/// subresource.
fn prepare_for_update(r: &ResourceInfo, sub: Option<&str>, new: &mut Value, old: &Value) -> ApiResult<()> {
    if !new.is_object() {
        return Err(ApiError::bad_request("the body of the request must be a JSON object"));
    }
    if !new["metadata"].is_object() {
        new["metadata"] = json!({});
    }
    match sub {
        Some("status") => {
            // Only status changes; everything else is the stored object.
            let status = new.get("status").cloned();
            *new = old.clone();
            match status {
                Some(s) => new["status"] = s,
                None => {
                    new.as_object_mut().unwrap().remove("status");
                }
            }
        }
        // A binding writes spec.nodeName and the PodScheduled condition.
        Some("binding") => {}
        // `kubectl debug`: only the pod's ephemeral containers change.
        Some("ephemeralcontainers") => {
            let eph = new["spec"].get("ephemeralContainers").cloned();
            *new = old.clone();
            match eph {
                Some(e) if !e.is_null() => new["spec"]["ephemeralContainers"] = e,
                _ => {
                    new["spec"].as_object_mut().map(|m| m.remove("ephemeralContainers"));
                }
            }
        }
        Some("finalize") => {
            let fin = new["spec"]["finalizers"].clone();
            *new = old.clone();
            new["spec"]["finalizers"] = if fin.is_null() { json!([]) } else { fin };
        }
        _ => {
            if r.has_subresource("status") {
                match old.get("status") {
                    Some(s) => new["status"] = s.clone(),
                    None => {
                        new.as_object_mut().unwrap().remove("status");
                    }
                }
            }
        }
    }
    for k in ["uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "namespace", "name"] {
        match old["metadata"].get(k) {
            Some(v) => new["metadata"][k] = v.clone(),
            None => {
                new["metadata"].as_object_mut().unwrap().remove(k);
            }
        }
    }
    new["metadata"].as_object_mut().unwrap().remove("managedFields");
    // Generation counts spec changes; controllers compare it with
    // status.observedGeneration.
    let generation = old["metadata"]["generation"].as_i64();
    match generation {
        Some(g) if new.get("spec") != old.get("spec") => new["metadata"]["generation"] = json!(g + 1),
        Some(g) => new["metadata"]["generation"] = json!(g),
        None => {}
    }
    new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
    // Once deleting, no new finalizers may be added (upstream forbids it).
    Ok(())
}

/// Update rules beyond plain validation (`ValidatePodUpdate` & co).
fn validate_update(r: &ResourceInfo, sub: Option<&str>, new: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    match r.kind {
        "Pod" if sub == Some("ephemeralcontainers") => errs.extend(validation::ephemeral_containers_update(&new["spec"], &old["spec"])),
        "Pod" => {
            let binding = BINDING.try_with(|b| *b).unwrap_or(false);
            let strip = |spec: &Value| {
                let mut s = spec.clone();
                for key in ["containers", "initContainers"] {
                    if let Some(cs) = s[key].as_array_mut() {
                        for c in cs {
                            c.as_object_mut().map(|m| m.remove("image"));
                        }
                    }
                }
                if let Some(m) = s.as_object_mut() {
                    m.remove("activeDeadlineSeconds");
                    m.remove("tolerations");
                    m.remove("terminationGracePeriodSeconds");
                    if binding {
                        m.remove("nodeName");
                    }
                }
                s
            };
            if strip(&new["spec"]) != strip(&old["spec"]) {
                errs.push(FieldError::forbidden(
                    "spec",
                    "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
                ));
            }
        }
        // ValidateRoleBindingUpdate: a binding's role cannot change (delete
        // and re-create it), so what it grants is decided once, at create.
        "RoleBinding" | "ClusterRoleBinding" => {
            let role_ref = |o: &Value| ["apiGroup", "kind", "name"].map(|k| o["roleRef"][k].as_str().unwrap_or("").to_string());
            if role_ref(new) != role_ref(old) {
                let [group, kind, name] = role_ref(new);
                let rendered = format!("rbac.RoleRef{{APIGroup:{group:?}, Kind:{kind:?}, Name:{name:?}}}");
                errs.push(FieldError::invalid_struct("roleRef", rendered, "cannot change roleRef"));
            }
        }
        "Deployment" | "ReplicaSet" => {
            if new["spec"]["selector"] != old["spec"]["selector"] {
                errs.push(FieldError::invalid("spec.selector", new["spec"]["selector"].to_string(), "field is immutable"));
            }
        }
        _ => {}
    }
    errs
}

/// The autoscaling/v1 Scale view of a Deployment or ReplicaSet.
fn scale_of(obj: &Value) -> Value {
    let sel = obj["spec"]["selector"]["matchLabels"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| format!("{}={}", k, v.as_str().unwrap_or(""))).collect::<Vec<_>>().join(","))
        .unwrap_or_default();
    let meta = &obj["metadata"];
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"],
            "resourceVersion": meta["resourceVersion"], "creationTimestamp": meta["creationTimestamp"],
        },
        "spec": {"replicas": obj["spec"]["replicas"].as_i64().unwrap_or(0)},
        "status": {"replicas": obj["status"]["replicas"].as_i64().unwrap_or(0), "selector": sel},
    })
}

/// Sets or updates one entry of `status.conditions`.
pub fn set_condition(obj: &mut Value, ty: &str, status: &str, reason: Option<&str>, message: Option<&str>) {
    if !obj["status"].is_object() {
        obj["status"] = json!({});
    }
    if !obj["status"]["conditions"].is_array() {
        obj["status"]["conditions"] = json!([]);
    }
    let conds = obj["status"]["conditions"].as_array_mut().unwrap();
    let mut c = json!({"type": ty, "status": status, "lastProbeTime": null, "lastTransitionTime": now()});
    if let Some(r) = reason {
        c["reason"] = json!(r);
    }
    if let Some(m) = message {
        c["message"] = json!(m);
    }
    match conds.iter_mut().find(|c| c["type"] == ty) {
        Some(existing) if existing["status"] == status => {}
        Some(existing) => *existing = c,
        None => conds.push(c),
    }
}

/// `status.qosClass` from the containers' requests and limits.
fn set_qos_class(pod: &mut Value) {
    let mut any = false;
    let mut guaranteed = true;
    for key in ["containers", "initContainers"] {
        for c in pod["spec"][key].as_array().into_iter().flatten() {
            let req = &c["resources"]["requests"];
            let lim = &c["resources"]["limits"];
            for res in ["cpu", "memory"] {
                let (rq, lm) = (&req[res], &lim[res]);
                if !rq.is_null() || !lm.is_null() {
                    any = true;
                }
                if lm.is_null() || (!rq.is_null() && rq != lm) {
                    guaranteed = false;
                }
            }
        }
    }
    let class = if !any { "BestEffort" } else if guaranteed { "Guaranteed" } else { "Burstable" };
    if !pod["status"].is_object() {
        pod["status"] = json!({});
    }
    pod["status"]["qosClass"] = json!(class);
}

/// The list `continue` token, as upstream's storage layer writes it: URL-safe
/// base64 (no padding) of `{"v","rv","start"}` where `start` is the next key
/// *relative to the collection prefix*. The prefix is never in the token, so
/// a client cannot point a list at another namespace's or resource's keys.
fn encode_continue(rev: i64, key: &str, prefix: &str) -> String {
    use base64::Engine;
    let start = key.strip_prefix(prefix).unwrap_or(key);
    let t = json!({"v": "meta.k8s.io/v1", "rv": rev, "start": start});
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(t.to_string())
}

/// Decodes a `continue` token against the collection `prefix` being listed:
/// returns the revision and the absolute etcd key to resume from. The start
/// key must already be a clean relative path (no `.`/`..`/empty segments), so
/// `prefix + start` can never climb out of the collection; anything else is a
/// 400 "invalid continue token", the message upstream's etcd3 store gives.
fn decode_continue(token: &str, prefix: &str) -> ApiResult<(i64, String)> {
    use base64::Engine;
    let invalid = |why: String| ApiError::bad_request(format!("invalid continue token: continue key is not valid{why}"));
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token).map_err(|e| invalid(format!(": {e}")))?;
    let v: Value = serde_json::from_slice(&raw).map_err(|e| invalid(format!(": {e}")))?;
    let version = v["v"].as_str().unwrap_or_default();
    if version != "meta.k8s.io/v1" {
        return Err(invalid(format!(": server does not recognize this encoded version {version}")));
    }
    let rev = v["rv"].as_i64().unwrap_or(0);
    if rev == 0 {
        return Err(invalid(": incorrect encoded start resourceVersion (version meta.k8s.io/v1)".into()));
    }
    let start = v["start"].as_str().unwrap_or_default();
    if start.is_empty() {
        return Err(invalid(": encoded start key empty (version meta.k8s.io/v1)".into()));
    }
    // The path.Clean check: "/" + start must already be a clean rooted path.
    let rooted = start.strip_prefix('/').unwrap_or(start);
    let clean = rooted.is_empty() || rooted.split('/').all(|seg| !matches!(seg, "" | "." | ".."));
    if !clean {
        return Err(invalid(format!(": {start}")));
    }
    Ok((rev, format!("{prefix}{rooted}")))
}

fn admission_error(e: crate::admission::AdmissionError) -> ApiError {
    let mut err = ApiError::new(403, "Forbidden", e.message());
    err.details = e.status().get("details").cloned();
    err
}

impl ApiError {
    pub fn with_message(mut self, m: String) -> Self {
        self.message = m;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_ref_is_immutable() {
        let rb = resources::find("rbac.authorization.k8s.io", "v1", "rolebindings").unwrap();
        let b = |name: &str| {
            json!({"metadata": {"name": "b", "labels": {"x": name}},
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name}})
        };
        assert!(validate_update(rb, None, &b("view"), &b("view")).is_empty());
        let errs = validate_update(rb, None, &b("admin"), &b("view"));
        let e = ApiError::invalid(rb.group, rb.kind, "b", errs);
        assert_eq!(
            e.message,
            r#"RoleBinding.rbac.authorization.k8s.io "b" is invalid: roleRef: Invalid value: rbac.RoleRef{APIGroup:"rbac.authorization.k8s.io", Kind:"ClusterRole", Name:"admin"}: cannot change roleRef"#
        );
        assert_eq!(e.to_status()["details"]["causes"][0]["reason"], "FieldValueInvalid");
    }

    #[test]
    fn storage_form_orders_top_level_and_drops_resource_version() {
        let check = |obj: Value, expected: &str| {
            assert_eq!(String::from_utf8(to_storage(&obj)).unwrap(), expected, "to_storage({obj})");
            // canonical_order gives the same order (resourceVersion kept).
            let ordered = canonical_order(obj.clone());
            let keys: Vec<&String> = ordered.as_object().map(|m| m.keys().collect()).unwrap_or_default();
            let want: Vec<String> = serde_json::from_str::<Value>(expected)
                .unwrap()
                .as_object()
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default();
            assert_eq!(keys, want.iter().collect::<Vec<_>>(), "canonical_order({obj})");
        };
        check(
            json!({"spec": {"b": 1, "a": 2}, "metadata": {"name": "x", "resourceVersion": "7", "uid": "u"}, "kind": "Pod", "apiVersion": "v1"}),
            r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"x","uid":"u"},"spec":{"b":1,"a":2}}"#,
        );
        check(
            json!({"subsets": [], "kind": "Endpoints", "metadata": {"name": "e"}, "apiVersion": "v1"}),
            r#"{"apiVersion":"v1","kind":"Endpoints","metadata":{"name":"e"},"subsets":[]}"#,
        );
        check(json!({"apiVersion": "v1", "kind": "Pod", "status": {}}), r#"{"apiVersion":"v1","kind":"Pod","status":{}}"#);
        check(json!({"data": {"k": "v"}, "apiVersion": "v1"}), r#"{"apiVersion":"v1","data":{"k":"v"}}"#);
    }

    #[test]
    fn qos_classes() {
        let check = |resources: Value, expected: &str| {
            let mut pod = json!({"spec": {"containers": [{"name": "c", "resources": resources}]}});
            set_qos_class(&mut pod);
            assert_eq!(pod["status"]["qosClass"], expected, "{resources}");
        };
        check(json!({}), "BestEffort");
        check(json!({"requests": {"cpu": "1"}}), "Burstable");
        check(json!({"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}}), "Guaranteed");
        check(json!({"requests": {"cpu": "1"}, "limits": {"cpu": "2", "memory": "1Gi"}}), "Burstable");
    }

    #[test]
    fn continue_tokens_round_trip() {
        let t = encode_continue(42, "/registry/pods/a/b", "/registry/pods/a/");
        assert_eq!(decode_continue(&t, "/registry/pods/a/").unwrap(), (42, "/registry/pods/a/b".to_string()));
        assert_eq!(decode_continue("garbage!", "/registry/pods/a/").unwrap_err().code, 400);
    }

    #[test]
    fn continue_tokens_stay_inside_the_collection() {
        use base64::Engine;
        let forge = |start: &str| {
            let t = json!({"v": "meta.k8s.io/v1", "rv": 5, "start": start}).to_string();
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(t)
        };
        let p = "/registry/pods/a/";
        for bad in ["../b/x", "./x", "x/../../secrets/y", "x//y", "x/"] {
            let e = decode_continue(&forge(bad), p).unwrap_err();
            assert_eq!((e.code, e.message.clone()), (400, format!("invalid continue token: continue key is not valid: {bad}")));
        }
        // An absolute key is taken relative to the prefix: it stays inside it.
        assert_eq!(decode_continue(&forge("/registry/secrets/b/x"), p).unwrap().1, "/registry/pods/a/registry/secrets/b/x");
        let e = decode_continue(&forge(""), p).unwrap_err();
        assert_eq!(e.message, "invalid continue token: continue key is not valid: encoded start key empty (version meta.k8s.io/v1)");
    }

    #[test]
    fn status_update_changes_only_status() {
        let r = resources::find("apps", "v1", "deployments").unwrap();
        let old = json!({"metadata": {"name": "d", "generation": 1, "uid": "u"}, "spec": {"replicas": 1}, "status": {"replicas": 0}});
        let mut new = json!({"metadata": {"name": "d"}, "spec": {"replicas": 5}, "status": {"replicas": 1}});
        prepare_for_update(r, Some("status"), &mut new, &old).unwrap();
        assert_eq!(new["spec"]["replicas"], 1);
        assert_eq!(new["status"]["replicas"], 1);
        let mut new = json!({"metadata": {"name": "d"}, "spec": {"replicas": 5}, "status": {"replicas": 9}});
        prepare_for_update(r, None, &mut new, &old).unwrap();
        assert_eq!((new["spec"]["replicas"].clone(), new["status"]["replicas"].clone()), (json!(5), json!(0)));
        assert_eq!(new["metadata"]["generation"], 2);
        assert_eq!(new["metadata"]["uid"], "u");
    }
}
