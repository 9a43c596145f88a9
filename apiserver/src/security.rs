//! The authentication → authorization → admission stages of the request
//! pipeline, wired to the live cluster state: the RBAC objects come from the
//! watch cache (kept current by one task per RBAC resource), the Node
//! authorizer reads pods' nodeName from it, and admission reads the
//! namespace's LimitRanges and ResourceQuotas from it — and the pod's
//! ServiceAccount, from it or (on a miss) from etcd. The decisions
//! themselves are the pure functions of [`crate::auth`] and
//! [`crate::admission`].
//!
//! The registry gets admission and the requester's RBAC escalation checks
//! as a [`Checks`] from the handler (the registry's
//! [`WriteChecks`] contract), never by reaching back into this module.

use std::sync::{Arc, RwLock};

use machinery::resources::{self, ResourceInfo};
use serde_json::Value;

use crate::admission::{self, NamespaceState, QuotaState};
use crate::auth::{self, token::TokenFile, Attributes, AuthorizationMode, Authorizer, AuthzContext, RbacData, UserInfo};
use crate::registry::checks::WriteChecks;
use crate::registry::namespace::IMMORTAL_NAMESPACES;
use crate::registry::Registry;
use crate::request::{RequestInfo, Verb};
use crate::status::ApiError;
use crate::storage::cache::EventType;
use crate::tls::ClientCa;

/// What the TLS layer learnt about a connection.
#[derive(Default)]
pub struct ConnInfo {
    /// The insecure port: no authentication, no authorization (as the old
    /// kube-apiserver `--insecure-port`).
    pub insecure: bool,
    pub peer_certs: Vec<rustls::pki_types::CertificateDer<'static>>,
}

impl ConnInfo {
    pub fn insecure() -> Self {
        ConnInfo { insecure: true, peer_certs: vec![] }
    }
}

pub struct Security {
    pub client_ca: Option<ClientCa>,
    pub tokens: Option<TokenFile>,
    pub anonymous: bool,
    pub authorizer: Authorizer,
    pub rbac: Arc<RwLock<RbacData>>,
    pub admission: admission::Chain,
}

impl Security {
    /// Who is asking. `Ok(None)`: the insecure port, which skips the checks.
    pub fn authenticate(&self, conn: &ConnInfo, authorization: Option<&[u8]>) -> Result<Option<UserInfo>, ApiError> {
        if conn.insecure {
            return Ok(None);
        }
        let cert = if conn.peer_certs.is_empty() {
            None
        } else {
            match &self.client_ca {
                // A certificate that does not chain to the client CA
                // authenticates nobody: 401, as upstream.
                Some(ca) => match ca.verify(&conn.peer_certs) {
                    Ok(()) => auth::x509::user_from_chain(&conn.peer_certs),
                    Err(e) => Some(Err(auth::x509::X509Error::Parse(e))),
                },
                None => None,
            }
        };
        auth::authenticate(cert, authorization, self.tokens.as_ref(), self.anonymous).map(Some).map_err(|u| {
            tracing::info!("authentication failed: {}", u.reason);
            ApiError::new(401, "Unauthorized", "Unauthorized")
        })
    }

    pub fn decide(&self, user: &UserInfo, attrs: &Attributes, registry: &Registry) -> auth::Decision {
        let rbac = self.rbac.read().unwrap();
        let pods = resources::find("", "v1", "pods").expect("pods");
        let pod_node = |ns: &str, name: &str| {
            let key = resources::object_key(&registry.prefix, pods, Some(ns), name);
            registry.cache(pods).get(&key).and_then(|p| p.value["spec"]["nodeName"].as_str().map(str::to_string))
        };
        self.authorizer.authorize(user, attrs, &AuthzContext { rbac: &rbac, pod_node: &pod_node })
    }

    /// 403 unless the user may do what the request asks.
    pub fn authorize(&self, user: &UserInfo, attrs: &Attributes, registry: &Registry) -> Result<(), ApiError> {
        let d = self.decide(user, attrs, registry);
        if d.is_allowed() {
            return Ok(());
        }
        let f = auth::forbidden(user, attrs, d.reason());
        let mut e = ApiError::new(403, "Forbidden", f.message.clone());
        e.details = f.status().get("details").cloned();
        Err(e)
    }
}

/// The admission stages and the requester's checks of one write, as the
/// handler hands them to the registry ([`WriteChecks`]): the server's
/// admission chain, reading the namespace's state from the watch cache, and
/// RBAC escalation prevention for the user making the request.
pub struct Checks<'a> {
    pub registry: &'a Registry,
    pub security: &'a Security,
    /// Who is asking. `None` on the insecure port and for the apiserver's
    /// own writes (bootstrap objects, master leases): those are never
    /// checked for escalation, but are admitted as any other write.
    pub user: Option<&'a UserInfo>,
}

impl<'a> Checks<'a> {
    /// The checks of a write the apiserver makes itself.
    pub fn internal(registry: &'a Registry, security: &'a Security) -> Self {
        Checks { registry, security, user: None }
    }

    fn plugin_enabled(&self, p: admission::Plugin) -> bool {
        self.security.admission.plugins.contains(&p)
    }

    /// RBAC privilege-escalation prevention for a write of a Role,
    /// ClusterRole, RoleBinding or ClusterRoleBinding ([`auth::escalation`]),
    /// with the requesting user, the live RBAC objects and the server's
    /// authorizer chain. Any other write, or one without a requester, passes.
    fn check_rbac_write(&self, ri: &RequestInfo, new: &Value, old: Option<&Value>) -> Result<(), ApiError> {
        let r = ri.resource;
        if r.group != auth::escalation::RBAC_GROUP {
            return Ok(());
        }
        let Some(user) = self.user else { return Ok(()) };
        let write = auth::escalation::Write {
            resource: r.plural,
            namespace: ri.namespace.as_deref().unwrap_or_default(),
            request_name: ri.name.as_deref().unwrap_or_default(),
            new,
            old,
        };
        let authorized = |a: &Attributes| self.security.decide(user, a, self.registry).is_allowed();
        // A copy: `decide` takes the lock itself, and a second read lock
        // on one thread can deadlock behind a waiting writer.
        let rbac = self.security.rbac.read().unwrap().clone();
        let Err(refusal) = auth::escalation::check(user, &write, &rbac, &authorized) else { return Ok(()) };
        let name = new["metadata"]["name"].as_str().unwrap_or_default();
        Err(match refusal {
            auth::escalation::Refusal::Forbidden(why) => ApiError::forbidden(r.group, r.plural, name, &why),
            auth::escalation::Refusal::RoleNotFound { resource, name } => ApiError::not_found(r.group, resource, &name),
            auth::escalation::Refusal::Internal(e) => ApiError::internal(e),
        })
    }

    /// NamespaceLifecycle admission: no new objects in a namespace that does
    /// not exist or is being deleted.
    async fn admit_namespace(&self, r: &ResourceInfo, ns: Option<&str>) -> Result<(), ApiError> {
        let Some(ns) = ns.filter(|_| r.namespaced) else { return Ok(()) };
        let nsr = resources::find("", "v1", "namespaces").unwrap();
        let key = resources::object_key(&self.registry.prefix, nsr, None, ns);
        let cache = self.registry.cache(nsr);
        // Read-your-writes: `kubectl delete ns x` then a create in x must be
        // refused, so the cache must have seen this apiserver's own writes.
        cache.catch_up_own_writes(std::time::Duration::from_secs(2)).await?;
        let cached = match cache.get(&key) {
            Some(o) => Some(o.value.clone()),
            // A namespace created a moment ago through another apiserver: ask etcd.
            None => self.registry.read(nsr, None, ns).await.ok().map(|(v, _)| v),
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

    /// ResourceQuota accounting: charges `obj` to the quota's `status.used`
    /// before the object is stored, as upstream's quota admission does. The
    /// charge is a compare-and-swap on the quota's resourceVersion that
    /// re-checks the object against the usage it is adding to: two creates
    /// racing for the last unit cannot both win, and a lost race re-reads
    /// the quota and checks again (so the loser may now be refused with
    /// "exceeded quota"). Usage is never released here: the resourcequota
    /// controller recounts it (deletes, and charges for objects that then
    /// failed to store).
    async fn charge_quota(&self, req: &admission::Request<'_>, quota: &str, obj: &Value) -> Result<(), ApiError> {
        let rq = resources::find("", "v1", "resourcequotas").unwrap();
        let ri = RequestInfo {
            verb: Verb::Update,
            resource: rq,
            namespace: Some(req.namespace.to_string()),
            name: Some(quota.to_string()),
            subresource: Some("status".into()),
        };
        let charge = |old: &Value| {
            let current: k8s_openapi::api::core::v1::ResourceQuota =
                serde_json::from_value(old.clone()).map_err(|e| ApiError::internal(format!("resourcequota {quota}: {e}")))?;
            let used = admission::resource_quota::recheck(req, &current, obj).map_err(admission_error)?;
            let used: serde_json::Map<String, Value> =
                used.iter().map(|(k, m)| (k.clone(), serde_json::json!(admission::format_milli(k, *m)))).collect();
            let mut n = old.clone();
            n["status"]["used"] = Value::Object(used);
            if n["status"]["hard"].is_null() {
                n["status"]["hard"] = old["spec"]["hard"].clone();
            }
            Ok(n)
        };
        self.registry.update_with(&ri, self, charge).await.map(|_| ())
    }
}

impl WriteChecks for Checks<'_> {
    type Admitted = NamespaceInputs;

    async fn admit_create(&self, ri: &RequestInfo, obj: &mut Value) -> Result<NamespaceInputs, ApiError> {
        let r = ri.resource;
        if self.plugin_enabled(admission::Plugin::NamespaceLifecycle) {
            self.admit_namespace(r, ri.namespace.as_deref()).await?;
        }
        let ns = ri.namespace.as_deref().unwrap_or_default();
        let req = admission::Request::create(r.group, r.plural, ns);
        let chain = &self.security.admission;
        let inputs = NamespaceInputs::read(self.registry, chain, &req, obj).await?;
        chain.admit(&req, obj, &inputs.state()).map_err(admission_error)?;
        // RBAC privilege-escalation prevention, before validation as upstream.
        self.check_rbac_write(ri, obj, None)?;
        Ok(inputs)
    }

    async fn validate_create(&self, ri: &RequestInfo, inputs: NamespaceInputs, obj: &Value, dry_run: bool) -> Result<(), ApiError> {
        let r = ri.resource;
        let req = admission::Request::create(r.group, r.plural, ri.namespace.as_deref().unwrap_or_default());
        let charges = self.security.admission.validate(&req, obj, &inputs.state()).map_err(admission_error)?;
        if !dry_run {
            for (quota, _) in charges {
                self.charge_quota(&req, &quota, obj).await?;
            }
        }
        Ok(())
    }

    fn validate_update(&self, ri: &RequestInfo, new: &Value, old: &Value) -> Result<(), ApiError> {
        self.check_rbac_write(ri, new, Some(old))
    }

    /// NamespaceLifecycle: the system namespaces may not be deleted.
    fn admit_delete(&self, ri: &RequestInfo) -> Result<(), ApiError> {
        let r = ri.resource;
        let name = ri.name.as_deref().unwrap_or_default();
        let namespace = r.group.is_empty() && r.plural == "namespaces";
        if namespace && IMMORTAL_NAMESPACES.contains(&name) && self.plugin_enabled(admission::Plugin::NamespaceLifecycle) {
            return Err(ApiError::forbidden("", "namespaces", name, "this namespace may not be deleted"));
        }
        Ok(())
    }
}

/// An admission plugin's refusal as the API error it answers.
fn admission_error(e: admission::AdmissionError) -> ApiError {
    let mut err = ApiError::new(403, "Forbidden", e.message());
    err.details = e.status().get("details").cloned();
    err
}

/// The authorization attributes of a resource request. The name is the
/// URL's only (a create has none, as upstream); a create's body name goes
/// to `created_name`, for the Node authorizer alone.
pub fn attributes(ri: &RequestInfo, body_name: Option<&str>) -> Attributes {
    let r = ri.resource;
    let name = ri.name.clone().unwrap_or_default();
    // As upstream's RequestInfoFactory: `/api/v1/namespaces/<name>` is a
    // request *in* namespace <name>, so a RoleBinding there can grant it.
    let namespace = match (&ri.namespace, r.plural, &ri.name) {
        (None, "namespaces", Some(n)) if r.group.is_empty() => n.clone(),
        (ns, _, _) => ns.clone().unwrap_or_default(),
    };
    let mut a = Attributes::resource(ri.verb.as_str(), r.group, r.plural, &namespace, &name);
    a.api_version = r.version.to_string();
    a.created_name = body_name.unwrap_or_default().to_string();
    if let Some(s) = &ri.subresource {
        a = a.with_subresource(s);
    }
    // A create of a subresource (`pods/binding`) is a create, not an update.
    if ri.verb == Verb::Create && ri.subresource.is_some() {
        a.verb = "create".into();
    }
    a
}

/// Keeps `rbac` equal to the RBAC objects in the watch cache.
pub fn spawn_rbac_sync(registry: Arc<Registry>, rbac: Arc<RwLock<RbacData>>) {
    for plural in ["clusterroles", "clusterrolebindings", "roles", "rolebindings"] {
        let r = resources::find("rbac.authorization.k8s.io", "v1", plural).expect("rbac resource");
        let cache = registry.cache(r).clone();
        let rbac = rbac.clone();
        let (replay, mut live, _) = cache.watch(None, None, &|_| true).expect("watch from now never expires");
        {
            let mut data = rbac.write().unwrap();
            for ev in &replay {
                let _ = data.upsert_json(&ev.object.value);
            }
        }
        tokio::spawn(async move {
            loop {
                match live.recv().await {
                    Ok(ev) => {
                        let mut data = rbac.write().unwrap();
                        match ev.kind {
                            EventType::Deleted => data.remove(r.kind, &ev.object.namespace, &ev.object.name),
                            _ => {
                                let _ = data.upsert_json(&ev.object.value);
                            }
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        // Missed events: rebuild this kind from the cache.
                        let snap = cache.list(None, &|_| true);
                        let mut data = rbac.write().unwrap();
                        for o in snap.items {
                            let _ = data.upsert_json(&o.value);
                        }
                    }
                    Err(_) => return,
                }
            }
        });
    }
}

/// The namespace's admission inputs, read from the watch cache — and, for
/// the ServiceAccount plugin, from etcd when the cache does not have it.
pub struct NamespaceInputs {
    pub limit_ranges: Vec<k8s_openapi::api::core::v1::LimitRange>,
    pub quotas: Vec<QuotaState>,
    /// The ServiceAccount plugin's answer for the one account the pod runs
    /// as (looked up in [`NamespaceInputs::read`]); `None` when the plugin
    /// looks up nothing for this request.
    service_account: Option<Box<dyn Fn(&str) -> bool + Send + Sync>>,
}

/// ServiceAccount admission: how often `default` is read again before the
/// pod is refused, and the wait between reads (upstream: 10 attempts,
/// 100–200 ms apart) — the serviceaccount controller creates `default`
/// moments after the namespace, and a pod created right after the
/// namespace must not lose that race.
const DEFAULT_ACCOUNT_ATTEMPTS: usize = 10;

impl NamespaceInputs {
    /// What the enabled plugins of `chain` read for `req` on `obj`.
    pub async fn read(registry: &Registry, chain: &admission::Chain, req: &admission::Request<'_>, obj: &Value) -> Result<Self, ApiError> {
        let ns = req.namespace;
        let lr = resources::find("", "v1", "limitranges").unwrap();
        let rq = resources::find("", "v1", "resourcequotas").unwrap();
        // Read-your-writes: a LimitRange or ResourceQuota this apiserver
        // just stored must apply to the next pod.
        for r in [lr, rq] {
            registry.cache(r).catch_up_own_writes(std::time::Duration::from_secs(2)).await?;
        }
        let limit_ranges = registry
            .cache(lr)
            .list(Some(ns), &|_| true)
            .items
            .iter()
            .filter_map(|o| serde_json::from_value(o.value.clone()).ok())
            .collect();
        let quotas = registry
            .cache(rq)
            .list(Some(ns), &|_| true)
            .items
            .iter()
            .filter_map(|o| {
                let quota: k8s_openapi::api::core::v1::ResourceQuota = serde_json::from_value(o.value.clone()).ok()?;
                let used = admission::resource_quota::usage_from_status(&quota);
                Some(QuotaState { quota, used })
            })
            .collect();
        let service_account = match admission::service_account::account_to_look_up(req, obj) {
            Some(name) if chain.plugins.contains(&admission::Plugin::ServiceAccount) => {
                let exists = service_account_exists(registry, ns, &name).await?;
                // Only `name` was looked up; the plugin asks for no other.
                let answer: Box<dyn Fn(&str) -> bool + Send + Sync> = Box::new(move |n: &str| n == name && exists);
                Some(answer)
            }
            _ => None,
        };
        Ok(NamespaceInputs { limit_ranges, quotas, service_account })
    }

    pub fn state(&self) -> NamespaceState<'_> {
        let service_account_exists = self.service_account.as_deref().map(|f| f as &dyn Fn(&str) -> bool);
        NamespaceState { limit_ranges: &self.limit_ranges, quotas: &self.quotas, service_account_exists }
    }
}

/// Upstream `getServiceAccount`: the watch cache first; on a miss, a live
/// read from etcd (the cache may lag a create a moment ago), repeated for
/// `default` while the serviceaccount controller catches up. A storage
/// error is the request's error, not a refusal.
async fn service_account_exists(registry: &Registry, ns: &str, name: &str) -> Result<bool, ApiError> {
    let sa = resources::find("", "v1", "serviceaccounts").expect("serviceaccounts");
    let key = resources::object_key(&registry.prefix, sa, Some(ns), name);
    if registry.cache(sa).get(&key).is_some() {
        return Ok(true);
    }
    let attempts = if name == admission::service_account::DEFAULT_SERVICE_ACCOUNT { DEFAULT_ACCOUNT_ATTEMPTS } else { 1 };
    let interval = std::time::Duration::from_millis(100 + rand::random::<u64>() % 100);
    for i in 0..attempts {
        if i != 0 {
            tokio::time::sleep(interval).await;
        }
        match registry.read(sa, Some(ns), name).await {
            Ok(_) => return Ok(true),
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(false)
}

/// The value of `metadata.name` in a JSON body, if any.
pub fn body_name(body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    v["metadata"]["name"].as_str().map(str::to_string)
}

pub fn modes_allow_all(modes: &[AuthorizationMode]) -> bool {
    modes.iter().all(|m| m.name() == "AlwaysAllow")
}
