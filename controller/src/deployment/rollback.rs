//! Rollback (`kubectl rollout undo`).
//!
//! In apps/v1 there is no rollback API: kubectl reads the ReplicaSet of the
//! wanted revision (by its `deployment.kubernetes.io/revision` annotation),
//! and writes that ReplicaSet's template (minus `pod-template-hash`) back
//! into the Deployment. To the controller this is an ordinary template
//! change, with one twist: a ReplicaSet for that template already exists.
//! [`find_new_rs`] finds it by comparing templates while ignoring the hash
//! label, so the old ReplicaSet is scaled up again (and gets the next
//! revision number, its old one going to `revision-history`) instead of a
//! duplicate being created.

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};

use super::util::equal_ignore_hash;

/// Upstream `FindNewReplicaSet`: the oldest ReplicaSet whose template equals
/// the Deployment's (ignoring the hash label). Oldest first, so that if two
/// ever match (a hash collision race) the choice is stable.
pub fn find_new_rs(d: &Deployment, rs_list: &[ReplicaSet]) -> Option<ReplicaSet> {
    let template = d.spec.as_ref()?.template.clone();
    let mut sorted: Vec<&ReplicaSet> = rs_list.iter().collect();
    sorted.sort_by(|a, b| {
        (a.metadata.creation_timestamp.as_ref().map(|t| t.0), a.metadata.name.as_deref())
            .cmp(&(b.metadata.creation_timestamp.as_ref().map(|t| t.0), b.metadata.name.as_deref()))
    });
    sorted.into_iter().find(|rs| rs.spec.as_ref().and_then(|s| s.template.as_ref()).is_some_and(|t| equal_ignore_hash(t, &template))).cloned()
}

/// The ReplicaSets other than `new_rs`.
pub fn old_rss(rs_list: &[ReplicaSet], new_rs: Option<&ReplicaSet>) -> Vec<ReplicaSet> {
    rs_list.iter().filter(|rs| new_rs.is_none_or(|n| n.metadata.uid != rs.metadata.uid)).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rs(name: &str, created: &str, image: &str) -> ReplicaSet {
        serde_json::from_value(json!({
            "metadata": {"name": name, "uid": name, "creationTimestamp": created},
            "spec": {"selector": {}, "template": {"metadata": {"labels": {"app": "web", "pod-template-hash": name}},
                     "spec": {"containers": [{"name": "c", "image": image}]}}}
        }))
        .unwrap()
    }

    fn check(image: &str, expect: Option<&str>) {
        let d: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "web"},
            "spec": {"selector": {}, "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": image}]}}}
        }))
        .unwrap();
        let list = [rs("v2", "2024-01-02T00:00:00Z", "v2"), rs("v1", "2024-01-01T00:00:00Z", "v1"), rs("v1b", "2024-01-03T00:00:00Z", "v1")];
        let found = find_new_rs(&d, &list);
        assert_eq!(found.as_ref().and_then(|r| r.metadata.name.as_deref()), expect, "image {image}");
        assert_eq!(old_rss(&list, found.as_ref()).len(), if expect.is_some() { 2 } else { 3 });
    }

    #[test]
    fn rollback_finds_the_old_replica_set_by_template() {
        check("v2", Some("v2"));
        check("v1", Some("v1")); // the oldest of two equal templates
        check("v3", None);
    }
}
