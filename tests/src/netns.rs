//! Network namespaces for tests. Tests that make bridges, routes or
//! iptables rules run inside namespaces of their own, never on the host:
//! loopback only, no route out, so no pod or service address can leave the
//! machine, and whatever the test leaves behind goes with the namespace.
//!
//! Entering a namespace changes only the network namespace; the mount
//! namespace stays the host's (runc needs it, and a test sees its
//! containers' mounts). One consequence: `/sys/class/net` lists the host's
//! interfaces, not the namespace's; ask netlink (`ip link show`) instead, as
//! [`link_exists`] does.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A short unique name: `prefix` + pid + counter (≤ 15 chars, an interface
/// name's limit, for a prefix of ≤ 3).
pub fn unique(prefix: &str) -> String {
    format!("{prefix}{}x{}", std::process::id() % 100000, COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// Runs `cmd`, panicking with its stderr on failure; returns its stdout.
pub fn run_checked(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A network namespace (loopback up), deleted (with its veth ends and the
/// processes started in it through [`Netns::spawn`]) on drop.
pub struct Netns {
    pub name: String,
    children: Mutex<Vec<Child>>,
}

impl Netns {
    pub fn new(prefix: &str) -> Netns {
        let name = unique(prefix);
        run_checked(Command::new("ip").args(["netns", "add", &name]));
        let ns = Netns { name, children: Mutex::new(Vec::new()) };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    pub fn path(&self) -> PathBuf {
        machinery::netns::path(&self.name)
    }

    /// `ip -n <ns> <args>`.
    pub fn ip(&self, args: &[&str]) -> String {
        run_checked(Command::new("ip").arg("-n").arg(&self.name).args(args))
    }

    /// Run a command inside, failing on a non-zero exit.
    pub fn exec(&self, args: &[&str]) -> String {
        run_checked(Command::new("ip").args(["netns", "exec", &self.name]).args(args))
    }

    /// Run a command inside, whatever its exit code.
    pub fn output(&self, args: &[&str]) -> Output {
        Command::new("ip").args(["netns", "exec", &self.name]).args(args).output().unwrap()
    }

    /// `ip netns exec <ns> <args>` as a command to spawn.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).args(args);
        c
    }

    /// A background process inside, killed when the namespace is dropped.
    pub fn spawn(&self, args: &[&str], log: &Path) {
        let child = crate::spawn_logged(self.command(args), log);
        self.children.lock().unwrap().push(child);
    }

    pub fn sysctl(&self, key: &str, value: &str) {
        self.exec(&["sysctl", "-q", "-w", &format!("{key}={value}")]);
    }

    /// Moves the calling thread into the namespace; threads and processes
    /// it starts afterwards are there too.
    pub fn enter(&self) {
        let ns = machinery::netns::open(&self.name).unwrap_or_else(|e| panic!("{e:#}"));
        machinery::netns::enter(&ns).unwrap_or_else(|e| panic!("entering {}: {e:#}", self.name));
    }

    /// Run `f` on a thread that has entered this namespace.
    pub fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        std::thread::scope(|s| {
            s.spawn(move || {
                self.enter();
                f()
            })
            .join()
            .expect("thread in netns panicked")
        })
    }

    /// `iptables-save -t <table>` inside, without comment and counter noise.
    pub fn save(&self, table: &str) -> Vec<String> {
        self.exec(&["iptables-save", "-t", table])
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| if l.starts_with(':') { l.split(" [").next().unwrap().to_string() } else { l.to_string() })
            .collect()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Also after a panic while the list was locked.
        for mut c in self.children.lock().map(|mut v| std::mem::take(&mut *v)).unwrap_or_else(|p| std::mem::take(&mut *p.into_inner())) {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

/// Runs the test body `f` in a new network namespace, on a thread of its
/// own with a two-worker tokio runtime (as `#[tokio::test(flavor =
/// "multi_thread", worker_threads = 2)]` would): everything it starts —
/// etcd, the apiserver, containerd, CNI bridges, iptables rules, clients —
/// lives there. The namespace is deleted afterwards, and a panic in `f`
/// fails the test.
pub fn in_netns<F, Fut>(prefix: &str, f: F)
where
    F: FnOnce() -> Fut + Send,
    Fut: Future<Output = ()>,
{
    let ns = Netns::new(prefix);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        ns.run(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio runtime");
            rt.block_on(f());
        })
    }));
    drop(ns);
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

/// Does the calling thread's network namespace have a link named `name`?
pub fn link_exists(name: &str) -> bool {
    Command::new("ip").args(["link", "show", "dev", name]).output().is_ok_and(|o| o.status.success())
}

/// `ip ARGS`, panicking with its stderr on failure.
pub fn ip(args: &[&str]) {
    run_checked(Command::new("ip").args(args));
}
