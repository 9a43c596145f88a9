//! The snapshot's **required anti-affinity index**: what makes the
//! InterPodAffinity PreFilter cost O(distinct anti-affinity terms) rather
//! than a scan of the cluster for every pod.
//!
//! Upstream's PreFilter (`filtering.go`) builds two maps *topology pair
//! (key, value) → pod count* per pod, by scanning the snapshot:
//! * `existingAntiAffinityCounts`: existing pods whose required anti-affinity
//!   terms select the incoming pod. It visits the nodes of the snapshot's
//!   `HavePodsWithRequiredAntiAffinityList`, every such pod, every term.
//! * `antiAffinityCounts` (computed with `affinityCounts` by
//!   `getIncomingAffinityAntiAffinityCounts`): existing pods selected by the
//!   incoming pod's own terms. It visits every pod of every node.
//!
//! In a 5000-node cluster with thousands of anti-affinity pods that is
//! milliseconds per pod. Yet both maps are sums over *terms*, and a cluster
//! has few distinct terms: all replicas of a Deployment carry the same one.
//! So this index keeps the counts per distinct term ([`AffinityTerm`] is
//! `Eq + Hash`), and PreFilter only adds up a few of them:
//!
//! 1. **Existing pods' terms** ([`AntiAffinityIndex::existing_counts`]): for
//!    each distinct term carried by a pod in the snapshot, how many pods
//!    carry it, per value of the term's topology key (on nodes that have that
//!    label). PreFilter evaluates `term.matches(incoming)` once per distinct
//!    term and adds up the counts of the terms that match.
//! 2. **The incoming pod's terms** ([`AntiAffinityIndex::incoming_counts`]):
//!    which terms future pods bring is unknown, so these counts are a *memo*
//!    keyed by term: the first pod with a term pays the full scan, the counts
//!    are then kept up to date, and the next pods with the same term (the
//!    other replicas, usually queued together) pay nothing. The memo keeps
//!    the [`INCOMING_MEMO_CAPACITY`] most recently used terms.
//!
//! **Maintenance.** The index lives in the [`Snapshot`](crate::cache::Snapshot)
//! and moves with it: when `Cache::update_snapshot` replaces a changed
//! NodeInfo, the index subtracts what the old NodeInfo contributed and adds
//! what the new one does ([`AntiAffinityIndex::replace_node`]). Every event
//! that can change a count (a pod added, assumed, forgotten, updated or
//! deleted, a node relabelled) reaches the snapshot as a changed NodeInfo, so
//! one code path serves them all. A change of the node *set* rebuilds the
//! index, as it rebuilds the snapshot's node list. Cost per changed node:
//! O(its anti-affinity pods + its pods × memoized terms).
//!
//! **Sharing.** Each term's counts are an `Arc`: PreFilter hands them to the
//! cycle state without copying, and the index updates them copy-on-write
//! (`Arc::make_mut`), so a snapshot clone or a cycle state that still holds
//! them never sees them change.
//!
//! The maps are exactly those of the plain scan (the tests compare the two
//! after random sequences of pod and node events).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::node_info::{AffinityTerm, NodeInfo, PodInfo};

/// Topology value → pod count, for one topology key.
pub type ValueCounts = HashMap<String, u32>;

/// Topology key → topology value → pod count: what PreFilter computes and
/// Filter reads. The value maps are shared with the index (no copy per pod).
pub type TopologyCounts = HashMap<String, Arc<ValueCounts>>;

/// How many incoming-pod terms the memo keeps; the least recently used is
/// dropped first. Each costs O(pods on the node) per changed node to keep.
pub const INCOMING_MEMO_CAPACITY: usize = 16;

/// See the module documentation.
#[derive(Debug, Default)]
pub struct AntiAffinityIndex {
    /// Distinct term carried by existing pods → carriers per topology value.
    /// A term no pod carries (on a node with its topology label) has no entry.
    existing: HashMap<AffinityTerm, Arc<ValueCounts>>,
    /// Incoming-pod term → pods it selects per topology value. PreFilter has
    /// only `&Snapshot` (the filter workers share it), and filling the memo is
    /// the one write it makes: a Mutex that only the scheduling thread takes.
    incoming: Mutex<IncomingMemo>,
}

impl Clone for AntiAffinityIndex {
    fn clone(&self) -> Self {
        AntiAffinityIndex { existing: self.existing.clone(), incoming: Mutex::new(self.memo().clone()) }
    }
}

impl AntiAffinityIndex {
    /// The index of `nodes`, from scratch; the memo starts empty.
    pub fn build(nodes: &[Arc<NodeInfo>]) -> Self {
        let mut index = AntiAffinityIndex::default();
        for node in nodes {
            for (term, value) in carried_terms(node) {
                index.add_carrier(term, value);
            }
        }
        index
    }

    /// The snapshot replaces `old` by `new` (same node, changed): move the
    /// counts from what `old` holds to what `new` holds.
    pub fn replace_node(&mut self, old: &NodeInfo, new: &NodeInfo) {
        if std::ptr::eq(old, new) {
            return;
        }
        for (term, value) in carried_terms(old) {
            self.remove_carrier(term, value);
        }
        for (term, value) in carried_terms(new) {
            self.add_carrier(term, value);
        }
        let memo = self.incoming.get_mut().unwrap_or_else(PoisonError::into_inner);
        for entry in &mut memo.entries {
            let before = selected_on(&entry.term, old);
            let after = selected_on(&entry.term, new);
            if before != after {
                let counts = Arc::make_mut(&mut entry.counts);
                if let Some((value, n)) = before {
                    subtract(counts, value, n);
                }
                if let Some((value, n)) = after {
                    add(counts, value, n);
                }
            }
        }
    }

    /// PreFilter's `existingAntiAffinityCounts` for `pod`: per topology pair,
    /// the existing pods whose required anti-affinity terms select `pod`.
    pub fn existing_counts(&self, pod: &PodInfo) -> TopologyCounts {
        let mut out = TopologyCounts::new();
        for (term, counts) in &self.existing {
            if term.matches(pod) {
                merge(&mut out, &term.topology_key, counts);
            }
        }
        out
    }

    /// PreFilter's `antiAffinityCounts` for `pod`: per topology pair, the
    /// existing pods that `pod`'s required anti-affinity terms select.
    /// `nodes` are the snapshot's, scanned only for a term not memoized.
    pub fn incoming_counts(&self, pod: &PodInfo, nodes: &[Arc<NodeInfo>]) -> TopologyCounts {
        let mut out = TopologyCounts::new();
        if pod.required_anti_affinity.is_empty() {
            return out;
        }
        let mut memo = self.memo();
        for term in &pod.required_anti_affinity {
            let counts = memo.get_or_insert_with(term, || count_selected(term, nodes));
            merge(&mut out, &term.topology_key, &counts);
        }
        out
    }

    fn memo(&self) -> std::sync::MutexGuard<'_, IncomingMemo> {
        // A panic while the memo was locked leaves it consistent (an entry is
        // inserted only once its scan is complete).
        self.incoming.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn add_carrier(&mut self, term: &AffinityTerm, value: &str) {
        if !self.existing.contains_key(term) {
            self.existing.insert(term.clone(), Arc::default());
        }
        let counts = self.existing.get_mut(term).expect("inserted above");
        add(Arc::make_mut(counts), value, 1);
    }

    fn remove_carrier(&mut self, term: &AffinityTerm, value: &str) {
        let Some(counts) = self.existing.get_mut(term) else {
            debug_assert!(false, "anti-affinity index out of step: unknown term {term:?}");
            return;
        };
        let counts = Arc::make_mut(counts);
        subtract(counts, value, 1);
        if counts.is_empty() {
            self.existing.remove(term);
        }
    }

    #[cfg(test)]
    pub(crate) fn memoized_terms(&self) -> usize {
        self.memo().entries.len()
    }
}

/// The required anti-affinity terms carried by `node`'s pods that count
/// there, each with the node's value of the term's topology key; a node
/// without that label is in no domain of that key, so the term counts nowhere.
fn carried_terms(node: &NodeInfo) -> impl Iterator<Item = (&AffinityTerm, &str)> {
    // Most nodes host no such pod: skip their pods without looking at them.
    let pods = if node.pods_with_required_anti_affinity > 0 { &node.pods[..] } else { &[] };
    pods.iter()
        .flat_map(|p| &p.required_anti_affinity)
        .filter_map(|term| node.labels.get(&term.topology_key).map(|value| (term, value.as_str())))
}

/// How many of `node`'s pods `term` selects, with the node's value of the
/// term's topology key; `None` if the node lacks the key or nothing matches.
fn selected_on<'a>(term: &AffinityTerm, node: &'a NodeInfo) -> Option<(&'a str, u32)> {
    if node.pods.is_empty() {
        return None; // most nodes of a large cluster: no label lookup
    }
    let value = node.labels.get(&term.topology_key)?;
    let n = node.pods.iter().filter(|p| term.matches(p)).count() as u32;
    (n > 0).then_some((value.as_str(), n))
}

/// The plain scan for one incoming term: the pods it selects, per value.
fn count_selected(term: &AffinityTerm, nodes: &[Arc<NodeInfo>]) -> ValueCounts {
    let mut counts = ValueCounts::new();
    for node in nodes {
        if let Some((value, n)) = selected_on(term, node) {
            add(&mut counts, value, n);
        }
    }
    counts
}

/// Adds `n` to `value`'s count; allocates the key only the first time.
fn add(counts: &mut ValueCounts, value: &str, n: u32) {
    match counts.get_mut(value) {
        Some(c) => *c += n,
        None => {
            counts.insert(value.to_string(), n);
        }
    }
}

/// Subtracts `n` from `value`'s count, dropping it at zero: the index holds
/// exactly the entries the scan would create.
fn subtract(counts: &mut ValueCounts, value: &str, n: u32) {
    let Some(c) = counts.get_mut(value) else {
        debug_assert!(false, "anti-affinity index out of step: no count for {value:?}");
        return;
    };
    debug_assert!(*c >= n, "anti-affinity index out of step: count below zero");
    *c = c.saturating_sub(n);
    if *c == 0 {
        counts.remove(value);
    }
}

/// `out[key] += counts`. The first map for a key is shared, not copied; a
/// second term with the same key makes a private sum (copy-on-write).
fn merge(out: &mut TopologyCounts, key: &str, counts: &Arc<ValueCounts>) {
    if counts.is_empty() {
        return;
    }
    match out.get_mut(key) {
        None => {
            out.insert(key.to_string(), counts.clone());
        }
        Some(sum) => {
            let sum = Arc::make_mut(sum);
            for (value, n) in counts.iter() {
                add(sum, value, *n);
            }
        }
    }
}

/// The memo of incoming-pod terms: a short list, least recently used
/// evicted (a linear search over 16 entries beats hashing a term).
#[derive(Debug, Clone, Default)]
struct IncomingMemo {
    entries: Vec<MemoEntry>,
    /// Advances on every lookup; orders the entries by last use.
    clock: u64,
}

#[derive(Debug, Clone)]
struct MemoEntry {
    term: AffinityTerm,
    counts: Arc<ValueCounts>,
    last_used: u64,
}

impl IncomingMemo {
    fn get_or_insert_with(&mut self, term: &AffinityTerm, scan: impl FnOnce() -> ValueCounts) -> Arc<ValueCounts> {
        self.clock += 1;
        if let Some(entry) = self.entries.iter_mut().find(|e| e.term == *term) {
            entry.last_used = self.clock;
            return entry.counts.clone();
        }
        if self.entries.len() == INCOMING_MEMO_CAPACITY {
            let lru = (0..self.entries.len()).min_by_key(|&i| self.entries[i].last_used).expect("full");
            self.entries.swap_remove(lru);
        }
        let counts = Arc::new(scan());
        self.entries.push(MemoEntry { term: term.clone(), counts: counts.clone(), last_used: self.clock });
        counts
    }
}

#[cfg(test)]
mod tests {
    //! The index against the plain scan it replaces, after sequences of
    //! cache events: hand-written scenarios and seeded random ones.
    use super::*;
    use crate::cache::{Cache, Snapshot};
    use crate::framework::CycleState;
    use crate::node_info::testutil::{node, pinfo, pod_req};
    use crate::predicates::inter_pod_anti_affinity::InterPodAntiAffinity;
    use crate::predicates::Predicate;
    use k8s_openapi::api::core::v1::{Affinity, Pod, PodAffinityTerm, PodAntiAffinity};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use std::collections::BTreeMap;

    type Plain = BTreeMap<String, BTreeMap<String, u32>>;

    /// The reference: PreFilter's (existing, incoming) maps by the plain scan
    /// of every pod on every node, as PreFilter computed them before the index.
    fn scan(pod: &PodInfo, snapshot: &Snapshot) -> (Plain, Plain) {
        let mut existing = Plain::new();
        let mut incoming = Plain::new();
        for node in &snapshot.nodes {
            for term in node.pods.iter().flat_map(|p| &p.required_anti_affinity) {
                if let Some(v) = node.labels.get(&term.topology_key) {
                    if term.matches(pod) {
                        *existing.entry(term.topology_key.clone()).or_default().entry(v.clone()).or_default() += 1;
                    }
                }
            }
            for term in &pod.required_anti_affinity {
                let n = node.pods.iter().filter(|p| term.matches(p)).count() as u32;
                if let Some(v) = node.labels.get(&term.topology_key).filter(|_| n > 0) {
                    *incoming.entry(term.topology_key.clone()).or_default().entry(v.clone()).or_default() += n;
                }
            }
        }
        (existing, incoming)
    }

    fn plain(m: &TopologyCounts) -> Plain {
        m.iter().map(|(k, values)| (k.clone(), values.iter().map(|(v, n)| (v.clone(), *n)).collect())).collect()
    }

    fn pre_filter(probe: &PodInfo, snapshot: &Snapshot) -> (Plain, Plain) {
        let mut state = CycleState::default();
        InterPodAntiAffinity.pre_filter(&mut state, probe, snapshot);
        (plain(&state.existing_anti_affinity), plain(&state.incoming_anti_affinity))
    }

    /// Brings `snap` up to date and checks, for every probe, that PreFilter
    /// gives the plain scan's maps on it, on a snapshot built from scratch,
    /// and, on a clone taken before the update, the maps it had then.
    fn check(cache: &Cache, snap: &mut Snapshot, probes: &[PodInfo], context: &str) {
        let before = snap.clone();
        let before_maps: Vec<_> = probes.iter().map(|p| scan(p, &before)).collect();
        cache.update_snapshot(snap);
        let fresh = cache.snapshot();
        for (probe, old) in probes.iter().zip(&before_maps) {
            let expected = scan(probe, snap);
            assert_eq!(pre_filter(probe, snap), expected, "{context}: incremental snapshot, probe {}", probe.name);
            assert_eq!(pre_filter(probe, &fresh), expected, "{context}: fresh snapshot, probe {}", probe.name);
            assert_eq!(&pre_filter(probe, &before), old, "{context}: older snapshot, probe {}", probe.name);
        }
        assert!(snap.anti_affinity.memoized_terms() <= INCOMING_MEMO_CAPACITY);
    }

    /// A required anti-affinity term. `selector`: `None` is a nil selector,
    /// `Some(&[])` the empty one (selects all); entries are `key=value`,
    /// `key in (v1,v2)` as `("key", "v1|v2")`, `key` exists as `("key", "*")`.
    /// `namespaces`: `None` selects every namespace (`namespaceSelector: {}`).
    fn term(selector: Option<&[(&str, &str)]>, namespaces: Option<&[&str]>, key: &str) -> PodAffinityTerm {
        let label_selector = selector.map(|reqs| {
            let mut ls = LabelSelector::default();
            for (k, v) in reqs {
                let (operator, values) = match *v {
                    "*" => ("Exists", None),
                    v if v.contains('|') => ("In", Some(v.split('|').map(String::from).collect())),
                    v => {
                        ls.match_labels.get_or_insert_with(Default::default).insert(k.to_string(), v.to_string());
                        continue;
                    }
                };
                ls.match_expressions.get_or_insert_with(Vec::new).push(LabelSelectorRequirement {
                    key: k.to_string(),
                    operator: operator.into(),
                    values,
                });
            }
            ls
        });
        PodAffinityTerm {
            label_selector,
            namespaces: namespaces.map(|ns| ns.iter().map(|n| n.to_string()).collect()),
            namespace_selector: if namespaces.is_none() { Some(LabelSelector::default()) } else { None },
            topology_key: key.into(),
            ..Default::default()
        }
    }

    fn pod(ns: &str, name: &str, labels: &[(&str, &str)], terms: Vec<PodAffinityTerm>) -> Pod {
        let mut p = pod_req(name, &[]);
        p.metadata.namespace = Some(ns.into());
        p.metadata.uid = Some(format!("uid-{ns}-{name}"));
        p.metadata.labels = Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
        if !terms.is_empty() {
            p.spec.as_mut().unwrap().affinity = Some(Affinity {
                pod_anti_affinity: Some(PodAntiAffinity {
                    required_during_scheduling_ignored_during_execution: Some(terms),
                    ..Default::default()
                }),
                ..Default::default()
            });
        }
        p
    }

    fn on(mut p: Pod, node: &str) -> Arc<Pod> {
        p.spec.as_mut().unwrap().node_name = Some(node.into());
        Arc::new(p)
    }

    fn labelled_node(name: &str, labels: &[(&str, &str)]) -> Arc<k8s_openapi::api::core::v1::Node> {
        let mut n = node(name, &[("pods", "110")]);
        n.metadata.labels = Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
        Arc::new(n)
    }

    /// One cache event.
    enum Op {
        Node(&'static str, &'static [(&'static str, &'static str)]),
        RemoveNode(&'static str),
        /// The informer reports the pod bound (add, update or confirmation).
        Bind(Pod, &'static str),
        Assume(Pod, &'static str),
        Forget(&'static str),
        Delete(&'static str, &'static str),
    }

    fn apply(cache: &mut Cache, op: Op) {
        // Errors (assuming a known pod, forgetting an unknown one) leave the
        // cache unchanged, which the check covers as well.
        let _ = match op {
            Op::Node(name, labels) => Ok(cache.add_node(labelled_node(name, labels))),
            Op::RemoveNode(name) => Ok(cache.remove_node(name)),
            Op::Bind(p, node) => Ok(cache.add_pod(on(p, node))),
            Op::Assume(p, node) => cache.assume_pod(Arc::new(pinfo(p)), node),
            Op::Forget(key) => cache.forget_pod(key),
            Op::Delete(ns, name) => cache.remove_pod(ns, name),
        };
    }

    const HOST: &str = "kubernetes.io/hostname";
    const ZONE: &str = "zone";

    fn web_anti(key: &str) -> Vec<PodAffinityTerm> {
        vec![term(Some(&[("app", "web")]), Some(&[]), key)]
    }

    /// Selects every pod of namespaces a and b.
    fn every_pod_in_a_b(key: &str) -> PodAffinityTerm {
        term(Some(&[]), Some(&["a", "b"]), key)
    }

    /// Probes for the hand-written scenarios: web and db pods in namespaces
    /// a and b, with and without terms of their own.
    fn probes() -> Vec<PodInfo> {
        vec![
            pinfo(pod("a", "plain-web", &[("app", "web")], vec![])),
            pinfo(pod("b", "plain-web-b", &[("app", "web")], vec![])),
            pinfo(pod("a", "plain-db", &[("app", "db")], vec![])),
            pinfo(pod("a", "web-host", &[("app", "web")], web_anti(HOST))),
            pinfo(pod("a", "web-zone", &[("app", "web")], web_anti(ZONE))),
            pinfo(pod("b", "web-zone-b", &[("app", "web")], web_anti(ZONE))),
            pinfo(pod("a", "web-all-ns", &[("app", "web")], vec![term(Some(&[("app", "web")]), None, ZONE)])),
            pinfo(pod("a", "nil", &[("app", "web")], vec![term(None, Some(&[]), HOST)])),
            // The same term twice counts twice, as in the scan.
            pinfo(pod("a", "twice", &[], vec![every_pod_in_a_b(ZONE), every_pod_in_a_b(ZONE)])),
        ]
    }

    #[test]
    fn index_equals_scan_in_scenarios() {
        let web = |name, key| pod("a", name, &[("app", "web")], web_anti(key));
        let zones: &[(&str, &[(&'static str, &'static str)])] = &[
            ("n0", &[(HOST, "n0"), (ZONE, "x")]),
            ("n1", &[(HOST, "n1"), (ZONE, "x")]),
            ("n2", &[(HOST, "n2"), (ZONE, "y")]),
        ];
        let web_or_db_in_a = term(Some(&[("app", "web|db")]), Some(&["a"]), ZONE);
        let scenarios: Vec<(&str, Vec<Op>)> = vec![
            ("assume, forget, add again", vec![
                Op::Assume(web("p", HOST), "n0"),
                Op::Forget("a/p"),
                Op::Bind(web("p", HOST), "n1"),
                Op::Forget("a/p"), // bound: not assumed, nothing changes
            ]),
            ("confirmation on another node moves the counts", vec![
                Op::Assume(web("p", ZONE), "n0"),
                Op::Assume(web("q", ZONE), "n1"),
                Op::Bind(web("p", ZONE), "n2"),
                Op::Delete("a", "q"),
            ]),
            ("deleted pods", vec![
                Op::Bind(web("p", HOST), "n0"),
                Op::Bind(web("q", HOST), "n0"),
                Op::Delete("a", "p"),
                Op::Delete("a", "q"),
                Op::Delete("a", "q"),
            ]),
            ("pod update changes its labels and terms", vec![
                Op::Bind(web("p", ZONE), "n0"),
                Op::Bind(pod("a", "p", &[("app", "db")], vec![]), "n0"),
                Op::Bind(pod("a", "p", &[("app", "web")], web_anti(HOST)), "n0"),
            ]),
            ("node relabelled", vec![
                Op::Bind(web("p", ZONE), "n0"),
                Op::Bind(pod("b", "q", &[("app", "web")], vec![]), "n0"),
                Op::Node("n0", &[(HOST, "n0"), (ZONE, "y")]),
                Op::Node("n0", &[(HOST, "n0")]),
                Op::Node("n0", &[(HOST, "renamed"), (ZONE, "x")]),
            ]),
            ("node removed and back", vec![
                Op::Bind(web("p", HOST), "n0"),
                Op::Bind(web("q", ZONE), "n1"),
                Op::RemoveNode("n0"),
                Op::Delete("a", "q"),
                Op::Node("n0", &[(HOST, "n0"), (ZONE, "y")]),
                Op::RemoveNode("n1"),
            ]),
            ("namespaces, nil and empty selectors", vec![
                Op::Bind(pod("b", "p", &[("app", "web")], web_anti(ZONE)), "n0"),
                Op::Bind(pod("b", "q", &[("app", "web")], vec![term(Some(&[("app", "web")]), None, ZONE)]), "n1"),
                Op::Bind(pod("a", "r", &[], vec![term(None, None, HOST)]), "n2"),
                Op::Bind(pod("a", "s", &[], vec![term(Some(&[]), Some(&["b"]), HOST)]), "n2"),
                Op::Bind(pod("b", "t", &[("app", "db")], vec![web_or_db_in_a.clone()]), "n2"),
                Op::Bind(pod("b", "u", &[], vec![every_pod_in_a_b(HOST)]), "n1"),
            ]),
        ];
        for (name, ops) in scenarios {
            let mut cache = Cache::new();
            for (n, labels) in zones {
                cache.add_node(labelled_node(n, labels));
            }
            let mut snap = Snapshot::default();
            let probes = probes();
            check(&cache, &mut snap, &probes, name);
            for (i, op) in ops.into_iter().enumerate() {
                apply(&mut cache, op);
                check(&cache, &mut snap, &probes, &format!("{name}, after step {i}"));
            }
        }
    }

    /// A random pod: namespace a or b, random app/color labels, 0–2 random terms.
    fn random_pod(rng: &mut StdRng, name: &str) -> Pod {
        const NS: &[&str] = &["a", "b"];
        const APPS: &[Option<&str>] = &[Some("web"), Some("db"), None];
        const SELECTORS: &[Option<&[(&str, &str)]>] = &[
            None,
            Some(&[]),
            Some(&[("app", "web")]),
            Some(&[("app", "db")]),
            Some(&[("app", "web|db")]),
            Some(&[("color", "*")]),
            Some(&[("app", "web"), ("color", "blue")]),
        ];
        const NAMESPACES: &[Option<&[&str]>] = &[Some(&[]), Some(&[]), Some(&["a"]), Some(&["a", "b"]), None];
        const KEYS: &[&str] = &[HOST, ZONE, ZONE, "rack"];
        let mut labels = Vec::new();
        if let Some(app) = APPS[rng.gen_range(0..APPS.len())] {
            labels.push(("app", app));
        }
        if rng.gen_bool(0.5) {
            labels.push(("color", if rng.gen_bool(0.5) { "blue" } else { "green" }));
        }
        let terms = (0..rng.gen_range(0..3))
            .map(|_| {
                term(
                    SELECTORS[rng.gen_range(0..SELECTORS.len())],
                    NAMESPACES[rng.gen_range(0..NAMESPACES.len())],
                    KEYS[rng.gen_range(0..KEYS.len())],
                )
            })
            .collect();
        pod(NS[rng.gen_range(0..NS.len())], name, &labels, terms)
    }

    #[test]
    fn index_equals_scan_after_random_events() {
        const NODES: &[&str] = &["n0", "n1", "n2", "n3", "n4"];
        const LABELS: &[&[(&str, &str)]] = &[&[(ZONE, "x")], &[(ZONE, "y")], &[], &[(ZONE, "x"), ("rack", "r1")]];
        const NAMES: &[&str] = &["p0", "p1", "p2", "p3", "p4", "p5", "p6", "p7"];
        for seed in 0..30 {
            let mut rng = StdRng::seed_from_u64(seed);
            // More probes than the memo holds, so terms are also evicted.
            let probes: Vec<PodInfo> =
                (0..INCOMING_MEMO_CAPACITY + 6).map(|i| pinfo(random_pod(&mut rng, &format!("probe{i}")))).collect();
            let mut cache = Cache::new();
            let mut snap = Snapshot::default();
            for n in &NODES[..3] {
                cache.add_node(labelled_node(n, &[(HOST, n), (ZONE, "x")]));
            }
            for step in 0..150 {
                let node = NODES[rng.gen_range(0..NODES.len())];
                let name = NAMES[rng.gen_range(0..NAMES.len())];
                let ns = if rng.gen_bool(0.5) { "a" } else { "b" };
                let key = format!("{ns}/{name}");
                match rng.gen_range(0..10) {
                    0..=2 => apply(&mut cache, Op::Bind(random_pod(&mut rng, name), node)),
                    3..=4 => {
                        let _ = cache.assume_pod(Arc::new(pinfo(random_pod(&mut rng, name))), node);
                    }
                    5 => {
                        let _ = cache.forget_pod(&key);
                    }
                    6 => {
                        let _ = cache.remove_pod(ns, name);
                    }
                    7..=8 => {
                        let mut labels = vec![(HOST, node)];
                        labels.extend_from_slice(LABELS[rng.gen_range(0..LABELS.len())]);
                        cache.add_node(labelled_node(node, &labels));
                    }
                    _ => cache.remove_node(node),
                }
                // A few probes per cycle, as pods come: memo hits and misses.
                let picked: Vec<PodInfo> = (0..3).map(|_| probes[rng.gen_range(0..probes.len())].clone()).collect();
                check(&cache, &mut snap, &picked, &format!("seed {seed}, step {step}"));
            }
        }
    }

    #[test]
    fn memo_is_reused_while_nothing_changes() {
        let mut cache = Cache::new();
        cache.add_node(labelled_node("n0", &[(HOST, "n0")]));
        cache.add_pod(on(pod("a", "p", &[("app", "web")], vec![]), "n0"));
        let snap = cache.snapshot();
        let web = pinfo(pod("a", "web", &[("app", "web")], web_anti(HOST)));
        let first = snap.anti_affinity.incoming_counts(&web, &snap.nodes);
        let second = snap.anti_affinity.incoming_counts(&web, &snap.nodes);
        // The second pod with the same term gets the same counts, not a scan.
        assert!(Arc::ptr_eq(&first[HOST], &second[HOST]));
        assert_eq!(snap.anti_affinity.memoized_terms(), 1);
    }
}
