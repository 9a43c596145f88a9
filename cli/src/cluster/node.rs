//! One node of the cluster, started inside its network namespace: its
//! container runtime (a private containerd with the node's CNI bridge,
//! podCIDR and the locally built images), its agent and its proxy, each
//! waited for until healthy.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
use rkube_agent::runtime::cni::{BridgeNetwork, DEBIAN_CNI_BIN_DIR};
use rkube_agent::runtime::containerd::{render_config, Layout};
use rkube_agent::runtime::images::{self, DEFAULT_BUSYBOX_BINARY, PAUSE_IMAGE};

use super::spec::Spec;
use super::supervise::Supervisor;
use super::wait::{ensure_running, wait_for, wait_healthy};
use super::{which, Binaries};

/// The node's containerd, waited for until CRI is ready, with the images imported.
pub fn start_containerd(spec: &Spec, sup: &Supervisor, n: u32) -> anyhow::Result<()> {
    let dir = spec.containerd_dir(n);
    let layout = Layout::new(&dir);
    for d in [&layout.root, &layout.state, &layout.runc_root, &layout.opt, &layout.cni_data_dir, &layout.images, &layout.pod_logs] {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    // The CNI bridge lives inside the node's namespace, so every node can
    // call it cni0; the network name must be unique machine-wide (cache files).
    let pod_cidr = spec.pod_cidr(n).parse().context("pod CIDR")?;
    let mut net = BridgeNetwork::new(&spec.cni_network(n), "cni0", pod_cidr, &layout.cni_data_dir)?;
    // Pods reach pods on other nodes with their own addresses (no NAT, as
    // Kubernetes' network model asks); the node masquerades only traffic
    // leaving the cluster CIDR, as kubenet's `! -d <cluster-cidr> -j
    // MASQUERADE`. The rules are in the node's namespace, so they go with it.
    net.non_masquerade_cidr = Some(spec.cluster_cidr_str().parse().context("cluster CIDR")?);
    net.write(&layout.cni_conf_dir)?;
    net.install_node_rules(Some(&spec.netns(n)))?;
    std::fs::write(&layout.config, render_config(&layout, PAUSE_IMAGE, Path::new(DEBIAN_CNI_BIN_DIR)))?;
    let name = format!("node{n}-containerd");
    sup.start(&name, Some(&spec.netns(n)), Path::new(&which("containerd")?), &["--config".to_string(), layout.config.to_string_lossy().into_owned()])?;
    let endpoint = format!("unix://{}", layout.socket.display());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    wait_for("containerd CRI ready", Duration::from_secs(60), || {
        ensure_running(sup, &name)?;
        if !layout.socket.exists() {
            return Ok(None);
        }
        rt.block_on(cri_ready(&endpoint)).map(Some)
    })?;
    images::import_local_images(&layout.socket, Path::new(DEFAULT_BUSYBOX_BINARY), &layout.images)
}

/// CRI answers `Version` and reports RuntimeReady and NetworkReady.
pub async fn cri_ready(endpoint: &str) -> anyhow::Result<()> {
    let mut cri = rkube_agent::runtime::cri::CriClient::connect(endpoint).await?;
    cri.version().await?;
    let status = cri.runtime.status(proto::runtime::v1::StatusRequest { verbose: false }).await?.into_inner();
    let conditions = status.status.map(|s| s.conditions).unwrap_or_default();
    for wanted in ["RuntimeReady", "NetworkReady"] {
        if !conditions.iter().any(|c| c.r#type == wanted && c.status) {
            bail!("{wanted} not true");
        }
    }
    Ok(())
}

/// The node's agent, waited for until its `/healthz` answers.
pub fn start_agent(spec: &Spec, sup: &Supervisor, bins: &Binaries, n: u32) -> anyhow::Result<()> {
    let node = spec.node_name(n);
    let ip = spec.node_ip(n).to_string();
    let layout = Layout::new(&spec.containerd_dir(n));
    let args = vec![
        format!("--node-name={node}"),
        format!("--kubeconfig={}", spec.pki().join(format!("node-{node}.kubeconfig")).display()),
        format!("--container-runtime-endpoint=unix://{}", layout.socket.display()),
        format!("--node-ip={ip}"),
        format!("--pod-cidr={}", spec.pod_cidr(n)),
        format!("--root-dir={}", spec.node_dir(n).join("agent").display()),
        format!("--healthz-bind-address={ip}"),
        format!("--address={ip}"),
    ];
    let name = format!("node{n}-agent");
    sup.start(&name, Some(&spec.netns(n)), &bins.agent, &args)?;
    wait_healthy(sup, &name, &format!("{ip}:10248"), "/healthz")
}

/// The node's proxy, waited for until its `/healthz` answers.
pub fn start_proxy(spec: &Spec, sup: &Supervisor, bins: &Binaries, n: u32) -> anyhow::Result<()> {
    let ip = spec.node_ip(n).to_string();
    let args = vec![
        format!("--kubeconfig={}", spec.pki().join("kube-proxy.kubeconfig").display()),
        format!("--hostname-override={}", spec.node_name(n)),
        format!("--cluster-cidr={}", spec.cluster_cidr_str()),
        format!("--service-cluster-ip-range={}", spec.service_cidr),
        format!("--healthz-bind-address={ip}:10256"),
        "--metrics-bind-address=127.0.0.1:10249".to_string(),
    ];
    let name = format!("node{n}-proxy");
    sup.start(&name, Some(&spec.netns(n)), &bins.proxy, &args)?;
    wait_healthy(sup, &name, &format!("{ip}:10256"), "/healthz")
}
