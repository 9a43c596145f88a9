//! Tests that make bridges, routes or iptables rules run inside a network
//! namespace of their own, never on the host: loopback only, no route out,
//! so no pod or service address can leave the machine, and whatever the
//! test leaves behind goes with the namespace.
//!
//! Only the network namespace changes; the mount namespace stays the
//! host's (runc needs it, and a test sees its containers' mounts). One
//! consequence: `/sys/class/net` lists the host's interfaces, not the
//! namespace's; ask netlink (`ip link show`) instead, as [`link_exists`] does.

use std::future::Future;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A named network namespace (`ip netns add`, loopback up), deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// `<prefix>-<pid>-<n>`: unique among parallel tests and test binaries.
    pub fn new(prefix: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!("{prefix}-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        ip(&["netns", "add", &name]);
        let ns = Netns { name };
        ip(&["-n", &ns.name, "link", "set", "lo", "up"]);
        ns
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// Moves the calling thread into the namespace; threads and processes
    /// it starts afterwards are there too.
    pub fn enter(&self) {
        let f = std::fs::File::open(self.path()).unwrap_or_else(|e| panic!("opening {}: {e}", self.path().display()));
        nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

/// Runs the test body `f` in a new network namespace, on a thread of its
/// own with a two-worker tokio runtime (as `#[tokio::test(flavor =
/// "multi_thread", worker_threads = 2)]` would): everything it starts —
/// etcd, the apiserver, containerd, CNI bridges, iptables rules, clients —
/// lives there. `f` gets the namespace's name. The namespace is deleted
/// afterwards, and a panic in `f` fails the test.
pub fn in_netns<F, Fut>(prefix: &str, f: F)
where
    F: FnOnce(String) -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    let ns = Netns::new(prefix);
    let (path, name) = (ns.path(), ns.name.clone());
    let result = std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
        nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio runtime");
        rt.block_on(f(name));
    })
    .join();
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
    let out = Command::new("ip").args(args).output().expect("running ip");
    assert!(out.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
}
