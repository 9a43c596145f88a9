//! The pod garbage collector (upstream `pkg/controller/podgc`), every
//! `gcCheckPeriod` (20 s):
//!
//! 1. **Terminated pods** (Succeeded/Failed) beyond
//!    `--terminated-pod-gc-threshold` are deleted, oldest first, so
//!    finished Job pods do not pile up forever (0 disables).
//! 2. **Orphaned pods**: bound to a node that no longer exists. No agent
//!    will ever finish them, so they are force-deleted (grace 0). The
//!    node's absence is confirmed with a live read first — upstream
//!    quarantines the node name for 40 s for the same reason: a lagging
//!    cache must not cost running pods.
//! 3. **Unscheduled terminating pods**: deleted before any node took them;
//!    nobody else would finish them either.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::DeleteParams;
use kube::{Api, Client};
use machinery::informer::Store;

use crate::context::Context;
use crate::controller_utils::*;

pub struct PodGc {
    client: Client,
    pods: Store<Pod>,
    nodes: Store<Node>,
    threshold: usize,
    period: std::time::Duration,
}

fn force() -> DeleteParams {
    DeleteParams { grace_period_seconds: Some(0), ..Default::default() }
}

/// The terminated pods to delete: the oldest beyond `threshold`.
pub fn terminated_to_delete(pods: &[Arc<Pod>], threshold: usize) -> Vec<Arc<Pod>> {
    let mut terminated: Vec<Arc<Pod>> = pods.iter().filter(|p| matches!(pod_phase(p), "Succeeded" | "Failed")).cloned().collect();
    if threshold == 0 || terminated.len() <= threshold {
        return Vec::new();
    }
    terminated.sort_by_key(|p| (creation_time(&p.metadata), p.metadata.name.clone()));
    let n = terminated.len() - threshold;
    terminated.truncate(n);
    terminated
}

impl PodGc {
    pub fn new(ctx: &Context) -> Arc<Self> {
        Arc::new(PodGc {
            client: ctx.client.clone(),
            pods: ctx.informers.pods().store(),
            nodes: ctx.informers.nodes().store(),
            threshold: ctx.opts.terminated_pod_gc_threshold,
            period: ctx.opts.pod_gc_period,
        })
    }

    pub async fn run(self: Arc<Self>, gate: Gate) {
        let mut tick = tokio::time::interval(self.period);
        loop {
            tick.tick().await;
            if !gate.open() {
                return;
            }
            if let Err(e) = self.gc().await {
                tracing::warn!(error = %format!("{e:#}"), "pod gc failed");
            }
        }
    }

    pub async fn gc(&self) -> anyhow::Result<()> {
        let pods = self.pods.list();
        for p in terminated_to_delete(&pods, self.threshold) {
            tracing::info!(pod = %format!("{}/{}", ns(&p.metadata), name(&p.metadata)), "deleting terminated pod");
            self.delete(&p).await?;
        }
        let node_api: Api<Node> = Api::all(self.client.clone());
        let mut missing: std::collections::HashMap<String, bool> = Default::default();
        for p in &pods {
            let node = pod_node(p);
            if node.is_empty() {
                if is_deleting(&p.metadata) {
                    tracing::info!(pod = %format!("{}/{}", ns(&p.metadata), name(&p.metadata)), "deleting unscheduled terminating pod");
                    self.delete(p).await?;
                }
                continue;
            }
            if self.nodes.get(node).is_some() {
                continue;
            }
            let gone = match missing.get(node) {
                Some(g) => *g,
                None => {
                    let g = node_api.get_opt(node).await?.is_none();
                    missing.insert(node.to_string(), g);
                    g
                }
            };
            if gone {
                tracing::info!(pod = %format!("{}/{}", ns(&p.metadata), name(&p.metadata)), node, "deleting pod bound to a node that no longer exists");
                self.delete(p).await?;
            }
        }
        Ok(())
    }

    async fn delete(&self, p: &Pod) -> anyhow::Result<()> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns(&p.metadata));
        delete_ignore_missing(&api, name(&p.metadata), &force()).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(pods: &[(&str, &str, i64)], threshold: usize, expect: &[&str]) {
        let now = chrono::Utc::now();
        let pods: Vec<Arc<Pod>> = pods
            .iter()
            .map(|(n, phase, age)| {
                Arc::new(serde_json::from_value(json!({"metadata": {"name": n, "creationTimestamp": (now - chrono::Duration::seconds(*age)).to_rfc3339()}, "status": {"phase": phase}})).unwrap())
            })
            .collect();
        let got: Vec<String> = terminated_to_delete(&pods, threshold).iter().map(|p| name(&p.metadata).to_string()).collect();
        assert_eq!(got, expect);
    }

    #[test]
    fn terminated_pods_beyond_the_threshold_go_oldest_first() {
        let pods = [("a", "Succeeded", 30), ("b", "Failed", 50), ("c", "Running", 100), ("d", "Succeeded", 10), ("e", "Failed", 40)];
        check(&pods, 2, &["b", "e"]);
        check(&pods, 4, &[]);
        check(&pods, 0, &[]); // disabled
        check(&pods, 1, &["b", "e", "a"]);
    }
}
