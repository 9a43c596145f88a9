//! rkube-proxy end to end: a real etcd + rkube-apiserver, the real
//! `rkube-proxy` binary inside a node network namespace, busybox httpd
//! backends and a client in namespaces of their own. Services and
//! Endpoints go through the API with kubectl; the proxy's informers carry
//! them to iptables in the node namespace.
//!
//! ```text
//!  host: etcd, apiserver on 169.254.a.b+1 ──veth /30── node (rkube-proxy) ──┬── b1 10.244.1.2 (httpd)
//!                                                      192.168.10.1 │      └── b2 10.244.2.2 (httpd)
//!                                                                   client 192.168.10.2
//! ```
//!
//! No namespace has a default route: nothing can leave the machine. Pod
//! and service addresses are only ever dialled from the client and node
//! namespaces. Needs root; skipped otherwise.

mod proxy_common;

use std::collections::BTreeSet;
use std::time::Duration;

use e2e::eventually_blocking;
use proxy_common::*;

const WAIT: Duration = Duration::from_secs(30);

fn endpoints_yaml(ns: &str, ips: &[&str]) -> String {
    let addrs: Vec<String> = ips.iter().map(|ip| format!("{{ip: {ip}}}")).collect();
    format!(
        "apiVersion: v1\nkind: Endpoints\nmetadata: {{name: web, namespace: {ns}}}\nsubsets:\n- addresses: [{}]\n  ports: [{{name: http, port: 8080, protocol: TCP}}]\n",
        addrs.join(", ")
    )
}

/// Distinct answers over `n` requests; None stands for a failed request.
fn answers(client: &Netns, addr: &str, n: usize) -> BTreeSet<Option<String>> {
    gets_from(client, addr, n).into_iter().collect()
}

fn set(names: &[&str]) -> BTreeSet<Option<String>> {
    names.iter().map(|n| Some(n.to_string())).collect()
}

/// Our rules in the node namespace: its nat and filter tables, as sorted
/// lines (a multiset: a duplicated rule shows twice).
fn rules_of(node: &Netns) -> Vec<String> {
    let mut v: Vec<String> = node.save("nat").into_iter().chain(node.save("filter")).filter(|l| l.contains("KUBE-")).collect();
    v.sort();
    v
}

/// A GET of `path` on the proxy's `port` on 127.0.0.1, from inside the
/// node namespace: the whole response (status line, headers, body).
fn node_get(node: &Netns, port: u16, path: &str) -> Option<String> {
    let request = format!("GET {path} HTTP/1.0\r\n\r\n");
    node.run(move || {
        use std::io::{Read, Write};
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
        s.write_all(request.as_bytes()).ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        Some(out)
    })
}

/// `/metrics` of the proxy.
fn metrics(node: &Netns) -> Option<String> {
    node_get(node, 10249, "/metrics")
}

/// The proxy's last successful sync time (Unix seconds), from `/metrics`.
fn last_sync(node: &Netns) -> Option<f64> {
    e2e::metric(&metrics(node)?, "kubeproxy_sync_proxy_rules_last_timestamp_seconds").filter(|t| *t > 0.0)
}

#[test]
fn proxy_follows_the_api_in_a_node_namespace() {
    if !can_run() {
        return;
    }
    let host_had_device = host_has_service_device();
    let node = Netns::new("rpn");
    let client = Netns::new("rpc");
    let b1 = Netns::new("rpb");
    let b2 = Netns::new("rpb");
    let link = HostLink::new(&node, "up0");
    veth(&node, "n0", "192.168.10.1/24", &client, "c0", "192.168.10.2/24");
    veth(&node, "n1", "10.244.1.1/24", &b1, "e0", "10.244.1.2/24");
    veth(&node, "n2", "10.244.2.1/24", &b2, "e0", "10.244.2.2/24");
    client.ip(&["route", "add", "10.96.0.0/12", "via", "192.168.10.1"]);
    b1.ip(&["route", "add", "192.168.10.0/24", "via", "10.244.1.1"]);
    b2.ip(&["route", "add", "192.168.10.0/24", "via", "10.244.2.1"]);
    node.sysctl("net.ipv4.ip_forward", "1");
    for ns in [&node, &client, &b1, &b2] {
        let routes = ns.ip(&["route", "show", "default"]);
        assert!(routes.trim().is_empty(), "{} has a default route: {routes}", ns.name);
    }

    let cp = ControlPlane::start(&link.host_ip);
    start_backend(&b1, "b1", cp.dir.path());
    start_backend(&b2, "b2", cp.dir.path());

    // A namespace name unique to this run makes our chain names unique, so
    // the host's tables can be searched for them at the end.
    let ns = unique("pe");
    cp.kubectl(&["create", "namespace", &ns], None);
    cp.kubectl(
        &["apply", "-f", "-"],
        Some(&format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: {ns}}}\nspec:\n  type: NodePort\n  ports: [{{name: http, port: 80, targetPort: 8080, protocol: TCP}}]\n"
        )),
    );
    cp.kubectl(&["apply", "-f", "-"], Some(&endpoints_yaml(&ns, &["10.244.1.2", "10.244.2.2"])));
    let cluster_ip = cp.kubectl(&["get", "service", "web", "-n", &ns, "-o", "jsonpath={.spec.clusterIP}"], None);
    let node_port = cp.kubectl(&["get", "service", "web", "-n", &ns, "-o", "jsonpath={.spec.ports[0].nodePort}"], None);
    assert!(cluster_ip.starts_with("10.") && !node_port.is_empty(), "{cluster_ip} {node_port}");
    let cluster_addr = format!("{cluster_ip}:80");
    let node_addr = format!("192.168.10.1:{node_port}");

    let args: Vec<String> = [
        format!("--master={}", cp.url),
        "--hostname-override=node-1".into(),
        "--proxy-mode=iptables".into(),
        "--cluster-cidr=10.244.0.0/16".into(),
        "--service-cluster-ip-range=10.96.0.0/12".into(),
        "--min-sync-period=100ms".into(),
        "--healthz-bind-address=127.0.0.1:10256".into(),
        "--metrics-bind-address=127.0.0.1:10249".into(),
    ]
    .into();
    let mut proxy = ProxyProcess::start(&node, &args, cp.dir.path().join("proxy-1.log"));
    let logs = |p: &ProxyProcess| format!("--- proxy log ---\n{}", p.log_text());

    // ClusterIP and NodePort, from the client: both backends answer.
    eventually_blocking("traffic to both backends via the ClusterIP", WAIT, || {
        (answers(&client, &cluster_addr, 30) == set(&["b1", "b2"])).then_some(())
    });
    eventually_blocking("traffic to both backends via the NodePort", WAIT, || {
        (answers(&client, &node_addr, 30) == set(&["b1", "b2"])).then_some(())
    });
    assert!(proxy.is_running());
    let rules_two_endpoints = rules_of(&node);
    // The service's chain, from its jump in KUBE-SERVICES.
    let comment = format!("\"{ns}/web:http cluster IP\"");
    let jump = rules_two_endpoints.iter().find(|l| l.starts_with("-A KUBE-SERVICES") && l.contains(&comment)).expect("jump to the service chain");
    let svc_chain = jump.rsplit(' ').next().unwrap().to_string();
    assert!(svc_chain.starts_with("KUBE-SVC-"), "{jump}");
    let seps = rules_two_endpoints.iter().filter(|l| l.starts_with(&format!("-A {svc_chain} ")) && l.contains("-j KUBE-SEP-")).count();
    assert_eq!(seps, 2, "{rules_two_endpoints:#?}");
    let m = metrics(&node).expect("metrics");
    assert!(m.contains("kubeproxy_sync_proxy_rules_iptables_total{table=\"nat\"}"), "{m}");
    let healthz = node_get(&node, 10256, "/healthz").unwrap_or_default();
    assert!(healthz.lines().next().is_some_and(|l| l.contains(" 200 ")) && healthz.contains("\"nodeHealthy\":true"), "{healthz}");

    // Remove b2 through the API: only b1 gets traffic.
    cp.kubectl(&["apply", "-f", "-"], Some(&endpoints_yaml(&ns, &["10.244.1.2"])));
    eventually_blocking("b2 to stop getting traffic", WAIT, || {
        (answers(&client, &cluster_addr, 20) == set(&["b1"]) && answers(&client, &node_addr, 10) == set(&["b1"])).then_some(())
    });

    // Kill the proxy (no clean-up possible), change the API while it is
    // down, start a new one: it adopts the chains left behind and converges
    // to exactly the ruleset of a clean run — nothing duplicated or left.
    proxy.kill();
    let before_restart = last_sync(&node);
    assert!(before_restart.is_none(), "the proxy is dead; its metrics port must be closed");
    cp.kubectl(&["apply", "-f", "-"], Some(&endpoints_yaml(&ns, &["10.244.1.2", "10.244.2.2"])));
    let mut proxy = ProxyProcess::start(&node, &args, cp.dir.path().join("proxy-2.log"));
    eventually_blocking("the restarted proxy to sync", WAIT, || last_sync(&node));
    eventually_blocking("traffic to both backends again", WAIT, || {
        (answers(&client, &cluster_addr, 30) == set(&["b1", "b2"])).then_some(())
    });
    let after_restart = rules_of(&node);
    assert_eq!(after_restart, rules_two_endpoints, "rules after a restart differ from those of the first run");
    let nat = node.save("nat");
    for jump in ["-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES", "-A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING"] {
        assert_eq!(nat.iter().filter(|l| l.as_str() == jump).count(), 1, "{jump}\n{nat:#?}");
    }

    // Delete the Service (and its Endpoints, as the endpoints controller
    // would): its chains go, and the ClusterIP stops answering.
    cp.kubectl(&["delete", "service", "web", "-n", &ns], None);
    cp.kubectl(&["delete", "endpoints", "web", "-n", &ns], None);
    eventually_blocking("the service's chains to be deleted", WAIT, || {
        let nat = node.save("nat");
        (!nat.iter().any(|l| l.contains("KUBE-SVC-") || l.contains("KUBE-SEP-") || l.contains("KUBE-EXT-"))).then_some(())
    });
    assert_eq!(answers(&client, &cluster_addr, 1), BTreeSet::from([None]));
    assert!(proxy.is_running(), "{}", logs(&proxy));

    // The host's tables never saw any of it.
    for table in ["nat", "filter"] {
        let out = std::process::Command::new("iptables-save").args(["-t", table]).output().unwrap();
        let host = String::from_utf8_lossy(&out.stdout);
        assert!(!host.contains(&svc_chain) && !host.contains(&ns), "our rules leaked into the host's {table} table");
    }
    assert_eq!(host_has_service_device(), host_had_device, "the service-CIDR device must live in the node namespace");

    // Everything the test made goes with it: processes, namespaces (with
    // their veths, rules and routes) and the host end of the link.
    let names: Vec<String> = [&node, &client, &b1, &b2].iter().map(|n| n.name.clone()).collect();
    let host_if = link.host_if.clone();
    drop(proxy);
    drop(cp);
    drop(link);
    drop((b1, b2, client, node));
    assert_cleaned_up(&names, &host_if);
}

/// Does the host have rkube-proxy's service-CIDR holder device?
fn host_has_service_device() -> bool {
    let out = std::process::Command::new("ip").args(["-o", "link", "show", "dev", "rkube-svc0"]).output().unwrap();
    out.status.success()
}
