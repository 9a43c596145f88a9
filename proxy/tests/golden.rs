//! Golden tests of the generated iptables-restore text.
//!
//! Each case is a set of Services + Endpoints (JSON, as the API serves them)
//! and the exact text expected in `tests/golden/<case>.txt`. Run with
//! `UPDATE_GOLDEN=1` to rewrite the files after an intended change, then
//! read the diff. Every output is also checked for consistency the way
//! upstream's `checkIPTablesRuleJumps` does: every jump target is declared,
//! no declared chain is left unused, no chain is jumped to without rules.
//!
//! The golden texts are rkube's own output, kept so any change shows as a
//! diff to read. What says they are *right* is upstream:
//! `rules_are_upstreams_for_upstreams_overall_test_services` renders the
//! Services of kube-proxy's `TestOverallIPTablesRules` and compares them,
//! chain by chain, with the rules that test expects (cluster IPs, NodePorts,
//! external IPs, several endpoints, session affinity, no endpoints).

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Endpoints, Service};
use rkube_proxy::conntrack::ConntrackCmd;
use rkube_proxy::iptables::IptablesCmd;
use rkube_proxy::proxier::{Proxier, ProxierConfig};
use rkube_proxy::rules::RulesConfig;
use serde_json::{json, Value};

fn proxier_with(objects: &[Value], rules: RulesConfig) -> Arc<Proxier> {
    // render_rules never runs iptables; the real runners are just unused.
    let p = Proxier::new(
        ProxierConfig { rules, ..Default::default() },
        Arc::new(IptablesCmd::default()),
        Arc::new(ConntrackCmd::default()),
    );
    for o in objects {
        match o["kind"].as_str() {
            Some("Service") => p.on_service_update(&serde_json::from_value::<Service>(o.clone()).unwrap()),
            Some("Endpoints") => p.on_endpoints_update(&serde_json::from_value::<Endpoints>(o.clone()).unwrap()),
            k => panic!("unexpected kind {k:?}"),
        }
    }
    p
}

/// Upstream's consistency check of a restore input.
fn check_jumps(text: &str) {
    let builtin = ["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"];
    let targets = ["ACCEPT", "REJECT", "DROP", "MARK", "RETURN", "DNAT", "SNAT", "MASQUERADE"];
    let base = ["KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-FORWARD", "KUBE-MARK-MASQ", "KUBE-FIREWALL"];
    for table in text.split("COMMIT\n").filter(|t| !t.trim().is_empty()) {
        let mut created = BTreeSet::new();
        let mut filled = BTreeSet::new();
        let mut jumped = BTreeSet::new();
        let mut deleted = BTreeSet::new();
        for l in table.lines() {
            let w: Vec<&str> = l.split(' ').collect();
            if let Some(c) = l.strip_prefix(':') {
                created.insert(c.split(' ').next().unwrap().to_string());
            }
            if w[0] == "-X" {
                deleted.insert(w[1].to_string());
            }
            if w[0] == "-A" || w[0] == "-I" {
                if w[0] == "-A" {
                    filled.insert(w[1].to_string());
                }
                if let Some(i) = w.iter().position(|x| *x == "-j") {
                    jumped.insert(w[i + 1].to_string());
                }
            }
        }
        let created: BTreeSet<String> = created.difference(&deleted).cloned().collect();
        for j in &jumped {
            if !targets.contains(&j.as_str()) {
                assert!(created.contains(j), "jump to undeclared chain {j} in\n{table}");
                // Top-level chains may legitimately be empty (no services yet).
                assert!(filled.contains(j) || base.contains(&j.as_str()), "jump to empty chain {j} in\n{table}");
            }
        }
        for f in &filled {
            assert!(created.contains(f) || builtin.contains(&f.as_str()), "rules in undeclared chain {f}");
        }
        for c in &created {
            assert!(jumped.contains(c) || base.contains(&c.as_str()), "declared but unused chain {c} in\n{table}");
        }
    }
}

fn check(case: &str, objects: &[Value], rules: RulesConfig) {
    let text = proxier_with(objects, rules).render_rules();
    let path = format!("{}/tests/golden/{case}.txt", env!("CARGO_MANIFEST_DIR"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &text).unwrap();
    }
    check_jumps(&text);
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e} (run with UPDATE_GOLDEN=1)"));
    assert!(text == want, "{case}: generated rules differ from {path}\n--- got ---\n{text}");
}

fn svc(ns: &str, name: &str, spec: Value) -> Value {
    json!({"kind":"Service","apiVersion":"v1","metadata":{"namespace":ns,"name":name},"spec":spec})
}
fn eps(ns: &str, name: &str, subsets: Value) -> Value {
    json!({"kind":"Endpoints","apiVersion":"v1","metadata":{"namespace":ns,"name":name},"subsets":subsets})
}
fn cluster() -> RulesConfig {
    RulesConfig { cluster_cidr: Some("10.244.0.0/16".parse().unwrap()), ..Default::default() }
}

#[test]
fn golden_clusterip_two_endpoints() {
    check(
        "clusterip",
        &[
            svc("ns1", "svc1", json!({"clusterIP":"172.30.0.41","ports":[{"name":"p80","port":80,"targetPort":80}]})),
            eps("ns1", "svc1", json!([{"addresses":[{"ip":"10.180.0.1"},{"ip":"10.180.0.2"}],"ports":[{"name":"p80","port":80}]}])),
        ],
        cluster(),
    );
}

#[test]
fn golden_nodeport_three_endpoints_and_external_ip() {
    check(
        "nodeport",
        &[
            svc("ns2", "web", json!({"type":"NodePort","clusterIP":"172.30.0.42","externalIPs":["192.168.99.11"],
                "ports":[{"name":"http","port":80,"targetPort":"http","nodePort":30080}]})),
            eps("ns2", "web", json!([{"addresses":[{"ip":"10.180.0.1"},{"ip":"10.180.0.2"},{"ip":"10.180.0.3"}],
                "ports":[{"name":"http","port":8080}]}])),
        ],
        cluster(),
    );
}

#[test]
fn golden_session_affinity() {
    check(
        "affinity",
        &[
            svc("ns3", "sticky", json!({"clusterIP":"172.30.0.43","sessionAffinity":"ClientIP",
                "sessionAffinityConfig":{"clientIP":{"timeoutSeconds":300}},"ports":[{"port":80}]})),
            eps("ns3", "sticky", json!([{"addresses":[{"ip":"10.180.0.4"},{"ip":"10.180.0.5"}],"ports":[{"port":8000}]}])),
        ],
        RulesConfig::default(),
    );
}

#[test]
fn golden_no_endpoints_rejected() {
    check(
        "no_endpoints",
        &[
            svc("ns4", "empty", json!({"type":"NodePort","clusterIP":"172.30.0.44","externalIPs":["192.168.99.12"],
                "ports":[{"name":"p","port":80,"nodePort":30081}]})),
            // An Endpoints object whose subsets carry no ready address.
            eps("ns4", "empty", json!([{"notReadyAddresses":[{"ip":"10.180.0.9"}],"ports":[{"name":"p","port":80}]}])),
        ],
        cluster(),
    );
}

#[test]
fn golden_multiple_and_named_ports() {
    // `targetPort: metrics` resolves per pod (9090 and 9091) in Endpoints;
    // the UDP port "dns" and TCP port "dns-tcp" are separate service ports.
    check(
        "multi_port",
        &[
            svc("ns5", "multi", json!({"clusterIP":"172.30.0.45","ports":[
                {"name":"dns","port":53,"protocol":"UDP","targetPort":5353},
                {"name":"dns-tcp","port":53,"protocol":"TCP","targetPort":5353},
                {"name":"metrics","port":9000,"targetPort":"metrics"},
                {"name":"nomatch","port":7000,"targetPort":"nothing"}]})),
            eps("ns5", "multi", json!([
                {"addresses":[{"ip":"10.180.1.1"}],"ports":[
                    {"name":"dns","port":5353,"protocol":"UDP"},{"name":"dns-tcp","port":5353},{"name":"metrics","port":9090}]},
                {"addresses":[{"ip":"10.180.1.2"}],"ports":[
                    {"name":"dns","port":5353,"protocol":"UDP"},{"name":"dns-tcp","port":5353},{"name":"metrics","port":9091}]}])),
        ],
        RulesConfig { masquerade_all: true, ..Default::default() },
    );
}

#[test]
fn golden_odd_input() {
    // No selector and no ports; endpoints without ports; no Endpoints at
    // all; headless; ExternalName. None may crash or break the ruleset.
    check(
        "odd",
        &[
            svc("ns6", "noports", json!({"clusterIP":"172.30.0.46"})),
            eps("ns6", "noports", json!([{"addresses":[{"ip":"10.180.2.1"}]}])),
            svc("ns6", "portless-eps", json!({"clusterIP":"172.30.0.47","ports":[{"port":80}]})),
            eps("ns6", "portless-eps", json!([{"addresses":[{"ip":"10.180.2.2"}]}])),
            svc("ns6", "headless", json!({"clusterIP":"None","ports":[{"port":80}]})),
            svc("ns6", "extname", json!({"type":"ExternalName","externalName":"example.com"})),
            eps("ns6", "orphan-endpoints", json!([{"addresses":[{"ip":"10.180.2.3"}],"ports":[{"port":80}]}])),
        ],
        RulesConfig::default(),
    );
}

fn nodeport_objects() -> Vec<Value> {
    vec![
        svc("ns7", "np", json!({"type":"NodePort","clusterIP":"172.30.0.48","ports":[{"name":"p","port":80,"nodePort":30082}]})),
        eps("ns7", "np", json!([{"addresses":[{"ip":"10.180.3.1"}],"ports":[{"name":"p","port":8080}]}])),
    ]
}

#[test]
fn golden_nodeport_addresses_given() {
    // `--nodeport-addresses` resolved to these local addresses: one
    // `-d <ip> -j KUBE-NODEPORTS` per address instead of `--dst-type LOCAL`.
    let ips = vec!["127.0.0.1".parse().unwrap(), "192.168.0.10".parse().unwrap()];
    check("nodeport_addresses", &nodeport_objects(), RulesConfig { nodeport_addresses: ips, ..cluster() });
}

#[test]
fn golden_nodeport_addresses_without_localhost() {
    // `--iptables-localhost-nodeports=false`: 127.0.0.1 is skipped even when
    // it matches `--nodeport-addresses`, and no KUBE-FIREWALL is written.
    let ips = vec!["127.0.0.1".parse().unwrap(), "192.168.0.10".parse().unwrap()];
    check(
        "nodeport_addresses_no_localhost",
        &nodeport_objects(),
        RulesConfig { nodeport_addresses: ips, localhost_nodeports: false, ..cluster() },
    );
}

#[test]
fn golden_no_localhost_nodeports() {
    // All local addresses but 127.0.0.0/8.
    check("no_localhost_nodeports", &nodeport_objects(), RulesConfig { localhost_nodeports: false, ..cluster() });
}

/// Every golden text is a ruleset the kernel takes: `iptables-restore
/// --test` (both builds) and a real `--noflush` restore, each in a throwaway
/// network namespace, never the host's tables.
#[test]
fn golden_texts_load_in_the_kernel() {
    let root = std::fs::read_to_string("/proc/self/status")
        .map(|s| s.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0")))
        .unwrap_or(false);
    if !root {
        eprintln!("skipped: needs root (network namespaces, iptables)");
        return;
    }
    let dir = format!("{}/tests/golden", env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert!(files.len() >= 9, "{files:?}");
    let mut names = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let ns = rkube_proxy::netns::NetNs::new("rkgo").unwrap();
        names.push(ns.name().to_string());
        for args in [&["iptables-nft-restore", "--noflush", "--test"][..], &["iptables-legacy-restore", "--noflush", "--test"], &["iptables-restore", "--noflush"]] {
            let mut child = std::process::Command::new("ip")
                .args(["netns", "exec", ns.name()])
                .args(args)
                .stdin(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            std::io::Write::write_all(&mut child.stdin.take().unwrap(), text.as_bytes()).unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success(), "{} {args:?}: {}", f.display(), String::from_utf8_lossy(&out.stderr));
        }
        // The real restore left our chains in the namespace's nat table.
        let saved = ns.exec(&["iptables-save", "-t", "nat"]).unwrap();
        assert!(saved.contains(":KUBE-SERVICES"), "{}: {saved}", f.display());
    }
    let out = std::process::Command::new("ip").args(["netns", "list"]).output().unwrap();
    let list = String::from_utf8_lossy(&out.stdout);
    assert!(!names.iter().any(|n| list.lines().any(|l| l.split_whitespace().next() == Some(n))), "namespaces left: {list}");
}

/// `(declared chains, rules by chain)` of one table of an
/// `iptables-restore` text; rules in built-in chains (`-I OUTPUT 1 …`) are
/// left out.
type Table = (BTreeSet<String>, std::collections::BTreeMap<String, Vec<String>>);

fn parse_tables(text: &str) -> std::collections::BTreeMap<String, Table> {
    let mut tables: std::collections::BTreeMap<String, Table> = std::collections::BTreeMap::new();
    let mut current: Option<String> = None;
    for l in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(name) = l.strip_prefix('*') {
            tables.entry(name.to_string()).or_default();
            current = Some(name.to_string());
        } else if l == "COMMIT" {
            current = None;
        } else if let Some(t) = current.as_ref().and_then(|c| tables.get_mut(c)) {
            if let Some(decl) = l.strip_prefix(':') {
                t.0.insert(decl.split(' ').next().unwrap().to_string());
            } else if let Some(rule) = l.strip_prefix("-A ") {
                let chain = rule.split(' ').next().unwrap().to_string();
                t.1.entry(chain).or_default().push(l.to_string());
            }
        }
    }
    tables
}

/// kube-proxy's own expected output for the Services of upstream's
/// `TestOverallIPTablesRules` (pkg/proxy/iptables/proxier_test.go) that
/// rkube can serve, written from that test's expected dump: chain names
/// (hashes of `namespace/name:port` and protocol, and of the endpoint for
/// `KUBE-SEP-`), and every chain's rules in order. The fake proxier there
/// treats 10.0.0.0/8 as the cluster's pods, hence `--cluster-cidr`.
///
/// What upstream writes there and rkube, deliberately, does not:
/// - `-m nfacct --nfacct-name …` matches, and the extra KUBE-NODEPORTS rule
///   per NodePort that only counts localhost packets
///   (`localhost_nps_accepted_pkts`): kube-proxy's metrics counters, not
///   routing; rkube-proxy keeps no nfacct counters. (Upstream's
///   `KUBE-FORWARD` INVALID rule is `-m conntrack --ctstate INVALID -m
///   nfacct --nfacct-name ct_state_invalid_dropped_pkts -j DROP`.)
/// - Everything about LoadBalancer Services and `externalTrafficPolicy:
///   Local` (upstream's svc2, and svc5's load-balancer IP, source ranges
///   and NodePort): rkube serves neither; so no filter `KUBE-NODEPORTS`
///   (health-check node ports), no `KUBE-PROXY-FIREWALL`, no `KUBE-FW-`.
///   svc5 is kept as a ClusterIP Service with ClientIP affinity: its
///   `KUBE-SVC-`/`KUBE-SEP-` chains are those of upstream's svc5.
/// - The jumps from the built-in chains (`-I PREROUTING 1 … -j
///   KUBE-SERVICES`): upstream makes them with separate `iptables` calls
///   before the restore, rkube puts them in the restore text; they are not
///   part of this comparison.
const UPSTREAM_OVERALL: &str = r#"
*filter
:KUBE-SERVICES - [0:0]
:KUBE-EXTERNAL-SERVICES - [0:0]
:KUBE-FIREWALL - [0:0]
:KUBE-FORWARD - [0:0]
-A KUBE-SERVICES -m comment --comment "ns6/svc6:p80 has no endpoints" -m tcp -p tcp -d 172.30.0.46 --dport 80 -j REJECT
-A KUBE-FIREWALL -m comment --comment "block incoming localnet connections" -d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP
-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
COMMIT
*nat
:KUBE-NODEPORTS - [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-EXT-4SW47YFZTEDKD3PK - [0:0]
:KUBE-EXT-X27LE4BHSL4DOUIK - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-SEP-C6EBXVWJJZMIWKLZ - [0:0]
:KUBE-SEP-I77PXRDZVX7PMWMN - [0:0]
:KUBE-SEP-OYPFS5VJICHGATKP - [0:0]
:KUBE-SEP-SXIVWICOYRO3J4NJ - [0:0]
:KUBE-SEP-UKSFD7AGPMPPLUHC - [0:0]
:KUBE-SVC-4SW47YFZTEDKD3PK - [0:0]
:KUBE-SVC-NUKIZ6OKUXPJNT4C - [0:0]
:KUBE-SVC-X27LE4BHSL4DOUIK - [0:0]
:KUBE-SVC-XPGD46QRK7WJZT7O - [0:0]
-A KUBE-NODEPORTS -m comment --comment ns3/svc3:p80 -m tcp -p tcp --dport 3003 -j KUBE-EXT-X27LE4BHSL4DOUIK
-A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j KUBE-SVC-XPGD46QRK7WJZT7O
-A KUBE-SERVICES -m comment --comment "ns3/svc3:p80 cluster IP" -m tcp -p tcp -d 172.30.0.43 --dport 80 -j KUBE-SVC-X27LE4BHSL4DOUIK
-A KUBE-SERVICES -m comment --comment "ns4/svc4:p80 cluster IP" -m tcp -p tcp -d 172.30.0.44 --dport 80 -j KUBE-SVC-4SW47YFZTEDKD3PK
-A KUBE-SERVICES -m comment --comment "ns4/svc4:p80 external IP" -m tcp -p tcp -d 192.168.99.33 --dport 80 -j KUBE-EXT-4SW47YFZTEDKD3PK
-A KUBE-SERVICES -m comment --comment "ns5/svc5:p80 cluster IP" -m tcp -p tcp -d 172.30.0.45 --dport 80 -j KUBE-SVC-NUKIZ6OKUXPJNT4C
-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
-A KUBE-EXT-4SW47YFZTEDKD3PK -m comment --comment "masquerade traffic for ns4/svc4:p80 external destinations" -j KUBE-MARK-MASQ
-A KUBE-EXT-4SW47YFZTEDKD3PK -j KUBE-SVC-4SW47YFZTEDKD3PK
-A KUBE-EXT-X27LE4BHSL4DOUIK -m comment --comment "masquerade traffic for ns3/svc3:p80 external destinations" -j KUBE-MARK-MASQ
-A KUBE-EXT-X27LE4BHSL4DOUIK -j KUBE-SVC-X27LE4BHSL4DOUIK
-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE
-A KUBE-SEP-C6EBXVWJJZMIWKLZ -m comment --comment ns4/svc4:p80 -s 10.180.0.5 -j KUBE-MARK-MASQ
-A KUBE-SEP-C6EBXVWJJZMIWKLZ -m comment --comment ns4/svc4:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.5:80
-A KUBE-SEP-I77PXRDZVX7PMWMN -m comment --comment ns5/svc5:p80 -s 10.180.0.3 -j KUBE-MARK-MASQ
-A KUBE-SEP-I77PXRDZVX7PMWMN -m comment --comment ns5/svc5:p80 -m recent --name KUBE-SEP-I77PXRDZVX7PMWMN --set -m tcp -p tcp -j DNAT --to-destination 10.180.0.3:80
-A KUBE-SEP-OYPFS5VJICHGATKP -m comment --comment ns3/svc3:p80 -s 10.180.0.3 -j KUBE-MARK-MASQ
-A KUBE-SEP-OYPFS5VJICHGATKP -m comment --comment ns3/svc3:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.3:80
-A KUBE-SEP-SXIVWICOYRO3J4NJ -m comment --comment ns1/svc1:p80 -s 10.180.0.1 -j KUBE-MARK-MASQ
-A KUBE-SEP-SXIVWICOYRO3J4NJ -m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.1:80
-A KUBE-SEP-UKSFD7AGPMPPLUHC -m comment --comment ns4/svc4:p80 -s 10.180.0.4 -j KUBE-MARK-MASQ
-A KUBE-SEP-UKSFD7AGPMPPLUHC -m comment --comment ns4/svc4:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.4:80
-A KUBE-SVC-4SW47YFZTEDKD3PK -m comment --comment "ns4/svc4:p80 cluster IP" -m tcp -p tcp -d 172.30.0.44 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
-A KUBE-SVC-4SW47YFZTEDKD3PK -m comment --comment "ns4/svc4:p80 -> 10.180.0.4:80" -m statistic --mode random --probability 0.5000000000 -j KUBE-SEP-UKSFD7AGPMPPLUHC
-A KUBE-SVC-4SW47YFZTEDKD3PK -m comment --comment "ns4/svc4:p80 -> 10.180.0.5:80" -j KUBE-SEP-C6EBXVWJJZMIWKLZ
-A KUBE-SVC-NUKIZ6OKUXPJNT4C -m comment --comment "ns5/svc5:p80 cluster IP" -m tcp -p tcp -d 172.30.0.45 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
-A KUBE-SVC-NUKIZ6OKUXPJNT4C -m comment --comment "ns5/svc5:p80 -> 10.180.0.3:80" -m recent --name KUBE-SEP-I77PXRDZVX7PMWMN --rcheck --seconds 10800 --reap -j KUBE-SEP-I77PXRDZVX7PMWMN
-A KUBE-SVC-NUKIZ6OKUXPJNT4C -m comment --comment "ns5/svc5:p80 -> 10.180.0.3:80" -j KUBE-SEP-I77PXRDZVX7PMWMN
-A KUBE-SVC-X27LE4BHSL4DOUIK -m comment --comment "ns3/svc3:p80 cluster IP" -m tcp -p tcp -d 172.30.0.43 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
-A KUBE-SVC-X27LE4BHSL4DOUIK -m comment --comment "ns3/svc3:p80 -> 10.180.0.3:80" -j KUBE-SEP-OYPFS5VJICHGATKP
-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.180.0.1:80" -j KUBE-SEP-SXIVWICOYRO3J4NJ
COMMIT
"#;

/// The Services and Endpoints of [`UPSTREAM_OVERALL`] (upstream builds them
/// with `makeTestService` / `makeTestEndpointSlice`; here as the API serves
/// core/v1 objects).
fn upstream_overall_objects() -> Vec<Value> {
    let p80 = |extra: Value| {
        let mut p = json!({"name": "p80", "port": 80, "protocol": "TCP"});
        p.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        p
    };
    let ep = |ips: &[&str]| json!([{"addresses": ips.iter().map(|ip| json!({"ip": ip})).collect::<Vec<_>>(), "ports": [{"name": "p80", "port": 80, "protocol": "TCP"}]}]);
    vec![
        svc("ns1", "svc1", json!({"clusterIP": "172.30.0.41", "ports": [p80(json!({}))]})),
        eps("ns1", "svc1", ep(&["10.180.0.1"])),
        svc("ns3", "svc3", json!({"type": "NodePort", "clusterIP": "172.30.0.43", "ports": [p80(json!({"nodePort": 3003}))]})),
        eps("ns3", "svc3", ep(&["10.180.0.3"])),
        svc("ns4", "svc4", json!({"type": "NodePort", "clusterIP": "172.30.0.44", "externalIPs": ["192.168.99.33"], "ports": [p80(json!({"targetPort": 80}))]})),
        eps("ns4", "svc4", ep(&["10.180.0.4", "10.180.0.5"])),
        svc("ns5", "svc5", json!({"clusterIP": "172.30.0.45", "sessionAffinity": "ClientIP",
            "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 10800}}, "ports": [p80(json!({}))]})),
        eps("ns5", "svc5", ep(&["10.180.0.3"])),
        svc("ns6", "svc6", json!({"clusterIP": "172.30.0.46", "ports": [p80(json!({"targetPort": 80}))]})),
    ]
}

/// The chains that list the rules of many Services: upstream's comparison
/// orders their rules by Service (it does not depend on the order Services
/// are processed in); the nodeports jump stays last.
const SHARED_CHAINS: [&str; 3] = ["KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-EXTERNAL-SERVICES"];

#[test]
fn rules_are_upstreams_for_upstreams_overall_test_services() {
    let cfg = RulesConfig { cluster_cidr: Some("10.0.0.0/8".parse().unwrap()), ..Default::default() };
    let text = proxier_with(&upstream_overall_objects(), cfg).render_rules();
    check_jumps(&text);
    let (got, want) = (parse_tables(&text), parse_tables(UPSTREAM_OVERALL));
    assert_eq!(got.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>(), "tables\n{text}");
    for (table, (want_chains, want_rules)) in &want {
        let (got_chains, got_rules) = &got[table];
        assert_eq!(got_chains, want_chains, "{table}: declared chains\n{text}");
        let chains: BTreeSet<&String> = got_rules.keys().chain(want_rules.keys()).collect();
        for chain in chains {
            let (mut g, mut w) = (got_rules.get(chain).cloned().unwrap_or_default(), want_rules.get(chain).cloned().unwrap_or_default());
            if SHARED_CHAINS.contains(&chain.as_str()) {
                let nodeports_last = |v: &[String]| v.iter().position(|r| r.contains("-j KUBE-NODEPORTS")).is_none_or(|i| i == v.len() - 1);
                assert!(nodeports_last(&g), "{table} {chain}: the nodeports jump is not last: {g:#?}");
                g.sort();
                w.sort();
            }
            assert_eq!(g, w, "{table} {chain}\n{text}");
        }
    }
}
