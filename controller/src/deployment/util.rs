//! Deployment arithmetic (upstream `pkg/controller/deployment/util`):
//! revisions, the pod-template hash, maxSurge/maxUnavailable, and the
//! "how many pods may the new ReplicaSet have now" rule. No IO.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

pub const REVISION: &str = "deployment.kubernetes.io/revision";
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
pub const HASH_LABEL: &str = "pod-template-hash";

/// Deployment annotations that are not copied to its ReplicaSets.
const SKIP_COPY: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    REVISION_HISTORY,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "deprecated.deployment.rollback.to",
];

pub fn replicas(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

pub fn rs_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

pub fn rs_status(rs: &ReplicaSet) -> (i32, i32, i32) {
    let s = rs.status.clone().unwrap_or_default();
    (s.replicas, s.ready_replicas.unwrap_or(0), s.available_replicas.unwrap_or(0))
}

pub fn revision(rs: &ReplicaSet) -> i64 {
    annotation(&rs.metadata.annotations, REVISION).and_then(|r| r.parse().ok()).unwrap_or(0)
}

pub fn annotation<'a>(a: &'a Option<BTreeMap<String, String>>, key: &str) -> Option<&'a str> {
    a.as_ref()?.get(key).map(String::as_str)
}

pub fn is_rolling_update(d: &Deployment) -> bool {
    d.spec.as_ref().and_then(|s| s.strategy.as_ref()).and_then(|s| s.type_.as_deref()).unwrap_or("RollingUpdate") == "RollingUpdate"
}

pub fn progress_deadline(d: &Deployment) -> Option<i32> {
    d.spec.as_ref().and_then(|s| s.progress_deadline_seconds)
}

/// Upstream `GetScaledValueFromIntOrPercent`: `3` or `"25%"` of `total`.
pub fn scaled_value(v: &IntOrString, total: i32, round_up: bool) -> Result<i32, String> {
    match v {
        IntOrString::Int(i) => Ok(*i),
        IntOrString::String(s) => {
            let p: f64 = s.strip_suffix('%').and_then(|n| n.parse().ok()).ok_or_else(|| format!("invalid value for IntOrString: invalid value {s:?}"))?;
            let x = p * total as f64 / 100.0;
            Ok(if round_up { x.ceil() } else { x.floor() } as i32)
        }
    }
}

/// Upstream `ResolveFenceposts`: (maxSurge, maxUnavailable) as numbers;
/// surge rounds up, unavailable down; both 0 would deadlock, so
/// unavailable becomes 1.
pub fn fenceposts(d: &Deployment) -> (i32, i32) {
    let ru = d.spec.as_ref().and_then(|s| s.strategy.as_ref()).and_then(|s| s.rolling_update.clone()).unwrap_or_default();
    let total = replicas(d);
    let pct25 = IntOrString::String("25%".into());
    let surge = scaled_value(ru.max_surge.as_ref().unwrap_or(&pct25), total, true).unwrap_or(0);
    let unavailable = scaled_value(ru.max_unavailable.as_ref().unwrap_or(&pct25), total, false).unwrap_or(0);
    if surge == 0 && unavailable == 0 {
        return (0, 1);
    }
    (surge, unavailable)
}

pub fn max_surge(d: &Deployment) -> i32 {
    if !is_rolling_update(d) {
        return 0;
    }
    fenceposts(d).0
}

pub fn max_unavailable(d: &Deployment) -> i32 {
    if !is_rolling_update(d) || replicas(d) == 0 {
        return 0;
    }
    fenceposts(d).1.min(replicas(d))
}

/// Upstream `NewRSNewReplicas` for RollingUpdate: grow the new ReplicaSet
/// as far as `replicas + maxSurge` total pods allows; Recreate: all at once.
pub fn new_rs_new_replicas(d: &Deployment, all: &[ReplicaSet], new_rs: &ReplicaSet) -> i32 {
    if !is_rolling_update(d) {
        return replicas(d);
    }
    let current: i32 = all.iter().map(rs_replicas).sum();
    let max_total = replicas(d) + max_surge(d);
    if current >= max_total {
        return rs_replicas(new_rs);
    }
    let up = (max_total - current).min(replicas(d) - rs_replicas(new_rs));
    rs_replicas(new_rs) + up
}

/// Templates equal apart from the pod-template-hash label (upstream
/// `EqualIgnoreHash`): how a Deployment recognises its ReplicaSet for the
/// current template — and finds the old one again on rollback.
pub fn equal_ignore_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    let strip = |t: &PodTemplateSpec| {
        let mut t = t.clone();
        if let Some(m) = t.metadata.as_mut() {
            if let Some(l) = m.labels.as_mut() {
                l.remove(HASH_LABEL);
                if l.is_empty() {
                    m.labels = None;
                }
            }
        }
        t
    };
    strip(a) == strip(b)
}

/// The pod-template-hash: FNV-32a of the template (upstream hashes Go's
/// printed struct; we hash its JSON, so values differ from Kubernetes' but
/// have the same properties), plus the collision count, written with
/// upstream's `SafeEncodeString` alphabet.
pub fn template_hash(t: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let mut h: u32 = 0x811c9dc5;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            h ^= *b as u32;
            h = h.wrapping_mul(0x01000193);
        }
    };
    feed(serde_json::to_string(t).unwrap_or_default().as_bytes());
    if let Some(c) = collision_count {
        feed(&(c as u32).to_le_bytes());
    }
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    h.to_string().bytes().map(|b| ALPHANUMS[b as usize % ALPHANUMS.len()] as char).collect()
}

/// Upstream `SetNewReplicaSetAnnotations`: copy the deployment's
/// annotations, bump the revision (remembering the old one in
/// revision-history, as a rollback re-uses an old ReplicaSet), and on a
/// new ReplicaSet the replicas annotations. True when anything changed.
pub fn set_new_rs_annotations(d: &Deployment, rs: &mut ReplicaSet, new_revision: i64, exists: bool) -> bool {
    let mut changed = false;
    let ann = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    for (k, v) in d.metadata.annotations.iter().flatten() {
        if SKIP_COPY.contains(&k.as_str()) || ann.get(k) == Some(v) {
            continue;
        }
        ann.insert(k.clone(), v.clone());
        changed = true;
    }
    let old: i64 = ann.get(REVISION).and_then(|r| r.parse().ok()).unwrap_or(0);
    if old < new_revision {
        if old > 0 {
            let mut history: Vec<String> = ann.get(REVISION_HISTORY).map(|h| h.split(',').map(String::from).collect()).unwrap_or_default();
            history.push(old.to_string());
            ann.insert(REVISION_HISTORY.into(), history.join(","));
        }
        ann.insert(REVISION.into(), new_revision.to_string());
        changed = true;
    }
    if !exists {
        changed |= set_replicas_annotations(rs, replicas(d), replicas(d) + max_surge(d));
    }
    changed
}

/// desired-replicas / max-replicas: what the deployment wanted when it last
/// sized this ReplicaSet (used for proportional scaling). True if changed.
pub fn set_replicas_annotations(rs: &mut ReplicaSet, desired: i32, max: i32) -> bool {
    let ann = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    let mut changed = false;
    for (k, v) in [(DESIRED_REPLICAS, desired), (MAX_REPLICAS, max)] {
        if ann.get(k).map(String::as_str) != Some(v.to_string().as_str()) {
            ann.insert(k.into(), v.to_string());
            changed = true;
        }
    }
    changed
}

/// Upstream `IsSaturated`: the new ReplicaSet has all the replicas and all
/// are available.
pub fn is_saturated(d: &Deployment, rs: Option<&ReplicaSet>) -> bool {
    let Some(rs) = rs else { return false };
    let desired: Option<i32> = annotation(&rs.metadata.annotations, DESIRED_REPLICAS).and_then(|v| v.parse().ok());
    rs_replicas(rs) == replicas(d) && desired == Some(replicas(d)) && rs_status(rs).2 == replicas(d)
}

pub fn condition<'a>(s: &'a DeploymentStatus, type_: &str) -> Option<&'a DeploymentCondition> {
    s.conditions.as_ref()?.iter().find(|c| c.type_ == type_)
}

pub fn new_condition(type_: &str, status: &str, reason: &str, message: &str) -> DeploymentCondition {
    let now = Some(Time(chrono::Utc::now()));
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_update_time: now.clone(),
        last_transition_time: now,
    }
}

/// Upstream `SetDeploymentCondition`: replace the condition of that type,
/// keeping lastTransitionTime when the status did not change; a condition
/// identical in status and reason is left alone.
pub fn set_condition(s: &mut DeploymentStatus, mut c: DeploymentCondition) {
    let conds = s.conditions.get_or_insert_with(Vec::new);
    if let Some(cur) = conds.iter().find(|x| x.type_ == c.type_) {
        if cur.status == c.status && cur.reason == c.reason {
            return;
        }
        if cur.status == c.status {
            c.last_transition_time = cur.last_transition_time.clone();
        }
    }
    conds.retain(|x| x.type_ != c.type_);
    conds.push(c);
}

pub fn remove_condition(s: &mut DeploymentStatus, type_: &str) {
    if let Some(c) = s.conditions.as_mut() {
        c.retain(|x| x.type_ != type_);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deploy(replicas: i32, surge: serde_json::Value, unavailable: serde_json::Value) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": "d"},
            "spec": {"replicas": replicas, "selector": {}, "template": {},
                     "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}}}
        }))
        .unwrap()
    }

    fn check(replicas: i32, surge: serde_json::Value, unavailable: serde_json::Value, expect: (i32, i32)) {
        let d = deploy(replicas, surge.clone(), unavailable.clone());
        assert_eq!((max_surge(&d), max_unavailable(&d)), expect, "replicas={replicas} surge={surge} unavailable={unavailable}");
    }

    #[test]
    fn surge_and_unavailable() {
        check(4, json!("25%"), json!("25%"), (1, 1));
        check(10, json!("25%"), json!("25%"), (3, 2)); // surge rounds up, unavailable down
        check(3, json!(1), json!(0), (1, 0));
        check(3, json!(0), json!(0), (0, 1)); // both zero would never progress
        check(3, json!(0), json!("10%"), (0, 1)); // 0.3 rounds down to 0 → 1
        check(2, json!(1), json!(5), (1, 2)); // capped at replicas
        check(1, json!("100%"), json!("0%"), (1, 0));
    }

    fn rs(replicas: i32) -> ReplicaSet {
        serde_json::from_value(json!({"metadata": {"name": "r"}, "spec": {"replicas": replicas, "selector": {}}})).unwrap()
    }

    #[test]
    fn new_replica_set_grows_within_surge() {
        let d = deploy(3, json!(1), json!(0));
        // old 3 + new 0: one surge pod.
        assert_eq!(new_rs_new_replicas(&d, &[rs(3), rs(0)], &rs(0)), 1);
        // old 3 + new 1 = 4 = max: no more.
        assert_eq!(new_rs_new_replicas(&d, &[rs(3), rs(1)], &rs(1)), 1);
        // old 2 + new 1: one more.
        assert_eq!(new_rs_new_replicas(&d, &[rs(2), rs(1)], &rs(1)), 2);
        // never beyond replicas.
        assert_eq!(new_rs_new_replicas(&d, &[rs(0), rs(3)], &rs(3)), 3);
    }

    #[test]
    fn hash_is_stable_and_changes_with_template_and_collisions() {
        let t1: PodTemplateSpec = serde_json::from_value(json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "v1"}]}})).unwrap();
        let mut t2 = t1.clone();
        t2.spec.as_mut().unwrap().containers[0].image = Some("v2".into());
        let h = template_hash(&t1, None);
        assert_eq!(h, template_hash(&t1.clone(), None));
        assert_ne!(h, template_hash(&t2, None));
        assert_ne!(h, template_hash(&t1, Some(1)));
        assert!(h.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)), "{h}");
        // The hash label does not make templates different.
        let mut t3 = t1.clone();
        t3.metadata.as_mut().unwrap().labels.as_mut().unwrap().insert(HASH_LABEL.into(), h);
        assert!(equal_ignore_hash(&t1, &t3));
        assert!(!equal_ignore_hash(&t1, &t2));
    }

    #[test]
    fn revisions_move_forward_and_remember_history() {
        let d = deploy(3, json!(1), json!(0));
        let mut r = rs(3);
        assert!(set_new_rs_annotations(&d, &mut r, 1, false));
        assert_eq!(annotation(&r.metadata.annotations, REVISION), Some("1"));
        assert_eq!(annotation(&r.metadata.annotations, MAX_REPLICAS), Some("4"));
        assert!(!set_new_rs_annotations(&d, &mut r, 1, true));
        assert!(set_new_rs_annotations(&d, &mut r, 3, true));
        assert_eq!(annotation(&r.metadata.annotations, REVISION), Some("3"));
        assert_eq!(annotation(&r.metadata.annotations, REVISION_HISTORY), Some("1"));
    }
}
