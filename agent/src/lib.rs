//! rkube-agent: the node agent (Kubernetes' *kubelet*).
//!
//! * [`options`] — kubelet-style flags.
//! * [`node`] — node registration, node status, the Lease heartbeat.
//! * [`pods`] — the per-pod workers; [`pod_status`] — the status pieces
//!   they and the fake runtime compute; [`labels`] — the labels on CRI
//!   sandboxes and containers.
//! * [`runtime`] — the container runtime boundary (CRI client, private
//!   containerd, CNI, local images) and the fake runtime.
//! * [`server`] — the agent's HTTP endpoints: `/healthz` and the node API
//!   (container logs); [`streaming`] — exec, attach, port-forward;
//!   [`node_api`] — what their handlers share.
//! * [`simulated`] — many fake nodes in one process (kwok-like).

pub mod bench;
pub mod labels;
pub mod logs;
pub mod node;
pub mod node_api;
pub mod options;
pub mod pod_status;
pub mod pods;
pub mod probes;
pub mod runtime;
pub mod server;
pub mod simulated;
pub mod streaming;

use anyhow::Result;

/// The whole agent: connect, then either run the simulated nodes or the real node.
pub async fn run(opts: options::Options) -> Result<()> {
    let client = machinery::client::connect_as("agent", opts.master.as_deref(), opts.kubeconfig.as_deref()).await?;
    if opts.healthz_port != 0 {
        std::sync::Arc::new(server::healthz_server()).start(&opts.healthz_bind_address, opts.healthz_port).await?;
    }
    let work = async {
        match opts.runtime {
            options::RuntimeKind::Fake => simulated::run(client, simulated::SimConfig::from_options(&opts)?).await,
            options::RuntimeKind::Remote => pods::manager::run(client, opts.clone()).await,
        }
    };
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = work => r,
        _ = tokio::signal::ctrl_c() => Ok(()),
        _ = term.recv() => Ok(()),
    }
}
