//! Priority **ImageLocality**: prefer nodes that already have the pod's
//! container images, so it starts without a pull. Upstream plugin
//! `ImageLocality`, same formula:
//!
//! * each image present on the node contributes `size × (nodes having it /
//!   all nodes)` — scaled by spread so that an image on *every* node does
//!   not drag all pods to one node ("node heating");
//! * the sum is clamped to `[23 MiB, 1000 MiB × number of containers]` and
//!   mapped linearly to 0..=100.

use super::{Priority, MAX_NODE_SCORE};
use crate::cache::Snapshot;
use crate::framework::CycleState;
use crate::node_info::{normalize_image_name, NodeInfo, PodInfo};

pub const NAME: &str = "ImageLocality";

const MB: i64 = 1024 * 1024;
const MIN_THRESHOLD: i64 = 23 * MB;
const MAX_CONTAINER_THRESHOLD: i64 = 1000 * MB;

/// Upstream `calculatePriority`.
pub fn calculate_priority(sum: i64, num_containers: usize) -> i64 {
    let max_threshold = MAX_CONTAINER_THRESHOLD * num_containers as i64;
    let sum = if sum < MIN_THRESHOLD { MIN_THRESHOLD } else { sum.min(max_threshold.max(MIN_THRESHOLD)) };
    if max_threshold <= MIN_THRESHOLD {
        return 0;
    }
    MAX_NODE_SCORE * (sum - MIN_THRESHOLD) / (max_threshold - MIN_THRESHOLD)
}

pub struct ImageLocality;

impl Priority for ImageLocality {
    fn name(&self) -> &'static str {
        NAME
    }
    fn pre_score(&self, state: &mut CycleState, pod: &PodInfo, snapshot: &Snapshot) {
        state.total_nodes = snapshot.len();
        state.image_num_nodes = snapshot.image_num_nodes.clone();
        state.pod_images.clear();
        if let Some(spec) = pod.pod.spec.as_ref() {
            for c in spec.init_containers.iter().flatten().chain(spec.containers.iter()) {
                state.pod_images.push(normalize_image_name(c.image.as_deref().unwrap_or("")));
            }
        }
    }
    fn score(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> i64 {
        if node.images.is_empty() || state.total_nodes == 0 {
            return calculate_priority(0, state.pod_images.len());
        }
        let mut sum = 0i64;
        for img in &state.pod_images {
            if let Some(size) = node.images.get(img) {
                let num_nodes = state.image_num_nodes.get(img).copied().unwrap_or(1);
                sum += (*size as f64 * (num_nodes as f64 / state.total_nodes as f64)) as i64;
            }
        }
        calculate_priority(sum, state.pod_images.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::Cache;
    use crate::node_info::testutil::*;
    use k8s_openapi::api::core::v1::ContainerImage;
    use std::sync::Arc;

    /// `nodes`: images (name, MiB) per node; returns the score on node 0.
    fn check(nodes: Vec<Vec<(&str, i64)>>, pod_images: &[&str], expected: i64) {
        let mut cache = Cache::new();
        for (i, imgs) in nodes.iter().enumerate() {
            let mut n = node(&format!("n{i}"), &[]);
            n.status.as_mut().unwrap().images = Some(
                imgs.iter()
                    .map(|(name, mib)| ContainerImage { names: Some(vec![name.to_string()]), size_bytes: Some(mib * MB) })
                    .collect(),
            );
            cache.add_node(Arc::new(n));
        }
        let snap = cache.snapshot();
        let mut p = pod("p", pod_images.iter().map(|_| container(&[])).collect());
        for (c, img) in p.spec.as_mut().unwrap().containers.iter_mut().zip(pod_images) {
            c.image = Some(img.to_string());
        }
        let pi = pinfo(p);
        let mut state = CycleState::default();
        ImageLocality.pre_score(&mut state, &pi, &snap);
        assert_eq!(ImageLocality.score(&state, &pi, snap.get("n0").unwrap()), expected);
    }

    #[test]
    fn image_locality() {
        // Image absent: 0.
        check(vec![vec![]], &["nginx"], 0);
        // 500 MiB image on the only node: (500-23)*100/(1000-23) = 48.
        check(vec![vec![("nginx:latest", 500)]], &["nginx"], 48);
        // "nginx" means "nginx:latest".
        check(vec![vec![("nginx", 500)]], &["nginx:latest"], 48);
        // Same image on 1 of 2 nodes: size scaled by spread 1/2 -> 250 MiB -> 23.
        check(vec![vec![("nginx:latest", 500)], vec![]], &["nginx"], 23);
        // Tiny image below the 23 MiB threshold: 0.
        check(vec![vec![("pause:3.10", 1)]], &["pause:3.10"], 0);
        // Huge image clamped to 1000 MiB per container: 100.
        check(vec![vec![("big:1", 5000)]], &["big:1"], 100);
        // Two containers, one image present: threshold doubles.
        check(vec![vec![("a:1", 1000)]], &["a:1", "b:1"], 49);
        // Pod without containers: no panic, 0.
        check(vec![vec![("a:1", 1000)]], &[], 0);
    }
}
