//! The ReplicaSet controller (upstream `pkg/controller/replicaset`): keeps
//! `spec.replicas` pods running that match the ReplicaSet's selector.
//!
//! One sync of `ns/name`:
//! 1. **Claim** pods (`PodControllerRefManager.ClaimPods`): active pods in
//!    the namespace whose controller ownerReference points at this
//!    ReplicaSet are ours while they match the selector; a matching pod
//!    with no controller is *adopted* (ownerReference added); an owned pod
//!    whose labels no longer match is *released* (reference removed).
//! 2. **Manage replicas**, but only when the expectations are satisfied
//!    (see [`crate::expectations`]): too few pods → create the missing ones
//!    in slow-start batches of 1, 2, 4, … (a broken template fails once, not
//!    500 times); too many → delete the least valuable first (unscheduled,
//!    pending, not ready, doubled-up on a node, recently ready, restarting,
//!    newest).
//! 3. **Status**: replicas, fullyLabeledReplicas, readyReplicas,
//!    availableReplicas (ready for `minReadySeconds`), observedGeneration.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use futures::future::join_all;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};
use machinery::events::{EventRecorder, EventType};
use machinery::informer::{key_of, HandlerFns, Store};
use machinery::selector::Selector;
use machinery::workqueue::WorkQueue;

use crate::context::Context;
use crate::controller_utils::*;
use crate::expectations::Expectations;
use crate::informers::BY_NAMESPACE;

/// Upstream `BurstReplicas`: at most this many creates/deletes per sync.
pub const BURST_REPLICAS: usize = 500;
/// Upstream `SlowStartInitialBatchSize`.
pub const SLOW_START_INITIAL_BATCH: usize = 1;

pub struct ReplicaSetController {
    client: Client,
    rs_store: Store<ReplicaSet>,
    pod_store: Store<Pod>,
    pub queue: WorkQueue<String>,
    expectations: Arc<Expectations>,
    recorder: EventRecorder,
    /// Leadership, checked again before each pod creation: a sync that was
    /// under way when the process froze (SIGSTOP, a stalled VM) must not
    /// go on creating once the lease may have passed to another manager.
    gate: crate::controller_utils::Gate,
}

/// The ReplicaSet (key) controlling `pod`, if it exists in the cache with
/// the referenced UID (upstream `resolveControllerRef`).
fn owning_rs(rs_store: &Store<ReplicaSet>, pod: &Pod) -> Option<String> {
    let r = controller_ref(&pod.metadata)?;
    if r.kind != "ReplicaSet" {
        return None;
    }
    let rs = rs_store.get_named(pod.metadata.namespace.as_deref(), &r.name)?;
    (rs.metadata.uid.as_deref() == Some(r.uid.as_str())).then(|| key_of(rs.as_ref()))
}

/// ReplicaSets in the pod's namespace whose selector matches it: who might
/// adopt an orphan (upstream `getPodReplicaSets`).
fn matching_rs(rs_store: &Store<ReplicaSet>, pod: &Pod) -> Vec<String> {
    let labels = labels(&pod.metadata);
    rs_store
        .by_index(BY_NAMESPACE, ns(&pod.metadata))
        .iter()
        .filter(|rs| Selector::from_label_selector(&rs.spec.as_ref().map(|s| s.selector.clone()).unwrap_or_default()).is_ok_and(|s| !s.is_empty() && s.matches(&labels)))
        .map(|rs| key_of(rs.as_ref()))
        .collect()
}

impl ReplicaSetController {
    pub fn new(ctx: &Context) -> Arc<Self> {
        let rs_inf = ctx.informers.replicasets();
        let pod_inf = ctx.informers.pods();
        let queue = ctx.queue("replicaset");
        let expectations = Arc::new(Expectations::default());
        let c = Arc::new(ReplicaSetController {
            client: ctx.client.clone(),
            rs_store: rs_inf.store(),
            pod_store: pod_inf.store(),
            queue: queue.clone(),
            expectations: expectations.clone(),
            recorder: ctx.recorder("replicaset-controller"),
            gate: ctx.gate.clone(),
        });
        {
            let (q1, q2, q3, e) = (queue.clone(), queue.clone(), queue.clone(), expectations.clone());
            rs_inf.add_event_handler(
                HandlerFns::new()
                    .on_add(move |rs: &Arc<ReplicaSet>| q1.add(key_of(rs.as_ref())))
                    .on_update(move |_, rs: &Arc<ReplicaSet>| q2.add(key_of(rs.as_ref())))
                    .on_delete(move |rs: &Arc<ReplicaSet>| {
                        let key = key_of(rs.as_ref());
                        e.delete(&key);
                        q3.add(key);
                    }),
            );
        }
        {
            let rs_store = rs_inf.store();
            let (s1, s2, s3) = (rs_store.clone(), rs_store.clone(), rs_store);
            let (q1, q2, q3) = (queue.clone(), queue.clone(), queue);
            let (e1, e2, e3) = (expectations.clone(), expectations.clone(), expectations);
            pod_inf.add_event_handler(
                HandlerFns::new()
                    .on_add(move |pod: &Arc<Pod>| {
                        if is_deleting(&pod.metadata) {
                            // Seen for the first time already going (e.g. after a
                            // re-list): it must not count as a creation.
                            if let Some(rs) = owning_rs(&s1, pod) {
                                e1.deletion_observed(&rs, &key_of(pod.as_ref()));
                                q1.add(rs);
                            }
                            return;
                        }
                        match controller_ref(&pod.metadata) {
                            Some(_) => {
                                if let Some(rs) = owning_rs(&s1, pod) {
                                    e1.creation_observed(&rs);
                                    q1.add(rs);
                                }
                            }
                            None => matching_rs(&s1, pod).into_iter().for_each(|k| q1.add(k)),
                        }
                    })
                    .on_update(move |old: &Arc<Pod>, new: &Arc<Pod>| {
                        if old.metadata.resource_version == new.metadata.resource_version {
                            return; // periodic resync: nothing changed
                        }
                        if is_deleting(&new.metadata) {
                            for p in [new, old] {
                                if let Some(rs) = owning_rs(&s2, p) {
                                    e2.deletion_observed(&rs, &key_of(p.as_ref()));
                                    q2.add(rs);
                                }
                            }
                            return;
                        }
                        let old_rs = owning_rs(&s2, old);
                        let new_rs = owning_rs(&s2, new);
                        if old_rs != new_rs {
                            if let Some(k) = old_rs {
                                q2.add(k);
                            }
                        }
                        match new_rs {
                            Some(k) => {
                                // A pod that just became ready becomes available
                                // minReadySeconds later: look again then.
                                let min_ready = s2.get(&k).and_then(|rs| rs.spec.as_ref().and_then(|s| s.min_ready_seconds)).unwrap_or(0);
                                if min_ready > 0 && !is_pod_ready(old) && is_pod_ready(new) {
                                    q2.add_after(k.clone(), Duration::from_secs(min_ready as u64 + 1));
                                }
                                q2.add(k);
                            }
                            None => {
                                if controller_ref(&new.metadata).is_none() && (old.metadata.labels != new.metadata.labels || controller_ref(&old.metadata).is_some()) {
                                    matching_rs(&s2, new).into_iter().for_each(|k| q2.add(k));
                                }
                            }
                        }
                    })
                    .on_delete(move |pod: &Arc<Pod>| {
                        if let Some(rs) = owning_rs(&s3, pod) {
                            e3.deletion_observed(&rs, &key_of(pod.as_ref()));
                            q3.add(rs);
                        }
                    }),
            );
        }
        c
    }

    pub async fn run(self: Arc<Self>, workers: usize, gate: Gate) {
        let c = self.clone();
        run_workers("replicaset", self.queue.clone(), workers, gate, move |key| {
            let c = c.clone();
            async move { c.sync(&key).await }
        })
        .await
    }

    pub async fn sync(&self, key: &str) -> anyhow::Result<()> {
        let Some(rs) = self.rs_store.get(key) else {
            self.expectations.delete(key);
            return Ok(());
        };
        let needs_sync = self.expectations.satisfied(key);
        let spec = rs.spec.clone().unwrap_or_default();
        let selector = Selector::from_label_selector(&spec.selector).context("invalid selector")?;
        let namespace = ns(&rs.metadata).to_string();
        let active: Vec<Arc<Pod>> = self.pod_store.by_index(BY_NAMESPACE, &namespace).into_iter().filter(|p| is_pod_active(p)).collect();
        let pods = self.claim_pods(&rs, &selector, active).await?;

        let mut manage_err = None;
        if needs_sync && !is_deleting(&rs.metadata) {
            manage_err = self.manage_replicas(key, &rs, &pods).await.err();
        }

        let now = Utc::now();
        let status = calculate_status(&rs, &pods, now);
        if rs.status.as_ref() != Some(&status) {
            let mut updated = (*rs).clone();
            updated.status = Some(status.clone());
            let api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), &namespace);
            match api.replace_status(name(&rs.metadata), &PostParams::default(), serde_json::to_vec(&updated)?).await {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(e).context("updating status"),
            }
        }
        let min_ready = spec.min_ready_seconds.unwrap_or(0);
        if min_ready > 0 && status.ready_replicas == Some(status.replicas) && status.available_replicas != Some(status.replicas) {
            self.queue.add_after(key.to_string(), Duration::from_secs(min_ready as u64));
        }
        match manage_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Adopt matching orphans, release owned pods that stopped matching;
    /// returns the pods this ReplicaSet now controls.
    async fn claim_pods(&self, rs: &ReplicaSet, selector: &Selector, pods: Vec<Arc<Pod>>) -> anyhow::Result<Vec<Arc<Pod>>> {
        let uid = rs.metadata.uid.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns(&rs.metadata));
        let mut can_adopt: Option<bool> = None;
        let mut claimed = Vec::new();
        for pod in pods {
            let matches = !selector.is_empty() && selector.matches(&labels(&pod.metadata));
            let rv = pod.metadata.resource_version.clone().unwrap_or_default();
            match controller_ref(&pod.metadata) {
                Some(r) if r.uid == uid => {
                    if matches {
                        claimed.push(pod);
                    } else if !is_deleting(&rs.metadata) {
                        let refs: Vec<_> = pod.metadata.owner_references.iter().flatten().filter(|r| r.uid != uid).cloned().collect();
                        match set_owner_refs(&api, name(&pod.metadata), &rv, &refs).await {
                            Ok(()) => {}
                            Err(e) if is_not_found(&e) => {}
                            Err(e) => return Err(e).context("releasing pod"),
                        }
                    }
                }
                Some(_) => {} // another controller's pod
                None => {
                    if !matches || is_deleting(&rs.metadata) || is_deleting(&pod.metadata) {
                        continue;
                    }
                    // Upstream `RecheckDeletionTimestamp`: adopt only if a
                    // fresh read confirms the ReplicaSet is the same object
                    // and not being deleted (the cache may be stale).
                    if can_adopt.is_none() {
                        let rs_api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), ns(&rs.metadata));
                        let fresh = rs_api.get_opt(name(&rs.metadata)).await?;
                        can_adopt = Some(fresh.is_some_and(|f| f.metadata.uid.as_deref() == Some(uid.as_str()) && !is_deleting(&f.metadata)));
                    }
                    if can_adopt != Some(true) {
                        continue;
                    }
                    let mut refs = pod.metadata.owner_references.clone().unwrap_or_default();
                    refs.push(new_controller_ref(&rs.metadata, "apps/v1", "ReplicaSet"));
                    match set_owner_refs(&api, name(&pod.metadata), &rv, &refs).await {
                        Ok(()) => claimed.push(pod),
                        Err(e) if is_not_found(&e) => {}
                        Err(e) => return Err(e).context("adopting pod"),
                    }
                }
            }
        }
        Ok(claimed)
    }

    async fn manage_replicas(&self, key: &str, rs: &ReplicaSet, pods: &[Arc<Pod>]) -> anyhow::Result<()> {
        let want = rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1).max(0) as usize;
        let namespace = ns(&rs.metadata).to_string();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        if pods.len() < want {
            let diff = (want - pods.len()).min(BURST_REPLICAS);
            self.expectations.expect_creations(key, diff);
            let template = pod_from_template(rs);
            let (created, err) = slow_start_batch(diff, SLOW_START_INITIAL_BATCH, || {
                let (api, template) = (api.clone(), template.clone());
                async move {
                    if !self.gate.open() {
                        return Err(kube::Error::Api(kube::core::ErrorResponse {
                            status: "Failure".into(),
                            message: "leadership lost: not creating pods".into(),
                            reason: "LeaderElectionLost".into(),
                            code: 0,
                        }));
                    }
                    match create_pod(&api, &template, rs).await {
                        Ok(p) => {
                            self.recorder.event(rs, EventType::Normal, "SuccessfulCreate", &format!("Created pod: {}", name(&p.metadata)));
                            Ok(())
                        }
                        Err(e) => {
                            // A namespace being deleted refuses new pods: not our error.
                            let terminating = matches!(&e, kube::Error::Api(s) if s.code == 403 && s.message.contains("being terminated"));
                            if !terminating {
                                self.recorder.event(rs, EventType::Warning, "FailedCreate", &format!("Error creating: {e}"));
                            }
                            Err(e)
                        }
                    }
                }
            })
            .await;
            // Creations that failed or were never tried will never be
            // observed: lower the expectations by that many.
            for _ in created..diff {
                self.expectations.creation_observed(key);
            }
            if let Some(e) = err {
                return Err(e).context("creating pods");
            }
        } else if pods.len() > want {
            let diff = (pods.len() - want).min(BURST_REPLICAS);
            let victims = pods_to_delete(pods, diff);
            let keys: Vec<String> = victims.iter().map(|p| key_of(p.as_ref())).collect();
            self.expectations.expect_deletions(key, &keys);
            let results = join_all(victims.iter().map(|p| {
                let api = api.clone();
                async move {
                    let pod_name = name(&p.metadata);
                    match api.delete(pod_name, &DeleteParams::default()).await {
                        Ok(_) => {
                            self.recorder.event(rs, EventType::Normal, "SuccessfulDelete", &format!("Deleted pod: {pod_name}"));
                            Ok(())
                        }
                        Err(e) => {
                            // Not deleted (or already gone): it will not be observed going.
                            self.expectations.deletion_observed(key, &key_of(p.as_ref()));
                            if is_not_found(&e) {
                                return Ok(());
                            }
                            self.recorder.event(rs, EventType::Warning, "FailedDelete", &format!("Error deleting: {e}"));
                            Err(e)
                        }
                    }
                }
            }))
            .await;
            if let Some(e) = results.into_iter().find_map(Result::err) {
                return Err(e).context("deleting pods");
            }
        }
        Ok(())
    }
}

/// How often a create whose outcome is unknown is sent again (same name).
const AMBIGUOUS_CREATE_RETRIES: u32 = 6;

/// Create one pod from `template`, exactly once even when the answer is lost.
///
/// Upstream sends `generateName` and lets the apiserver pick the suffix.
/// When the apiserver dies after writing the pod but before answering
/// (kill -9 behind a load balancer), the controller cannot tell the pod
/// exists, counts the create as failed, and the next sync, which does not
/// see the pod yet, creates another: a doubled pod, deleted again later.
/// Here the controller picks the name itself (same form, `<rs>-<5 chars>`)
/// so a create whose outcome is unknown can be sent again: the pod exists
/// at most once under that name, and an AlreadyExists answer to the retry
/// whose pod carries our controller reference means the first try landed.
pub async fn create_pod(api: &Api<Pod>, template: &Pod, rs: &ReplicaSet) -> Result<Pod, kube::Error> {
    let base = template.metadata.generate_name.clone().unwrap_or_default();
    let mut pod = template.clone();
    // A name collision on the first try is someone else's pod: pick anew, as
    // the apiserver's generateName would.
    let mut fresh_names = 3;
    let mut retries = 0;
    let mut resent = false;
    pod.metadata.name = Some(machinery::names::generate_name(&base));
    loop {
        match api.create(&PostParams::default(), &pod).await {
            Ok(p) => return Ok(p),
            Err(e) if is_already_exists(&e) && resent => {
                let pod_name = pod.metadata.name.clone().unwrap_or_default();
                match api.get(&pod_name).await {
                    Ok(p) if controller_ref(&p.metadata).is_some_and(|r| Some(&r.uid) == rs.metadata.uid.as_ref()) => return Ok(p),
                    _ => return Err(e),
                }
            }
            Err(e) if is_already_exists(&e) && fresh_names > 0 => {
                fresh_names -= 1;
                pod.metadata.name = Some(machinery::names::generate_name(&base));
            }
            Err(e) if outcome_unknown(&e) && retries < AMBIGUOUS_CREATE_RETRIES => {
                retries += 1;
                resent = true;
                tokio::time::sleep(Duration::from_millis(100 << retries.min(4))).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Did this error leave it unknown whether the write happened? A broken
/// connection or a gateway/timeout answer may come after the apiserver
/// wrote to etcd; an API error with a definite code (4xx) did not write.
fn outcome_unknown(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => matches!(s.code, 500 | 502 | 503 | 504),
        kube::Error::HyperError(_) | kube::Error::Service(_) => true,
        _ => false,
    }
}

/// Upstream `GetPodFromTemplate`: the template's labels, annotations and
/// spec; `generateName` `<rs>-` (the name is picked by [`create_pod`]);
/// a controller reference to the ReplicaSet.
pub fn pod_from_template(rs: &ReplicaSet) -> Pod {
    let template = rs.spec.as_ref().and_then(|s| s.template.clone()).unwrap_or_default();
    let tmeta = template.metadata.unwrap_or_default();
    let mut pod = Pod::default();
    pod.metadata.generate_name = Some(format!("{}-", name(&rs.metadata)));
    pod.metadata.namespace = rs.metadata.namespace.clone();
    pod.metadata.labels = tmeta.labels;
    pod.metadata.annotations = tmeta.annotations;
    pod.metadata.finalizers = tmeta.finalizers;
    pod.metadata.owner_references = Some(vec![new_controller_ref(&rs.metadata, "apps/v1", "ReplicaSet")]);
    pod.spec = template.spec;
    pod
}

/// Upstream `slowStartBatch`: call `f` `count` times, in batches of 1, 2,
/// 4, … run concurrently; stop at the first batch with a failure. Returns
/// how many calls succeeded and the first error.
pub async fn slow_start_batch<F, Fut, E>(count: usize, initial: usize, f: F) -> (usize, Option<E>)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<(), E>>,
{
    let mut remaining = count;
    let mut successes = 0;
    let mut batch = remaining.min(initial);
    while batch > 0 {
        let results = join_all((0..batch).map(|_| f())).await;
        let mut err = None;
        for r in results {
            match r {
                Ok(()) => successes += 1,
                Err(e) => err = err.or(Some(e)),
            }
        }
        if err.is_some() {
            return (successes, err);
        }
        remaining -= batch;
        batch = remaining.min(2 * batch);
    }
    (successes, None)
}

fn phase_ordinal(pod: &Pod) -> u8 {
    match pod_phase(pod) {
        "Unknown" => 1,
        "Running" => 2,
        _ => 0, // Pending (and anything unexpected) goes first
    }
}

fn ready_time(pod: &Pod) -> Option<DateTime<Utc>> {
    pod_condition(pod, "Ready").filter(|c| c.status == "True").and_then(|c| c.last_transition_time.as_ref().map(|t| t.0))
}

fn max_restarts(pod: &Pod) -> i32 {
    pod.status.as_ref().and_then(|s| s.container_statuses.as_ref()).into_iter().flatten().map(|c| c.restart_count).max().unwrap_or(0)
}

/// "Zero time first, then later times first" (upstream `afterOrZero`).
fn after_or_zero(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(a), Some(b)) => b.cmp(&a),
    }
}

/// Upstream `ActivePodsWithRanks.Less`: which pod to delete first. `rank`
/// is how many of the ReplicaSet's pods share the pod's node (doubled-up
/// pods go first, spreading the survivors).
fn deletion_order(a: &Pod, ra: usize, b: &Pod, rb: usize) -> Ordering {
    let (na, nb) = (pod_node(a), pod_node(b));
    if na != nb && (na.is_empty() || nb.is_empty()) {
        return if na.is_empty() { Ordering::Less } else { Ordering::Greater };
    }
    phase_ordinal(a)
        .cmp(&phase_ordinal(b))
        .then(is_pod_ready(a).cmp(&is_pod_ready(b)))
        .then(rb.cmp(&ra))
        .then_with(|| if is_pod_ready(a) && is_pod_ready(b) { after_or_zero(ready_time(a), ready_time(b)) } else { Ordering::Equal })
        .then(max_restarts(b).cmp(&max_restarts(a)))
        .then_with(|| after_or_zero(creation_time(&a.metadata), creation_time(&b.metadata)))
}

/// The `n` pods to delete when scaling down.
pub fn pods_to_delete(pods: &[Arc<Pod>], n: usize) -> Vec<Arc<Pod>> {
    let mut per_node: HashMap<&str, usize> = HashMap::new();
    for p in pods {
        *per_node.entry(pod_node(p)).or_default() += 1;
    }
    let rank = |p: &Pod| if pod_node(p).is_empty() { 0 } else { per_node[pod_node(p)] };
    let mut sorted: Vec<Arc<Pod>> = pods.to_vec();
    sorted.sort_by(|a, b| deletion_order(a, rank(a), b, rank(b)));
    sorted.truncate(n);
    sorted
}

fn nz(x: usize) -> Option<i32> {
    (x > 0).then_some(x as i32)
}

/// Upstream `calculateStatus` (zeros left out, as Go's `omitempty` does).
pub fn calculate_status(rs: &ReplicaSet, pods: &[Arc<Pod>], now: DateTime<Utc>) -> ReplicaSetStatus {
    let spec = rs.spec.clone().unwrap_or_default();
    let template_labels = spec.template.as_ref().and_then(|t| t.metadata.as_ref()).and_then(|m| m.labels.clone()).unwrap_or_default();
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let fully = pods.iter().filter(|p| {
        let l = labels(&p.metadata);
        template_labels.iter().all(|(k, v)| l.get(k) == Some(v))
    });
    ReplicaSetStatus {
        replicas: pods.len() as i32,
        fully_labeled_replicas: nz(fully.count()),
        ready_replicas: nz(pods.iter().filter(|p| is_pod_ready(p)).count()),
        available_replicas: nz(pods.iter().filter(|p| is_pod_available(p, min_ready, now)).count()),
        observed_generation: rs.metadata.generation,
        conditions: rs.status.as_ref().and_then(|s| s.conditions.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Mutex;

    /// A pod from "name node phase ready[@secs-ago] restarts=N created=SECS-ago".
    fn pod(desc: &str, now: DateTime<Utc>) -> Arc<Pod> {
        let w: Vec<&str> = desc.split_whitespace().collect();
        let ago = |s: &str| (now - chrono::Duration::seconds(s.parse().unwrap())).to_rfc3339();
        let mut v = json!({"metadata": {"name": w[0]}, "spec": {"containers": []}, "status": {"phase": w[2]}});
        if w[1] != "-" {
            v["spec"]["nodeName"] = json!(w[1]);
        }
        for x in &w[3..] {
            if let Some(r) = x.strip_prefix("ready") {
                let t = r.strip_prefix('@').map(ago).unwrap_or_else(|| ago("1000"));
                v["status"]["conditions"] = json!([{"type": "Ready", "status": "True", "lastTransitionTime": t}]);
            } else if let Some(n) = x.strip_prefix("restarts=") {
                v["status"]["containerStatuses"] = json!([{"name": "c", "image": "i", "imageID": "", "ready": true, "restartCount": n.parse::<i32>().unwrap()}]);
            } else if let Some(s) = x.strip_prefix("created=") {
                v["metadata"]["creationTimestamp"] = json!(ago(s));
            }
        }
        Arc::new(serde_json::from_value(v).unwrap())
    }

    fn check(pods: &[&str], n: usize, expect: &str) {
        let now = Utc::now();
        let pods: Vec<Arc<Pod>> = pods.iter().map(|d| pod(d, now)).collect();
        let got: Vec<String> = pods_to_delete(&pods, n).iter().map(|p| name(&p.metadata).to_string()).collect();
        assert_eq!(got.join(" "), expect);
    }

    #[test]
    fn scale_down_picks_the_least_valuable_pods() {
        // Unscheduled before scheduled; pending before running; not ready before ready.
        check(&["a n1 Running ready", "b - Pending", "c n1 Pending", "d n2 Running"], 3, "b c d");
        // Doubled-up nodes first.
        check(&["a n1 Running ready@100", "b n1 Running ready@100", "c n2 Running ready@100"], 1, "a");
        // Recently ready before long ready.
        check(&["a n1 Running ready@500", "b n2 Running ready@5", "c n3 Running ready@50"], 2, "b c");
        // More restarts first, then newer first.
        check(&["a n1 Running ready@9 restarts=1", "b n2 Running ready@9 restarts=4"], 1, "b");
        check(&["a n1 Running created=100", "b n2 Running created=10", "c n3 Running created=50"], 2, "b c");
    }

    #[tokio::test]
    async fn slow_start_batches_double_and_stop_at_the_first_failure() {
        // `fail_at`: the call number (0-based) that fails, if any.
        async fn run(count: usize, fail_at: Option<usize>) -> (usize, usize, bool) {
            let calls = Mutex::new(0usize);
            let (ok, err) = slow_start_batch(count, 1, || {
                let n = {
                    let mut c = calls.lock().unwrap();
                    *c += 1;
                    *c - 1
                };
                async move { if Some(n) == fail_at { Err("boom") } else { Ok(()) } }
            })
            .await;
            let c = *calls.lock().unwrap();
            (ok, c, err.is_some())
        }
        assert_eq!(run(10, None).await, (10, 10, false)); // batches 1,2,4,3
        assert_eq!(run(10, Some(0)).await, (0, 1, true)); // a broken template fails once
        assert_eq!(run(10, Some(4)).await, (6, 7, true)); // batches 1,2 ok; batch of 4 has a failure
        assert_eq!(run(0, None).await, (0, 0, false));
    }

    #[test]
    fn status_counts() {
        let now = Utc::now();
        let rs: ReplicaSet = serde_json::from_value(json!({
            "metadata": {"name": "web", "generation": 3},
            "spec": {"replicas": 3, "minReadySeconds": 10, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web", "tier": "fe"}}}}
        }))
        .unwrap();
        let mut pods = vec![pod("a n1 Running ready@100", now), pod("b n1 Running ready@5", now), pod("c n1 Pending", now)];
        for (p, labels) in pods.iter_mut().zip([json!({"app": "web", "tier": "fe"}), json!({"app": "web"}), json!({"app": "web", "tier": "fe"})]) {
            Arc::get_mut(p).unwrap().metadata.labels = serde_json::from_value(labels).unwrap();
        }
        let s = calculate_status(&rs, &pods, now);
        assert_eq!(
            (s.replicas, s.fully_labeled_replicas, s.ready_replicas, s.available_replicas, s.observed_generation),
            (3, Some(2), Some(2), Some(1), Some(3))
        );
    }

    #[test]
    fn pods_from_the_template_are_controlled_by_the_replicaset() {
        let rs: ReplicaSet = serde_json::from_value(json!({
            "metadata": {"name": "web-abc", "namespace": "ns", "uid": "u1"},
            "spec": {"selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}
        }))
        .unwrap();
        let p = pod_from_template(&rs);
        assert_eq!(p.metadata.generate_name.as_deref(), Some("web-abc-"));
        assert_eq!(p.metadata.namespace.as_deref(), Some("ns"));
        assert_eq!(controller_ref(&p.metadata).unwrap().uid, "u1");
        assert_eq!(p.spec.unwrap().containers[0].image.as_deref(), Some("nginx"));
    }
}
