//! rkube-apiserver: the Kubernetes API on etcd.
//!
//! The request pipeline, in the order a request meets it:
//! - [`server`]: HTTP, routing, discovery and health endpoints, encoding
//!   (JSON or kubectl's server-side Table);
//! - [`request`]: what a URL means (verb, resource, namespace, name);
//! - [`registry`]: admission (NamespaceLifecycle), defaults, validation,
//!   and the generic create/get/list/watch/update/patch/delete logic;
//! - [`storage`]: etcd (the only code in rkube that talks to it) and the
//!   watch cache that serves lists and watches.

pub mod config;
pub mod discovery;
pub mod fields;
pub mod openapi;
pub mod patch;
pub mod protobuf;
pub mod registry;
pub mod request;
pub mod server;
pub mod status;
pub mod storage;
pub mod table;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{anyhow, Context};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;

pub use config::Config;

/// Connects to etcd, loads the watch caches, creates the system namespaces,
/// and serves until the process ends.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let server = Arc::new(build(&config).await?);
    let addr: SocketAddr = format!("{}:{}", config.insecure_bind_address, config.insecure_port)
        .parse()
        .with_context(|| format!("invalid --insecure-bind-address {:?}", config.insecure_bind_address))?;
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
    tracing::info!("serving insecurely on http://{addr}");
    serve(listener, server).await
}

/// Everything but the listener: what tests and benchmarks drive directly.
pub async fn build(config: &Config) -> anyhow::Result<server::ApiServer> {
    let net: ipnet::Ipv4Net = config
        .service_cluster_ip_range
        .parse()
        .map_err(|e| anyhow!("invalid --service-cluster-ip-range {:?}: {e}", config.service_cluster_ip_range))?;
    let (base, last) = registry::allocator::parse_port_range(&config.service_node_port_range)
        .map_err(|e| anyhow!("invalid --service-node-port-range: {e}"))?;
    let prefix = config.etcd_prefix.trim_end_matches('/').to_string();
    let etcd = storage::etcd::Etcd::connect(&config.etcd_servers, config.etcd_connect_timeout)
        .await
        .map_err(|e| anyhow!("cannot reach etcd at {}: {e}", config.etcd_servers.join(",")))?;
    let ips = registry::allocator::ServiceIps::new(&prefix, net);
    let ports = registry::allocator::NodePorts::new(&prefix, base, last);
    let registry = registry::Registry::new(etcd, prefix, ips, ports).await.map_err(|e| anyhow!("{}", e.message))?;
    registry.bootstrap().await.map_err(|e| anyhow!("bootstrapping system objects: {}", e.message))?;
    Ok(server::ApiServer { registry: Arc::new(registry), openapi: openapi::OpenApi::build() })
}

/// Accepts connections forever, HTTP/1.1 and HTTP/2 alike.
pub async fn serve(listener: tokio::net::TcpListener, server: Arc<server::ApiServer>) -> anyhow::Result<()> {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("accept: {e}");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let server = server.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| server.clone().handle(req));
            if let Err(e) = auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(stream), svc).await {
                tracing::debug!("connection: {e}");
            }
        });
    }
}
