//! RollingUpdate (upstream `deployment/rolling.go`): replace pods a few at
//! a time. Two limits, from `maxSurge` and `maxUnavailable`:
//!
//! - total pods (all ReplicaSets) ≤ replicas + maxSurge — bounds the new
//!   ReplicaSet's growth ([`new_rs_new_replicas`]);
//! - available pods ≥ replicas − maxUnavailable — bounds how far old
//!   ReplicaSets may shrink. With maxUnavailable 0, an old pod goes only
//!   after a new one is available.
//!
//! Each sync does one step (scale up *or* down) and returns; the
//! resulting ReplicaSet status changes bring the next sync.

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};

use super::util::*;
use super::DeploymentController;

impl DeploymentController {
    pub(crate) async fn rollout_rolling(&self, d: &mut Deployment, rs_list: Vec<ReplicaSet>) -> anyhow::Result<()> {
        let (new_rs, mut old) = self.get_all_rs_and_sync_revision(d, &rs_list, true).await?;
        let mut new_rs = new_rs.expect("created when missing");
        let mut all: Vec<ReplicaSet> = old.clone();
        all.push(new_rs.clone());

        if self.reconcile_new_rs(d, &all, &mut new_rs).await? {
            let mut all = old;
            all.push(new_rs.clone());
            return self.sync_rollout_status(d, &all, Some(&new_rs)).await;
        }
        if self.reconcile_old_rss(d, &mut old, &new_rs).await? {
            let mut all = old;
            all.push(new_rs.clone());
            return self.sync_rollout_status(d, &all, Some(&new_rs)).await;
        }
        if deployment_complete(d, &self.status_of(d, &old, &new_rs)) {
            self.cleanup(d, &old).await?;
        }
        let mut all = old;
        all.push(new_rs.clone());
        self.sync_rollout_status(d, &all, Some(&new_rs)).await
    }

    fn status_of(&self, d: &Deployment, old: &[ReplicaSet], new_rs: &ReplicaSet) -> k8s_openapi::api::apps::v1::DeploymentStatus {
        let mut all = old.to_vec();
        all.push(new_rs.clone());
        super::sync::calculate_status(d, &all, Some(new_rs))
    }

    /// Upstream `reconcileNewReplicaSet`.
    async fn reconcile_new_rs(&self, d: &Deployment, all: &[ReplicaSet], new_rs: &mut ReplicaSet) -> anyhow::Result<bool> {
        let want = replicas(d);
        if rs_replicas(new_rs) == want {
            return Ok(false);
        }
        if rs_replicas(new_rs) > want {
            return self.scale_rs(new_rs, want, d).await;
        }
        let n = new_rs_new_replicas(d, all, new_rs);
        self.scale_rs(new_rs, n, d).await
    }

    /// Upstream `reconcileOldReplicaSets`: first drop unhealthy old pods
    /// (they do not count as available anyway), then scale old ReplicaSets
    /// down as far as minAvailable allows.
    async fn reconcile_old_rss(&self, d: &Deployment, old: &mut [ReplicaSet], new_rs: &ReplicaSet) -> anyhow::Result<bool> {
        let old_pods: i32 = old.iter().map(rs_replicas).sum();
        if old_pods == 0 {
            return Ok(false);
        }
        let all_pods = old_pods + rs_replicas(new_rs);
        let min_available = replicas(d) - max_unavailable(d);
        let new_unavailable = rs_replicas(new_rs) - rs_status(new_rs).2;
        let max_scaled_down = all_pods - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return Ok(false);
        }
        old.sort_by_key(|r| r.metadata.creation_timestamp.as_ref().map(|t| t.0));
        // Unhealthy replicas first.
        let mut cleaned = 0;
        for rs in old.iter_mut() {
            if cleaned >= max_scaled_down {
                break;
            }
            let unhealthy = rs_replicas(rs) - rs_status(rs).2;
            if rs_replicas(rs) == 0 || unhealthy <= 0 {
                continue;
            }
            let down = (max_scaled_down - cleaned).min(unhealthy);
            let new_size = rs_replicas(rs) - down;
            self.scale_rs(rs, new_size, d).await?;
            cleaned += down;
        }
        // Then healthy ones, keeping minAvailable.
        let mut all: Vec<&ReplicaSet> = old.iter().collect();
        all.push(new_rs);
        let available: i32 = all.iter().map(|r| rs_status(r).2).sum();
        let mut scaled = 0;
        if available > min_available {
            let total = available - min_available;
            for rs in old.iter_mut() {
                if scaled >= total {
                    break;
                }
                if rs_replicas(rs) == 0 {
                    continue;
                }
                let down = rs_replicas(rs).min(total - scaled);
                let new_size = rs_replicas(rs) - down;
                self.scale_rs(rs, new_size, d).await?;
                scaled += down;
            }
        }
        Ok(cleaned + scaled > 0)
    }
}

/// Upstream `DeploymentComplete`: every replica updated and available, and
/// no old pods left.
pub fn deployment_complete(d: &Deployment, s: &k8s_openapi::api::apps::v1::DeploymentStatus) -> bool {
    let want = replicas(d);
    s.updated_replicas.unwrap_or(0) == want
        && s.replicas.unwrap_or(0) == want
        && s.available_replicas.unwrap_or(0) == want
        && s.observed_generation >= d.metadata.generation
}
