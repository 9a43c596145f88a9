//! Golden tests of the generated iptables-restore text.
//!
//! Each case is a set of Services + Endpoints (JSON, as the API serves them)
//! and the exact text expected in `tests/golden/<case>.txt`. Run with
//! `UPDATE_GOLDEN=1` to rewrite the files after an intended change, then
//! read the diff. Every output is also checked for consistency the way
//! upstream's `checkIPTablesRuleJumps` does: every jump target is declared,
//! no declared chain is left unused, no chain is jumped to without rules.

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
