//! The real node (`--runtime remote`): ties CRI, the Node object and the
//! pod workers together (the kubelet's `Run` / `syncLoop`).
//!
//! Start-up order matters:
//! 1. CRI `Version` (which runtime is this?), then register the Node and
//!    start the heartbeat (lease + status, Ready follows CRI `Status`).
//! 2. Watch the pods bound to this node (`spec.nodeName=<node>`), and wait
//!    until the first list is in.
//! 3. Clean the runtime: sandboxes whose pod no longer exists in the API
//!    (deleted while the agent was down) are stopped and removed. Sandboxes
//!    of pods that still exist are left alone: their workers adopt them, so
//!    an agent restart never restarts healthy containers.
//! 4. Dispatch: one worker per pod UID; every update of the pod is handed to
//!    its worker (the latest version only — a worker never works through a
//!    backlog of stale versions).

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::{ContainerImage, Pod};
use kube::{Api, Client};
use machinery::events::EventRecorder;
use machinery::informer::{Event, Informer};
use proto::runtime::v1 as cri;
use tokio::sync::watch;

use super::worker::{Backoff, PodContext, Worker};
use crate::labels::POD_UID_LABEL;
use crate::node::{self, NodeConfig, RuntimeHealth};
use crate::options::{self, Options};
use crate::runtime::cri::CriClient;

/// Asks CRI whether runtime and network are ready, and which images exist.
pub async fn runtime_health(cri: &CriClient) -> RuntimeHealth {
    let mut c = cri.clone();
    let status = match c.runtime.status(cri::StatusRequest { verbose: false }).await {
        Ok(s) => s.into_inner().status.unwrap_or_default(),
        Err(e) => return RuntimeHealth { ready: false, message: format!("container runtime is down: {}", e.message()), images: vec![] },
    };
    let not_ready: Vec<String> = ["RuntimeReady", "NetworkReady"]
        .iter()
        .filter(|t| !status.conditions.iter().any(|c| c.r#type == **t && c.status))
        .map(|t| format!("{t}=false"))
        .collect();
    let images = c
        .image
        .list_images(cri::ListImagesRequest { filter: None })
        .await
        .map(|r| r.into_inner().images)
        .unwrap_or_default()
        .into_iter()
        .map(|i| {
            let mut names = i.repo_digests.clone();
            names.extend(i.repo_tags.clone());
            ContainerImage { names: Some(names), size_bytes: Some(i.size as i64) }
        })
        .collect();
    if not_ready.is_empty() {
        RuntimeHealth { ready: true, message: String::new(), images }
    } else {
        RuntimeHealth { ready: false, message: format!("container runtime status check may not have completed yet: {}", not_ready.join(", ")), images }
    }
}

/// The node's configuration from the flags and the host.
pub fn node_config(opts: &Options, runtime_version: &str) -> Result<NodeConfig> {
    let name = opts.node_name();
    let (capacity, allocatable) = node::host_capacity(&opts.root_dir, opts.max_pods);
    Ok(NodeConfig {
        name: name.clone(),
        labels: options::parse_labels(&opts.node_labels)?.into_iter().collect(),
        taints: options::parse_taints(&opts.register_with_taints)?,
        capacity,
        allocatable,
        internal_ip: opts.node_ip.clone().unwrap_or_else(node::host_ip),
        hostname: name,
        node_info: node::host_info(runtime_version),
        port: opts.port as i32,
        pod_cidr: opts.pod_cidr.clone(),
    })
}

/// Removes sandboxes (and their containers) whose pod UID is not in `live`.
pub async fn remove_orphans(cri: &CriClient, live: &std::collections::HashSet<String>) -> Result<usize> {
    let mut c = cri.clone();
    let sandboxes = c.runtime.list_pod_sandbox(cri::ListPodSandboxRequest { filter: None }).await.context("ListPodSandbox")?.into_inner().items;
    let mut removed = 0;
    for s in sandboxes {
        let Some(uid) = s.labels.get(POD_UID_LABEL) else { continue };
        if live.contains(uid) {
            continue;
        }
        let filter = cri::ContainerFilter { pod_sandbox_id: s.id.clone(), ..Default::default() };
        let containers = c.runtime.list_containers(cri::ListContainersRequest { filter: Some(filter) }).await?.into_inner().containers;
        for ctr in &containers {
            let _ = c.runtime.stop_container(cri::StopContainerRequest { container_id: ctr.id.clone(), timeout: 2 }).await;
        }
        c.runtime.stop_pod_sandbox(cri::StopPodSandboxRequest { pod_sandbox_id: s.id.clone() }).await.context("StopPodSandbox")?;
        for ctr in &containers {
            let _ = c.runtime.remove_container(cri::RemoveContainerRequest { container_id: ctr.id.clone() }).await;
        }
        c.runtime.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: s.id.clone() }).await.context("RemovePodSandbox")?;
        tracing::info!(sandbox = s.id, pod_uid = uid.as_str(), "removed sandbox of a pod that no longer exists");
        removed += 1;
    }
    Ok(removed)
}

/// Runs the real node until the future is dropped.
pub async fn run(client: Client, opts: Options) -> Result<()> {
    let cri = CriClient::connect(&opts.container_runtime_endpoint).await?;
    let version = cri.clone().version().await?;
    let runtime_version = format!("{}://{}", version.runtime_name, version.runtime_version);
    let cfg = node_config(&opts, &runtime_version)?;
    let health = runtime_health(&cri).await;
    let registered = node::register(&client, &cfg, &health).await?;
    tracing::info!(node = cfg.name, runtime = runtime_version, "node registered");
    let first = node::node_status(&cfg, &health, registered.status.as_ref(), chrono::Utc::now());
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
    node::post_status(&nodes, &cfg.name, &first).await?;
    let leases = Api::namespaced(client.clone(), node::LEASE_NAMESPACE);
    node::renew_lease(&leases, &cfg.name, registered.metadata.uid.as_deref(), opts.node_lease_duration_seconds).await?;
    let cri_for_health = cri.clone();
    let heartbeat = node::Heartbeat {
        client: client.clone(),
        cfg: cfg.clone(),
        lease_duration_seconds: opts.node_lease_duration_seconds,
        renew_interval: opts.lease_renew_interval(),
        status_update_frequency: opts.node_status_update_frequency,
        status_report_frequency: opts.node_status_report_frequency,
        health: Arc::new(move || {
            let c = cri_for_health.clone();
            Box::pin(async move { runtime_health(&c).await })
        }),
    };
    let hb = tokio::spawn(heartbeat.run(first, registered.metadata.uid.clone()));
    let _hb_guard = AbortOnDrop(hb);

    let pods: Api<Pod> = Api::all(client.clone());
    let informer = Informer::new(pods).fields(&format!("spec.nodeName={}", cfg.name));
    let mut events = informer.events();
    let store = informer.store();
    let _inf_guard = AbortOnDrop(informer.spawn());
    informer.wait_for_sync().await;
    let live = store.list().iter().filter_map(|p| p.metadata.uid.clone()).collect();
    let removed = remove_orphans(&cri, &live).await?;
    if removed > 0 {
        tracing::info!(removed, "cleaned up pods deleted while the agent was down");
    }

    let log_root = opts.pod_log_dir();
    std::fs::create_dir_all(&log_root).with_context(|| format!("creating {}", log_root.display()))?;
    let ctx = Arc::new(PodContext {
        cri: cri.clone(),
        client: client.clone(),
        node_name: cfg.name.clone(),
        host_ip: cfg.internal_ip.clone(),
        runtime_name: version.runtime_name.clone(),
        log_root,
        recorder: EventRecorder::new(client.clone(), "kubelet", &cfg.name),
        backoff: Backoff {
            crash_base: opts.container_restart_backoff,
            crash_max: opts.max_container_restart_backoff,
            image_base: opts.image_pull_backoff,
            image_max: opts.max_container_restart_backoff,
        },
        sync_frequency: opts.sync_frequency,
        starts: (opts.max_parallel_pod_starts > 0).then(|| Arc::new(tokio::sync::Semaphore::new(opts.max_parallel_pod_starts))),
    });

    // The agent's API (logs, exec).
    let addr = format!("{}:{}", opts.address, opts.port);
    let listener = tokio::net::TcpListener::bind(&addr).await.with_context(|| format!("binding {addr}"))?;
    let _srv_guard = AbortOnDrop(tokio::spawn(crate::server::serve_node_api(listener, crate::node_api::NodeApi { cri: cri.clone(), pods: store.clone() })));

    let mut workers: HashMap<String, watch::Sender<Option<Arc<Pod>>>> = HashMap::new();
    let mut dispatch = |pod: Option<Arc<Pod>>, gone: Option<Arc<Pod>>| {
        if let Some(p) = gone {
            let uid = p.metadata.uid.clone().unwrap_or_default();
            if let Some(tx) = workers.remove(&uid) {
                let _ = tx.send(None);
            }
            return;
        }
        let Some(p) = pod else { return };
        let uid = p.metadata.uid.clone().unwrap_or_default();
        match workers.get(&uid) {
            Some(tx) if !tx.is_closed() => {
                let _ = tx.send(Some(p));
            }
            Some(_) if p.metadata.deletion_timestamp.is_some() => {} // finished; the delete event follows
            _ => {
                let (tx, rx) = watch::channel(Some(p.clone()));
                tokio::spawn(Worker::new(ctx.clone(), p).run(rx));
                workers.insert(uid, tx);
            }
        }
    };
    for p in store.list() {
        dispatch(Some(p), None);
    }
    while let Some(ev) = events.recv().await {
        match ev {
            Event::Added(p) => dispatch(Some(p), None),
            Event::Updated { new, .. } => dispatch(Some(new), None),
            Event::Deleted(p) => dispatch(None, Some(p)),
        }
    }
    Ok(())
}

struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
