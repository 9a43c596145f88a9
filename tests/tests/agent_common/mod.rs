//! Helpers for the agent's end-to-end tests: start `rkube-agent` as a child
//! process (killed on drop, and with the test process), and poll the API.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::Duration;

use e2e::Cluster;

/// A running rkube-agent.
pub struct Agent {
    child: Child,
    pub log: PathBuf,
    pub args: Vec<String>,
}

impl Agent {
    pub fn start(cluster: &Cluster, args: &[&str]) -> Agent {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        Self::spawn(cluster, args)
    }

    fn spawn(cluster: &Cluster, args: Vec<String>) -> Agent {
        let n = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let log = cluster.dir.path().join(format!("agent-{n}.log"));
        let mut cmd = Command::new(e2e::bin("rkube-agent"));
        cmd.arg(format!("--master={}", cluster.api.url)).args(&args);
        cmd.env("RUST_LOG", "info");
        let child = e2e::spawn_logged(cmd, &log);
        Agent { child, log, args }
    }

    /// Stops this agent (SIGKILL, as a crash would) and starts it again with the same flags.
    pub fn restart(&mut self, cluster: &Cluster) {
        self.kill();
        *self = Self::spawn(cluster, self.args.clone());
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Panics with the agent's log if the process exited.
    pub fn assert_alive(&mut self) {
        if let Ok(Some(st)) = self.child.try_wait() {
            panic!("rkube-agent exited with {st}:\n{}", self.log_text());
        }
    }

    /// The last `n` lines of its log.
    pub fn log_tail(&self, n: usize) -> String {
        let log = self.log_text();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- agent log tail ({}) ----\n{}", self.log.display(), self.log_tail(60));
        }
        self.kill();
    }
}

/// [`e2e::eventually`] that also fails at once, with the agent's log, when
/// the agent has exited (a failed test prints the log tail on drop).
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, agent: &mut Agent, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    e2e::eventually(what, timeout, || {
        agent.assert_alive();
        f()
    })
    .await
}
