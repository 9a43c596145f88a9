//! What every control loop shares (upstream `pkg/controller/controller_utils.go`
//! and `pkg/api/v1/pod/util.go`): controller references, pod readiness and
//! availability, the worker loop around a work queue, and small API helpers.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{Pod, PodCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{DeleteParams, Patch, PatchParams, PropagationPolicy};
use kube::Api;
use machinery::leader_election::Leadership;
use machinery::workqueue::WorkQueue;
use serde_json::json;

/// The owner reference with `controller: true`, if any: the one object that
/// manages this one (a pod's ReplicaSet, a ReplicaSet's Deployment).
pub fn controller_ref(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references.as_ref()?.iter().find(|r| r.controller == Some(true))
}

/// A controller reference to `owner` (upstream `metav1.NewControllerRef`):
/// `blockOwnerDeletion` so a foreground deletion of the owner waits for it.
pub fn new_controller_ref(owner: &ObjectMeta, api_version: &str, kind: &str) -> OwnerReference {
    OwnerReference {
        api_version: api_version.to_string(),
        kind: kind.to_string(),
        name: owner.name.clone().unwrap_or_default(),
        uid: owner.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

pub fn labels(meta: &ObjectMeta) -> BTreeMap<String, String> {
    meta.labels.clone().unwrap_or_default()
}

pub fn name(meta: &ObjectMeta) -> &str {
    meta.name.as_deref().unwrap_or("")
}

pub fn ns(meta: &ObjectMeta) -> &str {
    meta.namespace.as_deref().unwrap_or("")
}

pub fn is_deleting(meta: &ObjectMeta) -> bool {
    meta.deletion_timestamp.is_some()
}

pub fn creation_time(meta: &ObjectMeta) -> Option<DateTime<Utc>> {
    meta.creation_timestamp.as_ref().map(|t| t.0)
}

// ---------------------------------------------------------------------------
// Pods
// ---------------------------------------------------------------------------

pub fn pod_phase(pod: &Pod) -> &str {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

/// Upstream `IsPodActive`: not finished and not being deleted. Controllers
/// count only active pods toward `replicas`.
pub fn is_pod_active(pod: &Pod) -> bool {
    !matches!(pod_phase(pod), "Succeeded" | "Failed") && pod.metadata.deletion_timestamp.is_none()
}

pub fn pod_condition<'a>(pod: &'a Pod, type_: &str) -> Option<&'a PodCondition> {
    pod.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == type_)
}

/// Upstream `IsPodReady`: the Ready condition is True.
pub fn is_pod_ready(pod: &Pod) -> bool {
    pod_condition(pod, "Ready").is_some_and(|c| c.status == "True")
}

/// Upstream `IsPodAvailable`: ready for at least `min_ready_seconds`.
pub fn is_pod_available(pod: &Pod, min_ready_seconds: i32, now: DateTime<Utc>) -> bool {
    let Some(c) = pod_condition(pod, "Ready").filter(|c| c.status == "True") else { return false };
    if min_ready_seconds <= 0 {
        return true;
    }
    match &c.last_transition_time {
        Some(t) => t.0 + chrono::Duration::seconds(min_ready_seconds as i64) < now,
        None => false,
    }
}

pub fn pod_node(pod: &Pod) -> &str {
    pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).unwrap_or("")
}

pub fn pod_ip(pod: &Pod) -> Option<&str> {
    pod.status.as_ref().and_then(|s| s.pod_ip.as_deref()).filter(|ip| !ip.is_empty())
}

// ---------------------------------------------------------------------------
// Writes
// ---------------------------------------------------------------------------

/// Is this a 404 from the apiserver?
pub fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

pub fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

/// A create that found the name taken (409 with reason AlreadyExists, as
/// opposed to an update's Conflict).
pub fn is_already_exists(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409 && s.reason == "AlreadyExists")
}

/// NamespaceLifecycle's refusal of new content in a namespace being
/// deleted (upstream's `NamespaceTerminatingCause`): nothing to retry.
pub fn is_namespace_terminating(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 403 && s.message.contains("because it is being terminated"))
}

/// Delete, treating "already gone" as success.
pub async fn delete_ignore_missing<K>(api: &Api<K>, name: &str, dp: &DeleteParams) -> Result<(), kube::Error>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, dp).await {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(e),
    }
}

pub fn background() -> DeleteParams {
    DeleteParams { propagation_policy: Some(PropagationPolicy::Background), ..Default::default() }
}

/// Replace `metadata.ownerReferences` with `refs`, only if the object is
/// still at `resource_version` (a JSON merge patch carrying the version is
/// compare-and-swap: a 409 means someone else changed it; the caller
/// retries from fresh state).
pub async fn set_owner_refs<K>(api: &Api<K>, name: &str, resource_version: &str, refs: &[OwnerReference]) -> Result<(), kube::Error>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let patch = json!({"metadata": {"ownerReferences": refs, "resourceVersion": resource_version}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await.map(|_| ())
}

// ---------------------------------------------------------------------------
// The worker loop
// ---------------------------------------------------------------------------

/// Is this process allowed to act? Always, without leader election.
#[derive(Clone, Default)]
pub struct Gate(pub Option<Leadership>);

impl Gate {
    pub fn open(&self) -> bool {
        self.0.as_ref().is_none_or(|l| l.is_leading())
    }
}

/// Runs `workers` tasks that take keys from `queue` and call `sync` on
/// each, the loop every upstream controller has (`processNextWorkItem`):
/// success forgets the key's backoff; failure re-adds it rate-limited, so a
/// failing object is retried with exponential backoff and never blocks the
/// others. Ends when the queue shuts down.
pub async fn run_workers<F, Fut>(name: &'static str, queue: WorkQueue<String>, workers: usize, gate: Gate, sync: F)
where
    F: Fn(String) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    let sync = Arc::new(sync);
    let mut tasks = Vec::new();
    for _ in 0..workers.max(1) {
        let (queue, sync, gate) = (queue.clone(), sync.clone(), gate.clone());
        tasks.push(tokio::spawn(async move {
            while let Some(key) = queue.get().await {
                if !gate.open() {
                    // Lost the lease: the manager is about to exit; act no more.
                    queue.done(&key);
                    return;
                }
                match sync(key.clone()).await {
                    Ok(()) => queue.forget(&key),
                    Err(e) => {
                        tracing::warn!(controller = name, key, error = %format!("{e:#}"), "sync failed, requeueing");
                        queue.add_rate_limited(key.clone());
                    }
                }
                queue.done(&key);
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    /// A pod described as "phase ready=<True|False> since=<secs ago> [deleting]".
    fn pod(desc: &str, now: DateTime<Utc>) -> Pod {
        let w: Vec<&str> = desc.split_whitespace().collect();
        let mut p: Pod = serde_json::from_value(json!({"metadata": {"name": "p"}, "status": {"phase": w[0]}})).unwrap();
        if let Some(r) = w.iter().find_map(|x| x.strip_prefix("ready=")) {
            let since = w.iter().find_map(|x| x.strip_prefix("since=")).map(|s| s.parse::<i64>().unwrap()).unwrap_or(0);
            p.status.as_mut().unwrap().conditions = Some(vec![PodCondition {
                type_: "Ready".into(),
                status: r.into(),
                last_transition_time: Some(Time(now - chrono::Duration::seconds(since))),
                ..Default::default()
            }]);
        }
        if w.contains(&"deleting") {
            p.metadata.deletion_timestamp = Some(Time(now));
        }
        p
    }

    /// expect: "active ready available" flags as 0/1.
    fn check(desc: &str, min_ready: i32, expect: &str) {
        let now = Utc::now();
        let p = pod(desc, now);
        let got = format!(
            "{} {} {}",
            is_pod_active(&p) as u8,
            is_pod_ready(&p) as u8,
            is_pod_available(&p, min_ready, now) as u8
        );
        assert_eq!(got, expect, "{desc} minReady={min_ready}");
    }

    #[test]
    fn pod_states() {
        check("Pending", 0, "1 0 0");
        check("Running ready=True since=0", 0, "1 1 1");
        check("Running ready=False since=100", 0, "1 0 0");
        check("Running ready=True since=5", 10, "1 1 0");
        check("Running ready=True since=11", 10, "1 1 1");
        check("Running ready=True since=1 deleting", 0, "0 1 1");
        check("Succeeded", 0, "0 0 0");
        check("Failed", 0, "0 0 0");
    }

    #[test]
    fn controller_ref_is_the_one_with_controller_true() {
        let mut m = ObjectMeta { name: Some("rs".into()), uid: Some("u1".into()), ..Default::default() };
        let r = new_controller_ref(&m, "apps/v1", "ReplicaSet");
        assert_eq!((r.name.as_str(), r.uid.as_str(), r.controller, r.block_owner_deletion), ("rs", "u1", Some(true), Some(true)));
        let mut other = r.clone();
        other.controller = None;
        other.uid = "u0".into();
        m.owner_references = Some(vec![other, r]);
        assert_eq!(controller_ref(&m).unwrap().uid, "u1");
    }
}
