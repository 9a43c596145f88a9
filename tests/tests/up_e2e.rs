//! `rkube up` end to end (root): a whole single-box cluster with two nodes
//! in network namespaces, the demo app answering through ClusterIP and
//! NodePort, self-healing and spreading, then `rkube down` leaving nothing
//! behind. Unique prefix, subnets and state dir, so it cannot clash with
//! another run; `rkube down --purge` runs on drop even if an assertion fails.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use e2e::up::{free_ranges, run, wait, UpCluster};

fn lines(cmd: &str, args: &[&str]) -> BTreeSet<String> {
    let (_, out) = run(cmd, args);
    out.lines().map(|l| l.to_string()).collect()
}

/// What the host looks like: links, iptables rules, mounts, namespaces.
#[derive(Debug)]
struct HostState {
    links: BTreeSet<String>,
    iptables: BTreeSet<String>,
    mounts: BTreeSet<String>,
    netns: BTreeSet<String>,
}

fn host_state() -> HostState {
    let links = lines("ip", &["-o", "link"]).into_iter().filter_map(|l| l.split(':').nth(1).map(|s| s.trim().split('@').next().unwrap().to_string())).collect();
    // Rules only: counters and timestamps change by themselves.
    let iptables = lines("iptables-save", &[]).into_iter().filter(|l| l.starts_with("-A") || l.starts_with(':')).map(|l| l.split(" [").next().unwrap().to_string()).collect();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap().lines().filter_map(|l| l.split(' ').nth(4).map(String::from)).collect();
    let netns = lines("ip", &["netns", "list"]).into_iter().map(|l| l.split_whitespace().next().unwrap_or("").to_string()).collect();
    HostState { links, iptables, mounts, netns }
}

/// The demo cluster: `rkube up` plus what this test knows of its layout.
struct Cluster {
    up: UpCluster,
    prefix: String,
    subnet: String,
}

impl Cluster {
    fn rkube(&self, args: &[&str]) -> (bool, String) {
        self.up.rkube(args)
    }

    fn kubectl(&self, args: &[&str]) -> String {
        let (ok, out) = self.up.kubectl(args);
        assert!(ok, "kubectl {args:?}: {out}");
        out
    }

    fn node_ip(&self, n: u8) -> String {
        let base = self.subnet.trim_end_matches(".0/24");
        format!("{base}.{}", 10 + n)
    }

    /// GET the demo path at `addr` from inside the node namespace (busybox nc, which works here).
    fn get_in_node(&self, n: u8, addr: &str, port: &str) -> String {
        let ns = format!("{}-node{n}", self.prefix);
        let script = format!("printf 'GET /cgi-bin/app HTTP/1.0\\r\\n\\r\\n' | busybox nc -w 5 {addr} {port}");
        let (_, out) = run("ip", &["netns", "exec", &ns, "sh", "-c", &script]);
        out
    }

    fn get_from_host(&self, addr: &str, port: &str) -> String {
        let script = format!("printf 'GET /cgi-bin/app HTTP/1.0\\r\\n\\r\\n' | busybox nc -w 5 {addr} {port}");
        run("sh", &["-c", &script]).1
    }

    /// pod name → node, for the frontend pods that are Running.
    fn frontend_pods(&self) -> Vec<(String, String)> {
        let out = self.kubectl(&["get", "pods", "-l", "app=frontend", "--field-selector=status.phase=Running", "-o", "jsonpath={range .items[*]}{.metadata.name} {.spec.nodeName} {.metadata.deletionTimestamp}{\"\\n\"}{end}"]);
        out.lines().filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 2).then(|| (f[0].to_string(), f[1].to_string()))
        }).collect()
    }
}

#[test]
fn up_two_nodes_demo_heals_spreads_and_down_cleans() {
    assert!(nix_is_root(), "this test needs root (network namespaces, bridge, routes)");
    let rkube = e2e::bin("rkube");
    for b in ["rkube-apiserver", "rkube-controller", "rkube-scheduler", "rkube-agent", "rkube-proxy"] {
        e2e::bin(b);
    }
    let id = std::process::id();
    // Unique names and ranges that no route on this host uses yet.
    let (subnet, cluster_cidr) = free_ranges(id % 200);
    let prefix = format!("rkt{}", id % 100000);
    let before = host_state();
    let mut c = Cluster { up: UpCluster::new(rkube), prefix: prefix.clone(), subnet: subnet.clone() };
    c.up.up = true;

    let start = Instant::now();
    let (ok, out) = c.rkube(&["up", "--nodes", "2", "--name-prefix", &prefix, "--subnet", &subnet, "--cluster-cidr", &cluster_cidr, "--no-install"]);
    eprintln!("rkube up ({:.1?}):\n{out}", start.elapsed());
    assert!(ok, "rkube up failed:\n{out}");

    // Both nodes Ready, with the podCIDRs the launcher gave them.
    let nodes = c.kubectl(&["get", "nodes", "-o", "jsonpath={range .items[*]}{.metadata.name} {.spec.podCIDR} {.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}{end}"]);
    let cidr_base = cluster_cidr.trim_end_matches(".0.0/16");
    assert_eq!(
        nodes.lines().collect::<Vec<_>>(),
        vec![format!("{prefix}-node1 {cidr_base}.1.0/24 True"), format!("{prefix}-node2 {cidr_base}.2.0/24 True")]
    );

    // A second `up` notices the running cluster.
    let (ok, out) = c.rkube(&["up"]);
    assert!(ok && out.contains("already running"), "{out}");

    // `status` shows every component healthy.
    let (ok, out) = c.rkube(&["status"]);
    assert!(ok, "{out}");
    for comp in ["etcd", "apiserver", "controller", "scheduler", "node1-containerd", "node1-agent", "node1-proxy", "node2-agent", "node2-proxy"] {
        let line = out.lines().find(|l| l.starts_with(&format!("{comp} "))).unwrap_or_else(|| panic!("{comp} missing from status:\n{out}"));
        assert!(line.contains(" ok"), "{comp} not healthy: {line}");
    }
    let (ok, out) = c.rkube(&["logs", "apiserver", "--tail", "5"]);
    assert!(ok && !out.is_empty(), "{out}");

    // The app answers through the ClusterIP (from a node) and the NodePort (from the host, both nodes).
    let cluster_ip = c.kubectl(&["get", "svc", "frontend", "-o", "jsonpath={.spec.clusterIP}"]);
    let node_port = c.kubectl(&["get", "svc", "frontend", "-o", "jsonpath={.spec.ports[0].nodePort}"]);
    for n in [1, 2] {
        let a = c.get_in_node(n, &cluster_ip, "80");
        assert!(a.contains("frontend frontend-") && a.contains("-> backend backend-"), "ClusterIP from node{n}: {a}");
        let a = c.get_from_host(&c.node_ip(n), &node_port);
        assert!(a.contains("frontend frontend-") && a.contains("-> backend backend-"), "NodePort on node{n}: {a}");
    }

    // Deleting a frontend pod is healed by the ReplicaSet.
    let pods = c.frontend_pods();
    assert_eq!(pods.len(), 3, "{pods:?}");
    let victim = pods[0].0.clone();
    c.kubectl(&["delete", "pod", &victim, "--wait=false"]);
    wait("frontend healed", Duration::from_secs(90), || {
        let now = c.frontend_pods();
        now.len() == 3 && !now.iter().any(|(p, _)| *p == victim)
    });

    // Scaling to 6 spreads the pods over both nodes.
    c.kubectl(&["scale", "deployment/frontend", "--replicas=6"]);
    c.kubectl(&["rollout", "status", "deployment/frontend", "--timeout=120s"]);
    wait("6 frontends running", Duration::from_secs(60), || c.frontend_pods().len() == 6);
    let on: BTreeSet<String> = c.frontend_pods().into_iter().map(|(_, n)| n).collect();
    assert_eq!(on, [format!("{prefix}-node1"), format!("{prefix}-node2")].into_iter().collect());

    // Down: nothing of ours is left on the host.
    let (ok, out) = c.rkube(&["down"]);
    assert!(ok, "rkube down:\n{out}");
    let (ok, out) = c.rkube(&["status"]);
    assert!(ok && !out.lines().any(|l| l.contains(" ok")), "{out}");
    let after = host_state();
    let ours = |s: &String| s.contains(&prefix) || s.contains(subnet.trim_end_matches("0/24")) || s.contains(&format!("{cidr_base}.")) || s.contains(c.up.state.path().to_str().unwrap());
    let new_links: Vec<_> = after.links.difference(&before.links).filter(|l| ours(l) || l.starts_with("cni0")).collect();
    assert!(new_links.is_empty(), "links left: {new_links:?}");
    let new_rules: Vec<_> = after.iptables.difference(&before.iptables).filter(|l| ours(l)).collect();
    assert!(new_rules.is_empty(), "iptables rules left: {new_rules:?}");
    let new_mounts: Vec<_> = after.mounts.difference(&before.mounts).filter(|m| ours(m)).collect();
    assert!(new_mounts.is_empty(), "mounts left: {new_mounts:?}");
    let new_netns: Vec<_> = after.netns.difference(&before.netns).filter(|n| ours(n)).collect();
    assert!(new_netns.is_empty(), "netns left: {new_netns:?}");
    assert!(!run("ip", &["route"]).1.contains(cidr_base), "pod routes left");
    // No process of ours runs any more.
    let sd = c.up.state.path().to_str().unwrap().to_string();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd);
            assert!(!cmd.contains(&sd), "process left: {} {cmd}", e.file_name().to_string_lossy());
        }
    }
    let (ok, out) = c.rkube(&["down", "--purge"]);
    assert!(ok, "{out}");
    assert!(!Path::new(&sd).join("cluster.json").exists());
    c.up.up = false;
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").unwrap().lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
}
