//! `rkube status`: each component's process, health endpoint and version,
//! then the nodes and their readiness as the apiserver sees them.

use std::path::PathBuf;

use crate::cluster::spec::Spec;
use crate::cluster::supervise::Supervisor;
use crate::cluster::http_get;

#[derive(clap::Args, Debug, Clone)]
pub struct Options {
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
}

/// One component's line: (name, pid, health, version).
pub struct Row {
    pub name: String,
    pub pid: Option<u32>,
    pub health: String,
    pub version: String,
}

fn health(addr: &str, path: &str) -> String {
    match http_get(addr, path) {
        Ok((200, body)) => format!("{} {}", "ok", if body.trim().len() < 20 { body.trim().to_string() } else { String::new() }).trim().to_string(),
        Ok((code, _)) => format!("HTTP {code}"),
        Err(e) => format!("unreachable ({e})"),
    }
}

fn version_of(sup: &Supervisor, name: &str) -> String {
    let Ok(program) = std::fs::read_to_string(sup.run_dir.join(format!("{name}.cmd"))) else { return String::new() };
    match std::process::Command::new(&program).arg("--version").output() {
        Ok(o) => String::from_utf8_lossy(&o.stdout).lines().next().unwrap_or("").trim().to_string(),
        Err(_) => String::new(),
    }
}

pub fn rows(spec: &Spec) -> Vec<Row> {
    let sup = Supervisor::new(spec.run_dir(), spec.logs());
    spec.components()
        .into_iter()
        .map(|name| {
            let pid = sup.pid(&name);
            let health = if pid.is_none() {
                "-".to_string()
            } else if let Some((node, what)) = name.strip_prefix("node").and_then(|r| r.split_once('-')) {
                let n: u32 = node.parse().unwrap_or(0);
                let ip = spec.node_ip(n);
                match what {
                    "agent" => health(&format!("{ip}:10248"), "/healthz"),
                    "proxy" => health(&format!("{ip}:10256"), "/healthz"),
                    _ => {
                        let sock = spec.containerd_dir(n).join("containerd.sock");
                        let endpoint = format!("unix://{}", sock.display());
                        let r = tokio::runtime::Builder::new_current_thread()
                            .enable_all()
                            .build()
                            .map_err(anyhow::Error::from)
                            .and_then(|rt| rt.block_on(crate::cluster::node::cri_ready(&endpoint)));
                        match r {
                            Ok(()) => "ok (CRI ready)".into(),
                            Err(e) => format!("CRI: {e:#}"),
                        }
                    }
                }
            } else {
                match spec.health_endpoint(&name) {
                    Some((addr, path)) => health(&addr, path),
                    None => String::new(),
                }
            };
            let version = if pid.is_some() { version_of(&sup, &name) } else { String::new() };
            Row { name, pid, health, version }
        })
        .collect()
}

/// Is an apiserver up to ask about nodes? `apiserver`, or with --ha any
/// of `apiserver-1..3` (kubectl goes through HAProxy to a live one).
fn apiserver_running(rows: &[Row]) -> bool {
    rows.iter().any(|r| r.pid.is_some() && (r.name == "apiserver" || r.name.strip_prefix("apiserver-").is_some_and(|i| i.parse::<u32>().is_ok())))
}

pub fn run(o: Options) -> anyhow::Result<()> {
    let state_dir = o.state_dir.clone().unwrap_or_else(crate::cluster::default_state_dir);
    let Some(spec) = Spec::load(&state_dir)? else {
        println!("No cluster in {} (`rkube up` starts one).", state_dir.display());
        return Ok(());
    };
    println!("Cluster in {} — apiserver {}", state_dir.display(), spec.apiserver_url());
    println!("{:<20} {:>8}  {:<30} {}", "COMPONENT", "PID", "HEALTH", "VERSION");
    let rows = rows(&spec);
    for r in &rows {
        let pid = r.pid.map(|p| p.to_string()).unwrap_or_else(|| "stopped".into());
        println!("{:<20} {:>8}  {:<30} {}", r.name, pid, r.health, r.version);
    }
    if apiserver_running(&rows) {
        match crate::cluster::kubectl::kubectl(&spec, &["get", "nodes", "-o", "wide"]) {
            Ok(out) => println!("\n{out}"),
            Err(e) => println!("\nnodes: {e:#}"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(up: &[(&str, bool)]) -> Vec<Row> {
        up.iter().map(|(n, up)| Row { name: n.to_string(), pid: up.then_some(1), health: String::new(), version: String::new() }).collect()
    }

    #[test]
    fn nodes_shown_when_any_apiserver_runs() {
        assert!(apiserver_running(&rows(&[("etcd", true), ("apiserver", true)])));
        assert!(!apiserver_running(&rows(&[("etcd", true), ("apiserver", false)])));
        // --ha: apiserver-1 is down, apiserver-3 still serves.
        assert!(apiserver_running(&rows(&[("apiserver-1", false), ("apiserver-2", false), ("apiserver-3", true), ("haproxy", true)])));
        assert!(!apiserver_running(&rows(&[("apiserver-1", false), ("apiserver-2", false), ("haproxy", true)])));
        assert!(!apiserver_running(&rows(&[("node1-agent", true), ("apiserver-x", true)])));
    }
}
