//! The single-box cluster behind `rkube up` / `status` / `logs` / `down`.
//!
//! One machine plays a whole cluster. The *control plane* (etcd, the
//! apiserver, the controller manager, the scheduler) runs as ordinary
//! processes on the host. Each *node* is a network namespace
//! (`<prefix>-node1`, …) plugged into a host bridge (`<prefix>0`) by a veth
//! pair, as a machine is plugged into a switch: inside it run that node's
//! container runtime (a private containerd with its own CNI bridge and
//! podCIDR), its agent (the kubelet) and its service proxy (kube-proxy).
//! Because the proxies write iptables rules into their own namespace, two
//! nodes never fight over one nat table, and removing the namespace removes
//! every rule, veth and bridge the node made.
//!
//! This directory is the library; `crate::commands` only turns command-line
//! options into calls to it.
//!
//! * [`up`] — `rkube up`'s bootstrap, step by step, in kubeadm's phase order.
//! * [`spec`] — names, addresses and ports of one cluster (`cluster.json`).
//! * [`supervise`] — daemon processes: setsid, pid files, logs, stop.
//! * [`network`] — host bridge, node namespaces, veths, routes.
//! * [`pki`] — the cluster CA, certificates and kubeconfigs.
//! * [`control_plane`] — etcd, apiserver, controller manager, scheduler,
//!   and the flags each is started with.
//! * [`ha`] — the high-availability control plane of `rkube up --ha`.
//! * [`node`] — one node: containerd, agent and proxy in its namespace.
//! * [`demo`] — the demo application: its manifests, deploying it, asking it.
//! * [`wait`] — waiting for a condition, or for a component to be healthy.
//! * [`kubectl`] — kubectl as the cluster admin.
//! * [`progress`] — the one-line-per-step progress display.
//!
//! This module holds what all of them use: the state directory, running a
//! command, finding a program or the component binaries, a plain HTTP GET.

pub mod control_plane;
pub mod demo;
pub mod ha;
pub mod kubectl;
pub mod network;
pub mod node;
pub mod pki;
pub mod progress;
pub mod spec;
pub mod supervise;
pub mod up;
pub mod wait;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

/// `/var/lib/rkube` for root, else `~/.rkube`.
pub fn default_state_dir() -> PathBuf {
    if is_root() {
        PathBuf::from("/var/lib/rkube")
    } else {
        let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
        home.join(".rkube")
    }
}

/// Running as root? (/proc/self belongs to the effective user.)
pub fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}

/// Runs a command, returning stdout; an error carries stderr.
pub fn run_cmd(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .map_err(|e| anyhow::anyhow!("running {program}: {e}"))?;
    if !out.status.success() {
        anyhow::bail!(
            "{program} {} failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The path of `cmd` in `PATH`.
pub fn which(cmd: &str) -> anyhow::Result<String> {
    let p = std::env::var_os("PATH").context("no PATH")?;
    std::env::split_paths(&p)
        .map(|d| d.join(cmd))
        .find(|p| p.is_file())
        .map(|p| p.to_string_lossy().into_owned())
        .with_context(|| format!("{cmd} not found in PATH"))
}

/// The component binaries `rkube up` starts.
pub struct Binaries {
    pub apiserver: PathBuf,
    pub controller: PathBuf,
    pub scheduler: PathBuf,
    pub agent: PathBuf,
    pub proxy: PathBuf,
}

impl Binaries {
    /// In `dir`, or else next to the running `rkube`.
    pub fn find(dir: Option<&Path>) -> anyhow::Result<Self> {
        let dir = match dir {
            Some(d) => d.to_path_buf(),
            None => std::env::current_exe()?.parent().context("no parent dir")?.to_path_buf(),
        };
        let f = |name: &str| -> anyhow::Result<PathBuf> {
            let p = dir.join(name);
            if !p.exists() {
                bail!("{} not found: build it with `cargo build --release -p {name}`", p.display());
            }
            Ok(std::fs::canonicalize(p)?)
        };
        Ok(Binaries {
            apiserver: f("rkube-apiserver")?,
            controller: f("rkube-controller")?,
            scheduler: f("rkube-scheduler")?,
            agent: f("rkube-agent")?,
            proxy: f("rkube-proxy")?,
        })
    }
}

/// A plain-HTTP GET (health endpoints, the demo app): (status, body).
pub fn http_get(addr: &str, path: &str) -> anyhow::Result<(u16, String)> {
    use std::io::{Read, Write};
    let sock: std::net::SocketAddr = addr.parse()?;
    let mut s = std::net::TcpStream::connect_timeout(&sock, std::time::Duration::from_secs(2))?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    // Header end: CRLF CRLF, or bare LF LF as busybox httpd passes CGI headers through.
    let (head, body) = match (text.find("\r\n\r\n"), text.find("\n\n")) {
        (Some(a), Some(b)) if b < a => (&text[..b], &text[b + 2..]),
        (Some(a), _) => (&text[..a], &text[a + 4..]),
        (None, Some(b)) => (&text[..b], &text[b + 2..]),
        (None, None) => (text.as_str(), ""),
    };
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).ok_or_else(|| anyhow::anyhow!("bad HTTP answer from {addr}"))?;
    Ok((status, body.to_string()))
}
