//! Integration tests with the real iptables, in network namespaces the test
//! creates: a client, a node (where the proxier runs, so its rules land in
//! the node's tables only) and two backends, wired with veth pairs and with
//! no route to the outside. Needs root; skipped (with a message) otherwise.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Endpoints, Service};
use rkube_proxy::conntrack::ConntrackCmd;
use rkube_proxy::iptables::{Iptables, IptablesCmd, RestoreError};
use rkube_proxy::netns::{veth, NetNs};
use rkube_proxy::proxier::{Proxier, ProxierConfig, SyncKind};
use rkube_proxy::route;
use rkube_proxy::rules::RulesConfig;
use serde_json::json;

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| s.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0")))
        .unwrap_or(false)
}

macro_rules! require_root {
    () => {
        if !is_root() {
            eprintln!("skipped: needs root (network namespaces, iptables)");
            return;
        }
    };
}

/// A backend: answers TCP 8080 and UDP 5353 with its name, until dropped.
struct Backend {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Backend {
    fn start(ns: &NetNs, name: &'static str) -> Backend {
        let stop = Arc::new(AtomicBool::new(false));
        let s1 = stop.clone();
        let tcp = ns
            .thread(move || {
                let l = TcpListener::bind("0.0.0.0:8080").unwrap();
                l.set_nonblocking(true).unwrap();
                while !s1.load(Ordering::Relaxed) {
                    match l.accept() {
                        Ok((mut c, _)) => {
                            let _ = c.write_all(name.as_bytes());
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            })
            .unwrap();
        let s2 = stop.clone();
        let udp = ns
            .thread(move || {
                let u = UdpSocket::bind("0.0.0.0:5353").unwrap();
                u.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
                let mut buf = [0u8; 64];
                while !s2.load(Ordering::Relaxed) {
                    if let Ok((_, from)) = u.recv_from(&mut buf) {
                        let _ = u.send_to(name.as_bytes(), from);
                    }
                }
            })
            .unwrap();
        Backend { stop, threads: vec![tcp, udp] }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// client ── node ──┬── b1 (10.244.1.2)
///  192.168.10.2    └── b2 (10.244.2.2)
struct Topo {
    // Field order = drop order: backends stop before namespaces go.
    _backends: Vec<Backend>,
    client: NetNs,
    node: NetNs,
    _b1: NetNs,
    _b2: NetNs,
}

fn topo() -> Topo {
    let client = NetNs::new("rkc").unwrap();
    let node = NetNs::new("rkn").unwrap();
    let b1 = NetNs::new("rkb").unwrap();
    let b2 = NetNs::new("rkb").unwrap();
    veth(&node, "n0", "192.168.10.1/24", &client, "c0", "192.168.10.2/24").unwrap();
    veth(&node, "n1", "10.244.1.1/24", &b1, "e0", "10.244.1.2/24").unwrap();
    veth(&node, "n2", "10.244.2.1/24", &b2, "e0", "10.244.2.2/24").unwrap();
    client.ip(&["route", "add", "10.96.0.0/16", "via", "192.168.10.1"]).unwrap();
    b1.ip(&["route", "add", "192.168.10.0/24", "via", "10.244.1.1"]).unwrap();
    b2.ip(&["route", "add", "192.168.10.0/24", "via", "10.244.2.1"]).unwrap();
    node.sysctl("net/ipv4/ip_forward", "1").unwrap();
    let backends = vec![Backend::start(&b1, "b1"), Backend::start(&b2, "b2")];
    Topo { _backends: backends, client, node, _b1: b1, _b2: b2 }
}

impl Topo {
    fn names(&self) -> Vec<String> {
        [&self.client, &self.node, &self._b1, &self._b2].iter().map(|n| n.name().to_string()).collect()
    }
}

/// After the test dropped everything it made: none of `names` is left in
/// `ip netns list` (a namespace left behind would keep its veths, rules and
/// routes alive).
fn assert_namespaces_gone(names: &[String]) {
    let out = std::process::Command::new("ip").args(["netns", "list"]).output().unwrap();
    let list = String::from_utf8_lossy(&out.stdout);
    let left: Vec<&str> = list.lines().filter_map(|l| l.split_whitespace().next()).filter(|n| names.iter().any(|m| m == n)).collect();
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
}

fn proxier() -> Arc<Proxier> {
    let cfg = ProxierConfig {
        rules: RulesConfig { cluster_cidr: Some("10.244.0.0/16".parse().unwrap()), ..Default::default() },
        ..Default::default()
    };
    let p = Proxier::new(cfg, Arc::new(IptablesCmd::default()), Arc::new(ConntrackCmd::default()));
    p.on_services_synced();
    p.on_endpoints_synced();
    p
}

/// Proxier work that runs commands must run inside the node namespace.
fn sync(t: &Topo, p: &Arc<Proxier>, kind: SyncKind) {
    let p = p.clone();
    t.node.run(move || p.sync(kind)).unwrap().unwrap();
}

fn setup_node(t: &Topo) {
    t.node
        .run(|| {
            route::ensure_service_route_blocking(route::DEFAULT_DEVICE, "10.96.0.0/16".parse().unwrap())?;
            route::set_route_localnet()
        })
        .unwrap()
        .unwrap();
}

fn tcp_get(addr: &str) -> Option<String> {
    let addr: SocketAddr = addr.parse().unwrap();
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(700)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

fn client_gets(ns: &NetNs, addr: &'static str, n: usize) -> Vec<Option<String>> {
    ns.run(move || (0..n).map(|_| tcp_get(addr)).collect()).unwrap()
}

fn service(ns: &str, name: &str, spec: serde_json::Value) -> Service {
    serde_json::from_value(json!({"metadata":{"namespace":ns,"name":name},"spec":spec})).unwrap()
}

fn endpoints(ns: &str, name: &str, ips: &[&str], port_name: &str, port: u16, proto: &str) -> Endpoints {
    let addrs: Vec<_> = ips.iter().map(|ip| json!({"ip": ip})).collect();
    serde_json::from_value(json!({"metadata":{"namespace":ns,"name":name},
        "subsets":[{"addresses":addrs,"ports":[{"name":port_name,"port":port,"protocol":proto}]}]}))
    .unwrap()
}

fn save(ns: &NetNs, table: &str) -> String {
    ns.exec(&["iptables-save", "-t", table]).unwrap()
}

/// Rules/chains of a saved table, without comments and counters lines.
fn lines_with(saved: &str, needle: &str) -> Vec<String> {
    saved.lines().filter(|l| l.contains(needle)).map(str::to_string).collect()
}

#[test]
fn clusterip_nodeport_endpoint_changes_and_service_delete() {
    require_root!();
    let t = topo();
    // Rules the proxy did not write; they must survive every sync.
    for cmd in [
        "iptables -t nat -N TEST-KEEP",
        "iptables -t nat -A TEST-KEEP -j RETURN",
        "iptables -t nat -A PREROUTING -s 1.2.3.4/32 -j TEST-KEEP",
        "iptables -A INPUT -s 1.2.3.4/32 -j ACCEPT",
    ] {
        t.node.exec(&cmd.split(' ').collect::<Vec<_>>()).unwrap();
    }
    let foreign_nat = lines_with(&save(&t.node, "nat"), "1.2.3.4");
    let foreign_filter = lines_with(&save(&t.node, "filter"), "1.2.3.4");
    setup_node(&t);

    // A unique namespace makes our chain names unique to this test run, so
    // we can also check that nothing landed in the host's tables.
    let ns = rkube_proxy::netns::unique_name("it");
    let p = proxier();
    p.on_service_update(&service(&ns, "web", json!({"type":"NodePort","clusterIP":"10.96.0.10",
        "ports":[{"name":"http","port":80,"targetPort":"http","nodePort":30080}]})));
    p.on_endpoints_update(&endpoints(&ns, "web", &["10.244.1.2", "10.244.2.2"], "http", 8080, "TCP"));
    sync(&t, &p, SyncKind::Auto);
    let svc_chain = rkube_proxy::chain_names::service_port_chain_name(&format!("{ns}/web:http"), "tcp");
    assert!(save(&t.node, "nat").contains(&svc_chain));

    // ClusterIP from the client: both endpoints get traffic.
    let got: BTreeSet<Option<String>> = client_gets(&t.client, "10.96.0.10:80", 40).into_iter().collect();
    assert_eq!(got, BTreeSet::from([Some("b1".to_string()), Some("b2".to_string())]));
    // NodePort on the node's address, from the client.
    assert!(client_gets(&t.client, "192.168.10.1:30080", 4).iter().all(|r| r.is_some()));
    // NodePort on 127.0.0.1 and ClusterIP from the node itself.
    let local = t.node.run(|| (tcp_get("127.0.0.1:30080"), tcp_get("10.96.0.10:80"))).unwrap();
    assert!(local.0.is_some() && local.1.is_some(), "{local:?}");

    // Remove b2: a partial sync, then only b1 answers.
    p.on_endpoints_update(&endpoints(&ns, "web", &["10.244.1.2"], "http", 8080, "TCP"));
    let pp = p.clone();
    let r = t.node.run(move || pp.sync(SyncKind::Auto)).unwrap().unwrap();
    assert!(!r.full && r.chains_deleted == 1, "{r:?}");
    let got: BTreeSet<Option<String>> = client_gets(&t.client, "10.96.0.10:80", 20).into_iter().collect();
    assert_eq!(got, BTreeSet::from([Some("b1".to_string())]));

    // A full sync that re-reads the tables does not duplicate our jumps.
    sync(&t, &p, SyncKind::FullInspect);
    let nat = save(&t.node, "nat");
    assert_eq!(lines_with(&nat, "-A PREROUTING -m comment --comment \"kubernetes service portals\"").len(), 1, "{nat}");

    // Delete the service: its chains go, traffic to it dies on the node.
    p.on_service_delete(&service(&ns, "web", json!({})));
    p.on_endpoints_delete(&endpoints(&ns, "web", &[], "http", 8080, "TCP"));
    sync(&t, &p, SyncKind::Auto);
    let nat = save(&t.node, "nat");
    for prefix in ["KUBE-SVC-", "KUBE-SEP-", "KUBE-EXT-"] {
        assert!(!nat.contains(prefix), "{prefix} chain left:\n{nat}");
    }
    assert_eq!(client_gets(&t.client, "10.96.0.10:80", 1), vec![None]);

    // Foreign rules untouched; nothing of ours in the host's tables.
    assert_eq!(lines_with(&save(&t.node, "nat"), "1.2.3.4"), foreign_nat);
    assert_eq!(lines_with(&save(&t.node, "filter"), "1.2.3.4"), foreign_filter);
    assert!(save(&t.node, "nat").contains(":TEST-KEEP"));
    let host = std::process::Command::new("iptables-save").args(["-t", "nat"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&host.stdout).contains(&svc_chain), "rules leaked into the host");
    let names = t.names();
    drop(t);
    assert_namespaces_gone(&names);
}

#[test]
fn udp_conntrack_flushed_when_endpoint_removed() {
    require_root!();
    let t = topo();
    setup_node(&t);
    let ns = rkube_proxy::netns::unique_name("it");
    let p = proxier();
    p.on_service_update(&service(&ns, "dns", json!({"clusterIP":"10.96.0.53",
        "ports":[{"name":"dns","port":53,"protocol":"UDP","targetPort":5353}]})));
    p.on_endpoints_update(&endpoints(&ns, "dns", &["10.244.1.2", "10.244.2.2"], "dns", 5353, "UDP"));
    sync(&t, &p, SyncKind::Auto);

    // One client socket (fixed source port): conntrack pins it to one backend.
    let sock = t
        .client
        .run(|| {
            let s = UdpSocket::bind("192.168.10.2:40053").unwrap();
            s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
            s
        })
        .unwrap();
    let ask = |s: &UdpSocket| -> Option<String> {
        s.send_to(b"?", "10.96.0.53:53").ok()?;
        let mut buf = [0u8; 16];
        let (n, _) = s.recv_from(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    };
    let first = ask(&sock).expect("udp answer");
    for _ in 0..5 {
        assert_eq!(ask(&sock).as_deref(), Some(first.as_str()), "conntrack keeps one backend");
    }
    // Remove the backend that answered; it keeps running, so without the
    // conntrack flush it would go on answering.
    let (stays, stays_name) = if first == "b1" { ("10.244.2.2", "b2") } else { ("10.244.1.2", "b1") };
    p.on_endpoints_update(&endpoints(&ns, "dns", &[stays], "dns", 5353, "UDP"));
    let pp = p.clone();
    let r = t.node.run(move || pp.sync(SyncKind::Auto)).unwrap().unwrap();
    // One UDP endpoint went: exactly one conntrack clean-up (its flows).
    assert_eq!(r.conntrack_cleanups, 1, "{r:?}");
    assert_eq!(ask(&sock).as_deref(), Some(stays_name));
    let names = t.names();
    drop(sock);
    drop(t);
    assert_namespaces_gone(&names);
}

#[test]
fn restart_takes_over_leftover_chains() {
    require_root!();
    let t = topo();
    setup_node(&t);
    let ns = rkube_proxy::netns::unique_name("it");
    let a = service(&ns, "a", json!({"clusterIP":"10.96.0.21","ports":[{"port":80}]}));
    let b = service(&ns, "b", json!({"clusterIP":"10.96.0.22","ports":[{"port":80}]}));
    let ea = endpoints(&ns, "a", &["10.244.1.2"], "", 8080, "TCP");
    let eb = endpoints(&ns, "b", &["10.244.2.2"], "", 8080, "TCP");
    let first = proxier();
    for s in [&a, &b] {
        first.on_service_update(s);
    }
    for e in [&ea, &eb] {
        first.on_endpoints_update(e);
    }
    sync(&t, &first, SyncKind::Auto);
    drop(first);
    let a_chain = rkube_proxy::chain_names::service_port_chain_name(&format!("{ns}/a"), "tcp");
    let b_chain = rkube_proxy::chain_names::service_port_chain_name(&format!("{ns}/b"), "tcp");
    assert!(save(&t.node, "nat").contains(&a_chain));

    // A new run that only knows b: a's chains are deleted at the first sync,
    // jumps are not added twice.
    let second = proxier();
    second.on_service_update(&b);
    second.on_endpoints_update(&eb);
    sync(&t, &second, SyncKind::Auto);
    let nat = save(&t.node, "nat");
    assert!(!nat.contains(&a_chain) && nat.contains(&b_chain), "{nat}");
    assert_eq!(lines_with(&nat, "-j KUBE-POSTROUTING").len(), 1, "{nat}");
    assert_eq!(lines_with(&save(&t.node, "filter"), "-j KUBE-FORWARD").len(), 1);
    assert_eq!(client_gets(&t.client, "10.96.0.22:80", 1), vec![Some("b2".to_string())]);
    // b's service that lost its endpoints is REJECTed: refused, not a timeout.
    second.on_endpoints_update(&endpoints(&ns, "b", &[], "", 8080, "TCP"));
    sync(&t, &second, SyncKind::Auto);
    let err = t
        .client
        .run(|| TcpStream::connect_timeout(&"10.96.0.22:80".parse().unwrap(), Duration::from_secs(2)).unwrap_err().kind())
        .unwrap();
    assert_eq!(err, std::io::ErrorKind::ConnectionRefused);
    let names = t.names();
    drop(t);
    assert_namespaces_gone(&names);
}

/// Packets the gateway namespace saw for `dst` (a counting rule in its raw
/// PREROUTING, the first hook a packet arriving on its veth meets).
fn gateway_count(gw: &NetNs, dst: &str) -> u64 {
    let out = gw.exec(&["iptables", "-t", "raw", "-L", "PREROUTING", "-v", "-n", "-x"]).unwrap();
    let line = out.lines().find(|l| l.contains(dst)).unwrap_or_else(|| panic!("no counting rule for {dst}:\n{out}"));
    line.split_whitespace().next().unwrap().parse().unwrap()
}

/// "Traffic stays on the machine": the node gets a default route to a
/// gateway namespace (standing in for the machine's uplink; it has no route
/// anywhere, so whatever reaches it dies there). A connection to a cluster
/// IP no Service holds, from the node itself and forwarded from a client,
/// reaches the gateway without the service-CIDR route (the control: the
/// test can fail) and never once `--service-cluster-ip-range` routes the
/// range to `rkube-svc0`. A real Service in the range still works.
#[test]
fn unmatched_cluster_ip_never_reaches_the_default_gateway() {
    require_root!();
    let t = topo();
    let gw = NetNs::new("rkg").unwrap();
    let mut names = t.names();
    names.push(gw.name().to_string());
    veth(&t.node, "g0", "192.168.20.1/24", &gw, "u0", "192.168.20.254/24").unwrap();
    t.node.ip(&["route", "add", "default", "via", "192.168.20.254"]).unwrap();
    gw.exec(&["iptables", "-t", "raw", "-A", "PREROUTING", "-d", "10.96.0.0/16"]).unwrap();

    let p = proxier();
    let ns = rkube_proxy::netns::unique_name("it");
    p.on_service_update(&service(&ns, "web", json!({"clusterIP":"10.96.0.10","ports":[{"port":80}]})));
    p.on_endpoints_update(&endpoints(&ns, "web", &["10.244.1.2"], "", 8080, "TCP"));
    sync(&t, &p, SyncKind::Auto);

    let unmatched = "10.96.0.99:80";
    let try_unmatched = || {
        assert_eq!(t.node.run(|| tcp_get(unmatched)).unwrap(), None);
        assert_eq!(client_gets(&t.client, unmatched, 1), vec![None]);
    };
    // Control: with only the default route, both attempts leak to the gateway.
    try_unmatched();
    let leaked = gateway_count(&gw, "10.96.0.0/16");
    assert!(leaked >= 2, "control failed: without the route the gateway should have seen the SYNs ({leaked})");

    // The proxy's node setup, from its command line.
    let opts = <rkube_proxy::options::Options as clap::Parser>::try_parse_from([
        "rkube-proxy",
        "--service-cluster-ip-range=10.96.0.0/16",
    ])
    .unwrap();
    t.node
        .run(move || tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(rkube_proxy::run::prepare_node(&opts)))
        .unwrap()
        .unwrap();
    let routes = t.node.ip(&["route", "show", "10.96.0.0/16"]).unwrap();
    assert!(routes.contains(route::DEFAULT_DEVICE), "{routes}");
    gw.exec(&["iptables", "-t", "raw", "-Z", "PREROUTING"]).unwrap();
    try_unmatched();
    assert_eq!(gateway_count(&gw, "10.96.0.0/16"), 0, "a packet to an unmatched cluster IP left the node");
    // The Service's cluster IP is DNATed before routing picks rkube-svc0.
    assert_eq!(t.node.run(|| tcp_get("10.96.0.10:80")).unwrap().as_deref(), Some("b1"));
    assert_eq!(client_gets(&t.client, "10.96.0.10:80", 1), vec![Some("b1".to_string())]);
    assert_eq!(gateway_count(&gw, "10.96.0.0/16"), 0);

    drop(gw);
    drop(t);
    assert_namespaces_gone(&names);
}

/// The real iptables, with a fault to inject: the next restore gets `line`
/// inserted before the `COMMIT` of `table` (a jump to a chain that does not
/// exist, which the kernel refuses at commit time).
struct Faulty {
    real: IptablesCmd,
    next_fault: Mutex<Option<(&'static str, String)>>,
    /// The input of the last restore, as sent.
    last: Mutex<String>,
}

impl Iptables for Faulty {
    fn restore(&self, data: &str) -> Result<(), RestoreError> {
        let mut data = data.to_string();
        if let Some((table, line)) = self.next_fault.lock().unwrap().take() {
            let start = data.find(&format!("*{table}\n")).expect("table in restore input");
            let commit = start + data[start..].find("COMMIT\n").unwrap();
            data.insert_str(commit, &format!("{line}\n"));
        }
        *self.last.lock().unwrap() = data.clone();
        self.real.restore(&data)
    }
    fn save(&self, table: &str) -> anyhow::Result<String> {
        self.real.save(table)
    }
}

/// `kubeproxy_sync_proxy_rules_duration_seconds_count`: successful syncs.
fn successful_syncs(p: &Proxier) -> u64 {
    let m = p.metrics.encode();
    let line = m.lines().find(|l| l.starts_with("kubeproxy_sync_proxy_rules_duration_seconds_count ")).unwrap_or_else(|| panic!("{m}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

/// `iptables-save -t table` without comments and counters: what a table
/// holds, comparable before and after.
fn table_state(ns: &NetNs, table: &str) -> String {
    save(ns, table)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| if l.starts_with(':') { l.rsplit_once(' ').map_or(l, |(a, _)| a) } else { l })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A restore that fails in the real kernel: the error names the line, the
/// failing table is exactly as before (nothing half-written), the failure
/// is counted, and the sync loop's automatic retry (a full sync after
/// `retry_period`) repairs. A failure in the second table (filter) leaves
/// the first (nat) committed whole, as iptables-restore commits per table.
#[test]
fn failed_restore_leaves_table_unchanged_and_retry_repairs() {
    require_root!();
    let t = topo();
    setup_node(&t);
    let names = t.names();
    let ipt = Arc::new(Faulty { real: IptablesCmd::default(), next_fault: Mutex::new(None), last: Mutex::new(String::new()) });
    let cfg = ProxierConfig {
        rules: RulesConfig { cluster_cidr: Some("10.244.0.0/16".parse().unwrap()), ..Default::default() },
        min_sync_period: Duration::ZERO,
        retry_period: Duration::from_millis(300),
        ..Default::default()
    };
    let p = Proxier::new(cfg, ipt.clone(), Arc::new(ConntrackCmd::default()));
    p.on_services_synced();
    p.on_endpoints_synced();
    let ns = rkube_proxy::netns::unique_name("it");
    p.on_service_update(&service(&ns, "web", json!({"clusterIP":"10.96.0.30","ports":[{"port":80}]})));
    p.on_endpoints_update(&endpoints(&ns, "web", &["10.244.1.2"], "", 8080, "TCP"));
    sync(&t, &p, SyncKind::Auto);
    assert_eq!(client_gets(&t.client, "10.96.0.30:80", 1), vec![Some("b1".to_string())]);
    let (nat0, filter0) = (table_state(&t.node, "nat"), table_state(&t.node, "filter"));

    // 1. Fault in nat (a partial sync): nothing of it is applied.
    let bad = "-A KUBE-SERVICES -j KUBE-NO-SUCH-CHAIN";
    p.on_endpoints_update(&endpoints(&ns, "web", &["10.244.2.2"], "", 8080, "TCP"));
    *ipt.next_fault.lock().unwrap() = Some(("nat", bad.to_string()));
    let pp = p.clone();
    let err = t.node.run(move || pp.sync(SyncKind::Auto)).unwrap().unwrap_err();
    let re = err.downcast_ref::<RestoreError>().expect("a RestoreError");
    let sent = ipt.last.lock().unwrap().clone();
    let bad_line = sent.lines().position(|l| l == bad).unwrap() + 1;
    assert_eq!(re.line, Some(bad_line), "{re}");
    assert!(re.to_string().contains(&format!("at line {bad_line} (`{bad}`)")), "{re}");
    assert_eq!(table_state(&t.node, "nat"), nat0, "nat half-written");
    assert_eq!(table_state(&t.node, "filter"), filter0);
    assert_eq!(p.metrics.restore_failures.get(), 1);
    assert_eq!(p.metrics.partial_restore_failures.get(), 1);
    assert_eq!(client_gets(&t.client, "10.96.0.30:80", 1), vec![Some("b1".to_string())], "old rules still serve");

    // 2. Fault in filter (the retry, a full sync): filter is as before, nat
    //    was committed whole before filter failed.
    *ipt.next_fault.lock().unwrap() = Some(("filter", "-A KUBE-FORWARD -j KUBE-NO-SUCH-CHAIN".to_string()));
    let pp = p.clone();
    assert!(t.node.run(move || pp.sync(SyncKind::Auto)).unwrap().is_err());
    assert_eq!(table_state(&t.node, "filter"), filter0, "filter half-written");
    assert!(table_state(&t.node, "nat").contains("--to-destination 10.244.2.2:8080"));
    assert_eq!(p.metrics.restore_failures.get(), 2);

    // 3. The loop retries on its own, with a full sync that repairs filter.
    let runner = {
        let p = p.clone();
        t.node.thread(move || p.run_blocking()).unwrap()
    };
    assert_eq!(successful_syncs(&p), 1);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while successful_syncs(&p) < 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    p.stop();
    runner.join().unwrap();
    assert_eq!(successful_syncs(&p), 2, "no automatic retry");
    assert!(!table_state(&t.node, "filter").contains("KUBE-NO-SUCH-CHAIN"));
    assert_eq!(p.metrics.restore_failures.get(), 2);
    assert_eq!(client_gets(&t.client, "10.96.0.30:80", 1), vec![Some("b2".to_string())]);

    drop(t);
    assert_namespaces_gone(&names);
}

/// sessionAffinity: ClientIP in the kernel (the `recent` match): every
/// connection from one client goes to the backend its first one reached,
/// although both backends are up and endpoints of the Service.
#[test]
fn session_affinity_client_ip_pins_one_backend() {
    require_root!();
    let t = topo();
    setup_node(&t);
    let names = t.names();
    let ns = rkube_proxy::netns::unique_name("it");
    let p = proxier();
    p.on_service_update(&service(&ns, "sticky", json!({"clusterIP":"10.96.0.40","sessionAffinity":"ClientIP",
        "sessionAffinityConfig":{"clientIP":{"timeoutSeconds":60}},"ports":[{"port":80}]})));
    p.on_endpoints_update(&endpoints(&ns, "sticky", &["10.244.1.2", "10.244.2.2"], "", 8080, "TCP"));
    sync(&t, &p, SyncKind::Auto);
    assert!(save(&t.node, "nat").contains("-m recent"), "no affinity rules");

    // Both backends answer directly.
    let direct = t.node.run(|| (tcp_get("10.244.1.2:8080"), tcp_get("10.244.2.2:8080"))).unwrap();
    assert_eq!(direct, (Some("b1".to_string()), Some("b2".to_string())));
    // Through the cluster IP: 20 connections, one backend.
    let got: BTreeSet<Option<String>> = client_gets(&t.client, "10.96.0.40:80", 20).into_iter().collect();
    assert_eq!(got.len(), 1, "affinity broken: {got:?}");
    assert!(got.iter().all(|g| g.is_some()), "{got:?}");

    drop(t);
    assert_namespaces_gone(&names);
}
