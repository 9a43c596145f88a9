//! The nodes' network: the "switch" and the "machines" plugged into it.
//!
//! * Host bridge `<prefix>0` with the host's address `.1/24`: the node
//!   network. The apiserver listens there (with `--ha`, HAProxy does, and
//!   apiserver N gets `.(1+N)` on the bridge).
//! * One network namespace per node, joined by a veth pair (`<prefix>-nN`
//!   on the host bridge, `eth0` inside, address `.(10+N)/24`).
//! * Pod routing without an overlay, as on one L2 segment (the "host-gw"
//!   way): each node namespace routes the other nodes' podCIDRs via their
//!   node IPs; the host routes every podCIDR via its node's IP.
//! * Each node masquerades what its pods send outside the cluster CIDR;
//!   pod to pod, across nodes too, keeps the pods' own addresses (the rule
//!   is the node's CNI network's, set up with its containerd in `up`).
//! * No default route anywhere we add routes: a packet for an address we
//!   did not route has nowhere to go, so nothing leaves the machine.
//!
//! Everything is made with `ip` (iproute2) and undone by deleting the
//! namespaces (which takes their veth ends, CNI bridges, pod veths and
//! iptables rules with them) and the host bridge (which takes its routes).

use super::run_cmd;
use super::spec::Spec;

fn ip(args: &[&str]) -> anyhow::Result<String> {
    run_cmd("ip", args)
}

fn in_ns(ns: &str, args: &[&str]) -> anyhow::Result<String> {
    let mut a = vec!["netns", "exec", ns];
    a.extend_from_slice(args);
    run_cmd("ip", &a)
}

pub fn link_exists(name: &str) -> bool {
    std::path::Path::new("/sys/class/net").join(name).exists()
}

pub fn netns_exists(name: &str) -> bool {
    std::path::Path::new("/run/netns").join(name).exists()
}

/// Creates the bridge, namespaces, veths, addresses and routes.
pub fn create(spec: &Spec) -> anyhow::Result<()> {
    let br = spec.bridge();
    let host_cidr = format!("{}/24", spec.host_ip());
    if !link_exists(&br) {
        ip(&["link", "add", &br, "type", "bridge"])?;
    }
    // The bridge's own address gives the host its connected route to the
    // node network, and nothing else.
    let _ = ip(&["addr", "add", &host_cidr, "dev", &br]);
    // With --ha each apiserver has its own address on the bridge too (the
    // host keeps .1, where HAProxy listens).
    for a in spec.apiserver_ips().into_iter().filter(|a| *a != spec.host_ip()) {
        let _ = ip(&["addr", "add", &format!("{a}/24"), "dev", &br]);
    }
    ip(&["link", "set", &br, "up"])?;
    for n in spec.node_range() {
        let ns = spec.netns(n);
        let veth = spec.veth(n);
        if !netns_exists(&ns) {
            ip(&["netns", "add", &ns])?;
        }
        if !link_exists(&veth) {
            ip(&["link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns])?;
        }
        ip(&["link", "set", &veth, "master", &br])?;
        ip(&["link", "set", &veth, "up"])?;
        let node_cidr = format!("{}/24", spec.node_ip(n));
        let _ = in_ns(&ns, &["ip", "addr", "add", &node_cidr, "dev", "eth0"]);
        in_ns(&ns, &["ip", "link", "set", "eth0", "up"])?;
        in_ns(&ns, &["ip", "link", "set", "lo", "up"])?;
        // A node routes packets between its pods and the other nodes.
        in_ns(&ns, &["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"])?;
        // NodePorts on the node's 127.0.0.1 (kube-proxy sets this too).
        in_ns(&ns, &["sysctl", "-q", "-w", "net.ipv4.conf.all.route_localnet=1"])?;
        for m in spec.node_range().filter(|m| *m != n) {
            let via = spec.node_ip(m).to_string();
            in_ns(&ns, &["ip", "route", "replace", &spec.pod_cidr(m), "via", &via, "dev", "eth0"])?;
        }
        let via = spec.node_ip(n).to_string();
        ip(&["route", "replace", &spec.pod_cidr(n), "via", &via, "dev", &br])?;
    }
    Ok(())
}

/// Deletes the namespaces and the bridge. Returns what could not be removed.
pub fn delete(spec: &Spec) -> Vec<String> {
    let mut errors = Vec::new();
    for n in spec.node_range() {
        let ns = spec.netns(n);
        if netns_exists(&ns) {
            if let Err(e) = ip(&["netns", "del", &ns]) {
                errors.push(format!("{e:#}"));
            }
        }
        // Normally gone with the namespace (its peer was inside), but the
        // kernel tears a namespace down asynchronously: the veth may still
        // be listed, then vanish before `ip link del` reaches it.
        errors.extend(delete_link(&spec.veth(n)));
    }
    errors.extend(delete_link(&spec.bridge()));
    errors
}

/// `ip link del`; a link that is (or meanwhile went) away is no error.
fn delete_link(name: &str) -> Option<String> {
    match ip(&["link", "del", name]) {
        Err(e) if link_exists(name) => Some(format!("{e:#}")),
        _ => None,
    }
}
