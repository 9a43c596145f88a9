//! The controller manager process: builds the enabled controllers over one
//! shared informer factory, serves /healthz and /metrics, and — with
//! `--leader-elect` — runs the controllers only while holding the
//! `kube-system/kube-controller-manager` Lease (upstream
//! `cmd/kube-controller-manager/app/controllermanager.go`).
//!
//! Order matters: every controller registers its informer handlers first,
//! then the informers start and the manager waits until each has its first
//! full list, and only then do the workers run. A controller acting on a
//! half-filled cache would, say, create pods that already exist.
//!
//! Leader election: a standby serves /healthz but runs no informer and no
//! controller. When it takes over, it lists everything afresh, so it starts
//! from the true state and never doubles the previous leader's work. A
//! leader that loses the lease exits at once (non-zero), as upstream does.

use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use futures::FutureExt;
use kube::Client;
use machinery::health_server::{self, Health, HealthServer};
use machinery::leader_election::{default_identity, LeaderElectionConfig, LeaderElector, Outcome};
use machinery::workqueue::WorkQueueMetrics;
use prometheus_client::registry::Registry;

use crate::context::Context;
use crate::controller_utils::Gate;
use crate::informers::InformerFactory;
use crate::options::Options;

/// Runs the controller manager until it fails or loses leadership.
pub async fn run(opts: Options) -> anyhow::Result<()> {
    let unknown = opts.unknown_controllers();
    anyhow::ensure!(unknown.is_empty(), "--controllers: unknown controller(s) {unknown:?}");
    let client = machinery::client::connect_as("controller-manager", opts.master.as_deref(), opts.kubeconfig.as_deref()).await?;
    let mut registry = Registry::default();
    let metrics = WorkQueueMetrics::register(&mut registry);
    let registry = Arc::new(Mutex::new(registry));
    if opts.secure_port != 0 {
        let server = HealthServer::new()
            .check("/healthz", Health::ok)
            .check("/livez", Health::ok)
            .check("/readyz", Health::ok)
            .metrics(move || health_server::encode(&registry.lock().unwrap()));
        Arc::new(server).start(&opts.bind_address, opts.secure_port).await?;
    }
    if !opts.leader_elect {
        return run_controllers(client, opts, metrics, Gate(None)).await;
    }
    let config = LeaderElectionConfig {
        lease_duration: opts.leader_elect_lease_duration,
        renew_deadline: opts.leader_elect_renew_deadline,
        retry_period: opts.leader_elect_retry_period,
        release_on_cancel: true,
    };
    let identity = default_identity();
    let elector = LeaderElector::new(
        client.clone(),
        &opts.leader_elect_resource_namespace,
        &opts.leader_elect_resource_name,
        &identity,
        config,
    )?;
    tracing::info!(identity, "campaigning for leadership");
    let outcome = elector
        .run(
            |leadership| async move {
                tracing::info!("became leader, starting controllers");
                if let Err(e) = run_controllers(client, opts, metrics, Gate(Some(leadership))).await {
                    tracing::error!(error = %format!("{e:#}"), "controllers failed");
                }
            },
            || tracing::info!("stopped leading"),
        )
        .await;
    match outcome {
        Outcome::LostLeadership => anyhow::bail!("leaderelection lost"),
        Outcome::Finished => Ok(()),
    }
}

/// Builds the enabled controllers, starts the informers, runs the workers.
pub async fn run_controllers(client: Client, opts: Options, metrics: WorkQueueMetrics, gate: Gate) -> anyhow::Result<()> {
    let informers = InformerFactory::new(client.clone(), opts.min_resync_period);
    let ctx = Arc::new(Context { client, informers, metrics, opts: opts.clone(), gate: gate.clone() });
    let mut runs: Vec<BoxFuture<'static, ()>> = Vec::new();
    let on = |n: &str| opts.is_enabled(n);
    if on("replicaset") {
        let c = crate::replicaset::ReplicaSetController::new(&ctx);
        runs.push(c.run(opts.concurrent_replicaset_syncs, gate.clone()).boxed());
    }
    if on("deployment") {
        let c = crate::deployment::DeploymentController::new(&ctx);
        runs.push(c.run(opts.concurrent_deployment_syncs, gate.clone()).boxed());
    }
    if on("endpoint") {
        let c = crate::endpoints::EndpointsController::new(&ctx);
        runs.push(c.run(opts.concurrent_endpoint_syncs, gate.clone()).boxed());
    }
    if on("garbagecollector") {
        let c = crate::garbagecollector::GarbageCollector::new(&ctx);
        runs.push(c.run(opts.concurrent_gc_syncs, gate.clone()).boxed());
    }
    if on("namespace") {
        let c = crate::namespace::NamespaceController::new(&ctx);
        runs.push(c.run(opts.concurrent_namespace_syncs, gate.clone()).boxed());
    }
    if on("nodelifecycle") {
        let c = crate::nodelifecycle::NodeLifecycleController::new(&ctx);
        runs.push(c.run(gate.clone()).boxed());
    }
    if on("nodeipam") && opts.allocate_node_cidrs {
        let c = crate::nodeipam::NodeIpamController::new(&ctx)?;
        runs.push(c.run(gate.clone()).boxed());
    }
    if on("podgc") {
        let c = crate::podgc::PodGc::new(&ctx);
        runs.push(c.run(gate.clone()).boxed());
    }
    if on("serviceaccount") {
        // One worker, as kube-controller-manager runs it.
        let c = crate::serviceaccount::ServiceAccountsController::new(&ctx);
        runs.push(c.run(1, gate.clone()).boxed());
    }
    if on("resourcequota") {
        let c = crate::resourcequota::ResourceQuotaController::new(&ctx);
        runs.push(c.run(opts.concurrent_resource_quota_syncs, gate.clone()).boxed());
    }
    let _informers = ctx.informers.start().await;
    tracing::info!(controllers = runs.len(), "caches synced, controllers running");
    futures::future::join_all(runs).await;
    Ok(())
}
