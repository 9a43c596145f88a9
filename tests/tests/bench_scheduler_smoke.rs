//! `rkube bench scheduler` at toy sizes, both modes: end to end (the command
//! starts its own etcd, apiserver and scheduler; nodes are API objects only)
//! and in process. The JSON reports must account for every pod — the
//! fitting ones bound, the one that fits nowhere counted as unschedulable —
//! and the end-to-end one must carry the raw etcd ceiling measured in the
//! same run. Every JSON has the common `rkube bench` shape (environment,
//! figures); a run this short reports no window percentiles; the in-process
//! run repeats the workload until `--min-seconds`. Keeps the benchmark from
//! rotting; asserts no timing target.

use std::process::Command;

const WORKLOAD: &str = r#"
name: Toy
description: 3 nodes, 2 init pods, 20 measured pods and one that fits nowhere.
nodes:
  - count: 3
    template:
      metadata:
        name: "node-$(i)"
        labels: {kubernetes.io/hostname: "node-$(i)"}
      status:
        allocatable: {cpu: "4", memory: "8Gi", pods: "110"}
        capacity: {cpu: "4", memory: "8Gi", pods: "110"}
        conditions: [{type: Ready, status: "True", reason: KubeletReady, message: simulated}]
initPods:
  - count: 2
    template:
      metadata: {name: "init-$(i)", namespace: default}
      spec:
        containers: [{name: c, image: pause, resources: {requests: {cpu: 100m, memory: 100Mi}}}]
measurePods:
  - count: 20
    template:
      metadata: {name: "pod-$(i)", namespace: default}
      spec:
        containers: [{name: c, image: pause, resources: {requests: {cpu: 100m, memory: 100Mi}}}]
  - count: 1
    template:
      metadata: {name: "huge-$(i)", namespace: default}
      spec:
        containers: [{name: c, image: pause, resources: {requests: {cpu: "64"}}}]
"#;

struct Run {
    /// `<out-dir>/toy-<mode>.json`.
    report: serde_json::Value,
    /// The `--json` file.
    all: serde_json::Value,
    stdout: String,
}

fn run(mode: &str, extra: &[&str]) -> Run {
    let rkube = e2e::bin("rkube");
    for b in ["rkube-apiserver", "rkube-scheduler"] {
        e2e::bin(b);
    }
    let dir = tempfile::tempdir().unwrap();
    let workload = dir.path().join("toy.yaml");
    std::fs::write(&workload, WORKLOAD).unwrap();
    let all = dir.path().join("all.json");
    let out = Command::new(&rkube)
        .args(["bench", "scheduler", "--mode", mode])
        .args(extra)
        .arg("--json")
        .arg(&all)
        .arg("--out-dir")
        .arg(dir.path())
        .arg(&workload)
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "rkube bench scheduler --mode {mode} failed:\n{text}");
    let base = dir.path().join(format!("toy-{mode}"));
    let svg = std::fs::read_to_string(base.with_extension("svg")).unwrap();
    assert!(svg.starts_with("<svg") || svg.contains("<svg"), "{svg}");
    let read = |p: &std::path::Path| -> serde_json::Value { serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap() };
    Run { report: read(&base.with_extension("json")), all: read(&all), stdout: text }
}

/// The common shape: `bench`, `environment`, and a non-empty `figures` list
/// of finite, positive values with unique keys and a direction. Returns the
/// figures by key.
fn check_shape(r: &serde_json::Value) -> std::collections::BTreeMap<String, f64> {
    assert_eq!(r["bench"], "scheduler", "{r}");
    let env = &r["environment"];
    assert!(env["cores"].as_u64().unwrap() >= 1, "{env}");
    assert!(env["date"].as_str().is_some_and(|d| !d.is_empty()), "{env}");
    assert!(env["command"].as_str().unwrap().contains("bench scheduler"), "{env}");
    let figures = r["figures"].as_array().unwrap();
    assert!(!figures.is_empty(), "{r}");
    let mut by_key = std::collections::BTreeMap::new();
    for f in figures {
        let key = f["key"].as_str().unwrap().to_string();
        let v = f["value"].as_f64().unwrap_or(f64::NAN);
        assert!(v.is_finite() && v > 0.0, "{f}");
        assert!(f["better"] == "higher" || f["better"] == "lower", "{f}");
        assert!(f["label"].as_str().is_some_and(|l| !l.is_empty()) && f["unit"].as_str().is_some_and(|u| !u.is_empty()), "{f}");
        assert!(by_key.insert(key, v).is_none(), "duplicate key: {f}");
    }
    by_key
}

/// A run of seconds has far fewer than 20 one-second windows: no window
/// percentiles anywhere, and the table says why.
fn check_no_window_percentiles(run: &Run, figures: &std::collections::BTreeMap<String, f64>) {
    let t = &run.report["throughput"];
    assert!(t["window_count"].as_u64().unwrap() < 20, "{t}");
    for p in ["p50", "p90", "p95", "p99"] {
        assert!(t["windows"].get(p).is_none(), "{t}");
    }
    assert!(!figures.keys().any(|k| k.contains("throughput_window")), "{figures:?}");
    assert!(run.stdout.contains("percentiles not reported"), "{}", run.stdout);
}

fn check_counts(r: &serde_json::Value, repetitions: u64) {
    assert_eq!(r["nodes"], 3, "{r}");
    assert_eq!(r["init_pods"], 2, "{r}");
    assert_eq!(r["measured_pods"], 21 * repetitions, "{r}");
    assert_eq!(r["scheduled"], 20 * repetitions, "{r}");
    assert_eq!(r["unschedulable"], repetitions, "{r}");
    assert!(r["throughput"]["average"].as_f64().unwrap() > 0.0, "{r}");
}

/// The `--json` file of a one-workload command: the same figures, the run
/// under `runs`.
fn check_all(run: &Run) {
    assert_eq!(run.all["bench"], "scheduler");
    assert_eq!(run.all["figures"], run.report["figures"]);
    assert_eq!(run.all["runs"].as_array().unwrap().len(), 1);
    assert_eq!(run.all["runs"][0]["workload"], "Toy");
}

#[test]
fn bench_scheduler_end_to_end_at_toy_size() {
    let run = run("e2e", &[]);
    let r = &run.report;
    check_counts(r, 1);
    assert_eq!(r["repetitions"]["count"], 1, "{r}");
    let etcd = &r["etcd"];
    assert!(etcd["txn_per_second"].as_f64().unwrap() > 0.0, "{etcd}");
    assert_eq!(etcd["transactions"], 1000, "{etcd}");
    assert_eq!(etcd["operation"], "create-if-absent txn", "{etcd}");
    assert!(r["latency_ms"]["p50"].as_f64().unwrap() > 0.0, "{r}");
    let figures = check_shape(r);
    for k in ["throughput_avg", "etcd_ceiling_txn_per_s", "ratio_to_ceiling", "pods_created_per_s", "latency_p50_ms"] {
        assert!(figures.contains_key(&format!("scheduler.e2e.Toy.{k}")), "{k} missing: {figures:?}");
    }
    // CPU is measured per process; the figures carry only those above /proc's resolution.
    assert!(r["cpu_per_pod"].as_array().unwrap().len() >= 3, "{r}");
    check_no_window_percentiles(&run, &figures);
    check_all(&run);
}

#[test]
fn bench_scheduler_in_process_repeats_until_min_seconds() {
    let run = run("in-process", &["--min-seconds", "1"]);
    let r = &run.report;
    let reps = r["repetitions"]["count"].as_u64().unwrap();
    assert!(reps > 1, "a toy workload measures far less than 1 s: {r}");
    check_counts(r, reps);
    assert!(r["etcd"].is_null(), "{r}");
    // Measured work adds up to --min-seconds; the average is over all of it.
    let secs = r["duration_seconds"].as_f64().unwrap();
    assert!(secs >= 1.0, "{secs}");
    let avg = r["throughput"]["average"].as_f64().unwrap();
    assert!((avg - 20.0 * reps as f64 / secs).abs() <= 1e-6 * avg, "{r}");
    // Per-repetition spread: min ≤ median ≤ max over every repetition.
    let t = &r["repetitions"]["throughput"];
    assert_eq!(t["n"].as_u64().unwrap(), reps, "{t}");
    assert!(t["min"].as_f64().unwrap() <= t["median"].as_f64().unwrap() && t["median"].as_f64().unwrap() <= t["max"].as_f64().unwrap(), "{t}");
    assert!(run.stdout.contains(&format!("{reps} repetitions")), "{}", run.stdout);
    let figures = check_shape(r);
    assert!(figures.contains_key("scheduler.in-process.Toy.throughput_avg"), "{figures:?}");
    check_no_window_percentiles(&run, &figures);
    check_all(&run);
}
