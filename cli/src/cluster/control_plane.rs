//! The single control plane of `rkube up` (without `--ha`): etcd, then the
//! apiserver, the controller manager and the scheduler, each waited for
//! until healthy; and the flags each is started with, which the
//! high-availability control plane ([`super::ha`]) starts its members with too.

use std::path::Path;
use std::time::Duration;

use super::kubectl::kubectl;
use super::progress::step;
use super::spec::Spec;
use super::supervise::Supervisor;
use super::wait::{wait_for, wait_healthy};
use super::{which, Binaries};

/// An apiserver's flags: TLS with client certificates, Node+RBAC, the
/// secure port on `bind_ip`, the insecure one on 127.0.0.1.
pub fn apiserver_args(spec: &Spec, etcd_servers: &str, bind_ip: &str, insecure_port: u16) -> Vec<String> {
    let pki = spec.pki();
    vec![
        format!("--etcd-servers={etcd_servers}"),
        format!("--bind-address={bind_ip}"),
        format!("--secure-port={}", spec.apiserver_port),
        format!("--tls-cert-file={}", pki.join("apiserver.crt").display()),
        format!("--tls-private-key-file={}", pki.join("apiserver.key").display()),
        format!("--client-ca-file={}", pki.join("ca.crt").display()),
        s("--authorization-mode=Node,RBAC"),
        s("--insecure-bind-address=127.0.0.1"),
        format!("--insecure-port={insecure_port}"),
        format!("--service-cluster-ip-range={}", spec.service_cidr),
    ]
}

/// A controller manager's flags: its kubeconfig, podCIDR allocation from
/// the cluster CIDR, `/healthz` on 127.0.0.1:`port`.
pub fn controller_args(spec: &Spec, port: u16) -> Vec<String> {
    vec![
        format!("--kubeconfig={}", spec.pki().join("kube-controller-manager.kubeconfig").display()),
        format!("--cluster-cidr={}", spec.cluster_cidr_str()),
        s("--node-cidr-mask-size=24"),
        s("--allocate-node-cidrs=true"),
        s("--bind-address=127.0.0.1"),
        format!("--secure-port={port}"),
    ]
}

/// A scheduler's flags: its kubeconfig, `/healthz` on 127.0.0.1:`port`.
pub fn scheduler_args(spec: &Spec, port: u16) -> Vec<String> {
    vec![
        format!("--kubeconfig={}", spec.pki().join("kube-scheduler.kubeconfig").display()),
        s("--bind-address=127.0.0.1"),
        format!("--secure-port={port}"),
    ]
}

fn s<T: ToString>(v: T) -> String {
    v.to_string()
}

/// The single etcd member, waited for until healthy.
pub fn start_etcd(spec: &Spec, sup: &Supervisor) -> anyhow::Result<()> {
    let (c, p) = (spec.etcd_url(), format!("http://127.0.0.1:{}", spec.etcd_peer_port));
    let args = vec![
        s("--name=rkube"),
        format!("--data-dir={}", spec.state_dir.join("etcd").display()),
        format!("--listen-client-urls={c}"),
        format!("--advertise-client-urls={c}"),
        format!("--listen-peer-urls={p}"),
        format!("--initial-advertise-peer-urls={p}"),
        format!("--initial-cluster=rkube={p}"),
        s("--log-level=warn"),
        s("--logger=zap"),
    ];
    sup.start("etcd", None, Path::new(&which("etcd")?), &args)?;
    wait_healthy(sup, "etcd", &format!("127.0.0.1:{}", spec.etcd_client_port), "/health")
}

/// The single control plane: one apiserver, one controller, one scheduler.
pub fn start(spec: &Spec, sup: &Supervisor, bins: &Binaries) -> anyhow::Result<()> {
    step(&format!("rkube-apiserver on {}", spec.apiserver_url()), || {
        let args = apiserver_args(spec, &spec.etcd_url(), &spec.host_ip().to_string(), spec.apiserver_insecure_port);
        sup.start("apiserver", None, &bins.apiserver, &args)?;
        wait_healthy(sup, "apiserver", &format!("127.0.0.1:{}", spec.apiserver_insecure_port), "/healthz")?;
        // And through TLS with the admin's client certificate, as users will.
        wait_for("kubectl through the secure port", Duration::from_secs(30), || Ok(kubectl(spec, &["get", "--raw", "/healthz"]).ok()))?;
        Ok(())
    })?;

    step("rkube-controller", || {
        sup.start("controller", None, &bins.controller, &controller_args(spec, spec.controller_port))?;
        wait_healthy(sup, "controller", &format!("127.0.0.1:{}", spec.controller_port), "/healthz")
    })?;

    step("rkube-scheduler", || {
        sup.start("scheduler", None, &bins.scheduler, &scheduler_args(spec, spec.scheduler_port))?;
        wait_healthy(sup, "scheduler", &format!("127.0.0.1:{}", spec.scheduler_port), "/healthz")
    })?;
    Ok(())
}
