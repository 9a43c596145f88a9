//! Shared by the `proxy_*` end-to-end tests: network namespaces, a control
//! plane the node namespace can reach, and processes run inside namespaces.
//!
//! Network safety: every address a test talks to lives in namespaces the
//! test created. The only host-side change is one end of a veth pair with a
//! link-local /30 (169.254.x.y), where the apiserver listens; its peer is in
//! the node namespace, which has no other way out (no default route).
//! Pod and service addresses are only ever used inside the namespaces.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| s.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0")))
        .unwrap_or(false)
}

/// Does the machine have what these tests need (root, `ip`, iptables, busybox, etcd)?
pub fn can_run() -> bool {
    if !is_root() {
        eprintln!("skipped: needs root (network namespaces, iptables)");
        return false;
    }
    for tool in ["ip", "iptables-save", "busybox", "etcd"] {
        if Command::new("sh").args(["-c", &format!("command -v {tool}")]).output().map(|o| !o.status.success()).unwrap_or(true) {
            eprintln!("skipped: {tool} not installed");
            return false;
        }
    }
    true
}

pub use e2e::netns::{run_checked, unique, Netns};
pub use e2e::spawn_logged;

/// Host links made by this process (each gets its own /30).
static LINKS: AtomicU32 = AtomicU32::new(0);

/// A veth pair between two namespaces, each end with an address.
pub fn veth(a: &Netns, a_if: &str, a_addr: &str, b: &Netns, b_if: &str, b_addr: &str) {
    a.ip(&["link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", &b.name]);
    a.ip(&["addr", "add", a_addr, "dev", a_if]);
    b.ip(&["addr", "add", b_addr, "dev", b_if]);
    a.ip(&["link", "set", a_if, "up"]);
    b.ip(&["link", "set", b_if, "up"]);
}

/// A veth pair from the host to `ns` on a link-local /30: the host end
/// gets `.1`, the namespace end `.2`. Removed on drop (and with `ns`).
pub struct HostLink {
    pub host_if: String,
    pub host_ip: String,
    pub ns_ip: String,
}

impl HostLink {
    pub fn new(ns: &Netns, ns_if: &str) -> HostLink {
        // 169.254.<100..159>.<4k> /30: per process and per link, so parallel
        // tests (and test processes) do not collide.
        let n = LINKS.fetch_add(1, Ordering::Relaxed);
        let third = 100 + std::process::id() % 60;
        let base = (n % 63) * 4;
        let host_if = unique("rkh");
        let host_ip = format!("169.254.{third}.{}", base + 1);
        let ns_ip = format!("169.254.{third}.{}", base + 2);
        run_checked(Command::new("ip").args(["link", "add", &host_if, "type", "veth", "peer", "name", ns_if, "netns", &ns.name]));
        let link = HostLink { host_if, host_ip, ns_ip };
        run_checked(Command::new("ip").args(["addr", "add", &format!("{}/30", link.host_ip), "dev", &link.host_if]));
        run_checked(Command::new("ip").args(["link", "set", &link.host_if, "up"]));
        ns.ip(&["addr", "add", &format!("{}/30", link.ns_ip), "dev", ns_if]);
        ns.ip(&["link", "set", ns_if, "up"]);
        link
    }
}

impl Drop for HostLink {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.host_if]).output();
    }
}

/// etcd + rkube-apiserver with its insecure port on `bind_ip` (the host end
/// of a [`HostLink`], so the node namespace reaches it), and kubectl.
pub struct ControlPlane {
    apiserver: Child,
    pub url: String,
    pub dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
    pub apiserver_log: PathBuf,
    pub etcd: e2e::Etcd,
}

impl ControlPlane {
    pub fn start(bind_ip: &str) -> ControlPlane {
        let etcd = e2e::Etcd::start();
        let dir = tempfile::Builder::new().prefix("rkube-proxy-e2e-").tempdir().unwrap();
        let port = e2e::free_port();
        let url = format!("http://{bind_ip}:{port}");
        let log = dir.path().join("apiserver.log");
        let mut cmd = Command::new(e2e::bin("rkube-apiserver"));
        cmd.arg(format!("--etcd-servers={}", etcd.endpoint))
            .arg(format!("--insecure-port={port}"))
            .arg(format!("--insecure-bind-address={bind_ip}"));
        let mut apiserver = spawn_logged(cmd, &log);
        let start = Instant::now();
        loop {
            let ready = TcpStream::connect_timeout(&format!("{bind_ip}:{port}").parse().unwrap(), Duration::from_millis(200)).is_ok()
                && e2e::http(&url, "GET", "/readyz", None, b"").status == 200;
            if ready {
                break;
            }
            if let Ok(Some(st)) = apiserver.try_wait() {
                panic!("apiserver exited with {st}: {}", std::fs::read_to_string(&log).unwrap_or_default());
            }
            assert!(start.elapsed() < Duration::from_secs(60), "apiserver not ready: {}", std::fs::read_to_string(&log).unwrap_or_default());
            std::thread::sleep(Duration::from_millis(50));
        }
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: t\n  cluster: {{server: \"{url}\"}}\ncontexts:\n- name: t\n  context: {{cluster: t, user: t}}\ncurrent-context: t\nusers:\n- name: t\n  user: {{}}\n"
            ),
        )
        .unwrap();
        ControlPlane { apiserver, url, dir, kubeconfig, apiserver_log: log, etcd }
    }

    /// kubectl (the machine's default version), optionally with stdin;
    /// must succeed. Returns stdout.
    pub fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> String {
        let mut cmd = e2e::kubectl_command("default", &self.kubeconfig, self.dir.path());
        cmd.args(args);
        let out = e2e::output_with_stdin(cmd, stdin.unwrap_or_default());
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}\nstdout: {}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        let _ = self.apiserver.kill();
        let _ = self.apiserver.wait();
    }
}

/// One rkube-proxy process inside a namespace. Killed on drop.
pub struct ProxyProcess {
    child: Child,
    pub log: PathBuf,
}

impl ProxyProcess {
    pub fn start(ns: &Netns, args: &[String], log: PathBuf) -> ProxyProcess {
        let bin = e2e::bin("rkube-proxy");
        let mut full: Vec<&str> = vec![bin.to_str().unwrap()];
        full.extend(args.iter().map(String::as_str));
        let mut cmd = ns.command(&full);
        cmd.env("RUST_LOG", "info");
        let child = spawn_logged(cmd, &log);
        ProxyProcess { child, log }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGKILL: no chance to clean anything up.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- proxy log ({}) ----\n{}", self.log.display(), self.log_text());
        }
        self.kill();
    }
}

/// A backend "pod": busybox httpd on :8080 answering its own name.
pub fn start_backend(ns: &Netns, name: &str, dir: &Path) {
    let root = dir.join(format!("www-{name}"));
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("index.html"), format!("{name}\n")).unwrap();
    ns.spawn(&["busybox", "httpd", "-f", "-p", "8080", "-h", root.to_str().unwrap()], &dir.join(format!("httpd-{name}.log")));
}

/// An HTTP GET of `/` from the calling thread's namespace; the body,
/// trimmed, or None when the connection fails or times out.
pub fn http_get(addr: &str, timeout: Duration) -> Option<String> {
    let addr: SocketAddr = addr.parse().unwrap();
    let mut s = TcpStream::connect_timeout(&addr, timeout).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: test\r\n\r\n").ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let (_, body) = raw.split_once("\r\n\r\n")?;
    Some(body.trim().to_string())
}

/// `n` GETs of `addr` from inside `ns`.
pub fn gets_from(ns: &Netns, addr: &str, n: usize) -> Vec<Option<String>> {
    let addr = addr.to_string();
    ns.run(move || (0..n).map(|_| http_get(&addr, Duration::from_millis(800))).collect())
}

/// None of the namespaces `names` is in `ip netns list`, and the host has
/// no interface `host_if` any more.
pub fn assert_cleaned_up(names: &[String], host_if: &str) {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let list = String::from_utf8_lossy(&out.stdout);
    let left: Vec<&str> = list.lines().filter_map(|l| l.split_whitespace().next()).filter(|n| names.iter().any(|m| m == n)).collect();
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
    let link = Command::new("ip").args(["link", "show", "dev", host_if]).output().unwrap();
    assert!(!link.status.success(), "host interface {host_if} left behind");
}
