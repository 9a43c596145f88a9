//! A cluster brought up by `rkube up` for a test (single-box or `--ha`):
//! the CLI and kubectl pointed at its state directory, and `rkube down
//! --purge` on drop, so a failed assertion leaves nothing behind.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs `cmd args`, returning success and stdout+stderr.
pub fn run(cmd: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(cmd).args(args).output().unwrap_or_else(|e| panic!("{cmd}: {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// No route on the host mentions `needle` (an address prefix like `10.201.3.`).
pub fn route_free(needle: &str) -> bool {
    !run("ip", &["route"]).1.contains(needle)
}

pub struct UpCluster {
    /// The `rkube` binary.
    pub rkube: PathBuf,
    /// `--state-dir`: certificates, kubeconfigs, logs, pid files.
    pub state: tempfile::TempDir,
    /// Set once `rkube up` ran; cleared by a test that ran `rkube down` itself.
    pub up: bool,
}

impl UpCluster {
    pub fn new(rkube: PathBuf) -> Self {
        let state = tempfile::Builder::new().prefix("rkube-up-").tempdir().unwrap();
        UpCluster { rkube, state, up: false }
    }

    /// `rkube <args> --state-dir <state>`.
    pub fn rkube(&self, args: &[&str]) -> (bool, String) {
        let mut a: Vec<&str> = args.to_vec();
        let sd = self.state.path().to_str().unwrap().to_string();
        a.extend(["--state-dir", &sd]);
        let out = Command::new(&self.rkube).args(&a).output().unwrap();
        (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    }

    /// The admin kubeconfig `rkube up` wrote.
    pub fn kubeconfig(&self) -> PathBuf {
        self.state.path().join("pki/admin.kubeconfig")
    }

    /// kubectl as the cluster admin: success, and stdout+stderr.
    pub fn kubectl(&self, args: &[&str]) -> (bool, String) {
        let out = crate::kubectl_command("default", &self.kubeconfig(), self.state.path()).args(args).output().unwrap();
        (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    }

    /// The pid `rkube up` recorded for a component (`apiserver-1`, …).
    pub fn pid(&self, component: &str) -> i32 {
        std::fs::read_to_string(self.state.path().join(format!("run/{component}.pid"))).unwrap().trim().parse().unwrap()
    }

    pub fn log(&self, component: &str) -> String {
        std::fs::read_to_string(self.state.path().join(format!("logs/{component}.log"))).unwrap_or_default()
    }
}

impl Drop for UpCluster {
    fn drop(&mut self) {
        if self.up {
            let (_, out) = self.rkube(&["down", "--purge"]);
            eprintln!("clean-up rkube down: {out}");
        }
    }
}

/// A node subnet (`10.X.Y.0/24`) and a cluster CIDR (`172.Z.0.0/16`) that no
/// route on this host uses yet, searched from `seed` (tests running at once
/// pass different seeds, e.g. from their pid).
pub fn free_ranges(seed: u32) -> (String, String) {
    let mut k = seed;
    loop {
        let subnet = format!("10.{}.{}.0/24", 201 + k % 40, k % 250);
        let cluster = format!("172.{}.0.0/16", 16 + (k % 16));
        if route_free(&format!("10.{}.{}.", 201 + k % 40, k % 250)) && route_free(&format!("172.{}.", 16 + (k % 16))) {
            return (subnet, cluster);
        }
        k += 7;
    }
}

/// A process: pid and start time (clock ticks after boot), so that a pid
/// the kernel handed out again is not taken for the process we saw.
pub type Proc = (i32, u64);

/// Start time of `pid` (field 22 of /proc/PID/stat, counted after the
/// `(comm)` field, which may hold spaces).
pub fn proc_start(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.split_whitespace().nth(19)?.parse().ok()
}

/// Still running: same start time, and not a zombie (an exited process
/// whose parent, often PID 1 for daemons, has not reaped it yet: it holds
/// no resources but its pid).
pub fn alive(p: Proc) -> bool {
    let zombie = std::fs::read_to_string(format!("/proc/{}/stat", p.0)).ok().and_then(|s| s.rsplit_once(')').map(|(_, r)| r.trim_start().starts_with(['Z', 'X']))).unwrap_or(true);
    proc_start(p.0) == Some(p.1) && !zombie
}

pub fn cmdline(pid: i32) -> String {
    String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default()).replace('\0', " ")
}

/// The processes in the named network namespace `ns` (`ip netns pids`).
pub fn netns_procs(ns: &str) -> Vec<Proc> {
    run("ip", &["netns", "pids", ns]).1.lines().filter_map(|l| l.trim().parse().ok()).filter_map(|pid| proc_start(pid).map(|s| (pid, s))).collect()
}

/// The named network namespaces (`cni-…` under /run/netns) of the pod
/// sandboxes that the nodes' containerds under `state_dir` run, read from
/// their OCI bundles (`linux.namespaces[type=network].path`): a pod's
/// containers join the sandbox's namespace by /proc path, only the sandbox
/// names a file there.
/// Each as (netns name, sandbox id).
pub fn sandbox_netns(state_dir: &Path) -> BTreeSet<(String, String)> {
    let mut found = BTreeSet::new();
    let dirs = |p: PathBuf| std::fs::read_dir(p).into_iter().flatten().flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect::<Vec<_>>();
    for node in dirs(state_dir.join("nodes")) {
        for ns in dirs(node.join("ctrd/state/io.containerd.runtime.v2.task")) {
            for bundle in dirs(ns) {
                let Ok(text) = std::fs::read_to_string(bundle.join("config.json")) else { continue };
                let Ok(spec) = serde_json::from_str::<serde_json::Value>(&text) else { continue };
                let path = spec["linux"]["namespaces"].as_array().and_then(|a| a.iter().find(|n| n["type"] == "network")).and_then(|n| n["path"].as_str()).unwrap_or("");
                if let Some(name) = path.strip_prefix("/var/run/netns/").or_else(|| path.strip_prefix("/run/netns/")) {
                    let id = bundle.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
                    found.insert((name.to_string(), id));
                }
            }
        }
    }
    found
}
