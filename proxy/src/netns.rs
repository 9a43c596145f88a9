//! Network namespaces for tests and benchmarks (needs root).
//!
//! A network namespace is a private copy of the network stack: interfaces,
//! routes, iptables tables, conntrack, sysctls under /proc/sys/net. A node,
//! its clients and its backends can each be one, wired with veth pairs and
//! with no route to the outside world, so nothing a test does can touch the
//! host's rules or send a packet off the machine.
//!
//! Namespaces are per *thread* in Linux. [`NetNs::run`] runs a closure on a
//! fresh thread that first `setns(2)`s into the namespace
//! ([`machinery::netns`]); sockets created there, processes spawned from
//! there and threads started from there all live in it. Everything is
//! removed on drop, also when a test fails.

use std::process::{Child, Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

use anyhow::{bail, Context};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A unique short name (`prefix` + pid + counter), usable for namespaces
/// and (≤ 15 chars when `prefix` ≤ 4 chars) interface names.
pub fn unique_name(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{}x{n}", std::process::id() % 100000)
}

fn run_checked(cmd: &mut Command) -> anyhow::Result<Output> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(out)
}

/// A named network namespace (`ip netns add`), deleted on drop together
/// with its interfaces (veth ends inside it), rules and the processes
/// started through [`NetNs::spawn`].
pub struct NetNs {
    name: String,
    children: Mutex<Vec<Child>>,
}

impl NetNs {
    /// Create a namespace with a unique name and `lo` up.
    pub fn new(prefix: &str) -> anyhow::Result<NetNs> {
        let name = unique_name(prefix);
        run_checked(Command::new("ip").args(["netns", "add", &name]))?;
        let ns = NetNs { name, children: Mutex::new(Vec::new()) };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn path(&self) -> String {
        machinery::netns::path(&self.name).display().to_string()
    }

    /// `ip -n <ns> <args>`.
    pub fn ip(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = run_checked(Command::new("ip").arg("-n").arg(&self.name).args(args))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Run a command inside (`ip netns exec`), failing on a non-zero exit.
    pub fn exec(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = run_checked(Command::new("ip").args(["netns", "exec", &self.name]).args(args))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Run a command inside and return its output whatever the exit code.
    pub fn output(&self, args: &[&str]) -> anyhow::Result<Output> {
        Ok(Command::new("ip").args(["netns", "exec", &self.name]).args(args).output()?)
    }

    /// Start a background process inside; killed on drop.
    pub fn spawn(&self, args: &[&str]) -> anyhow::Result<()> {
        let child = Command::new("ip").args(["netns", "exec", &self.name]).args(args).spawn()?;
        self.children.lock().unwrap().push(child);
        Ok(())
    }

    /// Write a sysctl of this namespace, e.g. `("net/ipv4/ip_forward", "1")`.
    pub fn sysctl(&self, key: &str, value: &str) -> anyhow::Result<()> {
        let key = key.replace('/', ".");
        self.exec(&["sysctl", "-q", "-w", &format!("{key}={value}")]).map(|_| ())
    }

    /// Run `f` on a new thread that has entered this namespace, and wait for
    /// its result. Threads `f` spawns inherit the namespace.
    pub fn run<F, R>(&self, f: F) -> anyhow::Result<R>
    where
        F: FnOnce() -> R + Send,
        R: Send,
    {
        machinery::netns::run(&self.name, f)
    }

    /// Spawn a long-lived thread inside this namespace.
    pub fn thread<F, R>(&self, f: F) -> anyhow::Result<std::thread::JoinHandle<R>>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        machinery::netns::thread(&self.name, f)
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        for mut c in self.children.lock().map(|mut v| std::mem::take(&mut *v)).unwrap_or_default() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("ip").args(["netns", "del", &self.name]).output();
    }
}

/// Connect two namespaces with a veth pair and give each end an address
/// (`10.0.0.1/24` style). Both ends vanish with their namespaces.
pub fn veth(a: &NetNs, a_if: &str, a_addr: &str, b: &NetNs, b_if: &str, b_addr: &str) -> anyhow::Result<()> {
    a.ip(&["link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", b.name()])?;
    a.ip(&["addr", "add", a_addr, "dev", a_if])?;
    b.ip(&["addr", "add", b_addr, "dev", b_if])?;
    a.ip(&["link", "set", a_if, "up"])?;
    b.ip(&["link", "set", b_if, "up"])?;
    Ok(())
}
