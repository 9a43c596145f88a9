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
//! * [`spec`] — names, addresses and ports of one cluster (`cluster.json`).
//! * [`supervise`] — daemon processes: setsid, pid files, logs, stop.
//! * [`network`] — host bridge, node namespaces, veths, routes.
//! * [`ha`] — the high-availability control plane of `rkube up --ha`.
//! * [`demo`] — the demo application's manifests.
//! * [`progress`] — the one-line-per-step progress display.

pub mod demo;
pub mod ha;
pub mod network;
pub mod progress;
pub mod spec;
pub mod supervise;

use std::path::PathBuf;

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
