//! The Deployment controller (upstream `pkg/controller/deployment`): rolls
//! a Deployment's pod template out through ReplicaSets.
//!
//! A Deployment owns one ReplicaSet per distinct pod template, named
//! `<deployment>-<pod-template-hash>` and carrying that hash as a label (so
//! the ReplicaSets' selectors never overlap). The ReplicaSet whose template
//! equals the Deployment's is the *new* one; all others are *old*. A sync:
//!
//! 1. claims its ReplicaSets (adopt/release, as the ReplicaSet controller
//!    claims pods) — [`DeploymentController::claim_replica_sets`];
//! 2. if paused or only `replicas` changed: [`sync`] scales (proportionally
//!    across ReplicaSets during a rollout) and cleans up history;
//! 3. otherwise rolls out: [`rolling`] (maxSurge/maxUnavailable) or
//!    [`recreate`] (all old pods gone before any new one);
//! 4. writes status and the Available/Progressing conditions ([`progress`])
//!    that `kubectl rollout status` waits on.
//!
//! Rollback ([`rollback`]) needs no special code path: `kubectl rollout
//! undo` writes the old template back, and step 3 finds the old ReplicaSet
//! whose template equals it and scales it up again with a new revision.

pub mod progress;
pub mod recreate;
pub mod rollback;
pub mod rolling;
pub mod sync;
pub mod util;

use std::sync::Arc;

use anyhow::Context as _;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::{Api, Client};
use machinery::events::EventRecorder;
use machinery::informer::{key_of, HandlerFns, Store};
use machinery::selector::Selector;
use machinery::workqueue::WorkQueue;

use crate::context::Context;
use crate::controller_utils::*;
use crate::informers::BY_NAMESPACE;

pub struct DeploymentController {
    pub(crate) client: Client,
    pub(crate) d_store: Store<Deployment>,
    pub(crate) rs_store: Store<ReplicaSet>,
    pub(crate) pod_store: Store<Pod>,
    pub queue: WorkQueue<String>,
    pub(crate) recorder: EventRecorder,
}

/// The Deployment (key) controlling `rs`, if cached with that UID.
fn owning_deployment(d_store: &Store<Deployment>, meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Option<String> {
    let r = controller_ref(meta)?;
    if r.kind != "Deployment" {
        return None;
    }
    let d = d_store.get_named(meta.namespace.as_deref(), &r.name)?;
    (d.metadata.uid.as_deref() == Some(r.uid.as_str())).then(|| key_of(d.as_ref()))
}

/// Deployments whose selector matches an orphaned ReplicaSet.
fn matching_deployments(d_store: &Store<Deployment>, rs: &ReplicaSet) -> Vec<String> {
    let labels = labels(&rs.metadata);
    d_store
        .by_index(BY_NAMESPACE, ns(&rs.metadata))
        .iter()
        .filter(|d| d.spec.as_ref().and_then(|s| Selector::from_label_selector(&s.selector).ok()).is_some_and(|s| !s.is_empty() && s.matches(&labels)))
        .map(|d| key_of(d.as_ref()))
        .collect()
}

impl DeploymentController {
    pub fn new(ctx: &Context) -> Arc<Self> {
        let d_inf = ctx.informers.deployments();
        let rs_inf = ctx.informers.replicasets();
        let pod_inf = ctx.informers.pods();
        let queue = ctx.queue("deployment");
        let c = Arc::new(DeploymentController {
            client: ctx.client.clone(),
            d_store: d_inf.store(),
            rs_store: rs_inf.store(),
            pod_store: pod_inf.store(),
            queue: queue.clone(),
            recorder: ctx.recorder("deployment-controller"),
        });
        let (q1, q2, q3) = (queue.clone(), queue.clone(), queue.clone());
        d_inf.add_event_handler(
            HandlerFns::new()
                .on_add(move |d: &Arc<Deployment>| q1.add(key_of(d.as_ref())))
                .on_update(move |_, d: &Arc<Deployment>| q2.add(key_of(d.as_ref())))
                .on_delete(move |d: &Arc<Deployment>| q3.add(key_of(d.as_ref()))),
        );
        let ds = d_inf.store();
        let (s1, s2, s3, s4) = (ds.clone(), ds.clone(), ds.clone(), ds);
        let (q1, q2, q3, q4) = (queue.clone(), queue.clone(), queue.clone(), queue);
        rs_inf.add_event_handler(
            HandlerFns::new()
                .on_add(move |rs: &Arc<ReplicaSet>| match owning_deployment(&s1, &rs.metadata) {
                    Some(k) => q1.add(k),
                    None if controller_ref(&rs.metadata).is_none() => matching_deployments(&s1, rs).into_iter().for_each(|k| q1.add(k)),
                    None => {}
                })
                .on_update(move |old: &Arc<ReplicaSet>, new: &Arc<ReplicaSet>| {
                    if old.metadata.resource_version == new.metadata.resource_version {
                        return;
                    }
                    let (o, n) = (owning_deployment(&s2, &old.metadata), owning_deployment(&s2, &new.metadata));
                    if o != n {
                        if let Some(k) = o {
                            q2.add(k);
                        }
                    }
                    match n {
                        Some(k) => q2.add(k),
                        None if controller_ref(&new.metadata).is_none() => matching_deployments(&s2, new).into_iter().for_each(|k| q2.add(k)),
                        None => {}
                    }
                })
                .on_delete(move |rs: &Arc<ReplicaSet>| {
                    if let Some(k) = owning_deployment(&s3, &rs.metadata) {
                        q3.add(k);
                    }
                }),
        );
        // Recreate waits for old pods to be gone: a pod deletion may unblock it.
        let rss = rs_inf.store();
        pod_inf.add_event_handler(HandlerFns::new().on_delete(move |pod: &Arc<Pod>| {
            let Some(r) = controller_ref(&pod.metadata).filter(|r| r.kind == "ReplicaSet") else { return };
            let Some(rs) = rss.get_named(pod.metadata.namespace.as_deref(), &r.name) else { return };
            if let Some(k) = owning_deployment(&s4, &rs.metadata) {
                q4.add(k);
            }
        }));
        c
    }

    pub async fn run(self: Arc<Self>, workers: usize, gate: Gate) {
        let c = self.clone();
        run_workers("deployment", self.queue.clone(), workers, gate, move |key| {
            let c = c.clone();
            async move { c.sync_deployment(&key).await }
        })
        .await
    }

    /// Upstream `syncDeployment`.
    pub async fn sync_deployment(&self, key: &str) -> anyhow::Result<()> {
        let Some(d) = self.d_store.get(key) else { return Ok(()) };
        let mut d = (*d).clone();
        let spec = d.spec.clone().unwrap_or_default();
        let selector = Selector::from_label_selector(&spec.selector).context("invalid selector")?;
        if selector.is_empty() {
            self.recorder.event(&d, machinery::events::EventType::Warning, "SelectingAll", "This deployment is selecting all pods. A non-empty selector is required.");
            return Ok(());
        }
        let rs_list = self.claim_replica_sets(&d, &selector).await?;
        if is_deleting(&d.metadata) {
            return self.sync_status_only(&mut d, rs_list).await;
        }
        self.check_paused_conditions(&mut d).await?;
        if spec.paused == Some(true) {
            return self.sync(&mut d, rs_list).await;
        }
        if self.is_scaling_event(&d, &rs_list) {
            return self.sync(&mut d, rs_list).await;
        }
        if util::is_rolling_update(&d) {
            self.rollout_rolling(&mut d, rs_list).await
        } else {
            self.rollout_recreate(&mut d, rs_list).await
        }
    }

    /// Upstream `getReplicaSetsForDeployment`: the ReplicaSets this
    /// Deployment controls after adopting matching orphans and releasing
    /// ones that no longer match.
    async fn claim_replica_sets(&self, d: &Deployment, selector: &Selector) -> anyhow::Result<Vec<ReplicaSet>> {
        let uid = d.metadata.uid.clone().unwrap_or_default();
        let api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), ns(&d.metadata));
        let mut out = Vec::new();
        let mut can_adopt = None;
        for rs in self.rs_store.by_index(BY_NAMESPACE, ns(&d.metadata)) {
            let matches = selector.matches(&labels(&rs.metadata));
            let rv = rs.metadata.resource_version.clone().unwrap_or_default();
            match controller_ref(&rs.metadata) {
                Some(r) if r.uid == uid => {
                    if matches {
                        out.push((*rs).clone());
                    } else if !is_deleting(&d.metadata) {
                        let refs: Vec<_> = rs.metadata.owner_references.iter().flatten().filter(|r| r.uid != uid).cloned().collect();
                        match set_owner_refs(&api, name(&rs.metadata), &rv, &refs).await {
                            Ok(()) => {}
                            Err(e) if is_not_found(&e) => {}
                            Err(e) => return Err(e).context("releasing replica set"),
                        }
                    }
                }
                Some(_) => {}
                None => {
                    if !matches || is_deleting(&d.metadata) || is_deleting(&rs.metadata) {
                        continue;
                    }
                    if can_adopt.is_none() {
                        let fresh = Api::<Deployment>::namespaced(self.client.clone(), ns(&d.metadata)).get_opt(name(&d.metadata)).await?;
                        can_adopt = Some(fresh.is_some_and(|f| f.metadata.uid.as_deref() == Some(uid.as_str()) && !is_deleting(&f.metadata)));
                    }
                    if can_adopt != Some(true) {
                        continue;
                    }
                    let mut refs = rs.metadata.owner_references.clone().unwrap_or_default();
                    refs.push(new_controller_ref(&d.metadata, "apps/v1", "Deployment"));
                    match set_owner_refs(&api, name(&rs.metadata), &rv, &refs).await {
                        Ok(()) => {
                            let mut rs = (*rs).clone();
                            rs.metadata.owner_references = Some(refs);
                            out.push(rs);
                        }
                        Err(e) if is_not_found(&e) => {}
                        Err(e) => return Err(e).context("adopting replica set"),
                    }
                }
            }
        }
        Ok(out)
    }

    /// Upstream `isScalingEvent`: some active ReplicaSet was last sized for
    /// a different `replicas` than the Deployment has now.
    fn is_scaling_event(&self, d: &Deployment, rs_list: &[ReplicaSet]) -> bool {
        let want = util::replicas(d).to_string();
        rs_list.iter().filter(|rs| util::rs_replicas(rs) > 0).any(|rs| util::annotation(&rs.metadata.annotations, util::DESIRED_REPLICAS).is_some_and(|v| v != want))
    }

    /// Pods of the given ReplicaSets (for Recreate's "old pods running?").
    pub(crate) fn pods_of(&self, rs_list: &[ReplicaSet]) -> Vec<Arc<Pod>> {
        let uids: Vec<&str> = rs_list.iter().filter_map(|r| r.metadata.uid.as_deref()).collect();
        let mut out = Vec::new();
        for uid in uids {
            out.extend(self.pod_store.by_index(crate::informers::BY_OWNER, uid));
        }
        out
    }
}
