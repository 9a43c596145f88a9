//! Helpers for the agent's end-to-end tests: start `rkube-agent` as a child
//! process (killed on drop, and with the test process), and poll the API.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

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
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `f` until it returns Some, or panics with `what` (and the agent's log) after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, agent: &mut Agent, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        agent.assert_alive();
        if start.elapsed() > timeout {
            let log = agent.log_text();
            let tail: String = log.lines().rev().take(60).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
            panic!("{what}: not after {timeout:?}; agent log tail:\n{tail}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

pub fn free_port() -> u16 {
    e2e::free_port()
}
