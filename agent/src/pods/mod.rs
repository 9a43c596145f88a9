//! Pods on this node: the per-pod workers that drive the container runtime
//! ([`worker`]), what they ask the runtime for ([`config`]), and the loop
//! that hands each pod to its worker ([`manager`]). The status pieces they
//! compute are in [`crate::pod_status`], shared with the fake runtime.

pub mod config;
pub mod manager;
pub mod worker;

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::{Pod, PodStatus};
use kube::api::{Patch, PatchParams};
use kube::Api;

/// Writes a pod's status through `pods/<name>/status`. A merge patch of the
/// whole status: lists (conditions, containerStatuses) are replaced whole,
/// and top-level fields we do not set are cleared explicitly.
pub async fn patch_status(api: &Api<Pod>, name: &str, status: &PodStatus) -> Result<Pod> {
    let mut value = serde_json::to_value(status)?;
    for k in ["message", "reason", "nominatedNodeName", "initContainerStatuses", "podIP", "podIPs"] {
        if value.get(k).is_none() {
            value[k] = serde_json::Value::Null;
        }
    }
    let patch = serde_json::json!({ "status": value });
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch)).await.with_context(|| format!("updating status of pod {name}"))
}
