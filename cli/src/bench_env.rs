//! What every benchmark report records about the run, so a reader can set
//! figures from different machines side by side (or refuse to): when, on
//! what machine (cores, memory, kernel, the versions of the real parts:
//! etcd, containerd, runc, iptables), how loaded it was at the start, and the
//! exact command. Every `rkube bench …` writes this as the `environment`
//! object of its JSON; `scripts/bench-report` prints it above each table.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Environment {
    /// UTC, RFC 3339, at the start of the run.
    pub date: String,
    pub cores: usize,
    pub memory_gib: f64,
    pub kernel: String,
    /// First line of `<tool> --version`, or `absent`.
    pub etcd: String,
    pub containerd: String,
    pub runc: String,
    pub iptables: String,
    /// `/proc/loadavg`'s 1, 5 and 15 minute averages when the run started.
    pub load_average_start: [f64; 3],
    /// The command line, as typed.
    pub command: String,
    /// The rkube commit the binaries came from, when run from a git checkout.
    pub commit: Option<String>,
}

impl Environment {
    /// Reads it now: call once, before the measured work starts.
    pub fn capture() -> Environment {
        Environment {
            date: chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            cores: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            memory_gib: mem_total_gib(),
            kernel: first_line(&std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default()),
            etcd: version_of("etcd", &["--version"]),
            containerd: version_of("containerd", &["--version"]),
            runc: version_of("runc", &["--version"]),
            iptables: version_of("iptables", &["--version"]),
            load_average_start: load_average(),
            command: std::env::args().collect::<Vec<_>>().join(" "),
            commit: commit(),
        }
    }
}

/// `/proc/loadavg`'s three averages (zeros where it cannot be read).
pub fn load_average() -> [f64; 3] {
    let s = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut v = s.split_whitespace().map(|x| x.parse().unwrap_or(0.0));
    [v.next().unwrap_or(0.0), v.next().unwrap_or(0.0), v.next().unwrap_or(0.0)]
}

fn mem_total_gib() -> f64 {
    let s = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let kib: f64 = s
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    (kib / 1024.0 / 1024.0 * 10.0).round() / 10.0
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").trim().to_string()
}

fn output_of(cmd: &str, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new(cmd).args(args).stderr(std::process::Stdio::null()).output().ok()?;
    out.status.success().then(|| first_line(&String::from_utf8_lossy(&out.stdout))).filter(|s| !s.is_empty())
}

fn version_of(cmd: &str, args: &[&str]) -> String {
    output_of(cmd, args).unwrap_or_else(|| "absent".into())
}

/// The commit of the checkout the running binary was built in (the binary
/// lives in its `target/`), or of the current directory's.
fn commit() -> Option<String> {
    let exe_dir = std::env::current_exe().ok().and_then(|p| p.parent().map(|d| d.to_path_buf()));
    exe_dir
        .and_then(|d| output_of("git", &["-C", &d.to_string_lossy(), "rev-parse", "--short=12", "HEAD"]))
        .or_else(|| output_of("git", &["rev-parse", "--short=12", "HEAD"]))
}
