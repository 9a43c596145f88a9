//! `rkube bench agent` at toy sizes (root): the command starts its own etcd,
//! apiserver, controller, scheduler, containerd and agents in a network
//! namespace, and its JSON report has sane figures — both pods of the
//! Deployment Ready on the real node with pod IPs, both started again
//! straight through CRI (the floor), all simulated nodes
//! Ready with fresh Leases, the agent's CPU and memory measured — and the
//! namespace is gone afterwards. Keeps the benchmark from rotting; asserts
//! no timing target (benchmarks report those).

use std::process::Command;

fn num(v: &serde_json::Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or_else(|| panic!("{key} missing or not a number in {v}"))
}

#[test]
fn bench_agent_runs_at_toy_sizes() {
    let rkube = e2e::bin("rkube");
    for b in ["rkube-apiserver", "rkube-controller", "rkube-scheduler", "rkube-agent"] {
        e2e::bin(b);
    }
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("agent.json");
    let child = Command::new(&rkube)
        .args(["bench", "agent", "--simulated-nodes", "50", "--window", "3", "--pods", "2", "--json"])
        .arg(&json)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let netns = format!("/run/netns/rkube-bench-{}", child.id());
    let out = child.wait_with_output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "rkube bench agent failed:\n{text}");
    assert!(!std::path::Path::new(&netns).exists(), "{netns} left behind");
    assert!(text.contains("## pod startup") && text.contains("## simulated nodes"), "{text}");

    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let p = &r["pod_startup"];
    assert_eq!(p["pods"], 2, "{p}");
    let per_pod = p["per_pod"].as_array().unwrap();
    assert_eq!(per_pod.len(), 2);
    for pod in per_pod {
        assert_eq!(pod["node"], "bench-node", "{pod}");
        assert!(pod["pod_ip"].as_str().is_some_and(|ip| ip.starts_with("10.244.0.")), "{pod}");
        let (created, running, ready) = (num(pod, "created_ms"), num(pod, "running_ms"), num(pod, "ready_ms"));
        assert!(0.0 <= created && created <= running && running <= ready && ready <= num(p, "all_ready_ms"), "{pod}");
    }
    let (p50, p99) = (num(p, "ready_p50_ms"), num(p, "ready_p99_ms"));
    assert!(0.0 < p50 && p50 <= p99 && p99 < 120_000.0, "{p}");
    // The floor: both pods started again straight through CRI.
    let f = &r["cri_floor"];
    assert_eq!((f["pods"].as_u64(), f["started_ms"].as_array().map(Vec::len)), (Some(2), Some(2)), "{f}");
    assert!(0.0 < num(f, "p50_ms") && num(f, "p50_ms") <= num(f, "max_ms") && num(f, "max_ms") <= num(f, "all_started_ms") + 1.0, "{f}");

    let s = &r["simulated_nodes"];
    assert_eq!(s["nodes"], 50, "{s}");
    assert_eq!(s["ready_at_end"], 50, "{s}");
    assert_eq!(s["leases_fresh_at_end"], 50, "{s}");
    assert!(num(s, "registration_ms") > 0.0 && num(s, "window_ms") >= 3000.0, "{s}");
    let cpu = num(s, "cpu_cores");
    assert!((0.0..=num(&r, "cores")).contains(&cpu), "{s}");
    let rss = num(s, "rss_max_mib");
    assert!(rss > 1.0 && rss <= num(s, "rss_hwm_mib"), "{s}");
}
