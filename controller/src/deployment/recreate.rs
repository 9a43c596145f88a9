//! Recreate (upstream `deployment/recreate.go`): scale every old
//! ReplicaSet to zero, wait until none of their pods is left running, then
//! create/scale the new ReplicaSet to `replicas`. There is downtime, but
//! old and new versions never run side by side.

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};

use super::util::*;
use super::DeploymentController;
use crate::controller_utils::*;

impl DeploymentController {
    pub(crate) async fn rollout_recreate(&self, d: &mut Deployment, rs_list: Vec<ReplicaSet>) -> anyhow::Result<()> {
        let (new_rs, mut old) = self.get_all_rs_and_sync_revision(d, &rs_list, false).await?;
        let mut scaled_down = false;
        for rs in old.iter_mut().filter(|r| rs_replicas(r) > 0) {
            scaled_down |= self.scale_rs(rs, 0, d).await?;
        }
        let all_of = |new_rs: &Option<ReplicaSet>, old: &[ReplicaSet]| {
            let mut all = old.to_vec();
            all.extend(new_rs.clone());
            all
        };
        if scaled_down {
            return self.sync_rollout_status(d, &all_of(&new_rs, &old), new_rs.as_ref()).await;
        }
        // Old pods still around (the ReplicaSet status may lag, so also ask
        // the pod cache): wait for their deletion events.
        let old_running = old.iter().any(|r| rs_status(r).0 > 0)
            || self.pods_of(&old).iter().any(|p| !matches!(pod_phase(p), "Succeeded" | "Failed"));
        if old_running {
            return self.sync_rollout_status(d, &all_of(&new_rs, &old), new_rs.as_ref()).await;
        }
        let mut new_rs = match new_rs {
            Some(n) => n,
            None => self.get_all_rs_and_sync_revision(d, &rs_list, true).await?.0.expect("created when missing"),
        };
        self.scale_rs(&mut new_rs, replicas(d), d).await?;
        let all = all_of(&Some(new_rs.clone()), &old);
        if super::rolling::deployment_complete(d, &super::sync::calculate_status(d, &all, Some(&new_rs))) {
            self.cleanup(d, &old).await?;
        }
        self.sync_rollout_status(d, &all, Some(&new_rs)).await
    }
}
