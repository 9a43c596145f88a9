//! `rkube up` end to end (root): a whole single-box cluster with two nodes
//! in network namespaces, the demo app answering through ClusterIP and
//! NodePort, self-healing and spreading, then `rkube down` leaving nothing
//! behind. Unique prefix, subnets and state dir, so it cannot clash with
//! another run; `rkube down --purge` runs on drop even if an assertion fails.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use e2e::up::{alive, cmdline, free_ranges, netns_procs, run, sandbox_netns, Proc, UpCluster};

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

    /// (name, node, pod IP) of the Running pods labelled `app=<app>`.
    fn pods_of(&self, app: &str) -> Vec<(String, String, String)> {
        let out = self.kubectl(&["get", "pods", "-l", &format!("app={app}"), "--field-selector=status.phase=Running", "-o", "jsonpath={range .items[*]}{.metadata.name} {.spec.nodeName} {.status.podIP} {.metadata.deletionTimestamp}{\"\\n\"}{end}"]);
        out.lines().filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 3).then(|| (f[0].to_string(), f[1].to_string(), f[2].to_string()))
        }).collect()
    }

    /// The node number of a node name (`<prefix>-node2` → 2).
    fn node_no(&self, node: &str) -> u8 {
        node.rsplit_once("-node").and_then(|(_, n)| n.parse().ok()).unwrap_or_else(|| panic!("not a node name: {node}"))
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
    let state = c.up.state.path().to_path_buf();
    check_up_output(&out, &prefix, &c, &state);

    // Both nodes Ready, with the podCIDRs the launcher gave them.
    let nodes = c.kubectl(&["get", "nodes", "-o", "jsonpath={range .items[*]}{.metadata.name} {.spec.podCIDR} {.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}{end}"]);
    let cidr_base = cluster_cidr.trim_end_matches(".0.0/16");
    assert_eq!(
        nodes.lines().collect::<Vec<_>>(),
        vec![format!("{prefix}-node1 {cidr_base}.1.0/24 True"), format!("{prefix}-node2 {cidr_base}.2.0/24 True")]
    );

    let pod_cidr = |n: u8| format!("{cidr_base}.{n}.");

    // Nothing the nodes send can leave the machine: no default route in a
    // node namespace, and the service range routed to the proxy's port-less
    // bridge (rkube-svc0), so a ClusterIP no rule matched goes nowhere.
    for n in [1, 2] {
        let ns = format!("{prefix}-node{n}");
        let (ok, routes) = run("ip", &["-n", &ns, "route", "show", "default"]);
        assert!(ok && routes.trim().is_empty(), "default route in {ns}: {routes}");
        let (ok, routes) = run("ip", &["-n", &ns, "route", "show", "10.96.0.0/12"]);
        assert!(ok && routes.contains("dev rkube-svc0"), "service CIDR not routed to rkube-svc0 in {ns}: {routes:?}");
        let (ok, out) = run("ip", &["-n", &ns, "route", "get", "192.0.2.1"]);
        assert!(!ok, "{ns} has a route to an outside address: {out}");
    }

    // A second `up` notices the running cluster.
    let (ok, out) = c.rkube(&["up"]);
    assert!(ok && out.contains("already running"), "{out}");

    // `status` shows every component healthy.
    let (ok, out) = c.rkube(&["status"]);
    assert!(ok, "{out}");
    for comp in ["etcd", "apiserver", "controller", "scheduler", "node1-containerd", "node1-agent", "node1-proxy", "node2-containerd", "node2-agent", "node2-proxy"] {
        let line = out.lines().find(|l| l.starts_with(&format!("{comp} "))).unwrap_or_else(|| panic!("{comp} missing from status:\n{out}"));
        assert!(line.contains(" ok"), "{comp} not healthy: {line}");
        // COMPONENT(20) PID(8) HEALTH(30) VERSION: each binary's --version.
        let version = line.get(62..).unwrap_or("").trim();
        assert!(!version.is_empty(), "{comp}: no version in {line:?}");
    }
    // The nodes section: `kubectl get nodes -o wide` as the apiserver sees it.
    for n in [1, 2] {
        assert!(out.lines().any(|l| l.starts_with(&format!("{prefix}-node{n} ")) && l.contains(" Ready ")), "node{n} missing from status:\n{out}");
    }

    // `logs --tail 5` is the tail of the component's log file: five lines
    // that end the file as it was at some moment during the command.
    let log_file = state.join("logs/apiserver.log");
    let before_len = std::fs::read_to_string(&log_file).unwrap().lines().count();
    let (ok, out) = c.rkube(&["logs", "apiserver", "--tail", "5"]);
    let file = std::fs::read_to_string(&log_file).unwrap();
    let file: Vec<&str> = file.lines().collect();
    let got: Vec<&str> = out.lines().collect();
    assert!(ok && got.len() == 5, "{out}");
    let end = (before_len..=file.len()).find(|e| *e >= 5 && file[e - 5..*e] == got[..]);
    assert!(end.is_some(), "rkube logs --tail 5 is not the log's tail:\n{out}\nfile ends:\n{}", file[file.len().saturating_sub(5)..].join("\n"));
    let (ok, out) = c.rkube(&["logs", "nosuch"]);
    assert!(!ok && out.contains("unknown component \"nosuch\"") && out.contains("etcd, apiserver, controller, scheduler, node1-containerd, node1-agent, node1-proxy, node2-containerd"), "{out}");

    // The app answers through the ClusterIP (from a node) and the NodePort (from the host, both nodes).
    let cluster_ip = c.kubectl(&["get", "svc", "frontend", "-o", "jsonpath={.spec.clusterIP}"]);
    let node_port = c.kubectl(&["get", "svc", "frontend", "-o", "jsonpath={.spec.ports[0].nodePort}"]);
    for n in [1, 2] {
        let a = c.get_in_node(n, &cluster_ip, "80");
        assert!(a.contains("frontend frontend-") && a.contains("-> backend backend-"), "ClusterIP from node{n}: {a}");
        let a = c.get_from_host(&c.node_ip(n), &node_port);
        assert!(a.contains("frontend frontend-") && a.contains("-> backend backend-"), "NodePort on node{n}: {a}");
    }

    // kubectl's ways into pods work from the host too, where the apiserver
    // runs and the nodes' addresses are on the host's bridge: exec (on
    // each node), and the apiserver's proxy to a pod and to a Service (the
    // pods' ranges are routed via the nodes).
    for (pod, node) in c.frontend_pods() {
        let out = c.kubectl(&["exec", &pod, "--", "hostname"]);
        assert_eq!(out.trim(), pod, "kubectl exec into {pod} on {node}");
    }
    let pod = c.frontend_pods()[0].0.clone();
    let page = c.kubectl(&["get", "--raw", &format!("/api/v1/namespaces/default/pods/{pod}/proxy/cgi-bin/app")]);
    assert!(page.contains(&format!("frontend {pod} -> backend backend-")), "pods/proxy: {page}");
    let page = c.kubectl(&["get", "--raw", "/api/v1/namespaces/default/services/frontend:80/proxy/cgi-bin/app"]);
    assert!(page.contains("frontend frontend-") && page.contains("-> backend backend-"), "services/proxy: {page}");

    // Deleting a frontend pod is healed by the ReplicaSet.
    let pods = c.frontend_pods();
    assert_eq!(pods.len(), 3, "{pods:?}");
    let victim = pods[0].0.clone();
    c.kubectl(&["delete", "pod", &victim, "--wait=false"]);
    e2e::eventually_blocking("frontend healed", Duration::from_secs(90), || {
        let now = c.frontend_pods();
        (now.len() == 3 && !now.iter().any(|(p, _)| *p == victim)).then_some(())
    });

    // Scaling to 6 spreads the pods over both nodes.
    c.kubectl(&["scale", "deployment/frontend", "--replicas=6"]);
    c.kubectl(&["rollout", "status", "deployment/frontend", "--timeout=120s"]);
    e2e::eventually_blocking("6 frontends running", Duration::from_secs(60), || (c.frontend_pods().len() == 6).then_some(()));
    let on: BTreeSet<String> = c.frontend_pods().into_iter().map(|(_, n)| n).collect();
    assert_eq!(on, [format!("{prefix}-node1"), format!("{prefix}-node2")].into_iter().collect());

    // Pod to pod across nodes, without NAT. Each frontend pod has an IP
    // from its own node's podCIDR and answers, on its pod IP, a client in
    // the OTHER node's namespace (the host-gw routes). Its answer names the
    // backend pod the ClusterIP led to and the address that backend saw:
    // the frontend pod's own IP, also when the backend runs on the other
    // node (with the CNI's blanket ipMasq it was the node's IP).
    let backends: Vec<_> = c.pods_of("backend");
    let mut cross = 0;
    for round in 0..10 {
        for (name, node, ip) in c.pods_of("frontend") {
            let n = c.node_no(&node);
            assert!(ip.starts_with(&pod_cidr(n)), "{name} on {node} has IP {ip}, outside {}0/24", pod_cidr(n));
            let other = 3 - n;
            let a = c.get_in_node(other, &ip, "8080");
            let line = a.lines().find(|l| l.starts_with("frontend ")).unwrap_or_else(|| panic!("{name} ({ip}) from node{other}: {a}"));
            let (front, back) = line.split_once(" -> ").unwrap_or_else(|| panic!("{line}"));
            assert_eq!(front, format!("frontend {name}"), "{line}");
            // `backend <pod> from <client address>`
            let f: Vec<&str> = back.split_whitespace().collect();
            assert!(f.len() == 4 && f[0] == "backend" && f[2] == "from", "{name}: backend answer {back:?}");
            assert_eq!(f[3], ip, "backend {} saw {} instead of frontend {name}'s pod IP {ip}", f[1], f[3]);
            let bnode = &backends.iter().find(|b| b.0 == f[1]).unwrap_or_else(|| panic!("unknown backend {} in {backends:?}", f[1])).1;
            cross += (*bnode != node) as u32;
        }
        if cross > 0 {
            break;
        }
        assert!(round < 9, "no frontend call ever reached a backend on the other node");
    }

    // What `down` must remove, beyond names it can filter on: every pod
    // sandbox's network namespace (/run/netns/cni-…, an nsfs mount), and
    // every process in a node's or a pod's namespace (containerd, agent,
    // proxy, shims, pause, httpd).
    let running = c.pods_of("frontend").len() + c.pods_of("backend").len();
    let pod_netns = sandbox_netns(&state);
    assert!(pod_netns.len() >= running, "{} sandbox netns for {running} pods: {pod_netns:?}", pod_netns.len());
    let mut procs: Vec<(String, Proc)> = Vec::new();
    for ns in (1..=2).map(|n| format!("{prefix}-node{n}")).chain(pod_netns.iter().map(|(ns, _)| ns.clone())) {
        let p = netns_procs(&ns);
        assert!(!p.is_empty(), "no process in netns {ns}");
        procs.extend(p.into_iter().map(|p| (ns.clone(), p)));
    }
    // pause + the app's httpd in each pod; containerd, agent, proxy, shims on each node.
    assert!(procs.len() >= 2 * running + 6, "{procs:?}");

    // Down: nothing of ours is left on the host.
    let (ok, out) = c.rkube(&["down"]);
    assert!(ok, "rkube down:\n{out}");
    let left: Vec<String> = procs.iter().filter(|(_, p)| alive(*p)).map(|(ns, p)| format!("{} in {ns}: {}", p.0, cmdline(p.0))).collect();
    assert!(left.is_empty(), "processes left after down:\n{}", left.join("\n"));
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    // libcni's cache (/var/lib/cni/results, shared by the machine) names
    // each attachment after its sandbox: ours must be gone.
    let cni_cache: Vec<String> = std::fs::read_dir("/var/lib/cni/results").into_iter().flatten().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    for (ns, sandbox) in &pod_netns {
        assert!(!Path::new("/run/netns").join(ns).exists(), "pod netns {ns} left");
        assert!(!mountinfo.contains(&format!("/netns/{ns} ")), "nsfs mount of {ns} left");
        let cached: Vec<_> = cni_cache.iter().filter(|f| f.contains(sandbox.as_str())).collect();
        assert!(cached.is_empty(), "CNI cache entries of sandbox {sandbox} left: {cached:?}");
    }
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

    // `up` again restarts the stopped cluster from its state directory:
    // same names and addresses, etcd's data kept, so the demo comes back.
    let restart = Instant::now();
    let (ok, out) = c.rkube(&["up", "--no-install"]);
    eprintln!("rkube up again ({:.1?}):\n{out}", restart.elapsed());
    assert!(ok && out.contains("Restarting the stopped cluster"), "{out}");
    let nodes = c.kubectl(&["get", "nodes", "-o", "jsonpath={range .items[*]}{.metadata.name} {.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}{end}"]);
    assert_eq!(nodes.lines().collect::<Vec<_>>(), vec![format!("{prefix}-node1 True"), format!("{prefix}-node2 True")]);
    for n in [1, 2] {
        let a = c.get_from_host(&c.node_ip(n), &node_port);
        assert!(a.contains("frontend frontend-") && a.contains("-> backend backend-"), "NodePort on node{n} after restart: {a}");
    }

    let (ok, out) = c.rkube(&["down", "--purge"]);
    assert!(ok, "{out}");
    assert!(!Path::new(&sd).exists(), "state dir left after --purge");
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd);
            assert!(!cmd.contains(&sd), "process left after the restart's down: {} {cmd}", e.file_name().to_string_lossy());
        }
    }
    c.up.up = false;
}

/// `rkube up`'s output: a ticked line with its time for every step, then
/// the promised summary.
fn check_up_output(out: &str, prefix: &str, c: &Cluster, state: &Path) {
    let mut steps = vec!["prerequisites".to_string(), "component binaries".into(), format!("node network: bridge {prefix}0"), "etcd".into(), "certificates and kubeconfigs".into(), "rkube-apiserver on https://".into(), "rkube-controller".into(), "rkube-scheduler".into()];
    for n in [1, 2] {
        steps.extend([format!("{prefix}-node{n}: containerd ("), format!("{prefix}-node{n}: rkube-agent on {}", c.node_ip(n)), format!("{prefix}-node{n}: rkube-proxy")]);
    }
    steps.extend(["nodes Ready".into(), "demo application: ".into()]);
    for s in &steps {
        let line = out.lines().find(|l| l.starts_with(&format!("  ✓ {s}"))).unwrap_or_else(|| panic!("no step line for {s:?} in:\n{out}"));
        let secs = line.rsplit_once(" (").and_then(|(_, t)| t.strip_suffix("s)")).and_then(|t| t.parse::<f64>().ok());
        assert!(secs.is_some(), "step line without its time: {line:?}");
    }
    let section = |header: &str| -> Vec<&str> {
        out.lines().skip_while(|l| *l != header).skip(1).take_while(|l| !l.is_empty()).collect()
    };
    let nodes = section("$ kubectl get nodes -o wide");
    assert!(nodes.first().is_some_and(|h| h.starts_with("NAME") && h.contains("INTERNAL-IP")), "{out}");
    for n in [1, 2] {
        assert!(nodes.iter().any(|l| l.starts_with(&format!("{prefix}-node{n} ")) && l.contains(" Ready ") && l.contains(&c.node_ip(n))), "node{n} not in get nodes:\n{out}");
    }
    // kubectl separates the kinds with blank lines: up to the answers.
    let all = out.split_once("$ kubectl get all -o wide\n").and_then(|(_, r)| r.split_once("frontend through ")).map(|(a, _)| a).unwrap_or("");
    for want in ["pod/frontend-", "pod/backend-", "service/frontend", "NodePort", "service/backend", "ClusterIP", "deployment.apps/frontend", "replicaset.apps/backend-", &format!("{prefix}-node1"), &format!("{prefix}-node2")] {
        assert!(all.contains(want), "{want:?} not in get all:\n{out}");
    }
    let answers: Vec<&str> = out.lines().filter(|l| l.starts_with("frontend through ")).collect();
    assert!(answers.iter().any(|l| l.starts_with("frontend through its ClusterIP ")), "{out}");
    for n in [1, 2] {
        assert!(answers.iter().any(|l| l.starts_with(&format!("frontend through NodePort {}:", c.node_ip(n)))), "no NodePort answer for node{n}:\n{out}");
    }
    assert_eq!(answers.len(), 3, "{out}");
    for a in answers {
        assert!(a.contains(": frontend frontend-") && a.contains(" -> backend backend-"), "{a}");
    }
    let export = format!("export KUBECONFIG={}", state.join("pki/admin.kubeconfig").display());
    assert!(out.lines().any(|l| l.trim() == export), "no {export:?} in:\n{out}");
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").unwrap().lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
}
