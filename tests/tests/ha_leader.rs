//! High availability: leader election of the scheduler and the controller manager
//! under faults, against real processes (two of each, short leases).
//!
//! - kill -9 of the leaders: each standby takes over within the lease
//!   duration (plus a retry period), and the cluster goes on working;
//! - SIGSTOP of the leaders for longer than the lease (what a partition or
//!   a frozen VM looks like), work done by the new leaders meanwhile, then
//!   SIGCONT: the old leaders notice they lost the lease before they act
//!   again — they exit — and counting pods and bindings proves nothing was
//!   created or bound twice.
//!
//! (Restarted agents and proxies are covered elsewhere: an agent kill -9
//! and restart keeps the same containers in agent/tests/agent_pods.rs
//! `pod_runs_serves_logs_survives_agent_restart_and_is_deleted`; a proxy
//! kill -9 and restart converges to exactly the rules of a clean run in
//! tests/tests/proxy_e2e.rs `proxy_follows_the_api_in_a_node_namespace`.)

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2e::ha::{record_pods, HaControlPlane, PodHistory, Proc};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, Namespace, Pod};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::Api;
use serde_json::json;

/// Lease 4 s, renew deadline 3 s, retry every 1 s (upstream: 15/10/2).
const LEASE: Duration = Duration::from_secs(4);
const ELECTION: [&str; 3] = ["--leader-elect-lease-duration=4s", "--leader-elect-renew-deadline=3s", "--leader-elect-retry-period=1s"];

/// Two copies of a component with leader election, each with its health
/// port (`/metrics`) on 127.0.0.1.
struct Pair {
    procs: Vec<Proc>,
    ports: Vec<u16>,
    /// The Lease they compete for, in kube-system.
    lease: &'static str,
    what: &'static str,
}

impl Pair {
    fn start(cp: &HaControlPlane, what: &'static str, binary: &str) -> Pair {
        let ports: Vec<u16> = (0..2).map(|_| e2e::free_port()).collect();
        let procs = ports
            .iter()
            .enumerate()
            .map(|(i, port)| {
                let mut flags: Vec<String> = vec!["--leader-elect=true".into(), "--bind-address=127.0.0.1".into(), format!("--secure-port={port}")];
                flags.extend(ELECTION.iter().map(|s| s.to_string()));
                let f: Vec<&str> = flags.iter().map(String::as_str).collect();
                cp.component(&format!("{what}-{}", i + 1), binary, &f)
            })
            .collect();
        let lease = if what == "scheduler" { "kube-scheduler" } else { "kube-controller-manager" };
        Pair { procs, ports, lease, what }
    }

    /// Process `i` says it leads, on its /metrics: the scheduler's
    /// `leader_election_master_status`; the controller manager creates its
    /// work queues (and their series) only once it leads. A frozen or dead
    /// process does not answer, so does not lead as far as anyone can see.
    fn leads(&self, i: usize) -> bool {
        let Some(r) = e2e::ha::try_get(&format!("http://127.0.0.1:{}", self.ports[i]), "/metrics", Duration::from_secs(1)) else { return false };
        let series = if self.what == "scheduler" { r#"leader_election_master_status{name="kube-scheduler"}"# } else { r#"workqueue_adds_total{name="replicaset"}"# };
        let value = e2e::metric(&r.text(), series);
        if self.what == "scheduler" { value == Some(1.0) } else { value.is_some() }
    }

    /// Waits until a process other than `not` leads; returns its index.
    async fn wait_leader(&self, not: Option<usize>, timeout: Duration) -> usize {
        e2e::eventually(&format!("a {} leader", self.what), timeout, || async { (0..2).find(|&i| Some(i) != not && self.leads(i)) }).await
    }

    /// (holderIdentity, leaseTransitions) of their Lease.
    async fn holder(&self, client: &kube::Client) -> (String, i32) {
        let spec = Api::<Lease>::namespaced(client.clone(), "kube-system").get(self.lease).await.unwrap().spec.unwrap();
        (spec.holder_identity.unwrap_or_default(), spec.lease_transitions.unwrap_or_default())
    }
}

async fn setup(ns: &str) -> (HaControlPlane, Proc, kube::Client) {
    let cp = HaControlPlane::start(2, &[]);
    let root = cp.dir.path().join("agent");
    let agent = cp.component(
        "agent",
        "rkube-agent",
        &["--runtime=fake", "--nodes=3", "--node-name-prefix=sim-", "--healthz-port=0", &format!("--port={}", e2e::free_port()), "--node-ip=192.0.2.10", &format!("--root-dir={}", root.display())],
    );
    let client = cp.client().await;
    Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap()).await.unwrap();
    (cp, agent, client)
}

fn deployment(replicas: i32) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "busybox:1"}]}}}
    }))
    .unwrap()
}

async fn wait_running(pods: &Api<Pod>, n: usize, timeout: Duration) {
    let t = Instant::now();
    loop {
        let l = pods.list(&ListParams::default()).await.map(|l| l.items).unwrap_or_default();
        let running = l.iter().filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")).count();
        if running == n && l.len() == n {
            return;
        }
        assert!(t.elapsed() < timeout, "want {n} pods Running, have {} of {}", running, l.len());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_leaders_are_replaced_within_the_lease_duration() {
    let (cp, _agent, client) = setup("failover").await;
    let mut controllers = Pair::start(&cp, "controller", "rkube-controller");
    let mut schedulers = Pair::start(&cp, "scheduler", "rkube-scheduler");
    let c = controllers.wait_leader(None, Duration::from_secs(20)).await;
    let s = schedulers.wait_leader(None, Duration::from_secs(20)).await;
    // Both leaders die at once, as a machine would.
    let t = Instant::now();
    controllers.procs[c].kill9();
    schedulers.procs[s].kill9();
    let nc = controllers.wait_leader(Some(c), Duration::from_secs(15)).await;
    let c_took = t.elapsed();
    let ns = schedulers.wait_leader(Some(s), Duration::from_secs(15)).await;
    let s_took = t.elapsed();
    assert_eq!((nc, ns), (1 - c, 1 - s), "the standbys took over");
    eprintln!("leader kill -9: controller standby leads after {c_took:?}, scheduler standby after {s_took:?} (lease {LEASE:?})");
    // The standby must wait out the lease (it cannot know the leader died),
    // counted from when it *saw* the last renewal (up to one jittered retry,
    // 2.2 s, after it), and acts at its next retry after that: at most
    // lease + 2 jittered retries, plus 1 s for a loaded machine.
    let bound = LEASE + Duration::from_millis(2 * 2200) + Duration::from_secs(1);
    assert!(c_took <= bound && s_took <= bound, "takeover took {c_took:?} / {s_took:?}, more than {bound:?}");
    // The new leaders work: a Deployment's pods are created, bound, Running.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "failover");
    Api::<Deployment>::namespaced(client.clone(), "failover").create(&PostParams::default(), &deployment(6)).await.unwrap();
    wait_running(&pods, 6, Duration::from_secs(30)).await;
}

/// Per pod: times ADDED, and the nodes it was bound to, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_leaders_stop_before_acting_again() {
    const NS: &str = "partition";
    let (cp, _agent, client) = setup(NS).await;
    let ns_rv = Api::<Namespace>::all(client.clone()).get(NS).await.unwrap().metadata.resource_version.unwrap();
    let history = Arc::new(Mutex::new(PodHistory::default()));
    let recorder = record_pods(cp.apiservers[1].url.clone(), NS, ns_rv, history.clone());
    let mut controllers = Pair::start(&cp, "controller", "rkube-controller");
    let mut schedulers = Pair::start(&cp, "scheduler", "rkube-scheduler");
    let c = controllers.wait_leader(None, Duration::from_secs(20)).await;
    let s = schedulers.wait_leader(None, Duration::from_secs(20)).await;
    let (c_holder, s_holder) = (controllers.holder(&client).await, schedulers.holder(&client).await);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NS);
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    deployments.create(&PostParams::default(), &deployment(5)).await.unwrap();
    wait_running(&pods, 5, Duration::from_secs(30)).await;
    let first_five: BTreeSet<String> = pods.list(&ListParams::default()).await.unwrap().items.into_iter().filter_map(|p| p.metadata.name).collect();

    // Freeze both leaders. Their connections stay open; they hold state.
    controllers.procs[c].freeze();
    schedulers.procs[s].freeze();
    let frozen = Instant::now();
    assert_eq!(controllers.wait_leader(Some(c), Duration::from_secs(15)).await, 1 - c);
    assert_eq!(schedulers.wait_leader(Some(s), Duration::from_secs(15)).await, 1 - s);
    // The Leases changed hands: new holders, one transition each.
    let (c_new, s_new) = (controllers.holder(&client).await, schedulers.holder(&client).await);
    assert!(c_new.0 != c_holder.0 && c_new.1 == c_holder.1 + 1, "controller lease {c_holder:?} -> {c_new:?}");
    assert!(s_new.0 != s_holder.0 && s_new.1 == s_holder.1 + 1, "scheduler lease {s_holder:?} -> {s_new:?}");
    // The new leaders scale up (10 new pods created and bound) while the
    // old ones are frozen with caches that know only the first 5. More
    // pending pods sit in the frozen scheduler's watch stream.
    deployments.patch("web", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 15}}))).await.unwrap();
    wait_running(&pods, 15, Duration::from_secs(30)).await;
    // Keep them frozen past their lease however fast the new leaders were
    // (a standby can take over a little before a full lease after the
    // freeze, since the last renewal came before it).
    if let Some(left) = (LEASE + Duration::from_millis(500)).checked_sub(frozen.elapsed()) {
        tokio::time::sleep(left).await;
    }

    // Thaw: each old leader must find out it lost the lease, and exit,
    // without writing anything.
    controllers.procs[c].thaw();
    schedulers.procs[s].thaw();
    let thawed = Instant::now();
    loop {
        let (a, b) = (controllers.procs[c].exited(), schedulers.procs[s].exited());
        if a.is_some() && b.is_some() {
            assert!(!a.unwrap().success() && !b.unwrap().success(), "a leader that lost its lease exits non-zero");
            break;
        }
        assert!(thawed.elapsed() < Duration::from_secs(10), "old leaders still running {:?} after SIGCONT", thawed.elapsed());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("frozen {:?}; old leaders exited {:?} after SIGCONT", thawed - frozen, thawed.elapsed());
    // They stopped because they lost their Lease, and left it alone: the
    // new leaders still hold it, with no further transition.
    assert_eq!(controllers.holder(&client).await, c_new, "the old controller leader wrote its Lease after SIGCONT");
    assert_eq!(schedulers.holder(&client).await, s_new, "the old scheduler leader wrote its Lease after SIGCONT");
    // Count once the recorder has seen everything up to now: a pod
    // created last (bound to a node that does not exist, so nobody acts on
    // it) reaches it after every earlier pod event.
    wait_running(&pods, 15, Duration::from_secs(10)).await;
    let marker: Pod = serde_json::from_value(json!({"metadata": {"name": "marker", "labels": {"app": "marker"}},
        "spec": {"nodeName": "nowhere", "containers": [{"name": "c", "image": "busybox:1"}]}}))
    .unwrap();
    pods.create(&PostParams::default(), &marker).await.unwrap();
    e2e::eventually("the recorder to see the marker pod", Duration::from_secs(30), || async { history.lock().unwrap().added.contains_key("marker").then_some(()) }).await;
    pods.delete("marker", &kube::api::DeleteParams { grace_period_seconds: Some(0), ..Default::default() }).await.unwrap();
    e2e::eventually("the marker pod gone", Duration::from_secs(30), || async { pods.get_opt("marker").await.unwrap().is_none().then_some(()) }).await;
    recorder.abort();
    let mut h = history.lock().unwrap();
    h.added.remove("marker");
    h.deleted.remove("marker");
    h.nodes.remove("marker");
    assert_eq!(h.added.len(), 15, "pods ever created: a double creation shows here");
    assert!(h.added.values().all(|n| *n == 1));
    assert_eq!(h.deleted.values().sum::<usize>(), 0, "pods deleted: extra pods were created and removed");
    let twice: Vec<_> = h.nodes.iter().filter(|(_, v)| v.len() > 1).collect();
    assert!(twice.is_empty(), "pods bound more than once: {twice:?}");
    // Scheduled events: never two for a pod (one successful binding each),
    // and one for each of the 10 pods the new leader bound. The first 5 were
    // bound by the old leader just before it froze; events are written in
    // the background, and a leader that loses its lease exits (as
    // kube-scheduler does), so its unsent events may go with it.
    let later: Vec<String> = h.added.keys().filter(|p| !first_five.contains(*p)).cloned().collect();
    assert_eq!(later.len(), 10, "{later:?}");
    drop(h);
    let scheduled_events = || async {
        let events = Api::<Event>::namespaced(client.clone(), NS).list(&ListParams::default()).await.unwrap();
        let mut scheduled: BTreeMap<String, i32> = BTreeMap::new();
        for e in events.items.iter().filter(|e| e.reason.as_deref() == Some("Scheduled")) {
            *scheduled.entry(e.involved_object.name.clone().unwrap_or_default()).or_default() += e.count.unwrap_or(1);
        }
        scheduled
    };
    let scheduled = e2e::eventually("a Scheduled event for each pod the new leader bound", Duration::from_secs(30), || async {
        let scheduled = scheduled_events().await;
        later.iter().all(|p| scheduled.contains_key(p)).then_some(scheduled)
    })
    .await;
    assert!(scheduled.values().all(|n| *n == 1), "a pod was scheduled twice: {scheduled:?}");
    // The survivors are the leaders and keep working.
    deployments.patch("web", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 17}}))).await.unwrap();
    wait_running(&pods, 17, Duration::from_secs(30)).await;
}
