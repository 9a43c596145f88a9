//! Controller expectations (upstream `ControllerExpectations` /
//! `UIDTrackingControllerExpectations` in `pkg/controller/controller_utils.go`).
//!
//! The ReplicaSet controller decides how many pods to create from its
//! informer's cache. Right after it creates 3 pods the cache may not show
//! them yet (the watch is a little behind); a second sync in that window
//! would see "0 pods, want 3" and create 3 more. So before creating N pods
//! the controller *expects* N creations, each pod-add seen by the informer
//! *observes* one, and `manageReplicas` is skipped until the expectations
//! are satisfied (or expire after 5 minutes, in case a watch event was lost
//! for good). Deletions work the same way, tracked by pod key so a pod that
//! was already on its way out is not counted twice.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Upstream `ExpectationsTimeout`.
pub const EXPECTATIONS_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug)]
struct Record {
    add: i64,
    del: i64,
    /// Keys of pods we asked to delete and have not seen go yet.
    deleting: HashSet<String>,
    at: Instant,
}

#[derive(Default)]
pub struct Expectations {
    records: Mutex<HashMap<String, Record>>,
}

impl Expectations {
    /// True when the controller may act on `key` again: nothing is
    /// outstanding, no record exists, or the record is too old to trust.
    pub fn satisfied(&self, key: &str) -> bool {
        let r = self.records.lock().unwrap();
        match r.get(key) {
            None => true,
            Some(e) => (e.add <= 0 && e.del <= 0) || e.at.elapsed() > EXPECTATIONS_TIMEOUT,
        }
    }

    pub fn expect_creations(&self, key: &str, n: usize) {
        self.records.lock().unwrap().insert(
            key.to_string(),
            Record { add: n as i64, del: 0, deleting: HashSet::new(), at: Instant::now() },
        );
    }

    pub fn expect_deletions(&self, key: &str, pods: &[String]) {
        self.records.lock().unwrap().insert(
            key.to_string(),
            Record { add: 0, del: pods.len() as i64, deleting: pods.iter().cloned().collect(), at: Instant::now() },
        );
    }

    /// A pod owned by `key` appeared (or a create we expected failed).
    pub fn creation_observed(&self, key: &str) {
        if let Some(e) = self.records.lock().unwrap().get_mut(key) {
            e.add -= 1;
        }
    }

    /// Pod `pod_key` owned by `key` is gone or going (or the delete failed).
    /// Only pods we asked to delete count, each once.
    pub fn deletion_observed(&self, key: &str, pod_key: &str) {
        if let Some(e) = self.records.lock().unwrap().get_mut(key) {
            if e.deleting.remove(pod_key) {
                e.del -= 1;
            }
        }
    }

    /// The controller object is gone: forget it.
    pub fn delete(&self, key: &str) {
        self.records.lock().unwrap().remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Script: `create N`, `delete p1,p2`, `added`, `gone p1`, `forget`;
    /// `expect` is the satisfied() result after each line as 0/1.
    fn check(script: &str, expect: &str) {
        let e = Expectations::default();
        let mut got = String::new();
        for line in script.split(';').map(str::trim) {
            let (op, arg) = line.split_once(' ').unwrap_or((line, ""));
            match op {
                "create" => e.expect_creations("ns/rs", arg.parse().unwrap()),
                "delete" => e.expect_deletions("ns/rs", &arg.split(',').map(String::from).collect::<Vec<_>>()),
                "added" => e.creation_observed("ns/rs"),
                "gone" => e.deletion_observed("ns/rs", arg),
                "forget" => e.delete("ns/rs"),
                _ => panic!("{op}"),
            }
            got.push(if e.satisfied("ns/rs") { '1' } else { '0' });
        }
        assert_eq!(got, expect, "{script}");
    }

    #[test]
    fn expectations() {
        check("create 2; added; added", "001");
        check("create 2; added; added; added", "0011");
        check("create 0", "1");
        check("delete a,b; gone a; gone a; gone c; gone b", "00001");
        check("create 3; forget", "01");
        check("create 1; delete a; added; gone a", "0001");
    }

    #[tokio::test(start_paused = true)]
    async fn expectations_expire() {
        let e = Expectations::default();
        e.expect_creations("k", 5);
        assert!(!e.satisfied("k"));
        tokio::time::advance(EXPECTATIONS_TIMEOUT + Duration::from_secs(1)).await;
        assert!(e.satisfied("k"));
    }
}
