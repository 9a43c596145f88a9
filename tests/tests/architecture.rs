//! The architecture invariants of ARCHITECTURE.md that a machine can check:
//!
//! - only the apiserver, of the components, depends on etcd-client (the
//!   benchmark harness in `cli/` and the tests may read etcd to measure or
//!   inspect it; no component process does);
//! - components depend on `machinery` (and the agent on `proto`), never on
//!   each other;
//! - the apiserver uses only machinery's sans-IO half (no `client` feature);
//! - the scheduling algorithm (queue order, cache, framework, predicates,
//!   priorities, selectHost) does no I/O: no tokio, kube, hyper, files or
//!   sockets in those files;
//! - no two modules of a crate import each other (`scripts/check-module-cycles`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// package name → (normal dependency name → features asked for), from `cargo metadata`.
fn dependencies() -> BTreeMap<String, BTreeMap<String, Value>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo).args(["metadata", "--format-version", "1", "--no-deps", "--offline"]).current_dir(workspace()).output().unwrap();
    assert!(out.status.success(), "cargo metadata: {}", String::from_utf8_lossy(&out.stderr));
    let meta: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut map = BTreeMap::new();
    for p in meta["packages"].as_array().unwrap() {
        let deps = p["dependencies"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["kind"].is_null()) // normal dependencies; dev and build are not the component's
            .map(|d| (d["name"].as_str().unwrap().to_string(), d.clone()))
            .collect();
        map.insert(p["name"].as_str().unwrap().to_string(), deps);
    }
    map
}

const COMPONENTS: [&str; 5] = ["rkube-apiserver", "rkube-scheduler", "rkube-controller", "rkube-agent", "rkube-proxy"];

#[test]
fn only_the_apiserver_talks_to_etcd() {
    let deps = dependencies();
    let on_etcd: BTreeSet<&str> = deps.iter().filter(|(_, d)| d.contains_key("etcd-client")).map(|(p, _)| p.as_str()).collect();
    assert!(on_etcd.contains("rkube-apiserver"), "the apiserver stores in etcd: {on_etcd:?}");
    for p in COMPONENTS.iter().chain(&["rkube-machinery", "rkube-proto"]) {
        assert!(*p == "rkube-apiserver" || !on_etcd.contains(p), "{p} depends on etcd-client; only the apiserver talks to etcd");
    }
}

#[test]
fn components_depend_on_machinery_never_on_each_other() {
    let deps = dependencies();
    for c in COMPONENTS {
        let d = deps.get(c).unwrap_or_else(|| panic!("no package {c}"));
        assert!(d.contains_key("rkube-machinery"), "{c} builds on machinery");
        for other in COMPONENTS.iter().filter(|o| **o != c) {
            assert!(!d.contains_key(*other), "{c} depends on {other}: components talk only through the apiserver");
        }
    }
    // The apiserver uses machinery's sans-IO half only.
    let m = &deps["rkube-apiserver"]["rkube-machinery"];
    assert_eq!(m["uses_default_features"], false, "the apiserver takes machinery without default features: {m}");
    assert!(!m["features"].as_array().unwrap().iter().any(|f| f == "client"), "the apiserver must not enable machinery's client half: {m}");
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn the_scheduling_algorithm_does_no_io() {
    let src = workspace().join("scheduler/src");
    let mut files: Vec<PathBuf> = ["algorithm.rs", "cache.rs", "framework.rs", "node_info.rs", "node_selector.rs", "anti_affinity_index.rs", "select_host.rs"]
        .iter()
        .map(|f| src.join(f))
        .collect();
    rust_files(&src.join("predicates"), &mut files);
    rust_files(&src.join("priorities"), &mut files);
    assert!(files.len() > 10, "{files:?}");
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        for io in ["tokio::", "kube::", "hyper", "std::fs", "std::net", "std::process", "reqwest"] {
            assert!(!text.contains(io), "{} uses {io}: the scheduling algorithm is pure (state in, decision out)", f.display());
        }
    }
}

#[test]
fn no_two_modules_of_a_crate_import_each_other() {
    let out = Command::new(workspace().join("scripts/check-module-cycles")).current_dir(workspace()).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "scripts/check-module-cycles:\n{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.lines().filter(|l| l.contains("ok")).count() >= 8, "every crate was checked:\n{text}");
}
