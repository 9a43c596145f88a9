//! `rkube up`'s bootstrap, step by step. Order matters as in a real cluster
//! bootstrap (kubeadm's phases): the node network first (the apiserver
//! listens on it), then etcd, the PKI, the apiserver, the controller manager
//! and the scheduler, then each node (runtime, agent, proxy), and last a
//! workload to show it all working. Each component is a daemon (see
//! [`super::supervise`]); `rkube up` returns once the demo answers and
//! leaves them running.

use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::Context;

use super::kubectl::kubectl;
use super::progress::step;
use super::spec::Spec;
use super::supervise::Supervisor;
use super::wait::wait_for;
use super::{control_plane, demo, ha, network, node, pki, Binaries};

/// The first address of the service range: the `kubernetes` Service's IP.
fn first_service_ip(cidr: &str) -> anyhow::Result<Ipv4Addr> {
    let base: Ipv4Addr = cidr.split('/').next().unwrap_or("").parse().with_context(|| format!("service range {cidr:?}"))?;
    Ok(Ipv4Addr::from(u32::from(base) + 1))
}

/// The components of `spec` whose process runs.
pub fn running_components(spec: &Spec) -> Vec<String> {
    let sup = Supervisor::new(spec.run_dir(), spec.logs());
    spec.components().into_iter().filter(|c| sup.pid(c).is_some()).collect()
}

/// Starts every component of `spec` in order, and the demo if `with_demo`.
pub fn bring_up(spec: &Spec, sup: &Supervisor, bins: &Binaries, with_demo: bool) -> anyhow::Result<()> {
    step(&format!("node network: bridge {} ({}), namespaces {}..{}", spec.bridge(), spec.host_ip(), spec.netns(1), spec.netns(spec.nodes)), || {
        network::create(spec)
    })?;

    match &spec.ha {
        Some(h) => step(&format!("etcd: {} members", h.etcd.len()), || ha::start_etcd(spec, sup, h))?,
        None => step("etcd", || control_plane::start_etcd(spec, sup))?,
    }

    step("certificates and kubeconfigs", || {
        // The serving certificate names every address an apiserver is
        // reached at: the host's (HAProxy's with --ha) and each apiserver's own.
        let mut sans = vec![spec.host_ip().to_string()];
        sans.extend(spec.apiserver_ips().iter().map(|ip| ip.to_string()).filter(|ip| *ip != spec.host_ip().to_string()));
        let config = pki::Config {
            dir: spec.pki(),
            server: spec.apiserver_url(),
            apiserver_sans: sans,
            service_ip: first_service_ip(&spec.service_cidr)?.into(),
            nodes: spec.node_range().map(|n| spec.node_name(n)).collect(),
            ..Default::default()
        };
        pki::generate(&config).map(|_| ())
    })?;

    if let Some(h) = &spec.ha {
        ha::start_control_plane(spec, sup, bins, h)?;
    } else {
        control_plane::start(spec, sup, bins)?;
    }

    for n in spec.node_range() {
        step(&format!("{}: containerd ({}), images", spec.node_name(n), spec.pod_cidr(n)), || node::start_containerd(spec, sup, n))?;
        step(&format!("{}: rkube-agent on {}", spec.node_name(n), spec.node_ip(n)), || node::start_agent(spec, sup, bins, n))?;
        step(&format!("{}: rkube-proxy", spec.node_name(n)), || node::start_proxy(spec, sup, bins, n))?;
    }

    step("nodes Ready", || {
        wait_for("all nodes Ready", Duration::from_secs(90), || {
            let out = kubectl(spec, &["get", "nodes", "-o", "jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}{end}"])?;
            let ready = out.lines().filter(|l| l.ends_with("=True")).count();
            Ok((ready as u32 == spec.nodes).then_some(()))
        })
    })?;

    if !with_demo {
        print_summary(spec, false)?;
        return Ok(());
    }
    step("demo application: backend (ClusterIP) and frontend (NodePort)", || demo::deploy(spec))?;
    print_summary(spec, true)
}

fn print_summary(spec: &Spec, demo: bool) -> anyhow::Result<()> {
    println!("\n$ kubectl get nodes -o wide\n{}", kubectl(spec, &["get", "nodes", "-o", "wide"])?);
    if demo {
        println!("$ kubectl get all -o wide\n{}", kubectl(spec, &["get", "all", "-o", "wide"])?);
        let ip = kubectl(spec, &["get", "service", "frontend", "-o", "jsonpath={.spec.clusterIP}"])?;
        println!("frontend through its ClusterIP {} (from {}): {}", ip.trim(), spec.netns(1), demo::fetch_cluster_ip(spec, "frontend")?);
        let port = kubectl(spec, &["get", "service", "frontend", "-o", "jsonpath={.spec.ports[0].nodePort}"])?;
        for n in spec.node_range() {
            println!("frontend through NodePort {}:{} (from the host): {}", spec.node_ip(n), port.trim(), demo::fetch_node_port(spec, n)?);
        }
    }
    if spec.ha.is_some() {
        println!("\nHigh availability: every client goes through haproxy at {} to the apiservers on {} (each checked on /readyz; `kubectl get endpoints kubernetes` lists the live ones); etcd has {} members; controllers and schedulers run twice, one of each leading (`kubectl -n kube-system get leases`).",
            spec.apiserver_url(),
            spec.apiserver_ips().iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", "),
            spec.etcd_urls().len());
    }
    println!("\nUse the cluster with:\n  export KUBECONFIG={}\n  kubectl get pods -o wide", spec.admin_kubeconfig().display());
    println!("  ip netns exec {} sh    # a shell on node 1 (ClusterIPs work from there)", spec.netns(1));
    println!("rkube status | rkube logs <component> | rkube down [--purge]   (add --state-dir {} if not the default)", spec.state_dir.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_ip() {
        assert_eq!(first_service_ip("10.96.0.0/12").unwrap(), Ipv4Addr::new(10, 96, 0, 1));
        assert!(first_service_ip("x/12").is_err());
    }
}
