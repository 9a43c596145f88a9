//! rkube-apiserver: the Kubernetes API on etcd.
//!
//! The request pipeline, in the order a request meets it:
//! - [`server`]: HTTP, routing, discovery and health endpoints, encoding
//!   (JSON or kubectl's server-side Table); [`body`] is the response body
//!   type it shares with [`node_proxy`] (logs, exec, port-forward and
//!   proxies to pods and nodes);
//! - [`security`]: authentication, authorization, and admission wired to
//!   the live cluster state ([`auth`] and [`admission`] hold the pure
//!   decisions); it hands the registry a `security::Checks` for each write;
//! - [`request`]: what a URL means (verb, resource, namespace, name,
//!   subresource);
//! - [`registry`]: the REST storage, cut as Kubernetes' `pkg/registry`:
//!   a generic store that knows no kind (`registry/store.rs`, with
//!   `list.rs` and `watch.rs`), one strategy per kind that has rules of its
//!   own (`registry/pod.rs`, `service.rs`, `namespace.rs`, ... — defaults,
//!   validation, what create, update and delete mean for it), the table of
//!   which strategy serves which resource (`registry/kinds.rs`), what a
//!   write through a subresource may change (`registry/subresources/`:
//!   status, ephemeralcontainers, finalize, ...), and the handlers of the
//!   subresources with a body of their own, above the store
//!   (`registry/rest/`: binding, eviction, scale). Admission and the
//!   requester's RBAC checks reach it through `registry/checks.rs`;
//! - [`apply`] and [`patch`]: server-side apply and the patch formats the
//!   registry applies inside its update loop;
//! - [`storage`]: etcd (the only code in rkube that talks to it) and the
//!   watch cache that serves lists and watches.

pub mod admission;
pub mod apply;
pub mod auth;
pub mod body;
pub mod config;
pub mod discovery;
pub mod masterleases;
pub mod node_proxy;
pub mod openapi;
pub mod patch;
pub mod protobuf;
pub mod registry;
pub mod request;
pub mod security;
pub mod server;
pub mod status;
pub mod storage;
pub mod table;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;

pub use config::Config;

/// Connects to etcd, loads the watch caches, creates the system namespaces,
/// and serves until the process ends.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let server = Arc::new(build(&config).await?);
    let leases = master_leases(&config, &server)?;
    if !config.service_repair_interval.is_zero() {
        registry::repair::RepairLoop::new(server.registry.clone()).spawn(config.service_repair_interval);
    }
    let mut tasks = Vec::new();
    if config.insecure_port != 0 {
        let addr: SocketAddr = format!("{}:{}", config.insecure_bind_address, config.insecure_port)
            .parse()
            .with_context(|| format!("invalid --insecure-bind-address {:?}", config.insecure_bind_address))?;
        let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
        tracing::info!("serving insecurely on http://{addr}");
        tasks.push(tokio::spawn(serve(listener, server.clone())));
    }
    match (&config.tls_cert_file, &config.tls_private_key_file) {
        (Some(cert), Some(key)) => {
            let client_ca = server.security.client_ca.clone();
            let tls = tls::server_config(cert, key, client_ca.as_ref())?;
            let addr: SocketAddr = format!("{}:{}", config.bind_address, config.secure_port)
                .parse()
                .with_context(|| format!("invalid --bind-address {:?}", config.bind_address))?;
            let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
            tracing::info!("serving securely on https://{addr}");
            tasks.push(tokio::spawn(serve_tls(listener, tls, server.clone())));
        }
        (None, None) => tracing::info!("secure port disabled: no --tls-cert-file"),
        _ => anyhow::bail!("--tls-cert-file and --tls-private-key-file go together"),
    }
    if tasks.is_empty() {
        anyhow::bail!("nothing to serve: --insecure-port is 0 and no --tls-cert-file was given");
    }
    let serving = futures::future::try_join_all(tasks);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = serving => {
            for t in r? {
                t?;
            }
            Ok(())
        }
        _ = term.recv() => {
            // A clean stop takes this apiserver out of the `kubernetes`
            // Endpoints at once instead of after its lease's TTL.
            if let Some(l) = leases {
                match tokio::time::timeout(Duration::from_secs(5), l.remove()).await {
                    Ok(Ok(())) => tracing::info!("removed this apiserver's master lease"),
                    Ok(Err(e)) => tracing::warn!("removing the master lease: {}", e.message),
                    Err(_) => tracing::warn!("removing the master lease: timed out"),
                }
            }
            tracing::info!("SIGTERM: stopping");
            Ok(())
        }
    }
}

/// Starts the master lease reconciler (`--endpoint-reconciler-type=lease`)
/// when there is an address to advertise.
fn master_leases(config: &Config, server: &server::ApiServer) -> anyhow::Result<Option<Arc<masterleases::MasterLeases>>> {
    match config.endpoint_reconciler_type.as_str() {
        "none" => return Ok(None),
        "lease" => {}
        other => anyhow::bail!("--endpoint-reconciler-type {other:?}: must be lease or none"),
    }
    let specific = |a: &str| a.parse::<std::net::IpAddr>().is_ok_and(|ip| !ip.is_unspecified());
    let ip = match &config.advertise_address {
        Some(a) if specific(a) => a.clone(),
        Some(a) => anyhow::bail!("--advertise-address {a:?}: must be a specific IP address"),
        // Upstream falls back to the host's default-route interface; a
        // single box often has none, so rkube advertises only what it is told.
        None if config.tls_cert_file.is_some() && specific(&config.bind_address) => config.bind_address.clone(),
        None => {
            tracing::info!("no --advertise-address: not keeping a master lease");
            return Ok(None);
        }
    };
    let ttl = config.master_endpoint_reconcile_ttl;
    anyhow::ensure!(ttl >= Duration::from_secs(1), "--master-endpoint-reconcile-ttl must be at least 1s");
    let leases = masterleases::MasterLeases::new(server.registry.clone(), server.security.clone(), &ip, ttl, config.secure_port);
    tracing::info!(%ip, ?ttl, interval = ?leases.interval(), "using the lease endpoint reconciler");
    leases.spawn();
    Ok(Some(leases))
}

/// Everything but the listener: what tests and benchmarks drive directly.
pub async fn build(config: &Config) -> anyhow::Result<server::ApiServer> {
    for (flag, v) in [
        ("--default-not-ready-toleration-seconds", config.default_not_ready_toleration_seconds),
        ("--default-unreachable-toleration-seconds", config.default_unreachable_toleration_seconds),
    ] {
        anyhow::ensure!(v >= 0, "{flag} must not be negative, got {v}");
    }
    let net: ipnet::Ipv4Net = config
        .service_cluster_ip_range
        .parse()
        .map_err(|e| anyhow!("invalid --service-cluster-ip-range {:?}: {e}", config.service_cluster_ip_range))?;
    let (base, last) = registry::allocator::parse_port_range(&config.service_node_port_range)
        .map_err(|e| anyhow!("invalid --service-node-port-range: {e}"))?;
    let prefix = config.etcd_prefix.trim_end_matches('/').to_string();
    let etcd = storage::etcd::Etcd::connect_with(&config.etcd_servers, config.etcd_connect_timeout, config.etcd_request_timeout)
        .await
        .map_err(|e| anyhow!("cannot reach etcd at {}: {e}", config.etcd_servers.join(",")))?;
    let ips = registry::allocator::ServiceIps::new(&prefix, net);
    let ports = registry::allocator::NodePorts::new(&prefix, base, last);
    let mut chain = admission::Chain::from_flags(&config.enable_admission_plugins, &config.disable_admission_plugins)
        .map_err(|e| anyhow!("{e}"))?;
    chain.not_ready_toleration_seconds = config.default_not_ready_toleration_seconds;
    chain.unreachable_toleration_seconds = config.default_unreachable_toleration_seconds;
    let modes = auth::parse_authorization_modes(&config.authorization_mode).map_err(|e| anyhow!("--authorization-mode: {e}"))?;
    let client_ca = config.client_ca_file.as_deref().map(tls::ClientCa::load).transpose()?;
    let tokens = config
        .token_auth_file
        .as_deref()
        .map(auth::token::TokenFile::load)
        .transpose()
        .map_err(|e| anyhow!("--token-auth-file: {}", e.0))?;
    let registry = Arc::new(registry::Registry::new(etcd, prefix, ips, ports).await.map_err(|e| anyhow!("{}", e.message))?);
    let rbac = Arc::new(std::sync::RwLock::new(auth::RbacData::new()));
    let security = Arc::new(security::Security {
        client_ca,
        tokens,
        anonymous: config.anonymous_auth,
        authorizer: auth::Authorizer::new(modes),
        rbac: rbac.clone(),
        admission: chain,
    });
    registry
        .bootstrap(&security::Checks::internal(&registry, &security))
        .await
        .map_err(|e| anyhow!("bootstrapping system objects: {}", e.message))?;
    security::spawn_rbac_sync(registry.clone(), rbac);
    Ok(server::ApiServer { registry, openapi: openapi::OpenApi::build(), security })
}

/// Serves HTTP/1.1 and HTTP/2 (with upgrades, for exec) on one accepted
/// connection; `conn` is what authentication knows about it.
async fn serve_http<IO>(io: IO, server: Arc<server::ApiServer>, conn: Arc<security::ConnInfo>)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req| server.clone().handle(req, conn.clone()));
    if let Err(e) = auto::Builder::new(TokioExecutor::new()).serve_connection_with_upgrades(TokioIo::new(io), svc).await {
        tracing::debug!("connection: {e}");
    }
}

/// The next TCP connection, with Nagle off (small watch events go out at once).
async fn accept(listener: &tokio::net::TcpListener) -> (tokio::net::TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                return (stream, peer);
            }
            Err(e) => tracing::warn!("accept: {e}"),
        }
    }
}

/// Accepts connections forever on the insecure port.
pub async fn serve(listener: tokio::net::TcpListener, server: Arc<server::ApiServer>) -> anyhow::Result<()> {
    let conn = Arc::new(security::ConnInfo::insecure());
    loop {
        let (stream, _) = accept(&listener).await;
        tokio::spawn(serve_http(stream, server.clone(), conn.clone()));
    }
}

/// The secure port: TLS handshake (client certificate requested), then the
/// same HTTP service, with the peer's certificates for authentication.
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    server: Arc<server::ApiServer>,
) -> anyhow::Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let (stream, peer) = accept(&listener).await;
        let server = server.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let tls = match acceptor.accept(stream).await {
                Ok(t) => t,
                Err(e) => {
                    tracing::debug!("TLS handshake from {peer}: {e}");
                    return;
                }
            };
            let peer_certs = tls.get_ref().1.peer_certificates().map(|c| c.iter().map(|c| c.clone().into_owned()).collect()).unwrap_or_default();
            serve_http(tls, server, Arc::new(security::ConnInfo { insecure: false, peer_certs })).await;
        });
    }
}
