//! A fresh machine gets every command rkube runs from `scripts/install-deps`
//! (or from cargo): every program the code starts by name
//! (`Command::new("…")`, and the launcher's prerequisite table) must be in
//! that script's COMMANDS table, with the Debian package that provides it.
//! kubectl is the one exception: it is not a Debian package, and the README
//! names it as the prerequisite.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if p.is_dir() {
            if !name.starts_with('.') && !name.starts_with("target") {
                rust_files(&p, out);
            }
        } else if name.ends_with(".rs") && p.file_name().unwrap() != "install_deps.rs" {
            out.push(p);
        }
    }
}

/// The command names in install-deps' COMMANDS=( … ) table.
fn listed() -> BTreeSet<String> {
    let script = std::fs::read_to_string(workspace().join("scripts/install-deps")).unwrap();
    let start = script.find("COMMANDS=(").expect("COMMANDS table");
    let body = &script[start + "COMMANDS=(".len()..];
    let body = &body[..body.find("\n)").unwrap()];
    body.lines()
        .filter_map(|l| l.split('#').next().unwrap().split_whitespace().next())
        .map(|e| e.split(':').next().unwrap().to_string())
        .collect()
}

/// Programs the code starts by a literal name.
fn started() -> BTreeSet<String> {
    let mut files = Vec::new();
    rust_files(&workspace(), &mut files);
    let mut found = BTreeSet::new();
    for f in files {
        let src = std::fs::read_to_string(&f).unwrap();
        for (i, _) in src.match_indices("Command::new(\"") {
            let rest = &src[i + "Command::new(\"".len()..];
            found.insert(rest[..rest.find('"').unwrap()].to_string());
        }
    }
    // The launcher's prerequisite table: ("command", "package") pairs.
    let up = std::fs::read_to_string(workspace().join("cli/src/commands/up.rs")).unwrap();
    let table = &up[up.find("const PREREQUISITES").unwrap()..];
    let table = &table[..table.find("];").unwrap()];
    for line in table.lines().filter(|l| l.trim_start().starts_with("(\"")) {
        let name = line.trim_start().trim_start_matches("(\"");
        found.insert(name[..name.find('"').unwrap()].to_string());
    }
    found
}

#[test]
fn every_command_the_code_runs_comes_from_install_deps() {
    let listed = listed();
    let started = started();
    // The scan itself must work: the code runs ip, etcd, containerd … by name.
    for known in ["ip", "etcd", "containerd", "openssl"] {
        assert!(started.contains(known), "scan found no Command::new(\"{known}\"): {started:?}");
    }
    let basename = |c: &str| c.rsplit('/').next().unwrap().to_string();
    let missing: Vec<_> = started
        .iter()
        .filter(|c| c.as_str() != "kubectl")
        .filter(|c| !listed.contains(*c) && !listed.iter().any(|l| basename(l) == basename(c)))
        .collect();
    assert!(missing.is_empty(), "commands the code runs that scripts/install-deps does not provide: {missing:?} (add them to its COMMANDS table with their Debian package)");
}
