//! `rkube bench apiserver` at toy sizes (the command starts its own etcd,
//! the twin etcds of its ceiling, and the apiserver). Its `--json` file must
//! have the common `rkube bench` shape (environment, figures), and the
//! ceiling must be the create-if-absent transaction the apiserver's create
//! is, of the same value size and concurrency as the creates, with the
//! plain-put figure beside it and each ratio named. Keeps the benchmark
//! from rotting; asserts no timing target.

use std::collections::BTreeMap;
use std::process::Command;

#[test]
fn bench_apiserver_at_toy_size() {
    let rkube = e2e::bin("rkube");
    e2e::bin("rkube-apiserver");
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("apiserver.json");
    let out = Command::new(&rkube)
        .args(["bench", "apiserver", "--pods", "200", "--concurrency", "4", "--watchers", "3", "--watch-events", "20", "--json"])
        .arg(&json)
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "rkube bench apiserver failed:\n{text}");
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();

    assert_eq!(r["bench"], "apiserver", "{r}");
    let env = &r["environment"];
    assert!(env["cores"].as_u64().unwrap() >= 1, "{env}");
    assert!(env["command"].as_str().unwrap().contains("bench apiserver"), "{env}");

    let mut figures = BTreeMap::new();
    for f in r["figures"].as_array().unwrap() {
        let v = f["value"].as_f64().unwrap_or(f64::NAN);
        assert!(v.is_finite() && v > 0.0, "{f}");
        assert!(f["better"] == "higher" || f["better"] == "lower", "{f}");
        assert!(figures.insert(f["key"].as_str().unwrap().to_string(), (v, f["better"].clone())).is_none(), "duplicate: {f}");
    }
    for (k, better) in [
        ("apiserver.creates_per_s", "higher"),
        ("apiserver.etcd_create_txn_per_s", "higher"),
        ("apiserver.etcd_put_per_s", "higher"),
        ("apiserver.ratio_creates_to_txn", "higher"),
        ("apiserver.ratio_creates_to_put", "higher"),
        ("apiserver.create_latency_p50_ms", "lower"),
        ("apiserver.create_latency_p99_ms", "lower"),
        ("apiserver.list_ms", "lower"),
        ("apiserver.rss_mib", "lower"),
        ("apiserver.watch_fanout_p50_ms", "lower"),
    ] {
        let (_, b) = figures.get(k).unwrap_or_else(|| panic!("{k} missing: {figures:?}"));
        assert_eq!(b, better, "{k}");
    }
    // 3 watchers × 20 events = 60 deliveries: too few for a p99.
    assert!(!figures.contains_key("apiserver.watch_fanout_p99_ms"), "{figures:?}");
    let ratio = figures["apiserver.ratio_creates_to_txn"].0;
    let expect = figures["apiserver.creates_per_s"].0 / figures["apiserver.etcd_create_txn_per_s"].0;
    assert!((ratio - expect).abs() <= 1e-9 * expect, "{ratio} vs {expect}");

    // The ceiling: the apiserver's create transaction, same bytes, same clients.
    let txn = &r["etcd_ceiling"]["create_txn"];
    let put = &r["etcd_ceiling"]["put"];
    assert_eq!(txn["operation"], "create-if-absent txn", "{txn}");
    assert_eq!(put["operation"], "plain put", "{put}");
    for c in [txn, put] {
        assert_eq!(c["operations"], 200, "{c}");
        assert_eq!(c["in_flight"], 4, "{c}");
    }
    assert_eq!(txn["value_bytes"], put["value_bytes"]);
    assert!(txn["value_bytes"].as_u64().unwrap() > 500, "a stored pod's bytes: {txn}");
    assert_eq!(r["list_pods"], 200, "{r}");
    assert_eq!(r["watch_deliveries"], 60, "{r}");
}
