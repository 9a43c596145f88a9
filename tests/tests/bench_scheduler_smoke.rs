//! `rkube bench scheduler` at toy sizes, both modes: end to end (the command
//! starts its own etcd, apiserver and scheduler; nodes are API objects only)
//! and in process. The JSON reports must account for every pod — the
//! fitting ones bound, the one that fits nowhere counted as unschedulable —
//! and the end-to-end one must carry the raw etcd ceiling measured in the
//! same run. Keeps the benchmark from rotting; asserts no timing target.

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

fn run(mode: &str) -> serde_json::Value {
    let rkube = e2e::bin("rkube");
    for b in ["rkube-apiserver", "rkube-scheduler"] {
        e2e::bin(b);
    }
    let dir = tempfile::tempdir().unwrap();
    let workload = dir.path().join("toy.yaml");
    std::fs::write(&workload, WORKLOAD).unwrap();
    let out = Command::new(&rkube)
        .args(["bench", "scheduler", "--mode", mode, "--out-dir"])
        .arg(dir.path())
        .arg(&workload)
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "rkube bench scheduler --mode {mode} failed:\n{text}");
    let base = dir.path().join(format!("toy-{mode}"));
    let svg = std::fs::read_to_string(base.with_extension("svg")).unwrap();
    assert!(svg.starts_with("<svg") || svg.contains("<svg"), "{svg}");
    serde_json::from_slice(&std::fs::read(base.with_extension("json")).unwrap()).unwrap()
}

fn check_counts(r: &serde_json::Value) {
    assert_eq!(r["nodes"], 3, "{r}");
    assert_eq!(r["init_pods"], 2, "{r}");
    assert_eq!(r["measured_pods"], 21, "{r}");
    assert_eq!(r["scheduled"], 20, "{r}");
    assert_eq!(r["unschedulable"], 1, "{r}");
    assert!(r["throughput"]["average"].as_f64().unwrap() > 0.0, "{r}");
}

#[test]
fn bench_scheduler_end_to_end_at_toy_size() {
    let r = run("e2e");
    check_counts(&r);
    let etcd = &r["etcd"];
    assert!(etcd["txn_per_second"].as_f64().unwrap() > 0.0, "{etcd}");
    assert_eq!(etcd["transactions"], 1000, "{etcd}");
    assert!(r["latency_ms"]["p50"].as_f64().unwrap() > 0.0, "{r}");
}

#[test]
fn bench_scheduler_in_process_at_toy_size() {
    let r = run("in-process");
    check_counts(&r);
    assert!(r["etcd"].is_null(), "{r}");
}
