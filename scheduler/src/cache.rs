//! The **scheduler cache** and its per-cycle **snapshot**. Upstream:
//! `pkg/scheduler/backend/cache` (`cacheImpl`, `Snapshot`).
//!
//! The cache is the scheduler's own view of the cluster: nodes, the pods on
//! them, and — the important twist — *assumed* pods. After choosing a node,
//! the scheduler does not wait for the binding to reach the apiserver and come
//! back through the watch: it **assumes** the pod onto the node in the cache
//! at once, so the next pod already sees those resources as taken, and the
//! binding proceeds in the background. When the watch later reports the pod
//! bound, the assumption is *confirmed*; if binding fails, the assumption is
//! *forgotten* and the pod requeued.
//!
//! A scheduling cycle never reads the cache directly (it is being updated by
//! informers concurrently); it reads a [`Snapshot`] taken at the start of the
//! cycle. Copying 5000 NodeInfos per pod would dominate the cycle, so, like
//! upstream, the snapshot is updated **incrementally**: every change bumps a
//! global generation number and records which node changed; `update_snapshot`
//! copies only nodes changed since the snapshot's generation. NodeInfos are
//! `Arc`-shared between cache and snapshot and copied-on-write
//! (`Arc::make_mut`) when the cache modifies one the snapshot still holds.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};
use machinery::selector::Selector;

use crate::anti_affinity_index::AntiAffinityIndex;
use crate::node_info::{same_pod, NodeInfo, PodInfo};

/// A consistent, immutable view of the cluster for one scheduling cycle.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// All nodes, in a stable order (by name). Differs from upstream, which
    /// interleaves zones (NodeTree) so the partial scan spreads across zones.
    pub nodes: Vec<Arc<NodeInfo>>,
    index: HashMap<String, usize>,
    /// Required anti-affinity counts per distinct term, kept in step with
    /// `nodes` (InterPodAffinity's PreFilter reads it). Replaces upstream's
    /// `HavePodsWithRequiredAntiAffinityList`, which PreFilter had to scan.
    pub anti_affinity: AntiAffinityIndex,
    /// Normalized image name → number of nodes that have it (ImageLocality).
    pub image_num_nodes: Arc<HashMap<String, usize>>,
    /// (namespace, selector) of every Service with a selector (spreading).
    pub service_selectors: Arc<Vec<(String, Selector)>>,
    generation: u64,
    list_version: u64,
    images_version: u64,
    services_version: u64,
}

impl Snapshot {
    pub fn get(&self, name: &str) -> Option<&Arc<NodeInfo>> {
        self.index.get(name).map(|&i| &self.nodes[i])
    }
    pub fn len(&self) -> usize {
        self.nodes.len()
    }
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}

#[derive(Debug, Clone)]
struct PodState {
    info: Arc<PodInfo>,
    node: String,
    assumed: bool,
    binding_finished: bool,
}

/// Errors from cache operations (all are "the caller's view is stale").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CacheError {
    #[error("pod {0} is already in the cache")]
    AlreadyExists(String),
    #[error("pod {0} is not in the cache")]
    NotFound(String),
    #[error("pod {0} is not assumed")]
    NotAssumed(String),
}

/// The scheduler cache. Not internally synchronized: the owner wraps it in a
/// `Mutex` (informer handlers and the scheduling loop share it).
#[derive(Debug, Default)]
pub struct Cache {
    nodes: HashMap<String, Arc<NodeInfo>>,
    /// Pods bound to nodes the cache has not seen (yet): upstream keeps a
    /// node-less NodeInfo for them; we park them until the node arrives.
    orphans: HashMap<String, Vec<Arc<PodInfo>>>,
    pods: HashMap<String, PodState>,
    generation: u64,
    /// generation → node name, for the latest change of each node.
    updated: BTreeMap<u64, String>,
    node_generation: HashMap<String, u64>,
    /// Bumped when the node *set* changes (add/remove): snapshots rebuild.
    list_version: u64,
    image_nodes: HashMap<String, usize>,
    images_version: u64,
    services: BTreeMap<String, (String, Selector)>,
    services_version: u64,
}

impl Cache {
    pub fn new() -> Self {
        Cache { list_version: 1, ..Default::default() }
    }

    fn touch(&mut self, name: &str) {
        self.generation += 1;
        if let Some(old) = self.node_generation.insert(name.to_string(), self.generation) {
            self.updated.remove(&old);
        }
        self.updated.insert(self.generation, name.to_string());
        if let Some(n) = self.nodes.get_mut(name) {
            Arc::make_mut(n).generation = self.generation;
        }
    }

    fn adjust_images(&mut self, ni: &NodeInfo, delta: isize) {
        for img in ni.images.keys() {
            let e = self.image_nodes.entry(img.clone()).or_default();
            *e = (*e as isize + delta).max(0) as usize;
            if *e == 0 {
                self.image_nodes.remove(img);
            }
        }
        if !ni.images.is_empty() {
            self.images_version += 1;
        }
    }

    // ---- nodes ----

    /// Add a node, or update it if known (the pods on it are kept).
    pub fn add_node(&mut self, node: Arc<Node>) {
        let name = node.metadata.name.clone().unwrap_or_default();
        if let Some(existing) = self.nodes.get(&name).cloned() {
            self.adjust_images(&existing, -1);
            let ni = self.nodes.get_mut(&name).unwrap();
            Arc::make_mut(ni).set_node(node);
            let ni = ni.clone();
            self.adjust_images(&ni, 1);
        } else {
            let mut ni = NodeInfo::new(node);
            for p in self.orphans.remove(&name).unwrap_or_default() {
                ni.add_pod(p);
            }
            self.adjust_images(&ni, 1);
            self.nodes.insert(name.clone(), Arc::new(ni));
            self.list_version += 1;
        }
        self.touch(&name);
    }

    pub fn update_node(&mut self, node: Arc<Node>) {
        self.add_node(node)
    }

    /// Remove a node. Pods still recorded on it are parked (their delete
    /// events will follow).
    pub fn remove_node(&mut self, name: &str) {
        if let Some(ni) = self.nodes.remove(name) {
            self.adjust_images(&ni, -1);
            if !ni.pods.is_empty() {
                self.orphans.insert(name.to_string(), ni.pods.clone());
            }
            if let Some(g) = self.node_generation.remove(name) {
                self.updated.remove(&g);
            }
            self.generation += 1;
            self.list_version += 1;
        }
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    pub fn node(&self, name: &str) -> Option<&Arc<NodeInfo>> {
        self.nodes.get(name)
    }

    // ---- pods ----

    fn place(&mut self, node: &str, p: Arc<PodInfo>) {
        if self.nodes.contains_key(node) {
            Arc::make_mut(self.nodes.get_mut(node).unwrap()).add_pod(p);
            self.touch(node);
        } else {
            self.orphans.entry(node.to_string()).or_default().push(p);
        }
    }

    fn unplace(&mut self, node: &str, p: &PodInfo) {
        if self.nodes.contains_key(node) {
            Arc::make_mut(self.nodes.get_mut(node).unwrap()).remove_pod(p);
            self.touch(node);
        } else if let Some(v) = self.orphans.get_mut(node) {
            v.retain(|q| !same_pod(q, p));
        }
    }

    /// Assume `pod` onto `node` before its binding is confirmed.
    pub fn assume_pod(&mut self, pod: Arc<PodInfo>, node: &str) -> Result<(), CacheError> {
        let key = pod.key();
        if self.pods.contains_key(&key) {
            return Err(CacheError::AlreadyExists(key));
        }
        self.place(node, pod.clone());
        self.pods.insert(key, PodState { info: pod, node: node.to_string(), assumed: true, binding_finished: false });
        Ok(())
    }

    /// The binding request returned successfully (the watch event may still be
    /// in flight). Upstream starts the assumed pod's expiry here; since
    /// v1.28 the default expiry is "never", which is what we do.
    pub fn finish_binding(&mut self, key: &str) -> Result<(), CacheError> {
        match self.pods.get_mut(key) {
            Some(s) if s.assumed => {
                s.binding_finished = true;
                Ok(())
            }
            Some(_) => Err(CacheError::NotAssumed(key.into())),
            None => Err(CacheError::NotFound(key.into())),
        }
    }

    /// Binding failed: undo the assumption.
    pub fn forget_pod(&mut self, key: &str) -> Result<(), CacheError> {
        match self.pods.get(key) {
            Some(s) if s.assumed => {
                let s = self.pods.remove(key).unwrap();
                self.unplace(&s.node, &s.info);
                Ok(())
            }
            Some(_) => Err(CacheError::NotAssumed(key.into())),
            None => Err(CacheError::NotFound(key.into())),
        }
    }

    pub fn is_assumed(&self, key: &str) -> bool {
        self.pods.get(key).is_some_and(|s| s.assumed)
    }

    pub fn pod_node(&self, key: &str) -> Option<&str> {
        self.pods.get(key).map(|s| s.node.as_str())
    }

    /// A bound pod appeared (informer add). Confirms an assumption if there is
    /// one (moving the pod if it landed elsewhere). Pods without
    /// `spec.nodeName` are not the cache's business (they are in the queue).
    pub fn add_pod(&mut self, pod: Arc<Pod>) {
        let info = Arc::new(PodInfo::new(pod));
        let Some(node) = info.node_name().map(str::to_string) else { return };
        let key = info.key();
        if let Some(old) = self.pods.remove(&key) {
            self.unplace(&old.node, &old.info);
        }
        self.place(&node, info.clone());
        self.pods.insert(key, PodState { info, node, assumed: false, binding_finished: true });
    }

    /// Informer update: replace the pod's accounting.
    pub fn update_pod(&mut self, pod: Arc<Pod>) {
        self.add_pod(pod)
    }

    /// Informer delete.
    pub fn remove_pod(&mut self, namespace: &str, name: &str) -> Result<(), CacheError> {
        let key = format!("{namespace}/{name}");
        let s = self.pods.remove(&key).ok_or_else(|| CacheError::NotFound(key.clone()))?;
        self.unplace(&s.node, &s.info);
        Ok(())
    }

    pub fn pod_count(&self) -> usize {
        self.pods.len()
    }

    // ---- services (for selector spreading) ----

    /// A Service's selector (None or empty: the Service selects no pods).
    pub fn set_service(&mut self, namespace: &str, name: &str, selector: Option<&BTreeMap<String, String>>) {
        let key = format!("{namespace}/{name}");
        match selector.filter(|s| !s.is_empty()) {
            Some(sel) => {
                let sel = Selector {
                    requirements: sel
                        .iter()
                        .map(|(k, v)| machinery::selector::Requirement {
                            key: k.clone(),
                            op: machinery::selector::Op::Equals,
                            values: vec![v.clone()],
                        })
                        .collect(),
                };
                self.services.insert(key, (namespace.to_string(), sel));
            }
            None => {
                self.services.remove(&key);
            }
        }
        self.services_version += 1;
    }

    pub fn remove_service(&mut self, namespace: &str, name: &str) {
        self.set_service(namespace, name, None)
    }

    // ---- snapshot ----

    /// Bring `snap` up to date, copying only what changed since it was last
    /// updated (upstream `UpdateSnapshot`). Cost: O(changed nodes) in the
    /// common case; O(nodes) when nodes were added or removed. The
    /// anti-affinity index follows: moved along with each changed node,
    /// rebuilt with the node list.
    pub fn update_snapshot(&self, snap: &mut Snapshot) {
        if snap.list_version != self.list_version {
            let mut names: Vec<&String> = self.nodes.keys().collect();
            names.sort();
            snap.nodes = names.iter().map(|n| self.nodes[*n].clone()).collect();
            snap.index = names.iter().enumerate().map(|(i, n)| ((*n).clone(), i)).collect();
            snap.list_version = self.list_version;
            snap.anti_affinity = AntiAffinityIndex::build(&snap.nodes);
        } else {
            for (_, name) in self.updated.range(snap.generation + 1..) {
                if let Some(&i) = snap.index.get(name) {
                    let new = self.nodes[name].clone();
                    snap.anti_affinity.replace_node(&snap.nodes[i], &new);
                    snap.nodes[i] = new;
                }
            }
        }
        if snap.images_version != self.images_version {
            snap.image_num_nodes = Arc::new(self.image_nodes.clone());
            snap.images_version = self.images_version;
        }
        if snap.services_version != self.services_version {
            snap.service_selectors = Arc::new(self.services.values().cloned().collect());
            snap.services_version = self.services_version;
        }
        snap.generation = self.generation;
    }

    /// A fresh snapshot (tests, tools). The scheduling loop should keep one
    /// `Snapshot` and call [`Cache::update_snapshot`] each cycle.
    pub fn snapshot(&self) -> Snapshot {
        let mut s = Snapshot::default();
        self.update_snapshot(&mut s);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node_info::testutil::*;

    fn cache_with_nodes(n: usize) -> Cache {
        let mut c = Cache::new();
        for i in 0..n {
            c.add_node(Arc::new(node(&format!("n{i}"), &[("cpu", "4"), ("memory", "8Gi"), ("pods", "10")])));
        }
        c
    }

    fn bound(name: &str, node: &str, cpu: &str) -> Arc<Pod> {
        let mut p = pod_req(name, &[("cpu", cpu)]);
        p.spec.as_mut().unwrap().node_name = Some(node.into());
        Arc::new(p)
    }

    /// (node, requested milli-cpu, pod count) as the snapshot sees them.
    fn check(c: &mut Cache, snap: &mut Snapshot, expected: &[(&str, i64, usize)]) {
        c.update_snapshot(snap);
        let got: Vec<(String, i64, usize)> =
            snap.nodes.iter().map(|n| (n.name.clone(), n.requested.milli_cpu, n.pods.len())).collect();
        let expected: Vec<(String, i64, usize)> = expected.iter().map(|(n, c, p)| (n.to_string(), *c, *p)).collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn assume_confirm_forget() {
        let mut c = cache_with_nodes(2);
        let mut snap = Snapshot::default();
        check(&mut c, &mut snap, &[("n0", 0, 0), ("n1", 0, 0)]);
        // Assume: visible to the next cycle at once.
        let p = Arc::new(pinfo(pod_req("p", &[("cpu", "1")])));
        c.assume_pod(p.clone(), "n1").unwrap();
        assert!(c.is_assumed("default/p"));
        check(&mut c, &mut snap, &[("n0", 0, 0), ("n1", 1000, 1)]);
        assert_eq!(c.assume_pod(p.clone(), "n0"), Err(CacheError::AlreadyExists("default/p".into())));
        c.finish_binding("default/p").unwrap();
        // Watch confirms the binding: no double counting.
        c.add_pod(bound("p", "n1", "1"));
        assert!(!c.is_assumed("default/p"));
        check(&mut c, &mut snap, &[("n0", 0, 0), ("n1", 1000, 1)]);
        assert_eq!(c.forget_pod("default/p"), Err(CacheError::NotAssumed("default/p".into())));
        // A failed binding: forget undoes the assumption.
        let q = Arc::new(pinfo(pod_req("q", &[("cpu", "2")])));
        c.assume_pod(q, "n0").unwrap();
        check(&mut c, &mut snap, &[("n0", 2000, 1), ("n1", 1000, 1)]);
        c.forget_pod("default/q").unwrap();
        check(&mut c, &mut snap, &[("n0", 0, 0), ("n1", 1000, 1)]);
        assert_eq!(c.forget_pod("default/q"), Err(CacheError::NotFound("default/q".into())));
    }

    #[test]
    fn confirmation_on_another_node_moves_the_pod() {
        let mut c = cache_with_nodes(2);
        let mut snap = Snapshot::default();
        c.assume_pod(Arc::new(pinfo(pod_req("p", &[("cpu", "1")]))), "n0").unwrap();
        c.add_pod(bound("p", "n1", "1"));
        check(&mut c, &mut snap, &[("n0", 0, 0), ("n1", 1000, 1)]);
        c.remove_pod("default", "p").unwrap();
        check(&mut c, &mut snap, &[("n0", 0, 0), ("n1", 0, 0)]);
    }

    #[test]
    fn snapshot_is_isolated_and_incremental() {
        let mut c = cache_with_nodes(3);
        let mut snap = c.snapshot();
        let before = snap.nodes[2].clone();
        c.add_pod(bound("a", "n0", "500m"));
        // The old snapshot is not modified behind the cycle's back.
        assert_eq!(snap.nodes[0].requested.milli_cpu, 0);
        c.update_snapshot(&mut snap);
        assert_eq!(snap.nodes[0].requested.milli_cpu, 500);
        // Untouched nodes are shared, not copied.
        assert!(Arc::ptr_eq(&before, &snap.nodes[2]));
    }

    #[test]
    fn nodes_come_and_go() {
        let mut c = cache_with_nodes(1);
        let mut snap = Snapshot::default();
        // A pod bound to a node not seen yet is kept until the node arrives.
        c.add_pod(bound("early", "n9", "1"));
        check(&mut c, &mut snap, &[("n0", 0, 0)]);
        c.add_node(Arc::new(node("n9", &[("cpu", "2"), ("pods", "10")])));
        check(&mut c, &mut snap, &[("n0", 0, 0), ("n9", 1000, 1)]);
        // Updating a node keeps its pods.
        c.update_node(Arc::new(node("n9", &[("cpu", "8"), ("pods", "10")])));
        c.update_snapshot(&mut snap);
        assert_eq!(snap.get("n9").unwrap().allocatable.milli_cpu, 8000);
        assert_eq!(snap.get("n9").unwrap().pods.len(), 1);
        c.remove_node("n9");
        check(&mut c, &mut snap, &[("n0", 0, 0)]);
        assert_eq!(c.node_count(), 1);
    }

    #[test]
    fn image_counts_follow_nodes() {
        use k8s_openapi::api::core::v1::ContainerImage;
        let mut c = Cache::new();
        for i in 0..3 {
            let mut n = node(&format!("n{i}"), &[]);
            if i < 2 {
                n.status.as_mut().unwrap().images =
                    Some(vec![ContainerImage { names: Some(vec!["nginx:1.25".into()]), size_bytes: Some(100) }]);
            }
            c.add_node(Arc::new(n));
        }
        let snap = c.snapshot();
        assert_eq!(snap.image_num_nodes.get("nginx:1.25"), Some(&2));
        c.remove_node("n0");
        let snap = c.snapshot();
        assert_eq!(snap.image_num_nodes.get("nginx:1.25"), Some(&1));
    }
}
