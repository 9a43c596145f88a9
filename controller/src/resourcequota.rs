//! The resource quota controller (upstream `pkg/controller/resourcequota`):
//! keeps each ResourceQuota's `status` true — `status.hard` copied from
//! `spec.hard`, `status.used` recounted from what the namespace holds.
//!
//! The apiserver's ResourceQuota admission plugin *charges* every create
//! to `status.used`; nothing there ever gives usage back. This loop does:
//! when a pod is deleted or finishes (Succeeded/Failed pods hold no quota),
//! or any counted object is deleted, the namespace's quotas are recounted
//! ("replenishment"), so the freed room can be used again. Counting uses
//! the same evaluators as admission (`machinery::quota`), so both agree.
//!
//! A quota is recounted when it is created, when its `spec.hard` changes
//! (or `status.hard` does not match it), on replenishment, and every
//! `--resource-quota-sync-period` (5m) for all quotas — the safety net for
//! drift. As upstream, status-only updates of a quota (each admission
//! charge is one) do not trigger a recount: the pod just charged may not
//! be in this controller's cache yet, and a recount then would undercount.
//!
//! Scoped quotas (`scopes`, `scopeSelector`) are counted like unscoped
//! ones; admission skips them (see the plugin's limits).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use k8s_openapi::api::core::v1::{Pod, ResourceQuota, ResourceQuotaStatus, Service};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{DynamicObject, PostParams};
use kube::{Api, Client, Resource};
use machinery::informer::{key_of, HandlerFns, Informer, Store};
use machinery::quota::{compute_usage, counted_resource, format_milli, usage_from_status, Usage};
use machinery::resources::RESOURCES;
use machinery::workqueue::WorkQueue;
use serde_json::Value;

use crate::context::Context;
use crate::controller_utils::*;
use crate::informers::BY_NAMESPACE;

pub struct ResourceQuotaController {
    client: Client,
    quotas: Store<ResourceQuota>,
    pods: Store<Pod>,
    services: Store<Service>,
    /// Metadata caches of the other namespaced kinds, by qualified plural
    /// (`configmaps`, `deployments.apps`), for the `count/…` object counts.
    counted: HashMap<String, Store<DynamicObject>>,
    sync_period: Duration,
    pub queue: WorkQueue<String>,
}

/// Enqueue every quota of `namespace`: something it may count went away.
fn enqueue_namespace(quotas: &Store<ResourceQuota>, queue: &WorkQueue<String>, namespace: &str) {
    for q in quotas.by_index(BY_NAMESPACE, namespace) {
        queue.add(key_of(q.as_ref()));
    }
}

fn hard(q: &ResourceQuota) -> Option<&BTreeMap<String, Quantity>> {
    q.spec.as_ref().and_then(|s| s.hard.as_ref())
}

/// Upstream `addQuota`'s tests: a quota whose `status.hard` is not its
/// `spec.hard`, or whose `status.used` lacks a resource it limits (and
/// that this controller counts), has never been (or is no longer)
/// counted. Checked on status updates too: a write that lost `used`
/// would otherwise wait for the full resync.
fn needs_recount(q: &ResourceQuota) -> bool {
    let status = q.status.as_ref();
    let used = status.and_then(|s| s.used.as_ref());
    status.and_then(|s| s.hard.as_ref()) != hard(q)
        || hard(q).into_iter().flatten().any(|(k, _)| counted_resource(k).is_some() && !used.is_some_and(|u| u.contains_key(k)))
}

fn is_terminal(p: &Pod) -> bool {
    matches!(pod_phase(p), "Succeeded" | "Failed")
}

/// Did this pod update change what it counts? It finished, or its
/// containers' resources changed.
fn pod_usage_changed(old: &Pod, new: &Pod) -> bool {
    let resources = |p: &Pod| -> Vec<_> { p.spec.iter().flat_map(|s| s.containers.iter().map(|c| c.resources.clone())).collect() };
    is_terminal(old) != is_terminal(new) || resources(old) != resources(new)
}

/// The status a quota should have: `hard` from the spec, `used` counted.
pub fn desired_status(q: &ResourceQuota, used: &Usage) -> ResourceQuotaStatus {
    ResourceQuotaStatus {
        hard: hard(q).cloned(),
        used: Some(used.iter().map(|(k, v)| (k.clone(), Quantity(format_milli(k, *v)))).collect()),
    }
}

impl ResourceQuotaController {
    pub fn new(ctx: &Context) -> Arc<Self> {
        let queue = ctx.queue("resourcequota");
        let f = &ctx.informers;
        let (quota_inf, pod_inf, svc_inf) = (f.resource_quotas(), f.pods(), f.services());
        let quotas = quota_inf.store();

        let (q1, q2) = (queue.clone(), queue.clone());
        quota_inf.add_event_handler(
            HandlerFns::new()
                .on_add(move |q: &Arc<ResourceQuota>| q1.add(key_of(q.as_ref())))
                .on_update(move |old: &Arc<ResourceQuota>, new: &Arc<ResourceQuota>| {
                    if hard(old) != hard(new) || needs_recount(new) {
                        q2.add(key_of(new.as_ref()));
                    }
                }),
        );
        let (s1, s2, w1, w2) = (quotas.clone(), quotas.clone(), queue.clone(), queue.clone());
        pod_inf.add_event_handler(
            HandlerFns::new()
                .on_update(move |old: &Arc<Pod>, new: &Arc<Pod>| {
                    if pod_usage_changed(old, new) {
                        enqueue_namespace(&s1, &w1, ns(&new.metadata));
                    }
                })
                .on_delete(move |p: &Arc<Pod>| enqueue_namespace(&s2, &w2, ns(&p.metadata))),
        );
        let (s1, s2, w1, w2) = (quotas.clone(), quotas.clone(), queue.clone(), queue.clone());
        svc_inf.add_event_handler(
            HandlerFns::new()
                .on_update(move |old: &Arc<Service>, new: &Arc<Service>| {
                    // The type decides nodeports/loadbalancers counts.
                    let shape = |s: &Service| s.spec.as_ref().map(|s| (s.type_.clone(), s.ports.as_ref().map_or(0, |p| p.len())));
                    if shape(old) != shape(new) {
                        enqueue_namespace(&s1, &w1, ns(&new.metadata));
                    }
                })
                .on_delete(move |s: &Arc<Service>| enqueue_namespace(&s2, &w2, ns(&s.metadata))),
        );
        // Every other namespaced kind is only counted: a delete replenishes.
        let mut counted = HashMap::new();
        for r in RESOURCES.iter().filter(|r| r.namespaced && r.is_stored() && !matches!(r.plural, "pods" | "services" | "resourcequotas" | "events")) {
            let inf: Informer<DynamicObject> = f.metadata(r);
            let (s, w) = (quotas.clone(), queue.clone());
            inf.add_event_handler(HandlerFns::new().on_delete(move |o: &Arc<DynamicObject>| enqueue_namespace(&s, &w, ns(o.meta()))));
            counted.insert(r.qualified_plural(), inf.store());
        }
        Arc::new(ResourceQuotaController {
            client: ctx.client.clone(),
            quotas,
            pods: pod_inf.store(),
            services: svc_inf.store(),
            counted,
            sync_period: ctx.opts.resource_quota_sync_period,
            queue,
        })
    }

    pub async fn run(self: Arc<Self>, workers: usize, gate: Gate) {
        // The full resync (upstream `enqueueAll` every sync period).
        let c = self.clone();
        let resync = tokio::spawn(async move {
            loop {
                tokio::time::sleep(c.sync_period).await;
                for q in c.quotas.list() {
                    c.queue.add(key_of(q.as_ref()));
                }
            }
        });
        let c = self.clone();
        run_workers("resourcequota", self.queue.clone(), workers, gate, move |key| {
            let c = c.clone();
            async move { c.sync(&key).await }
        })
        .await;
        resync.abort();
    }

    /// The objects of `namespace` that `resource` (a qualified plural)
    /// names, as the evaluators read them. Only pods and services are
    /// looked into; other kinds are just counted.
    fn objects(&self, resource: &str, namespace: &str) -> Vec<Value> {
        fn values<K: serde::Serialize>(v: Vec<Arc<K>>) -> Vec<Value> {
            v.iter().filter_map(|o| serde_json::to_value(o.as_ref()).ok()).collect()
        }
        match resource {
            "pods" => values(self.pods.by_index(BY_NAMESPACE, namespace)),
            "services" => values(self.services.by_index(BY_NAMESPACE, namespace)),
            "resourcequotas" => self.quotas.by_index(BY_NAMESPACE, namespace).iter().map(|_| Value::Null).collect(),
            other => match self.counted.get(other) {
                Some(store) => store.by_index(BY_NAMESPACE, namespace).iter().map(|_| Value::Null).collect(),
                None => Vec::new(),
            },
        }
    }

    /// Upstream `syncResourceQuota`: recount and write the status if it
    /// changed.
    pub async fn sync(&self, key: &str) -> anyhow::Result<()> {
        let Some(cached) = self.quotas.get(key) else { return Ok(()) };
        let namespace = ns(&cached.metadata).to_string();
        // The quota itself is read fresh: admission charges it on every
        // create, and those status writes do not queue a recount (as
        // upstream). Compared with a cached copy that has not yet seen the
        // last charges, a recount could find "nothing changed" and leave the
        // charge of an object deleted since in place until the next resync.
        let api: Api<ResourceQuota> = Api::namespaced(self.client.clone(), &namespace);
        let quota = match api.get(name(&cached.metadata)).await {
            Ok(q) => Arc::new(q),
            Err(e) if is_not_found(&e) => return Ok(()),
            Err(e) => return Err(e).context("reading resource quota"),
        };
        let resources: BTreeSet<String> = hard(&quota).into_iter().flatten().filter_map(|(k, _)| counted_resource(k)).collect();
        let objects: Vec<(String, Value)> =
            resources.iter().flat_map(|r| self.objects(r, &namespace).into_iter().map(move |o| (r.clone(), o))).collect();
        let used = compute_usage(&quota, objects.iter().map(|(r, o)| (r.as_str(), o)));
        if !needs_recount(&quota) && usage_from_status(&quota) == used {
            return Ok(());
        }
        let mut updated = (*quota).clone();
        updated.status = Some(desired_status(&quota, &used));
        // Carries the resourceVersion just read: if admission charged the
        // quota meanwhile, this is a 409 and the key is retried.
        match api.replace_status(name(&quota.metadata), &PostParams::default(), serde_json::to_vec(&updated)?).await {
            Ok(_) => {
                tracing::info!(quota = key, used = ?updated.status.as_ref().and_then(|s| s.used.as_ref()), "recounted resource quota usage");
                Ok(())
            }
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(e).context("updating resource quota status"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(phase: &str, cpu: &str) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]},
            "status": {"phase": phase}}))
        .unwrap()
    }

    #[test]
    fn pod_changes_that_release_quota() {
        assert!(pod_usage_changed(&pod("Running", "1"), &pod("Succeeded", "1")));
        assert!(pod_usage_changed(&pod("Running", "1"), &pod("Failed", "1")));
        assert!(pod_usage_changed(&pod("Running", "1"), &pod("Running", "2")));
        assert!(!pod_usage_changed(&pod("Pending", "1"), &pod("Running", "1")));
    }

    #[test]
    fn status_has_spec_hard_and_counted_used() {
        let q: ResourceQuota = serde_json::from_value(json!({"metadata": {"name": "q"},
            "spec": {"hard": {"pods": "2", "requests.memory": "1Gi"}}})).unwrap();
        assert!(needs_recount(&q));
        // status.hard right but a limited resource missing from used.
        let mut half = q.clone();
        half.status = Some(serde_json::from_value(json!({"hard": {"pods": "2", "requests.memory": "1Gi"}, "used": {"pods": "0"}})).unwrap());
        assert!(needs_recount(&half));
        let pods: Vec<Value> = vec![
            json!({"spec": {"containers": [{"name": "c", "resources": {"requests": {"memory": "256Mi"}}}]}}),
            json!({"spec": {"containers": [{"name": "c", "resources": {"requests": {"memory": "256Mi"}}}]}}),
            // Finished: counts for nothing.
            json!({"spec": {"containers": [{"name": "c", "resources": {"requests": {"memory": "256Mi"}}}]}, "status": {"phase": "Succeeded"}}),
        ];
        let used = compute_usage(&q, pods.iter().map(|p| ("pods", p)));
        let s = desired_status(&q, &used);
        let s = serde_json::to_value(&s).unwrap();
        assert_eq!(s, json!({"hard": {"pods": "2", "requests.memory": "1Gi"}, "used": {"pods": "2", "requests.memory": "512Mi"}}));
        let mut counted = q.clone();
        counted.status = Some(serde_json::from_value(s).unwrap());
        assert!(!needs_recount(&counted));
    }
}
