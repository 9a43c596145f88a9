//! NodeInfo: what the scheduler knows about one node — its allocatable
//! resources, the resources already requested by the pods on it, those pods,
//! the host ports they use and the images present. Upstream:
//! `pkg/scheduler/framework/types.go` (`NodeInfo`, `PodInfo`, `Resource`).
//!
//! Everything a predicate or priority needs from a pod is computed **once**
//! when the pod enters the scheduler (`PodInfo::new`), not on every node it is
//! checked against: quantities parsed, requests summed, selectors compiled.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Container, Node, Pod, PodAffinityTerm, ResourceRequirements, Taint, Toleration};
use machinery::quantity;
use machinery::selector::Selector;

/// Upstream `DefaultMilliCPURequest`: the CPU a container without a CPU
/// request is *assumed* to use when **scoring** (never when filtering), so
/// that best-effort pods are not all piled onto one node.
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// Upstream `DefaultMemoryRequest`: 200 MiB, same purpose.
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

/// The resources the scheduler accounts for (upstream `framework.Resource`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
    /// Pod count (only meaningful for allocatable).
    pub allowed_pods: i64,
    /// Extended resources (`nvidia.com/gpu`, `hugepages-2Mi`, ...), sorted by name.
    pub scalar: Vec<(String, i64)>,
}

fn is_scalar_resource(name: &str) -> bool {
    // Upstream `IsScalarResourceName`: extended (domain-prefixed, not
    // kubernetes.io), hugepages-*, attachable-volumes-*.
    (name.contains('/') && !name.starts_with("kubernetes.io/"))
        || name.starts_with("hugepages-")
        || name.starts_with("attachable-volumes-")
}

impl Resources {
    /// From a `ResourceList` (requests or allocatable). Malformed quantities
    /// count as zero: the apiserver rejects them, so a scheduler that sees one
    /// must not crash over it.
    pub fn from_list(list: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>) -> Self {
        let mut r = Resources::default();
        for (name, q) in list.into_iter().flatten() {
            let s = q.0.as_str();
            match name.as_str() {
                "cpu" => r.milli_cpu = quantity::parse_milli(s).unwrap_or(0),
                "memory" => r.memory = quantity::parse_value(s).unwrap_or(0),
                "ephemeral-storage" => r.ephemeral_storage = quantity::parse_value(s).unwrap_or(0),
                "pods" => r.allowed_pods = quantity::parse_value(s).unwrap_or(0),
                n if is_scalar_resource(n) => r.set_scalar(n, quantity::parse_value(s).unwrap_or(0)),
                _ => {}
            }
        }
        r
    }

    pub fn scalar(&self, name: &str) -> i64 {
        self.scalar.iter().find(|(n, _)| n == name).map_or(0, |(_, v)| *v)
    }

    fn set_scalar(&mut self, name: &str, v: i64) {
        match self.scalar.binary_search_by(|(n, _)| n.as_str().cmp(name)) {
            Ok(i) => self.scalar[i].1 = v,
            Err(i) => self.scalar.insert(i, (name.to_string(), v)),
        }
    }

    pub fn add(&mut self, o: &Resources) {
        self.milli_cpu += o.milli_cpu;
        self.memory += o.memory;
        self.ephemeral_storage += o.ephemeral_storage;
        self.allowed_pods += o.allowed_pods;
        for (n, v) in &o.scalar {
            let cur = self.scalar(n);
            self.set_scalar(n, cur + v);
        }
    }

    pub fn sub(&mut self, o: &Resources) {
        self.milli_cpu -= o.milli_cpu;
        self.memory -= o.memory;
        self.ephemeral_storage -= o.ephemeral_storage;
        self.allowed_pods -= o.allowed_pods;
        for (n, v) in &o.scalar {
            let cur = self.scalar(n);
            self.set_scalar(n, cur - v);
        }
    }

    /// Component-wise max (how an init container's request combines).
    pub fn max_with(&mut self, o: &Resources) {
        self.milli_cpu = self.milli_cpu.max(o.milli_cpu);
        self.memory = self.memory.max(o.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(o.ephemeral_storage);
        for (n, v) in &o.scalar {
            let cur = self.scalar(n);
            self.set_scalar(n, cur.max(*v));
        }
    }

    pub fn is_zero(&self) -> bool {
        self.milli_cpu == 0 && self.memory == 0 && self.ephemeral_storage == 0 && self.scalar.iter().all(|(_, v)| *v == 0)
    }
}

fn requests_of(r: Option<&ResourceRequirements>) -> Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>> {
    r.and_then(|r| r.requests.as_ref())
}

/// The resources a container asks for, with the **scoring** defaults applied
/// to CPU and memory when the request is *absent* (an explicit `0` stays 0),
/// as upstream `GetNonzeroRequestForResource`.
fn container_non_zero(c: &Container) -> Resources {
    let list = requests_of(c.resources.as_ref());
    let mut r = Resources::from_list(list);
    if !list.is_some_and(|l| l.contains_key("cpu")) {
        r.milli_cpu = DEFAULT_MILLI_CPU_REQUEST;
    }
    if !list.is_some_and(|l| l.contains_key("memory")) {
        r.memory = DEFAULT_MEMORY_REQUEST;
    }
    r
}

/// A pod's effective request, as upstream `resource.PodRequests` computes it:
///
/// * regular containers run together: their requests **add up**;
/// * classic init containers run one at a time before them: the pod needs the
///   **largest** of them, so the effective request is
///   `max(sum(containers), max(each init container))`;
/// * sidecars (init containers with `restartPolicy: Always`, KEP-753) keep
///   running: they add to the sum and to every later init container;
/// * `spec.overhead` (RuntimeClass overhead) is added on top.
///
/// `per_container` maps a container to its request (plain or non-zero).
fn pod_requests(pod: &Pod, per_container: impl Fn(&Container) -> Resources) -> Resources {
    let Some(spec) = pod.spec.as_ref() else { return Resources::default() };
    let mut reqs = Resources::default();
    for c in &spec.containers {
        reqs.add(&per_container(c));
    }
    let mut sidecars = Resources::default();
    let mut init_max = Resources::default();
    for c in spec.init_containers.iter().flatten() {
        let r = per_container(c);
        if c.restart_policy.as_deref() == Some("Always") {
            reqs.add(&r);
            sidecars.add(&r);
            init_max.max_with(&sidecars);
        } else {
            let mut tmp = r;
            tmp.add(&sidecars);
            init_max.max_with(&tmp);
        }
    }
    reqs.max_with(&init_max);
    if let Some(overhead) = spec.overhead.as_ref() {
        reqs.add(&Resources::from_list(Some(overhead)));
    }
    reqs.allowed_pods = 0;
    reqs
}

/// Requests used for **filtering** (does it fit?).
pub fn compute_pod_requests(pod: &Pod) -> Resources {
    pod_requests(pod, |c| Resources::from_list(requests_of(c.resources.as_ref())))
}

/// Requests used for **scoring**, with 100m / 200Mi defaults for absent CPU
/// and memory requests.
pub fn compute_non_zero_requests(pod: &Pod) -> Resources {
    pod_requests(pod, container_non_zero)
}

/// A host port a pod binds on the node: (hostIP, protocol, port).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    pub ip: String,
    pub protocol: String,
    pub port: i32,
}

impl HostPort {
    /// Upstream `HostPortInfo` semantics: same protocol and port conflict if
    /// either side listens on every address (0.0.0.0) or both on the same IP.
    pub fn conflicts(&self, o: &HostPort) -> bool {
        self.port == o.port
            && self.protocol == o.protocol
            && (self.ip == o.ip || self.ip == "0.0.0.0" || o.ip == "0.0.0.0")
    }
}

/// A compiled `PodAffinityTerm`: which pods (selector + namespaces) must not
/// (anti-affinity) share a topology domain (`topologyKey`) with this pod.
///
/// `Eq` + `Hash`: two terms equal field by field select the same pods in the
/// same domains, so the anti-affinity index counts by *distinct* term (all
/// replicas of a Deployment carry one term).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AffinityTerm {
    /// `None` = nil labelSelector, which matches no pod.
    pub selector: Option<Selector>,
    /// Namespaces the selector applies to. Empty and `all_namespaces` false
    /// means "the pod's own namespace" (already filled in).
    pub namespaces: Vec<String>,
    /// `namespaceSelector: {}` selects every namespace. A non-empty
    /// namespaceSelector would need namespace labels, which the pure
    /// algorithm does not have: **differs from upstream**, such terms match
    /// the listed namespaces only.
    pub all_namespaces: bool,
    pub topology_key: String,
}

impl AffinityTerm {
    fn new(pod_ns: &str, t: &PodAffinityTerm) -> Self {
        let selector = t.label_selector.as_ref().map(|ls| {
            // An invalid selector matches nothing (upstream fails the pod).
            Selector::from_label_selector(ls).ok()
        });
        let selector = selector.flatten();
        let all_namespaces = t.namespace_selector.as_ref().is_some_and(|ns| {
            ns.match_labels.as_ref().is_none_or(|m| m.is_empty())
                && ns.match_expressions.as_ref().is_none_or(|e| e.is_empty())
        });
        let mut namespaces = t.namespaces.clone().unwrap_or_default();
        if namespaces.is_empty() && t.namespace_selector.is_none() {
            namespaces.push(pod_ns.to_string());
        }
        AffinityTerm { selector, namespaces, all_namespaces, topology_key: t.topology_key.clone() }
    }

    /// Does this term select `pod`? (upstream `AffinityTerm.Matches`)
    pub fn matches(&self, pod: &PodInfo) -> bool {
        let ns_ok = self.all_namespaces || self.namespaces.iter().any(|n| *n == pod.namespace);
        ns_ok && self.selector.as_ref().is_some_and(|s| s.matches(&pod.labels))
    }
}

/// A pod, with everything the scheduler needs precomputed.
#[derive(Debug, Clone)]
pub struct PodInfo {
    pub pod: Arc<Pod>,
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub labels: BTreeMap<String, String>,
    /// `spec.priority` (0 if unset).
    pub priority: i32,
    /// For "does it fit".
    pub requests: Resources,
    /// For scoring (100m/200Mi defaults).
    pub non_zero: Resources,
    pub host_ports: Vec<HostPort>,
    pub required_anti_affinity: Vec<AffinityTerm>,
    /// UID of the controlling owner (ReplicaSet, StatefulSet...), used by
    /// selector spreading.
    pub controller_uid: Option<String>,
}

impl PodInfo {
    pub fn new(pod: Arc<Pod>) -> Self {
        let meta = &pod.metadata;
        let namespace = meta.namespace.clone().unwrap_or_else(|| "default".to_string());
        let spec = pod.spec.as_ref();
        let mut host_ports = Vec::new();
        for c in spec.map(|s| s.containers.as_slice()).unwrap_or(&[]) {
            for p in c.ports.iter().flatten() {
                if let Some(hp) = p.host_port.filter(|p| *p > 0) {
                    host_ports.push(HostPort {
                        ip: p.host_ip.clone().filter(|s| !s.is_empty()).unwrap_or_else(|| "0.0.0.0".into()),
                        protocol: p.protocol.clone().filter(|s| !s.is_empty()).unwrap_or_else(|| "TCP".into()),
                        port: hp,
                    });
                }
            }
        }
        let required_anti_affinity = spec
            .and_then(|s| s.affinity.as_ref())
            .and_then(|a| a.pod_anti_affinity.as_ref())
            .and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref())
            .map(|terms| terms.iter().map(|t| AffinityTerm::new(&namespace, t)).collect())
            .unwrap_or_default();
        let controller_uid = meta
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true))
            .map(|o| o.uid.clone());
        PodInfo {
            namespace,
            name: meta.name.clone().unwrap_or_default(),
            uid: meta.uid.clone().unwrap_or_default(),
            labels: meta.labels.clone().unwrap_or_default(),
            priority: spec.and_then(|s| s.priority).unwrap_or(0),
            requests: compute_pod_requests(&pod),
            non_zero: compute_non_zero_requests(&pod),
            host_ports,
            required_anti_affinity,
            controller_uid,
            pod,
        }
    }

    /// `namespace/name`, the key the cache and queue use.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    pub fn tolerations(&self) -> &[Toleration] {
        self.pod.spec.as_ref().and_then(|s| s.tolerations.as_deref()).unwrap_or(&[])
    }

    pub fn node_name(&self) -> Option<&str> {
        self.pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).filter(|n| !n.is_empty())
    }
}

/// Upstream `normalizedImageName`: an image without a tag or digest means `:latest`.
pub fn normalize_image_name(name: &str) -> String {
    let last = name.rsplit('/').next().unwrap_or(name);
    if last.contains(':') || last.contains('@') {
        name.to_string()
    } else {
        format!("{name}:latest")
    }
}

/// What the scheduler knows about one node.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub node: Arc<Node>,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub allocatable: Resources,
    /// Sum of the (plain) requests of the pods on the node.
    pub requested: Resources,
    /// Sum of the non-zero requests (scoring defaults applied).
    pub non_zero_requested: Resources,
    pub pods: Vec<Arc<PodInfo>>,
    /// How many of `pods` carry required anti-affinity terms.
    pub pods_with_required_anti_affinity: usize,
    pub used_ports: Vec<HostPort>,
    /// Normalized image name → size in bytes.
    pub images: HashMap<String, i64>,
    /// Bumped on every change; the snapshot copies only what changed.
    pub generation: u64,
    /// `spec.unschedulable`, copied out of the Node so the hot filter loop
    /// does not chase pointers into the Node object for every node.
    pub is_unschedulable: bool,
    /// Whether the node has any taint at all (fast path for the taint filter).
    pub has_taints: bool,
}

impl NodeInfo {
    pub fn new(node: Arc<Node>) -> Self {
        let mut ni = NodeInfo {
            name: String::new(),
            labels: BTreeMap::new(),
            allocatable: Resources::default(),
            requested: Resources::default(),
            non_zero_requested: Resources::default(),
            pods: Vec::new(),
            pods_with_required_anti_affinity: 0,
            used_ports: Vec::new(),
            images: HashMap::new(),
            generation: 0,
            is_unschedulable: false,
            has_taints: false,
            node: node.clone(),
        };
        ni.set_node(node);
        ni
    }

    /// Replace the Node object (an update from the API), keeping the pods.
    pub fn set_node(&mut self, node: Arc<Node>) {
        self.name = node.metadata.name.clone().unwrap_or_default();
        self.labels = node.metadata.labels.clone().unwrap_or_default();
        let status = node.status.as_ref();
        self.allocatable = Resources::from_list(status.and_then(|s| s.allocatable.as_ref()));
        self.images.clear();
        for img in status.and_then(|s| s.images.as_ref()).into_iter().flatten() {
            for n in img.names.iter().flatten() {
                self.images.insert(normalize_image_name(n), img.size_bytes.unwrap_or(0));
            }
        }
        self.is_unschedulable = node.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false);
        self.has_taints = node.spec.as_ref().and_then(|s| s.taints.as_ref()).is_some_and(|t| !t.is_empty());
        self.node = node;
    }

    pub fn taints(&self) -> &[Taint] {
        if !self.has_taints {
            return &[];
        }
        self.node.spec.as_ref().and_then(|s| s.taints.as_deref()).unwrap_or(&[])
    }

    pub fn unschedulable(&self) -> bool {
        self.is_unschedulable
    }

    pub fn add_pod(&mut self, p: Arc<PodInfo>) {
        self.requested.add(&p.requests);
        self.non_zero_requested.add(&p.non_zero);
        self.used_ports.extend(p.host_ports.iter().cloned());
        if !p.required_anti_affinity.is_empty() {
            self.pods_with_required_anti_affinity += 1;
        }
        self.pods.push(p);
    }

    /// Remove a pod by UID (or by namespace/name if it has no UID).
    pub fn remove_pod(&mut self, p: &PodInfo) -> bool {
        let Some(i) = self.pods.iter().position(|q| same_pod(q, p)) else { return false };
        let q = self.pods.swap_remove(i);
        self.requested.sub(&q.requests);
        self.non_zero_requested.sub(&q.non_zero);
        for hp in &q.host_ports {
            if let Some(j) = self.used_ports.iter().position(|u| u == hp) {
                self.used_ports.swap_remove(j);
            }
        }
        if !q.required_anti_affinity.is_empty() {
            self.pods_with_required_anti_affinity -= 1;
        }
        true
    }
}

pub(crate) fn same_pod(a: &PodInfo, b: &PodInfo) -> bool {
    if !a.uid.is_empty() && !b.uid.is_empty() {
        a.uid == b.uid
    } else {
        a.namespace == b.namespace && a.name == b.name
    }
}

#[cfg(test)]
pub(crate) mod testutil {
    //! Small builders so tests read like the objects they describe.
    use super::*;
    use k8s_openapi::api::core::v1::{ContainerPort, NodeSpec, NodeStatus, PodSpec};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    pub fn rl(pairs: &[(&str, &str)]) -> BTreeMap<String, Quantity> {
        pairs.iter().map(|(k, v)| (k.to_string(), Quantity(v.to_string()))).collect()
    }

    pub fn container(requests: &[(&str, &str)]) -> Container {
        Container {
            name: "c".into(),
            resources: if requests.is_empty() {
                None
            } else {
                Some(ResourceRequirements { requests: Some(rl(requests)), ..Default::default() })
            },
            ..Default::default()
        }
    }

    pub fn pod(name: &str, containers: Vec<Container>) -> Pod {
        Pod {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                uid: Some(format!("uid-{name}")),
                ..Default::default()
            },
            spec: Some(PodSpec { containers, ..Default::default() }),
            status: None,
        }
    }

    pub fn pod_req(name: &str, requests: &[(&str, &str)]) -> Pod {
        pod(name, vec![container(requests)])
    }

    pub fn with_host_port(mut p: Pod, port: i32) -> Pod {
        p.spec.as_mut().unwrap().containers[0].ports =
            Some(vec![ContainerPort { container_port: port, host_port: Some(port), ..Default::default() }]);
        p
    }

    pub fn node(name: &str, alloc: &[(&str, &str)]) -> Node {
        Node {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some(name.into()),
                labels: Some([("kubernetes.io/hostname".to_string(), name.to_string())].into()),
                ..Default::default()
            },
            spec: Some(NodeSpec::default()),
            status: Some(NodeStatus { allocatable: Some(rl(alloc)), ..Default::default() }),
        }
    }

    pub fn node_info(n: Node, pods: Vec<Pod>) -> NodeInfo {
        let mut ni = NodeInfo::new(Arc::new(n));
        for p in pods {
            ni.add_pod(Arc::new(PodInfo::new(Arc::new(p))));
        }
        ni
    }

    pub fn pinfo(p: Pod) -> PodInfo {
        PodInfo::new(Arc::new(p))
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::*;
    use super::*;

    fn check(pod: Pod, expected_requests: (i64, i64), expected_non_zero: (i64, i64)) {
        let r = compute_pod_requests(&pod);
        let nz = compute_non_zero_requests(&pod);
        assert_eq!((r.milli_cpu, r.memory), expected_requests, "requests");
        assert_eq!((nz.milli_cpu, nz.memory), expected_non_zero, "non-zero requests");
    }

    #[test]
    fn pod_requests_as_upstream() {
        let mi = 1024 * 1024;
        let init = |reqs: &[(&str, &str)], always: bool| {
            let mut c = container(reqs);
            if always {
                c.restart_policy = Some("Always".into());
            }
            c
        };
        let with_init = |containers: Vec<Container>, inits: Vec<Container>| {
            let mut p = pod("p", containers);
            p.spec.as_mut().unwrap().init_containers = Some(inits);
            p
        };
        let cases: Vec<(Pod, (i64, i64), (i64, i64))> = vec![
            // No requests at all: zero for fit, defaults for scoring.
            (pod_req("p", &[]), (0, 0), (100, 200 * mi)),
            // No containers at all.
            (pod("p", vec![]), (0, 0), (0, 0)),
            // No spec at all.
            (Pod::default(), (0, 0), (0, 0)),
            // Explicit zero stays zero even for scoring.
            (pod_req("p", &[("cpu", "0"), ("memory", "0")]), (0, 0), (0, 0)),
            // Only cpu set: memory gets the scoring default.
            (pod_req("p", &[("cpu", "250m")]), (250, 0), (250, 200 * mi)),
            // Containers add up.
            (
                pod("p", vec![container(&[("cpu", "1"), ("memory", "1Gi")]), container(&[("cpu", "500m"), ("memory", "1Gi")])]),
                (1500, 2048 * mi),
                (1500, 2048 * mi),
            ),
            // Init container bigger than the sum: it wins (max).
            (
                with_init(vec![container(&[("cpu", "1"), ("memory", "1Gi")])], vec![init(&[("cpu", "3"), ("memory", "512Mi")], false)]),
                (3000, 1024 * mi),
                (3000, 1024 * mi),
            ),
            // Init containers run one at a time: the largest, not the sum.
            (
                with_init(vec![container(&[("cpu", "100m")])], vec![init(&[("cpu", "2")], false), init(&[("cpu", "2")], false)]),
                (2000, 0),
                (2000, 200 * mi),
            ),
            // A sidecar (restartPolicy Always) adds to the containers and to
            // later init containers; scoring defaults apply per container.
            (
                with_init(vec![container(&[("cpu", "1")])], vec![init(&[("cpu", "500m")], true), init(&[("cpu", "2")], false)]),
                (2500, 0),
                (2500, 400 * mi),
            ),
        ];
        for (p, r, nz) in cases {
            check(p, r, nz);
        }
    }

    #[test]
    fn overhead_is_added() {
        let mut p = pod_req("p", &[("cpu", "1")]);
        p.spec.as_mut().unwrap().overhead = Some(rl(&[("cpu", "250m"), ("memory", "64Mi")]));
        check(p, (1250, 64 * 1024 * 1024), (1250, 264 * 1024 * 1024));
    }

    #[test]
    fn node_info_add_remove_is_symmetric() {
        let mut ni = node_info(node("n", &[("cpu", "4"), ("memory", "8Gi"), ("pods", "110")]), vec![]);
        let p = Arc::new(pinfo(with_host_port(pod_req("a", &[("cpu", "1"), ("nvidia.com/gpu", "1")]), 80)));
        ni.add_pod(p.clone());
        assert_eq!(ni.requested.milli_cpu, 1000);
        assert_eq!(ni.requested.scalar("nvidia.com/gpu"), 1);
        assert_eq!(ni.used_ports.len(), 1);
        assert!(ni.remove_pod(&p));
        assert_eq!(ni.requested.milli_cpu, 0);
        assert_eq!(ni.non_zero_requested.memory, 0);
        assert!(ni.used_ports.is_empty());
        assert!(!ni.remove_pod(&p));
        assert_eq!(ni.allocatable.allowed_pods, 110);
    }

    #[test]
    fn image_names_are_normalized() {
        for (input, expected) in [
            ("nginx", "nginx:latest"),
            ("nginx:1.25", "nginx:1.25"),
            ("registry:5000/app", "registry:5000/app:latest"),
            ("registry:5000/app:v1", "registry:5000/app:v1"),
            ("app@sha256:abc", "app@sha256:abc"),
        ] {
            assert_eq!(normalize_image_name(input), expected);
        }
    }
}
