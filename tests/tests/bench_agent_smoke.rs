//! `rkube bench agent` at toy sizes (root): the command starts its own etcd,
//! apiserver, controller, scheduler, containerd and agents in a network
//! namespace, and its JSON report has sane figures — both pods of the
//! Deployment Ready on the real node with pod IPs, both started again
//! straight through CRI (the floor), all simulated nodes
//! Ready with fresh Leases, the agent's CPU and memory measured — and the
//! namespace is gone afterwards. The report has the common shape of every
//! `rkube bench`: `bench`, `environment`, a non-empty `figures` list of
//! finite values, and per-pod startup lists for rkube and the floor with one
//! entry per pod. Keeps the benchmark from rotting; asserts no timing target
//! (benchmarks report those).

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
    assert_eq!(r["bench"], "agent");
    let env = &r["environment"];
    assert!(env.is_object() && num(env, "cores") >= 1.0 && env["date"].is_string() && env["command"].as_str().is_some_and(|c| c.contains("bench agent")), "{env}");
    let figures = r["figures"].as_array().expect("figures");
    assert!(!figures.is_empty());
    for f in figures {
        assert!(f["key"].as_str().is_some_and(|k| k.starts_with("agent.")) && f["label"].is_string() && f["unit"].is_string(), "{f}");
        assert!(f["value"].as_f64().is_some_and(f64::is_finite), "{f}");
        assert!(f["better"] == "lower" || f["better"] == "higher", "{f}");
    }
    let keys: Vec<&str> = figures.iter().filter_map(|f| f["key"].as_str()).collect();
    for k in [
        "agent.startup_p50_ms",
        "agent.startup_p99_ms",
        "agent.floor_p50_ms",
        "agent.floor_p99_ms",
        "agent.overhead_p50_ms",
        "agent.overhead_p99_ms",
        "agent.cpu_core_s_per_pod",
        "agent.simulated_nodes.cpu_cores.50",
    ] {
        assert!(keys.contains(&k), "{k} missing in {keys:?}");
    }
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
    // From t0 (the Deployment's create request): each pod's ready_ms, sorted.
    let startup = p["startup_ms"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect::<Vec<_>>();
    let mut ready_from_t0: Vec<f64> = per_pod.iter().map(|pod| num(pod, "ready_ms")).collect();
    ready_from_t0.sort_by(f64::total_cmp);
    assert_eq!(startup, ready_from_t0, "{p}");
    // The floor: both pods started again straight through CRI.
    let f = &r["cri_floor"];
    assert_eq!((f["pods"].as_u64(), f["started_ms"].as_array().map(Vec::len)), (Some(2), Some(2)), "{f}");
    assert!(0.0 < num(f, "p50_ms") && num(f, "p50_ms") <= num(f, "max_ms") && num(f, "max_ms") <= num(f, "all_started_ms") + 1.0, "{f}");
    for pod in f["per_pod"].as_array().unwrap() {
        assert!(0.0 <= num(pod, "admitted_ms") && num(pod, "admitted_ms") <= num(pod, "started_ms"), "{pod}");
    }
    // rkube against the floor, per pod and at p50 / p99, on one definition.
    let c = &r["startup_vs_floor"];
    let list = |k: &str| c[k].as_array().unwrap_or_else(|| panic!("{k} missing in {c}")).iter().map(|v| v.as_f64().unwrap()).collect::<Vec<_>>();
    let (rk, fl) = (list("rkube_ms"), list("floor_ms"));
    assert_eq!((rk.len(), fl.len()), (2, 2), "{c}");
    assert!(rk.windows(2).all(|w| w[0] <= w[1]) && fl.windows(2).all(|w| w[0] <= w[1]), "sorted: {c}");
    assert_eq!(rk, startup);
    assert!((num(c, "share_p50_ms") - (num(c, "rkube_p50_ms") - num(c, "floor_p50_ms"))).abs() < 0.01, "{c}");
    assert!((num(c, "share_p99_ms") - (num(c, "rkube_p99_ms") - num(c, "floor_p99_ms"))).abs() < 0.01, "{c}");

    let s = &r["simulated_nodes"];
    assert_eq!(s["nodes"], 50, "{s}");
    assert_eq!(s["ready_at_end"], 50, "{s}");
    assert_eq!(s["leases_fresh_at_end"], 50, "{s}");
    assert!(num(s, "registration_ms") > 0.0 && num(s, "window_ms") >= 3000.0, "{s}");
    let cpu = num(s, "cpu_cores");
    assert!((0.0..=num(env, "cores")).contains(&cpu), "{s}");
    let rss = num(s, "rss_max_mib");
    assert!(rss > 1.0 && rss <= num(s, "rss_hwm_mib"), "{s}");
}
