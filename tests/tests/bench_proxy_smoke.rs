//! `rkube bench proxy` at a toy size (root): one small case with three
//! repetitions, and its JSON report has the common shape of every
//! `rkube bench` (`bench`, `environment`, a non-empty `figures` list of
//! finite values) and sound figures: for every full sync, the proxy's own
//! part is ≥ 0 and the whole sync ≥ the `iptables-restore` inside it (both
//! read within that same sync). Asserts no timing target.
//!
//! The bench makes a throwaway network namespace per case; the command
//! itself is started from one more throwaway namespace (`e2e::netns`), so
//! even the namespace it starts in is not the host's. That outer
//! namespace's tables must stay free of the bench's rules, and the per-case
//! namespaces must be gone afterwards.

mod proxy_common;

use std::process::Command;

use proxy_common::{is_root, Netns};

fn num(v: &serde_json::Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or_else(|| panic!("{key} missing or not a number in {v}"))
}

#[test]
fn bench_proxy_runs_at_toy_size() {
    if !is_root() {
        eprintln!("skipped: needs root (network namespaces, iptables)");
        return;
    }
    let rkube = e2e::bin("rkube");
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("proxy.json");
    let outer = Netns::new("rbp");
    let (pid, out) = outer.run(|| {
        let child = Command::new(&rkube)
            .args(["bench", "proxy", "--cases", "50x2", "--reps", "3", "--json"])
            .arg(&json)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        (child.id(), child.wait_with_output().unwrap())
    });
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "rkube bench proxy failed:\n{text}");
    // The per-case namespaces (`rkpb<pid>x<n>`) are gone; the outer one has none of the rules.
    let prefix = format!("rkpb{}x", pid % 100000);
    let left: Vec<String> =
        std::fs::read_dir("/run/netns").map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| n.starts_with(&prefix)).collect()).unwrap_or_default();
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
    let nat = outer.save("nat").join("\n");
    assert!(!nat.contains("KUBE-SVC-") && !nat.contains("bench/svc-"), "the bench wrote into the namespace it was started from:\n{nat}");
    drop(outer);

    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(r["bench"], "proxy");
    let env = &r["environment"];
    assert!(env.is_object() && num(env, "cores") >= 1.0 && env["iptables"].is_string() && env["command"].as_str().is_some_and(|c| c.contains("bench proxy")), "{env}");
    let figures = r["figures"].as_array().expect("figures");
    assert!(!figures.is_empty());
    for f in figures {
        assert!(f["key"].as_str().is_some_and(|k| k.starts_with("proxy.") && k.ends_with(".50x2")) && f["label"].is_string() && f["unit"].is_string(), "{f}");
        assert!(f["value"].as_f64().is_some_and(f64::is_finite), "{f}");
        assert!(f["better"] == "lower" || f["better"] == "higher", "{f}");
    }
    let figure = |k: &str| figures.iter().find(|f| f["key"] == k).map(|f| num(f, "value")).unwrap_or_else(|| panic!("{k} missing"));
    assert!(figure("proxy.system.own_ms.50x2") >= 0.0);
    assert!(figure("proxy.system.full_sync_ms.50x2") > 0.0 && figure("proxy.system.restore_ms.50x2") > 0.0 && figure("proxy.system.raw_restore_ms.50x2") > 0.0);
    assert!(figure("proxy.system.endpoint_change_ms.50x2") >= figure("proxy.system.endpoint_change_own_ms.50x2"));

    let cases = r["cases"].as_array().expect("cases");
    assert_eq!(cases.len(), 1);
    for c in cases {
        assert_eq!((c["case"].as_str(), c["services"].as_u64(), c["endpoints_per_service"].as_u64()), (Some("50x2"), Some(50), Some(2)), "{c}");
        assert!(num(c, "nat_rules") > 50.0 && num(c, "bytes") > 0.0 && num(c, "cold_sync_ms") > 0.0, "{c}");
        let syncs = c["full_syncs"].as_array().unwrap();
        assert_eq!(syncs.len(), 3, "{c}");
        for s in syncs.iter().chain(c["endpoint_changes"].as_array().unwrap()) {
            let (total, restore, own) = (num(s, "total_ms"), num(s, "restore_ms"), num(s, "own_ms"));
            assert!(own >= 0.0 && restore > 0.0 && total >= restore, "{s}");
            assert!((total - restore - own).abs() < 0.002, "own = total − restore of the same sync: {s}");
        }
        assert_eq!(c["raw_restores_ms"].as_array().map(Vec::len), Some(3), "{c}");
        assert_eq!(c["endpoint_changes"].as_array().map(Vec::len), Some(5), "{c}");
        for k in ["full_sync_ms", "restore_ms", "own_ms", "raw_restore_ms", "endpoint_change_ms"] {
            let s = &c[k];
            assert_eq!(s["n"].as_u64(), Some(if k == "endpoint_change_ms" { 5 } else { 3 }), "{k}: {s}");
            assert!(num(s, "min") <= num(s, "median") && num(s, "median") <= num(s, "max"), "{k}: {s}");
        }
        assert!(num(&c["own_ms"], "min") >= 0.0 && num(&c["sync_over_restore"], "min") >= 1.0, "{c}");
    }
}
