//! `rkube up --ha` end to end (root): 3 etcd members, 3 apiservers behind
//! HAProxy, 2 controllers and 2 schedulers with leader election, one node.
//! A kill -9'd apiserver is invisible to kubectl (HAProxy moves on); a
//! kill -9'd scheduler leader is replaced by its standby; a short `rkube
//! chaos` run keeps its invariants; `rkube down` leaves nothing behind.
//! Unique prefix, subnets and state dir; `rkube down --purge` runs on drop
//! even if an assertion fails (`e2e::up::UpCluster`).

use std::time::{Duration, Instant};

use e2e::up::{free_ranges, route_free, run, UpCluster};

#[test]
fn up_ha_survives_an_apiserver_and_a_scheduler_leader_kill_and_down_cleans() {
    let rkube = e2e::bin("rkube");
    for b in ["rkube-apiserver", "rkube-controller", "rkube-scheduler", "rkube-agent", "rkube-proxy"] {
        e2e::bin(b);
    }
    let id = std::process::id();
    let (subnet, cluster_cidr) = free_ranges(id % 200 + 101);
    let base = subnet.trim_end_matches(".0/24").to_string();
    let prefix = format!("rkh{}", id % 100000);
    let mut c = UpCluster::new(rkube);
    c.up = true;

    let start = Instant::now();
    let (ok, out) = c.rkube(&["up", "--ha", "--nodes", "1", "--no-demo", "--name-prefix", &prefix, "--subnet", &subnet, "--cluster-cidr", &cluster_cidr, "--no-install"]);
    eprintln!("rkube up --ha ({:.1?}):\n{out}", start.elapsed());
    assert!(ok, "rkube up --ha failed:\n{out}");

    let (ok, out) = c.rkube(&["status"]);
    assert!(ok, "{out}");
    for comp in ["etcd-1", "etcd-2", "etcd-3", "apiserver-1", "apiserver-2", "apiserver-3", "haproxy", "controller-1", "controller-2", "scheduler-1", "scheduler-2", "node1-agent", "node1-proxy"] {
        let line = out.lines().find(|l| l.starts_with(&format!("{comp} "))).unwrap_or_else(|| panic!("{comp} missing from status:\n{out}"));
        assert!(line.contains(" ok"), "{comp} not healthy: {line}");
    }
    // Every kubeconfig names HAProxy's address; the kubernetes Service
    // lists the three apiservers, each on its own address.
    let kc = std::fs::read_to_string(c.state.path().join("pki/kube-scheduler.kubeconfig")).unwrap();
    assert!(kc.contains(&format!("server: https://{base}.1:6443")), "{kc}");
    let want = format!("{base}.2:6443,{base}.3:6443,{base}.4:6443");
    e2e::eventually_blocking("kubernetes endpoints list the 3 apiservers", Duration::from_secs(20), || {
        (c.kubectl(&["get", "endpoints", "kubernetes", "-o", "jsonpath={range .subsets[*].addresses[*]}{.ip}:6443,{end}"]).1.trim_end_matches(',') == want).then_some(())
    });

    // kill -9 one apiserver: kubectl through HAProxy does not notice.
    let killed = c.pid("apiserver-1");
    unsafe { libc::kill(killed, libc::SIGKILL) };
    // The kill is asynchronous: until the process has exited, its listening
    // socket still completes TCP handshakes, and a connection HAProxy has
    // already handed to it then ends in EOF — no proxy can resend that. The
    // claim is about a dead apiserver, so wait until it is one.
    e2e::eventually_blocking("the killed apiserver has exited", Duration::from_secs(10), || {
        std::fs::read_to_string(format!("/proc/{killed}/stat")).map_or(true, |s| s.rsplit(')').next().is_some_and(|r| r.trim_start().starts_with('Z'))).then_some(())
    });
    let mut failures = Vec::new();
    for _ in 0..30 {
        let (ok, out) = c.kubectl(&["get", "--raw", "/api/v1/namespaces/default"]);
        if !ok {
            failures.push(out);
        }
    }
    assert!(failures.is_empty(), "requests failed after an apiserver died: {failures:#?}");
    let (_, out) = c.rkube(&["status"]);
    assert!(out.lines().any(|l| l.starts_with("apiserver-1 ") && l.contains("stopped")), "{out}");

    // kill -9 the scheduler leader: the standby takes over within the
    // lease duration (15 s) plus a retry period. Who leads is what each
    // scheduler reports on /metrics (`leader_election_master_status`, on
    // the health port `rkube up` recorded in cluster.json).
    let spec: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(c.state.path().join("cluster.json")).unwrap()).unwrap();
    let ports: Vec<u64> = spec["ha"]["scheduler"].as_array().expect("cluster.json: ha.scheduler").iter().map(|p| p.as_u64().unwrap()).collect();
    assert_eq!(ports.len(), 2, "{spec}");
    let leads = |i: usize| {
        e2e::try_http(&format!("http://127.0.0.1:{}", ports[i]), "GET", "/metrics", None, b"")
            .ok()
            .and_then(|r| e2e::metric(&r.text(), r#"leader_election_master_status{name="kube-scheduler"}"#))
            == Some(1.0)
    };
    let leader = e2e::eventually_blocking("a scheduler leads", Duration::from_secs(25), || (0..2).find(|&i| leads(i)));
    assert!(!leads(1 - leader), "both schedulers say they lead");
    let (leader, standby, standby_index) = (format!("scheduler-{}", leader + 1), format!("scheduler-{}", 2 - leader), 1 - leader);
    let t = Instant::now();
    unsafe { libc::kill(c.pid(&leader), libc::SIGKILL) };
    e2e::eventually_blocking("the standby scheduler to take over", Duration::from_secs(25), || leads(standby_index).then_some(()));
    eprintln!("{standby} took over {:?} after {leader} was killed", t.elapsed());

    // `rkube chaos` (a short run): it first restarts what we killed, then
    // kills and pauses control-plane processes under a workload, heals,
    // and checks its invariants.
    let t = Instant::now();
    let (ok, out) = c.rkube(&["chaos", "--duration", "20s", "--interval", "2s", "--seed", "3"]);
    eprintln!("rkube chaos ({:.1?}):\n{out}", t.elapsed());
    assert!(ok, "rkube chaos failed:\n{out}");
    assert!(out.contains("first restarted apiserver-1"), "{out}");
    assert!(out.lines().any(|l| l.contains("kill -9 ") || l.contains("SIGSTOP ")), "no fault injected:\n{out}");
    for inv in ["✓ pods = replicas", "✓ no double binding", "✓ no lost objects"] {
        assert!(out.contains(inv), "{inv} missing:\n{out}");
    }

    // Down: every process gone, the bridge and namespace too.
    let (ok, out) = c.rkube(&["down"]);
    assert!(ok, "rkube down:\n{out}");
    let sd = c.state.path().to_str().unwrap().to_string();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd);
            assert!(!cmd.contains(&sd), "process left: {} {cmd}", e.file_name().to_string_lossy());
        }
    }
    assert!(!run("ip", &["-o", "link"]).1.contains(&format!("{prefix}0")), "bridge left");
    assert!(!run("ip", &["netns", "list"]).1.contains(&prefix), "namespace left");
    assert!(route_free(&format!("{base}.")), "routes left");
    let (ok, out) = c.rkube(&["down", "--purge"]);
    assert!(ok, "{out}");
    c.up = false;
}
