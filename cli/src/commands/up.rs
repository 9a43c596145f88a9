//! `rkube up`: a whole cluster on this machine, started step by step.
//!
//! The steps are [`crate::cluster::up`]. This command checks the host's
//! prerequisites, turns the options into the cluster's spec (or restarts
//! the stopped cluster of the state directory, keeping its spec), finds the
//! component binaries, and runs the steps.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use rkube_agent::runtime::images::DEFAULT_BUSYBOX_BINARY;

use crate::cluster::progress::step;
use crate::cluster::spec::{parse_net, HaPorts, Spec};
use crate::cluster::supervise::Supervisor;
use crate::cluster::{ha, run_cmd, up, which, Binaries};
use crate::procs::free_port;

#[derive(clap::Args, Debug, Clone)]
pub struct Options {
    /// Where data, certificates, kubeconfigs, pid files and logs live
    /// (default /var/lib/rkube as root, else ~/.rkube).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// How many nodes (each a network namespace with its own runtime, agent and proxy).
    #[arg(long, default_value_t = 2)]
    pub nodes: u32,
    /// Prefix of the host bridge, node namespaces, veths and node names.
    #[arg(long, default_value = "rkube")]
    pub name_prefix: String,
    /// The node network (a private /24): host .1, node N .(10+N).
    #[arg(long, default_value = "10.200.0.0/24")]
    pub subnet: String,
    /// The pods' range (a private /16); node N gets its /24 number N.
    #[arg(long, default_value = "10.244.0.0/16")]
    pub cluster_cidr: String,
    /// The Services' cluster IP range.
    #[arg(long, default_value = "10.96.0.0/12")]
    pub service_cluster_ip_range: String,
    /// The apiserver's secure port (on the node network's host address).
    #[arg(long, default_value_t = 6443)]
    pub apiserver_port: u16,
    /// Directory holding rkube-apiserver, rkube-agent, … (default: next to `rkube`).
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
    /// Do not deploy the demo application.
    #[arg(long)]
    pub no_demo: bool,
    /// Do not install missing Debian packages; only report them.
    #[arg(long)]
    pub no_install: bool,
    /// High availability: a 3-member etcd cluster, three apiservers behind
    /// HAProxy (the single address in every kubeconfig), two controllers
    /// and two schedulers with leader election (see `cluster/ha.rs`).
    #[arg(long)]
    pub ha: bool,
}

/// Commands the cluster needs, and the Debian package providing each.
const PREREQUISITES: &[(&str, &str)] = &[
    ("etcd", "etcd-server"),
    ("containerd", "containerd"),
    ("ctr", "containerd"),
    ("runc", "runc"),
    ("/usr/lib/cni/bridge", "containernetworking-plugins"),
    ("iptables", "iptables"),
    ("iptables-restore", "iptables"),
    ("conntrack", "conntrack"),
    ("ip", "iproute2"),
    (DEFAULT_BUSYBOX_BINARY, "busybox-static"),
];

/// What `--ha` needs on top.
const HA_PREREQUISITES: &[(&str, &str)] = &[("haproxy", "haproxy")];

fn have(cmd: &str) -> bool {
    if cmd.starts_with('/') {
        return Path::new(cmd).exists();
    }
    which(cmd).is_ok()
}

/// Missing Debian packages (deduplicated, in order).
pub fn missing_packages(have: impl Fn(&str) -> bool) -> Vec<&'static str> {
    missing_packages_for(false, have)
}

pub fn missing_packages_for(ha: bool, have: impl Fn(&str) -> bool) -> Vec<&'static str> {
    let mut v: Vec<&'static str> = Vec::new();
    let extra: &[(&str, &str)] = if ha { HA_PREREQUISITES } else { &[] };
    for (cmd, pkg) in PREREQUISITES.iter().chain(extra) {
        if !have(cmd) && !v.contains(pkg) {
            v.push(pkg);
        }
    }
    v
}

fn prerequisites(o: &Options, ha: bool) -> anyhow::Result<()> {
    if !crate::cluster::is_root() {
        bail!("rkube up needs root: it creates network namespaces, a bridge and routes");
    }
    let missing = missing_packages_for(ha, have);
    if !missing.is_empty() {
        if o.no_install || !have("apt-get") {
            bail!("missing Debian packages: {} (install them: apt-get install -y {})", missing.join(" "), missing.join(" "));
        }
        run_cmd("apt-get", &["update", "-qq"])?;
        let mut args = vec!["install", "-y", "-qq"];
        args.extend(missing.iter().copied());
        run_cmd("apt-get", &args).context("installing the missing packages")?;
    }
    if !have("kubectl") {
        bail!("kubectl not found in PATH (it is not a Debian package: install it from https://kubernetes.io/docs/tasks/tools/)");
    }
    Ok(())
}

fn new_spec(o: &Options, state_dir: PathBuf) -> anyhow::Result<Spec> {
    let spec = Spec {
        state_dir,
        prefix: o.name_prefix.clone(),
        subnet: parse_net(&o.subnet, 24).context("--subnet")?,
        nodes: o.nodes,
        cluster_cidr: parse_net(&o.cluster_cidr, 16).context("--cluster-cidr")?,
        service_cidr: o.service_cluster_ip_range.clone(),
        etcd_client_port: free_port()?,
        etcd_peer_port: free_port()?,
        apiserver_port: o.apiserver_port,
        apiserver_insecure_port: free_port()?,
        controller_port: free_port()?,
        scheduler_port: free_port()?,
        ha: if o.ha { Some(ha_ports()?) } else { None },
    };
    spec.validate()?;
    Ok(spec)
}

/// Free ports for the `--ha` control plane: a client and a peer port per
/// etcd member, an insecure port per apiserver, a health port per
/// controller and scheduler, and HAProxy's monitor port.
fn ha_ports() -> anyhow::Result<HaPorts> {
    let mut etcd = Vec::new();
    for _ in 0..ha::ETCD_MEMBERS {
        etcd.push((free_port()?, free_port()?));
    }
    let many = |n: usize| -> anyhow::Result<Vec<u16>> { (0..n).map(|_| free_port()).collect() };
    Ok(HaPorts {
        etcd,
        apiserver_insecure: many(ha::APISERVERS)?,
        controller: many(ha::CONTROLLERS)?,
        scheduler: many(ha::SCHEDULERS)?,
        haproxy_monitor: free_port()?,
    })
}

pub fn run(o: Options) -> anyhow::Result<()> {
    let state_dir = o.state_dir.clone().unwrap_or_else(crate::cluster::default_state_dir);
    let started = Instant::now();
    let spec = match Spec::load(&state_dir)? {
        Some(spec) => {
            let running = up::running_components(&spec);
            if !running.is_empty() {
                println!("A cluster is already running from {} ({} of {} components up). `rkube status` shows it; `rkube down` stops it.", state_dir.display(), running.len(), spec.components().len());
                return Ok(());
            }
            eprintln!("Restarting the stopped cluster in {} (its names, addresses and data are kept; `rkube down --purge` forgets it).", state_dir.display());
            if o.ha != spec.ha.is_some() {
                eprintln!("(It was made {} --ha, and keeps that shape.)", if spec.ha.is_some() { "with" } else { "without" });
            }
            spec
        }
        None => new_spec(&o, state_dir.clone())?,
    };
    let shape = if spec.ha.is_some() { ", high availability (3 etcd, 3 apiservers behind haproxy, 2 controllers, 2 schedulers)" } else { "" };
    eprintln!("rkube up: {} node(s){shape}, state in {}", spec.nodes, spec.state_dir.display());
    step("prerequisites", || prerequisites(&o, spec.ha.is_some()))?;
    let bins = step("component binaries", || Binaries::find(o.bin_dir.as_deref()))?;
    spec.save()?;
    let sup = Supervisor::new(spec.run_dir(), spec.logs());
    let result = up::bring_up(&spec, &sup, &bins, !o.no_demo);
    if let Err(e) = &result {
        eprintln!("\nrkube up failed: {e:#}\nLogs are in {}; `rkube down` removes what was started.", spec.logs().display());
    } else {
        eprintln!("\nrkube up: done in {:.1}s", started.elapsed().as_secs_f64());
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(present: &[&str], expected: &[&str]) {
        let got = missing_packages(|c| present.contains(&c));
        assert_eq!(got, expected);
    }

    #[test]
    fn missing_packages_are_named_once() {
        let all: Vec<&str> = PREREQUISITES.iter().map(|(c, _)| *c).collect();
        check(&all, &[]);
        check(&all.iter().copied().filter(|c| *c != "ctr" && *c != "containerd").collect::<Vec<_>>(), &["containerd"]);
        check(&[], &["etcd-server", "containerd", "runc", "containernetworking-plugins", "iptables", "conntrack", "iproute2", "busybox-static"]);
    }
}
