//! Running code inside a named **network namespace** (Linux).
//!
//! A network namespace is a private copy of the network stack: interfaces,
//! routes, iptables tables, conntrack, sysctls under /proc/sys/net.
//! `ip netns add <name>` creates one and pins it at `/run/netns/<name>`, a
//! file that [`setns(2)`](https://man7.org/linux/man-pages/man2/setns.2.html)
//! enters.
//!
//! The namespace belongs to a *thread*, not to the process. So code runs
//! inside one on a thread of its own that enters it first: sockets it
//! creates, processes it spawns and threads it starts all live there, and
//! the caller's thread stays where it was.

use std::fs::File;
use std::path::PathBuf;
use std::thread::JoinHandle;

use anyhow::Context;
use nix::sched::{setns, CloneFlags};

/// Where `ip netns add <name>` pins the namespace.
pub fn path(name: &str) -> PathBuf {
    PathBuf::from("/run/netns").join(name)
}

/// Opens the named namespace, to enter it later (from another thread).
pub fn open(name: &str) -> anyhow::Result<File> {
    let path = path(name);
    File::open(&path).with_context(|| format!("opening {}", path.display()))
}

/// Moves the calling thread into the namespace `ns` (from [`open`]).
pub fn enter(ns: &File) -> anyhow::Result<()> {
    setns(ns, CloneFlags::CLONE_NEWNET).context("setns")
}

/// Runs `f` on a new thread inside the named namespace and waits for its
/// result. Threads `f` starts inherit the namespace.
pub fn run<F, R>(name: &str, f: F) -> anyhow::Result<R>
where
    F: FnOnce() -> R + Send,
    R: Send,
{
    let ns = open(name)?;
    std::thread::scope(|s| {
        s.spawn(move || -> anyhow::Result<R> {
            enter(&ns)?;
            Ok(f())
        })
        .join()
        .map_err(|_| anyhow::anyhow!("thread in netns panicked"))?
    })
}

/// Starts a long-lived thread inside the named namespace. The namespace is
/// opened before this returns (a missing one is an error here); the thread
/// panics if it cannot enter it.
pub fn thread<F, R>(name: &str, f: F) -> anyhow::Result<JoinHandle<R>>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let ns = open(name)?;
    Ok(std::thread::spawn(move || {
        enter(&ns).expect("setns");
        f()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_namespace_is_an_error_before_any_thread() {
        let name = "rkube-no-such-netns";
        assert_eq!(path(name), PathBuf::from("/run/netns/rkube-no-such-netns"));
        let err = run(name, || ()).unwrap_err();
        assert_eq!(err.to_string(), "opening /run/netns/rkube-no-such-netns");
        assert!(thread(name, || ()).is_err());
    }
}
