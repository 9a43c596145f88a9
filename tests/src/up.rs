//! A cluster brought up by `rkube up` for a test (single-box or `--ha`):
//! the CLI and kubectl pointed at its state directory, and `rkube down
//! --purge` on drop, so a failed assertion leaves nothing behind.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

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

/// Poll `ok` every 250 ms until it holds, or panic after `timeout`.
pub fn wait(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < timeout, "{what}: not after {timeout:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
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

    /// kubectl as the cluster admin.
    pub fn kubectl(&self, args: &[&str]) -> (bool, String) {
        let kc = self.kubeconfig();
        let mut a = vec!["--kubeconfig", kc.to_str().unwrap()];
        a.extend_from_slice(args);
        run("kubectl", &a)
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
