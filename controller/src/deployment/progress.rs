//! Rollout progress (upstream `deployment/progress.go`): the Progressing
//! condition that `kubectl rollout status` reads, and
//! `progressDeadlineSeconds`.
//!
//! - Complete (all replicas updated and available): Progressing=True,
//!   reason NewReplicaSetAvailable.
//! - Any step forward (more updated/ready/available pods, fewer old ones):
//!   Progressing=True, reason ReplicaSetUpdated, lastUpdateTime = now.
//! - No step forward for `progressDeadlineSeconds` since lastUpdateTime:
//!   Progressing=False, reason ProgressDeadlineExceeded (kubectl then
//!   reports the rollout failed).
//! - Paused: Progressing=Unknown, DeploymentPaused (the deadline does not
//!   run while paused); resumed: DeploymentResumed.

use std::time::Duration;

use chrono::Utc;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus, ReplicaSet};
use machinery::informer::key_of;

use super::rolling::deployment_complete;
use super::sync::calculate_status;
use super::util::*;
use super::DeploymentController;
use crate::controller_utils::name;

/// Upstream `DeploymentProgressing`: did this sync move the rollout forward?
pub fn progressing(d: &Deployment, new: &DeploymentStatus) -> bool {
    let old = d.status.clone().unwrap_or_default();
    let old_old = old.replicas.unwrap_or(0) - old.updated_replicas.unwrap_or(0);
    let new_old = new.replicas.unwrap_or(0) - new.updated_replicas.unwrap_or(0);
    new.updated_replicas.unwrap_or(0) > old.updated_replicas.unwrap_or(0)
        || new_old < old_old
        || new.ready_replicas.unwrap_or(0) > old.ready_replicas.unwrap_or(0)
        || new.available_replicas.unwrap_or(0) > old.available_replicas.unwrap_or(0)
}

/// Upstream `DeploymentTimedOut`.
pub fn timed_out(d: &Deployment, s: &DeploymentStatus, now: chrono::DateTime<Utc>) -> bool {
    let Some(deadline) = progress_deadline(d) else { return false };
    let Some(c) = condition(s, "Progressing") else { return false };
    match c.reason.as_deref() {
        Some("ProgressDeadlineExceeded") => return true,
        Some("NewReplicaSetAvailable") => return false,
        _ => {}
    }
    c.last_update_time.as_ref().is_some_and(|t| t.0 + chrono::Duration::seconds(deadline as i64) < now)
}

impl DeploymentController {
    /// Upstream `syncRolloutStatus`.
    pub(crate) async fn sync_rollout_status(&self, d: &mut Deployment, all: &[ReplicaSet], new_rs: Option<&ReplicaSet>) -> anyhow::Result<()> {
        let mut status = calculate_status(d, all, new_rs);
        let paused = d.spec.as_ref().and_then(|s| s.paused) == Some(true);
        if progress_deadline(d).is_none() {
            remove_condition(&mut status, "Progressing");
        }
        let cur = condition(&status, "Progressing").cloned();
        let exceeded = cur.as_ref().and_then(|c| c.reason.as_deref()) == Some("ProgressDeadlineExceeded");
        if progress_deadline(d).is_some() && !paused && !exceeded {
            let rs_name = new_rs.map(|r| name(&r.metadata).to_string()).unwrap_or_default();
            if deployment_complete(d, &status) {
                set_condition(&mut status, new_condition("Progressing", "True", "NewReplicaSetAvailable", &format!("ReplicaSet {rs_name:?} has successfully progressed.")));
            } else if progressing(d, &status) {
                // Keep lastTransitionTime when already progressing, but move
                // lastUpdateTime: the deadline counts from the last progress.
                let mut c = new_condition("Progressing", "True", "ReplicaSetUpdated", &format!("ReplicaSet {rs_name:?} is progressing."));
                if let Some(cur) = cur.as_ref().filter(|c| c.status == "True") {
                    c.last_transition_time = cur.last_transition_time.clone();
                }
                status.conditions.get_or_insert_with(Vec::new).retain(|x| x.type_ != "Progressing");
                status.conditions.as_mut().unwrap().push(c);
            } else if timed_out(d, &status, Utc::now()) {
                set_condition(&mut status, new_condition("Progressing", "False", "ProgressDeadlineExceeded", &format!("ReplicaSet {rs_name:?} has timed out progressing.")));
            }
        }
        // Not done, not failed: look again when the deadline would pass.
        if let (Some(deadline), Some(c)) = (progress_deadline(d), condition(&status, "Progressing")) {
            if !paused && c.reason.as_deref() == Some("ReplicaSetUpdated") {
                if let Some(t) = &c.last_update_time {
                    let left = (t.0 + chrono::Duration::seconds(deadline as i64) - Utc::now()).num_milliseconds().max(0) as u64;
                    self.queue.add_after(key_of(d), Duration::from_millis(left + 1000));
                }
            }
        }
        self.update_status(d, status).await
    }

    /// Upstream `checkPausedConditions`.
    pub(crate) async fn check_paused_conditions(&self, d: &mut Deployment) -> anyhow::Result<()> {
        if progress_deadline(d).is_none() {
            return Ok(());
        }
        let paused = d.spec.as_ref().and_then(|s| s.paused) == Some(true);
        let mut status = d.status.clone().unwrap_or_default();
        let reason = condition(&status, "Progressing").and_then(|c| c.reason.clone());
        if paused && reason.as_deref() != Some("DeploymentPaused") {
            set_condition(&mut status, new_condition("Progressing", "Unknown", "DeploymentPaused", "Deployment is paused"));
        } else if !paused && reason.as_deref() == Some("DeploymentPaused") {
            set_condition(&mut status, new_condition("Progressing", "Unknown", "DeploymentResumed", "Deployment is resumed"));
        } else {
            return Ok(());
        }
        self.update_status(d, status).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(cond: serde_json::Value, deadline: i32, expect: bool) {
        let now = Utc::now();
        let d: Deployment = serde_json::from_value(json!({"metadata": {"name": "d"}, "spec": {"selector": {}, "template": {}, "progressDeadlineSeconds": deadline}})).unwrap();
        let s: DeploymentStatus = serde_json::from_value(json!({"conditions": [cond]})).unwrap();
        assert_eq!(timed_out(&d, &s, now), expect);
    }

    #[test]
    fn progress_deadline() {
        let ago = |s: i64| (Utc::now() - chrono::Duration::seconds(s)).to_rfc3339();
        check(json!({"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated", "lastUpdateTime": ago(700)}), 600, true);
        check(json!({"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated", "lastUpdateTime": ago(10)}), 600, false);
        check(json!({"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable", "lastUpdateTime": ago(9000)}), 600, false);
        check(json!({"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "lastUpdateTime": ago(0)}), 600, true);
    }

    #[test]
    fn progress_is_any_step_forward() {
        let d: Deployment = serde_json::from_value(json!({"metadata": {"name": "d"}, "spec": {"selector": {}, "template": {}},
            "status": {"replicas": 4, "updatedReplicas": 1, "readyReplicas": 3, "availableReplicas": 3}})).unwrap();
        let s = |r: i32, u: i32, rd: i32, a: i32| DeploymentStatus { replicas: Some(r), updated_replicas: Some(u), ready_replicas: Some(rd), available_replicas: Some(a), ..Default::default() };
        assert!(!progressing(&d, &s(4, 1, 3, 3)));
        assert!(progressing(&d, &s(4, 2, 3, 3)));
        assert!(progressing(&d, &s(3, 1, 3, 3))); // an old pod went
        assert!(progressing(&d, &s(4, 1, 4, 4)));
    }
}
