//! Node lifecycle (upstream `pkg/controller/nodelifecycle` and the taint
//! eviction controller `pkg/controller/tainteviction`).
//!
//! **Health.** Every `--node-monitor-period` each node's heartbeat is
//! checked: its Lease in `kube-node-lease` (renewTime) and its Ready
//! condition's lastHeartbeatTime. Like upstream, the controller never
//! compares those timestamps with its own clock (the node's clock may be
//! off); it notes, on *its* monotonic clock, when it last saw either
//! *change* (the "probe timestamp"). A node silent for longer than
//! `--node-monitor-grace-period` gets Ready (and the pressure conditions)
//! set to Unknown, reason NodeStatusUnknown, and its pods are marked not
//! ready (so Endpoints drop them at once).
//!
//! **Taints.** Ready=Unknown → `node.kubernetes.io/unreachable`, Ready=False
//! → `node.kubernetes.io/not-ready`, each as NoSchedule (no new pods) and
//! NoExecute (existing pods go); Ready=True removes them. So a node that
//! starts heartbeating again comes back cleanly.
//!
//! **Eviction.** A pod on a node with a NoExecute taint is deleted once it
//! has been there longer than its toleration's `tolerationSeconds` (counted
//! from the taint's `timeAdded`); no matching toleration means at once.
//! The apiserver's DefaultTolerationSeconds admission plugin gives every
//! new pod a 300 s toleration for not-ready and unreachable, so by default
//! pods leave a lost node after five minutes. A pod that has no toleration
//! for those two taints at all (the plugin disabled, or a pod created
//! before it) gets `--pod-eviction-timeout` (the flag's historical
//! meaning) rather than being evicted at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use machinery::events::{EventRecorder, EventType};
use machinery::informer::Store;
use serde_json::json;
use tokio::time::Instant;

use crate::context::Context;
use crate::controller_utils::*;
use crate::informers::BY_NODE;

pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const NOT_READY: &str = "node.kubernetes.io/not-ready";

/// What the controller last saw of a node's heartbeats, and when.
struct Health {
    probe: Instant,
    ready_heartbeat: Option<String>,
    lease_renew: Option<String>,
}

pub struct NodeLifecycleController {
    client: Client,
    nodes: Store<Node>,
    leases: Store<Lease>,
    pods: Store<Pod>,
    health: Mutex<HashMap<String, Health>>,
    period: Duration,
    grace: Duration,
    default_toleration: Duration,
    recorder: EventRecorder,
    eviction_recorder: EventRecorder,
}

fn ready_condition(node: &Node) -> Option<&NodeCondition> {
    node.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == "Ready")
}

/// The taints the controller wants for a Ready status (upstream's
/// `doNoScheduleTaintingPass` + `doNoExecuteTaintingPass`).
pub fn wanted_taints(ready: Option<&str>) -> Vec<(&'static str, &'static str)> {
    match ready {
        Some("True") => vec![],
        Some("False") => vec![(NOT_READY, "NoSchedule"), (NOT_READY, "NoExecute")],
        _ => vec![(UNREACHABLE, "NoSchedule"), (UNREACHABLE, "NoExecute")],
    }
}

/// The node's taints with ours replaced by `wanted`; None if unchanged.
/// Existing NoExecute taints keep their timeAdded (evictions count from it).
pub fn reconcile_taints(current: &[Taint], wanted: &[(&str, &str)], now: Time) -> Option<Vec<Taint>> {
    let ours = |t: &Taint| t.key == UNREACHABLE || t.key == NOT_READY;
    let mut out: Vec<Taint> = current.iter().filter(|t| !ours(t)).cloned().collect();
    for (key, effect) in wanted {
        match current.iter().find(|t| t.key == *key && t.effect == *effect) {
            Some(t) => out.push(t.clone()),
            None => out.push(Taint {
                key: key.to_string(),
                effect: effect.to_string(),
                value: None,
                time_added: (*effect == "NoExecute").then(|| now.clone()),
            }),
        }
    }
    let same = out.len() == current.len() && out.iter().all(|t| current.contains(t));
    (!same).then_some(out)
}

/// Upstream `Toleration.ToleratesTaint`.
fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if t.effect.as_deref().is_some_and(|e| !e.is_empty() && e != taint.effect) {
        return false;
    }
    if t.key.as_deref().is_some_and(|k| !k.is_empty() && k != taint.key) {
        return false;
    }
    match t.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        _ => t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
    }
}

/// How long `pod` may stay on a node with these NoExecute taints: None =
/// forever, Some(0) = evict now (upstream `getMinTolerationTime`).
pub fn toleration_time(pod: &Pod, taints: &[&Taint], default: Duration) -> Option<Duration> {
    let tolerations = pod.spec.as_ref().and_then(|s| s.tolerations.clone()).unwrap_or_default();
    let mut min: Option<Duration> = None;
    for taint in taints {
        let matching: Vec<&Toleration> = tolerations.iter().filter(|t| tolerates(t, taint)).collect();
        let d = if matching.is_empty() {
            if taint.key == UNREACHABLE || taint.key == NOT_READY {
                Some(default) // DefaultTolerationSeconds
            } else {
                Some(Duration::ZERO)
            }
        } else if matching.iter().all(|t| t.toleration_seconds.is_none()) {
            None // tolerated forever
        } else {
            matching.iter().filter_map(|t| t.toleration_seconds).min().map(|s| Duration::from_secs(s.max(0) as u64))
        };
        if let Some(d) = d {
            min = Some(min.map_or(d, |m| m.min(d)));
        }
    }
    min
}

impl NodeLifecycleController {
    pub fn new(ctx: &Context) -> Arc<Self> {
        Arc::new(NodeLifecycleController {
            client: ctx.client.clone(),
            nodes: ctx.informers.nodes().store(),
            leases: ctx.informers.node_leases().store(),
            pods: ctx.informers.pods().store(),
            health: Mutex::new(HashMap::new()),
            period: ctx.opts.node_monitor_period,
            grace: ctx.opts.node_monitor_grace_period,
            default_toleration: ctx.opts.pod_eviction_timeout,
            recorder: ctx.recorder("node-controller"),
            eviction_recorder: ctx.recorder("taint-eviction-controller"),
        })
    }

    pub async fn run(self: Arc<Self>, gate: Gate) {
        let mut tick = tokio::time::interval(self.period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if !gate.open() {
                return;
            }
            if let Err(e) = self.monitor_node_health().await {
                tracing::warn!(error = %format!("{e:#}"), "node health check failed");
            }
        }
    }

    /// One pass over all nodes (upstream `monitorNodeHealth` + tainting +
    /// the taint eviction check). A failure on one node (a 409 on its
    /// taint update, a refused eviction) is logged and retried on the next
    /// pass; it never keeps the other nodes from being checked.
    pub async fn monitor_node_health(&self) -> anyhow::Result<()> {
        let nodes = self.nodes.list();
        {
            let mut h = self.health.lock().unwrap();
            h.retain(|n, _| nodes.iter().any(|x| name(&x.metadata) == n));
        }
        let failed = for_each_node(nodes, |node| self.check_node(node)).await;
        anyhow::ensure!(failed.is_empty(), "checking node(s) {failed:?} failed");
        Ok(())
    }

    async fn check_node(&self, node: Arc<Node>) -> anyhow::Result<()> {
        let node_name = name(&node.metadata).to_string();
        let ready_hb = ready_condition(&node).and_then(|c| c.last_heartbeat_time.as_ref()).map(|t| t.0.to_rfc3339());
        let lease_renew = self
            .leases
            .get(&format!("kube-node-lease/{node_name}"))
            .and_then(|l| l.spec.as_ref().and_then(|s| s.renew_time.as_ref()).map(|t| t.0.to_rfc3339()));
        let silent = {
            let mut h = self.health.lock().unwrap();
            let e = h.entry(node_name.clone()).or_insert_with(|| Health { probe: Instant::now(), ready_heartbeat: ready_hb.clone(), lease_renew: lease_renew.clone() });
            if e.ready_heartbeat != ready_hb || e.lease_renew != lease_renew {
                e.probe = Instant::now();
                e.ready_heartbeat = ready_hb;
                e.lease_renew = lease_renew;
            }
            e.probe.elapsed() > self.grace
        };
        let mut node = (*node).clone();
        if silent {
            self.mark_unknown(&mut node).await?;
        }
        self.taint(&mut node).await?;
        self.evict(&node).await
    }

    /// Ready, MemoryPressure, DiskPressure, PIDPressure → Unknown.
    async fn mark_unknown(&self, node: &mut Node) -> anyhow::Result<()> {
        let node_name = name(&node.metadata).to_string();
        let was = ready_condition(node).map(|c| c.status.clone());
        if was.as_deref() == Some("Unknown") {
            return Ok(());
        }
        let now = Time(Utc::now());
        let status = node.status.get_or_insert_with(Default::default);
        let conds = status.conditions.get_or_insert_with(Vec::new);
        for type_ in ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"] {
            match conds.iter_mut().find(|c| c.type_ == type_) {
                Some(c) => {
                    c.status = "Unknown".into();
                    c.reason = Some("NodeStatusUnknown".into());
                    c.message = Some("Kubelet stopped posting node status.".into());
                    c.last_transition_time = Some(now.clone());
                }
                None => conds.push(NodeCondition {
                    type_: type_.into(),
                    status: "Unknown".into(),
                    reason: Some("NodeStatusNeverUpdated".into()),
                    message: Some("Kubelet never posted node status.".into()),
                    last_heartbeat_time: None,
                    last_transition_time: Some(now.clone()),
                }),
            }
        }
        let api: Api<Node> = Api::all(self.client.clone());
        *node = api.replace_status(&node_name, &PostParams::default(), serde_json::to_vec(&*node)?).await?;
        tracing::info!(node = node_name, "node stopped posting status: Ready=Unknown");
        if was.as_deref() == Some("True") {
            self.recorder.event(node, EventType::Normal, "NodeNotReady", &format!("Node {node_name} status is now: NodeNotReady"));
            self.mark_pods_not_ready(node).await?;
        }
        Ok(())
    }

    /// Upstream `MarkPodsNotReady`: the pods' Ready condition → False.
    async fn mark_pods_not_ready(&self, node: &Node) -> anyhow::Result<()> {
        for pod in self.pods.by_index(BY_NODE, name(&node.metadata)) {
            if !is_pod_ready(&pod) {
                continue;
            }
            let mut conds = pod.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
            for c in conds.iter_mut().filter(|c| c.type_ == "Ready") {
                c.status = "False".into();
                c.last_transition_time = Some(Time(Utc::now()));
            }
            let api: Api<Pod> = Api::namespaced(self.client.clone(), ns(&pod.metadata));
            let patch = json!({"status": {"conditions": conds}});
            match api.patch_status(name(&pod.metadata), &PatchParams::default(), &Patch::Merge(&patch)).await {
                Ok(_) => self.recorder.event(pod.as_ref(), EventType::Warning, "NodeNotReady", "Node is not ready"),
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    async fn taint(&self, node: &mut Node) -> anyhow::Result<()> {
        let ready = ready_condition(node).map(|c| c.status.clone());
        let current = node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
        let Some(taints) = reconcile_taints(&current, &wanted_taints(ready.as_deref()), Time(Utc::now())) else { return Ok(()) };
        let api: Api<Node> = Api::all(self.client.clone());
        let patch = json!({"metadata": {"resourceVersion": node.metadata.resource_version}, "spec": {"taints": if taints.is_empty() { serde_json::Value::Null } else { json!(taints) }}});
        *node = api.patch(name(&node.metadata), &PatchParams::default(), &Patch::Merge(&patch)).await?;
        tracing::info!(node = name(&node.metadata), ready = ?ready, taints = taints.len(), "updated node taints");
        Ok(())
    }

    /// Delete pods whose toleration of the node's NoExecute taints ran out.
    async fn evict(&self, node: &Node) -> anyhow::Result<()> {
        let taints: Vec<Taint> = node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
        let no_exec: Vec<&Taint> = taints.iter().filter(|t| t.effect == "NoExecute").collect();
        if no_exec.is_empty() {
            return Ok(());
        }
        let since = no_exec.iter().filter_map(|t| t.time_added.as_ref().map(|x| x.0)).max().unwrap_or_else(Utc::now);
        for pod in self.pods.by_index(BY_NODE, name(&node.metadata)) {
            if !is_pod_active(&pod) {
                continue;
            }
            let Some(tolerate) = toleration_time(&pod, &no_exec, self.default_toleration) else { continue };
            let due = since + chrono::Duration::from_std(tolerate).unwrap_or_default();
            if Utc::now() < due {
                continue;
            }
            let api: Api<Pod> = Api::namespaced(self.client.clone(), ns(&pod.metadata));
            self.eviction_recorder.event(pod.as_ref(), EventType::Normal, "TaintManagerEviction", &format!("Marking for deletion Pod {}/{}", ns(&pod.metadata), name(&pod.metadata)));
            tracing::info!(pod = %format!("{}/{}", ns(&pod.metadata), name(&pod.metadata)), node = name(&node.metadata), "evicting pod");
            delete_ignore_missing(&api, name(&pod.metadata), &DeleteParams::default()).await?;
        }
        Ok(())
    }
}

/// Runs `check` on every node in turn; a node whose check fails is logged
/// and the pass goes on. Returns the names of the nodes that failed.
async fn for_each_node<F, Fut>(nodes: Vec<Arc<Node>>, check: F) -> Vec<String>
where
    F: Fn(Arc<Node>) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let mut failed = Vec::new();
    for node in nodes {
        let node_name = name(&node.metadata).to_string();
        if let Err(e) = check(node).await {
            tracing::warn!(node = node_name, error = %format!("{e:#}"), "node health check failed");
            failed.push(node_name);
        }
    }
    failed
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn one_failing_node_does_not_stop_the_pass() {
        let node = |n: &str| Arc::new(Node { metadata: kube::api::ObjectMeta { name: Some(n.into()), ..Default::default() }, ..Default::default() });
        let checked = Mutex::new(Vec::new());
        let failed = for_each_node(vec![node("a"), node("b"), node("c")], |n| {
            let n = name(&n.metadata).to_string();
            checked.lock().unwrap().push(n.clone());
            async move {
                match n.as_str() {
                    "b" => anyhow::bail!("Operation cannot be fulfilled on nodes \"b\": the object has been modified (409)"),
                    _ => Ok(()),
                }
            }
        })
        .await;
        assert_eq!(failed, vec!["b".to_string()]);
        assert_eq!(*checked.lock().unwrap(), vec!["a", "b", "c"], "the nodes after the failing one are still checked");
    }

    fn taints_str(t: &[Taint]) -> String {
        t.iter().map(|t| format!("{}:{}", t.key.rsplit('/').next().unwrap(), t.effect)).collect::<Vec<_>>().join(",")
    }

    fn check_taints(current: &[(&str, &str)], ready: Option<&str>, expect: Option<&str>) {
        let current: Vec<Taint> = current.iter().map(|(k, e)| Taint { key: k.to_string(), effect: e.to_string(), ..Default::default() }).collect();
        let got = reconcile_taints(&current, &wanted_taints(ready), Time(Utc::now()));
        assert_eq!(got.as_deref().map(taints_str), expect.map(String::from), "{ready:?}");
    }

    #[test]
    fn taints_follow_readiness() {
        check_taints(&[], Some("Unknown"), Some("unreachable:NoSchedule,unreachable:NoExecute"));
        check_taints(&[], None, Some("unreachable:NoSchedule,unreachable:NoExecute"));
        check_taints(&[], Some("False"), Some("not-ready:NoSchedule,not-ready:NoExecute"));
        check_taints(&[], Some("True"), None);
        check_taints(&[(UNREACHABLE, "NoSchedule"), (UNREACHABLE, "NoExecute")], Some("Unknown"), None);
        // Recovery removes ours and keeps the user's.
        check_taints(&[("gpu", "NoSchedule"), (UNREACHABLE, "NoSchedule"), (UNREACHABLE, "NoExecute")], Some("True"), Some("gpu:NoSchedule"));
        check_taints(&[(UNREACHABLE, "NoExecute")], Some("False"), Some("not-ready:NoSchedule,not-ready:NoExecute"));
    }

    fn check_toleration(tolerations: serde_json::Value, taint_key: &str, expect: Option<u64>) {
        let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": {"containers": [], "tolerations": tolerations}})).unwrap();
        let taint = Taint { key: taint_key.into(), effect: "NoExecute".into(), ..Default::default() };
        assert_eq!(toleration_time(&pod, &[&taint], Duration::from_secs(300)), expect.map(Duration::from_secs), "{tolerations} vs {taint_key}");
    }

    #[test]
    fn toleration_seconds() {
        check_toleration(json!([]), UNREACHABLE, Some(300)); // the default
        check_toleration(json!([]), "custom", Some(0)); // untolerated: now
        check_toleration(json!([{"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5}]), UNREACHABLE, Some(5));
        check_toleration(json!([{"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute"}]), UNREACHABLE, None);
        check_toleration(json!([{"operator": "Exists"}]), "custom", None);
        check_toleration(json!([{"key": NOT_READY, "operator": "Exists", "tolerationSeconds": 5}]), UNREACHABLE, Some(300));
        check_toleration(json!([{"key": "custom", "value": "a", "tolerationSeconds": 7}]), "custom", Some(0)); // value mismatch
    }
}
