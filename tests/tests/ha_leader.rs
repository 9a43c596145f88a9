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
use k8s_openapi::api::core::v1::{Event, Namespace, Pod};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::Api;
use serde_json::json;

/// Lease 4 s, renew deadline 3 s, retry every 1 s (upstream: 15/10/2).
const LEASE: Duration = Duration::from_secs(4);
const ELECTION: [&str; 3] = ["--leader-elect-lease-duration=4s", "--leader-elect-renew-deadline=3s", "--leader-elect-retry-period=1s"];

struct Pair {
    procs: Vec<Proc>,
}

impl Pair {
    fn start(cp: &HaControlPlane, what: &str, binary: &str) -> Pair {
        let procs = (1..=2)
            .map(|i| {
                let mut flags: Vec<String> = vec!["--leader-elect=true".into(), "--bind-address=127.0.0.1".into(), format!("--secure-port={}", e2e::free_port())];
                flags.extend(ELECTION.iter().map(|s| s.to_string()));
                let f: Vec<&str> = flags.iter().map(String::as_str).collect();
                cp.component(&format!("{what}-{i}"), binary, &f)
            })
            .collect();
        Pair { procs }
    }

    /// Index of the process that logged acquiring the lease (after `since` log bytes).
    fn leader(&self, since: &[usize; 2]) -> Option<usize> {
        (0..2).find(|&i| self.procs[i].log_text().get(since[i]..).is_some_and(|t| t.contains("acquired lease")))
    }

    fn log_sizes(&self) -> [usize; 2] {
        [self.procs[0].log_text().len(), self.procs[1].log_text().len()]
    }

    async fn wait_leader(&self, since: &[usize; 2], timeout: Duration) -> usize {
        let t = Instant::now();
        loop {
            if let Some(i) = self.leader(since) {
                return i;
            }
            assert!(t.elapsed() < timeout, "no leader after {timeout:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
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
    let c = controllers.wait_leader(&[0, 0], Duration::from_secs(20)).await;
    let s = schedulers.wait_leader(&[0, 0], Duration::from_secs(20)).await;
    // Both leaders die at once, as a machine would.
    let (cs, ss) = (controllers.log_sizes(), schedulers.log_sizes());
    let t = Instant::now();
    controllers.procs[c].kill9();
    schedulers.procs[s].kill9();
    let nc = controllers.wait_leader(&cs, Duration::from_secs(15)).await;
    let c_took = t.elapsed();
    let ns = schedulers.wait_leader(&ss, Duration::from_secs(15)).await;
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
    let c = controllers.wait_leader(&[0, 0], Duration::from_secs(20)).await;
    let s = schedulers.wait_leader(&[0, 0], Duration::from_secs(20)).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NS);
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    deployments.create(&PostParams::default(), &deployment(5)).await.unwrap();
    wait_running(&pods, 5, Duration::from_secs(30)).await;
    let first_five: BTreeSet<String> = pods.list(&ListParams::default()).await.unwrap().items.into_iter().filter_map(|p| p.metadata.name).collect();

    // Freeze both leaders. Their connections stay open; they hold state.
    let (cs, ss) = (controllers.log_sizes(), schedulers.log_sizes());
    controllers.procs[c].freeze();
    schedulers.procs[s].freeze();
    let frozen = Instant::now();
    assert_eq!(controllers.wait_leader(&cs, Duration::from_secs(15)).await, 1 - c);
    assert_eq!(schedulers.wait_leader(&ss, Duration::from_secs(15)).await, 1 - s);
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
    for (p, what) in [(&controllers.procs[c], "controller"), (&schedulers.procs[s], "scheduler")] {
        let log = p.log_text();
        assert!(log.contains("leadership lost"), "old {what} did not say why it stopped:\n{}", p.log_tail(20));
    }
    // Settle, then count.
    tokio::time::sleep(Duration::from_secs(2)).await;
    wait_running(&pods, 15, Duration::from_secs(10)).await;
    recorder.abort();
    let h = history.lock().unwrap();
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
    let events = Api::<Event>::namespaced(client.clone(), NS).list(&ListParams::default()).await.unwrap();
    let mut scheduled: BTreeMap<String, i32> = BTreeMap::new();
    for e in events.items.iter().filter(|e| e.reason.as_deref() == Some("Scheduled")) {
        *scheduled.entry(e.involved_object.name.clone().unwrap_or_default()).or_default() += e.count.unwrap_or(1);
    }
    assert!(scheduled.values().all(|n| *n == 1), "a pod was scheduled twice: {scheduled:?}");
    let later: Vec<&String> = h.added.keys().filter(|p| !first_five.contains(*p)).collect();
    assert_eq!(later.len(), 10, "{later:?}");
    let missing: Vec<&&String> = later.iter().filter(|p| !scheduled.contains_key(**p)).collect();
    assert!(missing.is_empty(), "no Scheduled event for pods the new leader bound: {missing:?} ({scheduled:?})");
    // The survivors are the leaders and keep working.
    deployments.patch("web", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 17}}))).await.unwrap();
    wait_running(&pods, 17, Duration::from_secs(30)).await;
}
