//! `rkube down`: stop everything `rkube up` started and remove what it
//! created, so that `ip link`, `iptables-save`, the mount table and
//! `ip netns list` are as they were before.
//!
//! Order: first the components that would react to pods disappearing (the
//! agents would restart them, the controllers recreate them), then each
//! node's pods through CRI (StopPodSandbox runs CNI DEL: pod veths, IP
//! leases), then containerd and whatever survived it (shims, runc
//! containers, pod network namespaces), then the node namespaces and the
//! host bridge (taking every veth, CNI bridge, route and the proxies'
//! iptables rules with them), and last the apiserver and etcd.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rkube_agent::runtime::cni::CNI_CACHE_DIR;
use rkube_agent::runtime::containerd::{mounts_under, netns_of_bundles, remove_all_pods, Layout};

use crate::cluster::network;
use crate::cluster::spec::Spec;
use crate::cluster::supervise::{pids_with_arg, stop_pid, Supervisor};

#[derive(clap::Args, Debug, Clone)]
pub struct Options {
    /// The cluster's state directory (default /var/lib/rkube as root, else ~/.rkube).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Also delete the state directory (data, certificates, logs).
    #[arg(long)]
    pub purge: bool,
}

pub fn run(o: Options) -> anyhow::Result<()> {
    let state_dir = o.state_dir.clone().unwrap_or_else(crate::cluster::default_state_dir);
    let Some(spec) = Spec::load(&state_dir)? else {
        println!("No cluster in {}.", state_dir.display());
        if o.purge && state_dir.exists() {
            std::fs::remove_dir_all(&state_dir)?;
        }
        return Ok(());
    };
    let errors = down(&spec);
    if o.purge {
        if let Err(e) = std::fs::remove_dir_all(&state_dir) {
            eprintln!("  ✗ removing {}: {e}", state_dir.display());
        } else {
            eprintln!("  ✓ removed {}", state_dir.display());
        }
    }
    if !errors.is_empty() {
        anyhow::bail!("rkube down left things behind:\n  {}", errors.join("\n  "));
    }
    println!("Cluster stopped.{}", if o.purge { "" } else { " Its data is kept: `rkube up` restarts it, `rkube down --purge` forgets it." });
    Ok(())
}

/// Tears the cluster down; returns what could not be removed.
pub fn down(spec: &Spec) -> Vec<String> {
    let sup = Supervisor::new(spec.run_dir(), spec.logs());
    let mut errors = Vec::new();
    let grace = Duration::from_secs(5);
    let stop = |name: &str| {
        if sup.stop(name, grace) {
            eprintln!("  ✓ stopped {name}");
        }
    };
    for n in spec.node_range() {
        stop(&format!("node{n}-agent"));
        stop(&format!("node{n}-proxy"));
    }
    // Control-plane components by kind (`controller` or, with --ha,
    // `controller-1`, `controller-2`, …).
    let of_kind = |kind: &str| -> Vec<String> {
        spec.control_plane().into_iter().filter(|c| c == kind || c.strip_prefix(kind).is_some_and(|r| r.starts_with('-'))).collect()
    };
    for c in of_kind("controller").into_iter().chain(of_kind("scheduler")) {
        stop(&c);
    }
    for n in spec.node_range() {
        errors.extend(stop_node_runtime(spec, &sup, n));
    }
    errors.extend(network::delete(spec));
    eprintln!("  ✓ removed bridge {} and namespaces {}..{}", spec.bridge(), spec.netns(1), spec.netns(spec.nodes));
    for c in of_kind("haproxy").into_iter().chain(of_kind("apiserver")).chain(of_kind("etcd")) {
        stop(&c);
    }
    errors
}

fn stop_node_runtime(spec: &Spec, sup: &Supervisor, n: u32) -> Vec<String> {
    let mut errors = Vec::new();
    let name = format!("node{n}-containerd");
    let layout = Layout::new(&spec.containerd_dir(n));
    if sup.pid(&name).is_some() {
        let endpoint = format!("unix://{}", layout.socket.display());
        let removed = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(async { tokio::time::timeout(Duration::from_secs(60), remove_all_pods(&endpoint)).await? }));
        match removed {
            Ok(k) => eprintln!("  ✓ node{n}: removed {k} pod sandbox(es)"),
            Err(e) => errors.push(format!("node{n}: removing pods through CRI: {e:#}")),
        }
    }
    // Sandboxes CRI could not remove: remember their network namespaces.
    let leftover_netns = netns_of_bundles(&layout.state);
    sup.stop(&name, Duration::from_secs(5));
    // Shims daemonise and outlive containerd; ours carry our socket path.
    for pid in pids_with_arg(&layout.socket.to_string_lossy()) {
        stop_pid(pid, Duration::from_secs(1));
    }
    errors.extend(delete_runc_containers(&layout.runc_root));
    if let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") {
        for m in mounts_under(&info, &spec.node_dir(n)) {
            if let Err(e) = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH) {
                errors.push(format!("unmounting {}: {e}", m.display()));
            }
        }
    }
    for (sandbox, ns) in leftover_netns {
        let _ = nix::mount::umount2(&ns, nix::mount::MntFlags::MNT_DETACH);
        let _ = std::fs::remove_file(&ns);
        // containerd's own loopback attachment is cached machine-wide as
        // cni-loopback-<sandbox>-lo; CNI DEL never ran for it either.
        let _ = std::fs::remove_file(Path::new(CNI_CACHE_DIR).join(format!("cni-loopback-{sandbox}-lo")));
    }
    // libcni's cache of our attachments (named after our network).
    let prefix = format!("{}-", spec.cni_network(n));
    if let Ok(entries) = std::fs::read_dir(CNI_CACHE_DIR) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    let _ = std::fs::remove_file(&layout.socket);
    eprintln!("  ✓ node{n}: containerd stopped");
    errors
}

/// `runc delete --force` for every container left in a runc root.
fn delete_runc_containers(runc_root: &Path) -> Vec<String> {
    let mut errors = Vec::new();
    let Ok(namespaces) = std::fs::read_dir(runc_root) else { return errors };
    for ns in namespaces.flatten().filter(|e| e.path().is_dir()) {
        let Ok(containers) = std::fs::read_dir(ns.path()) else { continue };
        for c in containers.flatten().filter(|e| e.path().is_dir()) {
            let out = std::process::Command::new("runc").arg("--root").arg(ns.path()).args(["delete", "--force"]).arg(c.file_name()).output();
            if let Ok(o) = out {
                if !o.status.success() {
                    errors.push(format!("runc delete {:?}: {}", c.file_name(), String::from_utf8_lossy(&o.stderr).trim()));
                }
            }
        }
    }
    errors
}
