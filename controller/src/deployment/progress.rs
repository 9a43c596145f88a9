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

/// The Progressing condition after a rollout step (upstream's switch in
/// `syncRolloutStatus`), for a Deployment with a progress deadline. A
/// rollout already reported complete (NewReplicaSetAvailable, all replicas
/// updated) is a resync: nothing to estimate. Otherwise the first that
/// holds wins: complete, progressing, timed out. Complete comes first, so
/// a rollout that failed its deadline (ProgressDeadlineExceeded) and then
/// finishes after all — readiness came late — is reported successful.
pub fn update_progressing(d: &Deployment, status: &mut DeploymentStatus, new_rs: Option<&str>, now: chrono::DateTime<Utc>) {
    let cur = d.status.as_ref().and_then(|s| condition(s, "Progressing")).cloned();
    let already_complete = status.replicas == status.updated_replicas && cur.as_ref().and_then(|c| c.reason.as_deref()) == Some("NewReplicaSetAvailable");
    if already_complete {
        return;
    }
    let subject = match new_rs {
        Some(rs) => format!("ReplicaSet {rs:?}"),
        None => format!("Deployment {:?}", name(&d.metadata)),
    };
    if deployment_complete(d, status) {
        set_condition(status, new_condition("Progressing", "True", "NewReplicaSetAvailable", &format!("{subject} has successfully progressed.")));
    } else if progressing(d, status) {
        // Keep lastTransitionTime when already progressing, but move
        // lastUpdateTime: the deadline counts from the last progress.
        let mut c = new_condition("Progressing", "True", "ReplicaSetUpdated", &format!("{subject} is progressing."));
        if let Some(cur) = cur.as_ref().filter(|c| c.status == "True") {
            c.last_transition_time = cur.last_transition_time.clone();
        }
        remove_condition(status, "Progressing");
        status.conditions.get_or_insert_with(Vec::new).push(c);
    } else if timed_out(d, status, now) {
        set_condition(status, new_condition("Progressing", "False", "ProgressDeadlineExceeded", &format!("{subject} has timed out progressing.")));
    }
}

impl DeploymentController {
    /// Upstream `syncRolloutStatus`.
    pub(crate) async fn sync_rollout_status(&self, d: &mut Deployment, all: &[ReplicaSet], new_rs: Option<&ReplicaSet>) -> anyhow::Result<()> {
        let mut status = calculate_status(d, all, new_rs);
        let paused = d.spec.as_ref().and_then(|s| s.paused) == Some(true);
        if progress_deadline(d).is_none() {
            remove_condition(&mut status, "Progressing");
        } else if !paused {
            update_progressing(d, &mut status, new_rs.map(|r| name(&r.metadata)), Utc::now());
        }
        // Not done, not failed: look again when the deadline would pass.
        if let (Some(deadline), Some(c)) = (progress_deadline(d), condition(&status, "Progressing")) {
            let settled = matches!(c.reason.as_deref(), Some("NewReplicaSetAvailable" | "ProgressDeadlineExceeded"));
            if !paused && !settled && !deployment_complete(d, &status) {
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

    fn deploy_with(progressing: serde_json::Value, old: serde_json::Value) -> Deployment {
        let mut status = old;
        status["conditions"] = json!([progressing]);
        serde_json::from_value(json!({"metadata": {"name": "web", "generation": 2},
            "spec": {"replicas": 3, "selector": {}, "template": {}, "progressDeadlineSeconds": 10}, "status": status}))
        .unwrap()
    }

    fn reason(s: &DeploymentStatus) -> (String, String, String) {
        let c = condition(s, "Progressing").unwrap();
        (c.status.clone(), c.reason.clone().unwrap_or_default(), c.message.clone().unwrap_or_default())
    }

    #[test]
    fn exceeded_deadline_clears_when_the_rollout_completes() {
        let ago = |s: i64| (Utc::now() - chrono::Duration::seconds(s)).to_rfc3339();
        let stuck = json!({"replicas": 3, "updatedReplicas": 3, "observedGeneration": 2});
        // No progress past the deadline: failed.
        let d = deploy_with(json!({"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated", "lastUpdateTime": ago(60), "lastTransitionTime": ago(60)}), stuck.clone());
        let mut s = d.status.clone().unwrap();
        update_progressing(&d, &mut s, Some("web-abc"), Utc::now());
        assert_eq!(reason(&s), ("False".into(), "ProgressDeadlineExceeded".into(), "ReplicaSet \"web-abc\" has timed out progressing.".into()));
        // Still nothing: stays failed.
        let d = deploy_with(condition(&s, "Progressing").map(|c| serde_json::to_value(c).unwrap()).unwrap(), stuck);
        let mut s = d.status.clone().unwrap();
        update_progressing(&d, &mut s, Some("web-abc"), Utc::now());
        assert_eq!(reason(&s).1, "ProgressDeadlineExceeded");
        // Readiness arrives late: every replica available. Complete wins
        // over the earlier failure.
        s.available_replicas = Some(3);
        s.ready_replicas = Some(3);
        update_progressing(&d, &mut s, Some("web-abc"), Utc::now());
        assert_eq!(reason(&s), ("True".into(), "NewReplicaSetAvailable".into(), "ReplicaSet \"web-abc\" has successfully progressed.".into()));
        // Without a new ReplicaSet the message names the Deployment.
        let mut s2 = d.status.clone().unwrap();
        s2.available_replicas = Some(3);
        update_progressing(&d, &mut s2, None, Utc::now());
        assert_eq!(reason(&s2).2, "Deployment \"web\" has successfully progressed.");
    }

    #[test]
    fn complete_rollout_is_not_reestimated() {
        // Complete, then a pod goes unavailable: still NewReplicaSetAvailable
        // (that is the Available condition's business), never timed out.
        let d = deploy_with(
            json!({"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable", "lastUpdateTime": (Utc::now() - chrono::Duration::seconds(600)).to_rfc3339()}),
            json!({"replicas": 3, "updatedReplicas": 3, "availableReplicas": 3, "observedGeneration": 2}),
        );
        let mut s = d.status.clone().unwrap();
        s.available_replicas = Some(2);
        update_progressing(&d, &mut s, Some("web-abc"), Utc::now());
        assert_eq!(reason(&s).1, "NewReplicaSetAvailable");
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
