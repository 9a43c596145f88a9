//! Shared steps of a Deployment sync (upstream `deployment/sync.go`):
//! finding or creating the new ReplicaSet with the right revision, scaling
//! (proportionally across ReplicaSets when `replicas` changes mid-rollout),
//! cleaning up old ReplicaSets beyond `revisionHistoryLimit`, and status.

use std::collections::BTreeMap;

use anyhow::Context as _;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{Patch, PatchParams, PostParams};
use kube::Api;
use machinery::events::EventType;
use serde_json::json;

use super::rollback::{find_new_rs, old_rss};
use super::util::{self, *};
use super::DeploymentController;
use crate::controller_utils::*;

impl DeploymentController {
    /// Upstream `getAllReplicaSetsAndSyncRevision`: (new, old). The new one
    /// is created only when `create` (a rollout, not a pause or scale).
    pub(crate) async fn get_all_rs_and_sync_revision(
        &self,
        d: &mut Deployment,
        rs_list: &[ReplicaSet],
        create: bool,
    ) -> anyhow::Result<(Option<ReplicaSet>, Vec<ReplicaSet>)> {
        let existing = find_new_rs(d, rs_list);
        let old = old_rss(rs_list, existing.as_ref());
        let new_rs = self.get_new_rs(d, existing, &old, create).await?;
        Ok((new_rs, old))
    }

    async fn get_new_rs(
        &self,
        d: &mut Deployment,
        existing: Option<ReplicaSet>,
        old: &[ReplicaSet],
        create: bool,
    ) -> anyhow::Result<Option<ReplicaSet>> {
        let new_revision = old.iter().map(revision).max().unwrap_or(0) + 1;
        let namespace = ns(&d.metadata).to_string();
        let rs_api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), &namespace);
        let min_ready = d.spec.as_ref().and_then(|s| s.min_ready_seconds);

        if let Some(existing) = existing {
            let mut rs = existing.clone();
            let changed = set_new_rs_annotations(d, &mut rs, new_revision, true);
            let min_ready_changed = rs.spec.as_ref().and_then(|s| s.min_ready_seconds) != min_ready;
            if changed || min_ready_changed {
                rs.spec.get_or_insert_with(Default::default).min_ready_seconds = min_ready;
                rs = rs_api.replace(name(&rs.metadata), &PostParams::default(), &rs).await.context("updating new replica set")?;
            }
            let rev = util::annotation(&rs.metadata.annotations, REVISION).unwrap_or("").to_string();
            self.set_deployment_revision(d, &rev).await?;
            let mut status = d.status.clone().unwrap_or_default();
            if condition(&status, "Progressing").is_none() {
                set_condition(&mut status, new_condition("Progressing", "True", "FoundNewReplicaSet", &format!("Found new replica set {:?}", name(&rs.metadata))));
                self.update_status(d, status).await?;
            }
            return Ok(Some(rs));
        }
        if !create {
            return Ok(None);
        }

        // A new ReplicaSet for the current template.
        let spec = d.spec.clone().unwrap_or_default();
        let collision_count = d.status.as_ref().and_then(|s| s.collision_count);
        let hash = template_hash(&spec.template, collision_count);
        let mut template = spec.template.clone();
        template.metadata.get_or_insert_with(Default::default).labels.get_or_insert_with(BTreeMap::new).insert(HASH_LABEL.into(), hash.clone());
        let mut selector: LabelSelector = spec.selector.clone();
        selector.match_labels.get_or_insert_with(BTreeMap::new).insert(HASH_LABEL.into(), hash.clone());
        let mut rs = ReplicaSet::default();
        rs.metadata.name = Some(format!("{}-{hash}", name(&d.metadata)));
        rs.metadata.namespace = Some(namespace.clone());
        rs.metadata.labels = template.metadata.as_ref().and_then(|m| m.labels.clone());
        rs.metadata.owner_references = Some(vec![new_controller_ref(&d.metadata, "apps/v1", "Deployment")]);
        rs.spec = Some(ReplicaSetSpec { replicas: Some(0), min_ready_seconds: min_ready, selector, template: Some(template) });
        let mut all: Vec<ReplicaSet> = old.to_vec();
        all.push(rs.clone());
        let new_replicas = new_rs_new_replicas(d, &all, &rs);
        rs.spec.as_mut().unwrap().replicas = Some(new_replicas);
        set_new_rs_annotations(d, &mut rs, new_revision, false);

        let created = match rs_api.create(&PostParams::default(), &rs).await {
            Ok(c) => c,
            Err(kube::Error::Api(e)) if e.code == 409 => {
                // Name taken. Ours already, with this template (a stale cache)?
                let found = rs_api.get(name(&rs.metadata)).await.context("reading conflicting replica set")?;
                let ours = controller_ref(&found.metadata).is_some_and(|r| Some(&r.uid) == d.metadata.uid.as_ref());
                let same = found.spec.as_ref().and_then(|s| s.template.as_ref()).is_some_and(|t| equal_ignore_hash(t, &spec.template));
                if ours && same {
                    return Ok(Some(found));
                }
                // A hash collision: bump collisionCount so the next hash differs.
                let mut status = d.status.clone().unwrap_or_default();
                status.collision_count = Some(collision_count.unwrap_or(0) + 1);
                self.update_status(d, status).await?;
                anyhow::bail!("hash collision for replica set {:?}, retrying with collisionCount", name(&rs.metadata));
            }
            Err(e) => {
                let mut status = d.status.clone().unwrap_or_default();
                set_condition(&mut status, new_condition("ReplicaFailure", "True", "FailedCreate", &e.to_string()));
                let _ = self.update_status(d, status).await;
                return Err(e).context("creating replica set");
            }
        };
        if new_replicas > 0 {
            self.recorder.event(d, EventType::Normal, "ScalingReplicaSet", &format!("Scaled up replica set {} from 0 to {new_replicas}", name(&created.metadata)));
        }
        self.set_deployment_revision(d, &new_revision.to_string()).await?;
        let mut status = d.status.clone().unwrap_or_default();
        set_condition(&mut status, new_condition("Progressing", "True", "NewReplicaSetCreated", &format!("Created new replica set {:?}", name(&created.metadata))));
        self.update_status(d, status).await?;
        Ok(Some(created))
    }

    /// The Deployment's revision annotation follows its new ReplicaSet's
    /// (what `kubectl rollout history` shows).
    async fn set_deployment_revision(&self, d: &mut Deployment, rev: &str) -> anyhow::Result<()> {
        if rev.is_empty() || util::annotation(&d.metadata.annotations, REVISION) == Some(rev) {
            return Ok(());
        }
        let old: i64 = util::annotation(&d.metadata.annotations, REVISION).and_then(|r| r.parse().ok()).unwrap_or(0);
        if rev.parse::<i64>().unwrap_or(0) < old {
            return Ok(());
        }
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), ns(&d.metadata));
        let patch = json!({"metadata": {"annotations": {REVISION: rev}}});
        let updated = api.patch(name(&d.metadata), &PatchParams::default(), &Patch::Merge(&patch)).await.context("setting revision")?;
        d.metadata = updated.metadata;
        Ok(())
    }

    /// Write `status` (PUT to the status subresource) and keep `d` current.
    pub(crate) async fn update_status(&self, d: &mut Deployment, status: DeploymentStatus) -> anyhow::Result<()> {
        if d.status.as_ref() == Some(&status) {
            return Ok(());
        }
        let mut copy = d.clone();
        copy.status = Some(status);
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), ns(&d.metadata));
        let updated = api.replace_status(name(&d.metadata), &PostParams::default(), serde_json::to_vec(&copy)?).await.context("updating deployment status")?;
        *d = updated;
        Ok(())
    }

    /// Upstream `scaleReplicaSetAndRecordEvent`: set `rs` to `new_scale`
    /// (and its replicas annotations); a ScalingReplicaSet event when the
    /// size changes. Returns whether the size changed.
    pub(crate) async fn scale_rs(&self, rs: &mut ReplicaSet, new_scale: i32, d: &Deployment) -> anyhow::Result<bool> {
        let old_scale = rs_replicas(rs);
        let size_changed = old_scale != new_scale;
        let mut copy = rs.clone();
        let ann_changed = set_replicas_annotations(&mut copy, replicas(d), replicas(d) + max_surge(d));
        if !size_changed && !ann_changed {
            return Ok(false);
        }
        copy.spec.get_or_insert_with(Default::default).replicas = Some(new_scale);
        let api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), ns(&rs.metadata));
        *rs = api.replace(name(&rs.metadata), &PostParams::default(), &copy).await.context("scaling replica set")?;
        if size_changed {
            let dir = if old_scale < new_scale { "up" } else { "down" };
            self.recorder.event(d, EventType::Normal, "ScalingReplicaSet", &format!("Scaled {dir} replica set {} from {old_scale} to {new_scale}", name(&rs.metadata)));
        }
        Ok(size_changed)
    }

    /// Upstream `sync`: for paused Deployments and scaling events — no new
    /// ReplicaSet, just sizes, history cleanup and status.
    pub(crate) async fn sync(&self, d: &mut Deployment, rs_list: Vec<ReplicaSet>) -> anyhow::Result<()> {
        let (mut new_rs, mut old) = self.get_all_rs_and_sync_revision(d, &rs_list, false).await?;
        self.scale(d, new_rs.as_mut(), &mut old).await?;
        if d.spec.as_ref().and_then(|s| s.paused) == Some(true) {
            self.cleanup(d, &old).await?;
        }
        let mut all = old;
        all.extend(new_rs.clone());
        self.sync_deployment_status(d, &all, new_rs.as_ref()).await
    }

    /// Upstream `scale`.
    async fn scale(&self, d: &Deployment, new_rs: Option<&mut ReplicaSet>, old: &mut [ReplicaSet]) -> anyhow::Result<()> {
        let want = replicas(d);
        // Exactly one active ReplicaSet (or none): it takes all replicas.
        old.sort_by(|a, b| b.metadata.creation_timestamp.as_ref().map(|t| t.0).cmp(&a.metadata.creation_timestamp.as_ref().map(|t| t.0)));
        let active_old = old.iter().filter(|r| rs_replicas(r) > 0).count();
        let new_active = new_rs.as_ref().is_some_and(|r| rs_replicas(r) > 0);
        let n_active = active_old + new_active as usize;
        if n_active <= 1 {
            let target: Option<&mut ReplicaSet> = if n_active == 0 {
                match new_rs {
                    Some(n) => Some(n),
                    None => old.first_mut(),
                }
            } else if new_active {
                new_rs
            } else {
                old.iter_mut().find(|r| rs_replicas(r) > 0)
            };
            if let Some(rs) = target {
                if rs_replicas(rs) != want {
                    self.scale_rs(rs, want, d).await?;
                }
            }
            return Ok(());
        }
        // The new ReplicaSet is saturated: old ones go to zero.
        if let Some(n) = new_rs.as_deref() {
            if is_saturated(d, Some(n)) {
                for rs in old.iter_mut().filter(|r| rs_replicas(r) > 0) {
                    self.scale_rs(rs, 0, d).await?;
                }
                return Ok(());
            }
        }
        // Mid-rollout resize: spread the difference proportionally to each
        // ReplicaSet's share of the previous size (upstream
        // `GetProportion`), the remainder going to the largest.
        if !is_rolling_update(d) {
            return Ok(());
        }
        let mut all: Vec<&mut ReplicaSet> = old.iter_mut().filter(|r| rs_replicas(r) > 0).collect();
        if let Some(n) = new_rs {
            if rs_replicas(n) > 0 {
                all.push(n);
            }
        }
        let current: i32 = all.iter().map(|r| rs_replicas(r)).sum();
        let allowed = if want > 0 { want + max_surge(d) } else { 0 };
        let to_add = allowed - current;
        if to_add == 0 {
            return Ok(());
        }
        // Scaling up: bigger and newer first; down: bigger and older first.
        all.sort_by(|a, b| {
            rs_replicas(b).cmp(&rs_replicas(a)).then_with(|| {
                let (ta, tb) = (a.metadata.creation_timestamp.as_ref().map(|t| t.0), b.metadata.creation_timestamp.as_ref().map(|t| t.0));
                if to_add > 0 { tb.cmp(&ta) } else { ta.cmp(&tb) }
            })
        });
        let prev_size = d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0);
        let mut added = 0;
        let mut sizes: Vec<i32> = Vec::new();
        for rs in all.iter() {
            let r = rs_replicas(rs);
            let mut proportion = 0;
            if r != 0 && to_add != added {
                let annotated: i32 = util::annotation(&rs.metadata.annotations, MAX_REPLICAS).and_then(|v| v.parse().ok()).unwrap_or(prev_size);
                let fraction = if want == 0 { -r } else if annotated == 0 { 0 } else { ((r as f64 * allowed as f64) / annotated as f64).round() as i32 - r };
                let room = to_add - added;
                proportion = if to_add > 0 { fraction.min(room) } else { fraction.max(room) };
            }
            added += proportion;
            sizes.push(r + proportion);
        }
        if let Some(first) = sizes.first_mut() {
            *first = (*first + to_add - added).max(0);
        }
        for (rs, size) in all.into_iter().zip(sizes) {
            self.scale_rs(rs, size.max(0), d).await?;
        }
        Ok(())
    }

    /// Upstream `cleanupDeployment`: delete the oldest fully scaled-down
    /// old ReplicaSets beyond `revisionHistoryLimit`.
    pub(crate) async fn cleanup(&self, d: &Deployment, old: &[ReplicaSet]) -> anyhow::Result<()> {
        let Some(limit) = d.spec.as_ref().and_then(|s| s.revision_history_limit) else { return Ok(()) };
        let mut cleanable: Vec<&ReplicaSet> = old.iter().filter(|r| !is_deleting(&r.metadata)).collect();
        let diff = cleanable.len() as i64 - limit as i64;
        if diff <= 0 {
            return Ok(());
        }
        cleanable.sort_by_key(|r| (revision(r), r.metadata.creation_timestamp.as_ref().map(|t| t.0)));
        let api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), ns(&d.metadata));
        for rs in cleanable.into_iter().take(diff as usize) {
            let status = rs.status.clone().unwrap_or_default();
            if status.replicas != 0 || rs_replicas(rs) != 0 || rs.metadata.generation > status.observed_generation {
                continue;
            }
            delete_ignore_missing(&api, name(&rs.metadata), &background()).await.context("deleting old replica set")?;
        }
        Ok(())
    }

    /// Upstream `syncDeploymentStatus`: counts only (conditions as they are
    /// except Available).
    pub(crate) async fn sync_deployment_status(&self, d: &mut Deployment, all: &[ReplicaSet], new_rs: Option<&ReplicaSet>) -> anyhow::Result<()> {
        let status = calculate_status(d, all, new_rs);
        self.update_status(d, status).await
    }

    pub(crate) async fn sync_status_only(&self, d: &mut Deployment, rs_list: Vec<ReplicaSet>) -> anyhow::Result<()> {
        let (new_rs, old) = self.get_all_rs_and_sync_revision(d, &rs_list, false).await?;
        let mut all = old;
        all.extend(new_rs.clone());
        self.sync_deployment_status(d, &all, new_rs.as_ref()).await
    }
}

/// Upstream `calculateStatus`: counts summed over all ReplicaSets, and the
/// Available condition (available ≥ replicas − maxUnavailable).
pub fn calculate_status(d: &Deployment, all: &[ReplicaSet], new_rs: Option<&ReplicaSet>) -> DeploymentStatus {
    let available: i32 = all.iter().map(|r| rs_status(r).2).sum();
    let total: i32 = all.iter().map(|r| rs_status(r).0).sum();
    let ready: i32 = all.iter().map(|r| rs_status(r).1).sum();
    let updated = new_rs.map(|r| rs_status(r).0).unwrap_or(0);
    // Upstream counts unavailable against what the ReplicaSets are asked
    // for (their spec.replicas), surge included, not against the
    // Deployment's replicas: mid-rollout, a surge pod not yet available is
    // unavailable. Negative (more available than asked, on scale-down) is 0.
    let desired: i32 = all.iter().map(rs_replicas).sum();
    let unavailable = (desired - available).max(0);
    let prev = d.status.clone().unwrap_or_default();
    let nz = |x: i32| (x != 0).then_some(x);
    let mut status = DeploymentStatus {
        observed_generation: d.metadata.generation,
        replicas: nz(total),
        updated_replicas: nz(updated),
        ready_replicas: nz(ready),
        available_replicas: nz(available),
        unavailable_replicas: nz(unavailable),
        collision_count: prev.collision_count,
        conditions: prev.conditions.clone(),
    };
    if available >= replicas(d) - max_unavailable(d) {
        set_condition(&mut status, new_condition("Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability."));
    } else {
        set_condition(&mut status, new_condition("Available", "False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability."));
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rs(name: &str, spec: i32, status: i32, available: i32) -> ReplicaSet {
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"replicas": spec, "selector": {}},
            "status": {"replicas": status, "readyReplicas": available, "availableReplicas": available}}))
        .unwrap()
    }

    #[test]
    fn unavailable_counts_against_the_replica_sets_spec() {
        let d: Deployment = serde_json::from_value(json!({"metadata": {"name": "web", "generation": 2},
            "spec": {"replicas": 3, "selector": {}, "template": {},
                     "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}}})).unwrap();
        // Mid-rollout with a surge: old 3/3 available, new asked for 1, none
        // available yet. 4 asked for, 3 available: 1 unavailable.
        let (old, new) = (rs("old", 3, 3, 3), rs("new", 1, 1, 0));
        let s = calculate_status(&d, &[old, new.clone()], Some(&new));
        assert_eq!((s.replicas, s.updated_replicas, s.available_replicas, s.unavailable_replicas), (Some(4), Some(1), Some(3), Some(1)));
        // Scaling down from 5: more available than asked for is 0, not negative.
        let big = rs("new", 3, 5, 5);
        let s = calculate_status(&d, std::slice::from_ref(&big), Some(&big));
        assert_eq!(s.unavailable_replicas, None);
        // Nothing available yet: all asked for are unavailable.
        let fresh = rs("new", 3, 3, 0);
        let s = calculate_status(&d, std::slice::from_ref(&fresh), Some(&fresh));
        assert_eq!(s.unavailable_replicas, Some(3));
        assert_eq!(condition(&s, "Available").unwrap().reason.as_deref(), Some("MinimumReplicasUnavailable"));
    }
}
