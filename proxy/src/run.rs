//! The proxy process: the apiserver's Services and Endpoints, through
//! informers, into the [`Proxier`] (kube-proxy's `ProxyServer.Run`).
//!
//! ```text
//! apiserver ──list+watch──► Informer<Service>   ──on_service_update/delete──►  Proxier ──► iptables-restore
//!           ──list+watch──► Informer<Endpoints> ──on_endpoints_update/delete─►    ▲
//!                           (both listed once) ──on_*_synced──────────────────────┘ (first sync waits for both)
//! ```
//!
//! Upstream watches EndpointSlices; this proxy reads the older Endpoints
//! objects (one per Service, same name), which the endpoints controller
//! keeps. The informers skip objects labelled
//! `service.kubernetes.io/service-proxy-name` (another proxy serves them)
//! and `service.kubernetes.io/headless` (no cluster IP to proxy), with the
//! label selector upstream uses.
//!
//! The process leaves its rules in place when it stops: traffic keeps
//! flowing while the proxy restarts, and the next run adopts the chains
//! (see [`crate::proxier`]).

use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use k8s_openapi::api::core::v1::{Endpoints, Node, Service};
use kube::Api;
use machinery::informer::{HandlerFns, Informer};
use tokio::net::TcpListener;

use crate::conntrack::{Cleanup, Conntrack, ConntrackCmd};
use crate::iptables::{Iptables, IptablesCmd, RestoreError};
use crate::options::{local_addresses, local_addresses_in, NodePortAddresses, Options};
use crate::proxier::Proxier;
use crate::route;
use crate::server;

/// The label selector of both informers (upstream's `noProxyName` and
/// `noHeadlessEndpoints` requirements).
pub const LABEL_SELECTOR: &str = "!service.kubernetes.io/service-proxy-name,!service.kubernetes.io/headless";

/// Run the proxy until SIGTERM or SIGINT (or, with `--dry-run`, print the
/// rules and return).
pub async fn run(opts: Options) -> anyhow::Result<()> {
    opts.validate()?;
    if opts.dry_run {
        print!("{}", dry_run(&opts).await?);
        return Ok(());
    }
    run_until(opts, shutdown_signal()).await
}

/// Run the proxy until `shutdown` completes.
pub async fn run_until(opts: Options, shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
    opts.validate()?;
    let node_name = opts.node_name()?;
    let client = machinery::client::connect_as("proxy", opts.master.as_deref(), opts.kubeconfig.as_deref()).await?;
    let nodeport_ips = resolve_nodeport_addresses(&opts, Some((&client, &node_name))).await?;
    let cfg = opts.proxier_config(nodeport_ips.clone())?;
    tracing::info!(
        node = %node_name,
        cluster_cidr = ?cfg.rules.cluster_cidr,
        nodeport_addresses = ?nodeport_ips,
        masquerade_all = cfg.rules.masquerade_all,
        "starting rkube-proxy in iptables mode"
    );

    prepare_node(&opts).await?;

    let proxier = Proxier::new(cfg, Arc::new(IptablesCmd::new(opts.iptables_backend)), Arc::new(ConntrackCmd::default()));

    // Bind before anything else can fail late: a wrong address is an error
    // at start, not a log line later.
    let mut servers = Vec::new();
    let mut bound = Vec::new();
    for addr in [&opts.healthz_bind_address, &opts.metrics_bind_address] {
        if addr.is_empty() || bound.contains(addr) {
            continue;
        }
        let listener = TcpListener::bind(addr.as_str()).await.with_context(|| format!("binding {addr}"))?;
        tracing::info!(%addr, "serving /healthz and /metrics");
        bound.push(addr.clone());
        servers.push(tokio::spawn(server::serve(listener, proxier.clone())));
    }

    let informers = start_informers(client, proxier.clone(), opts.config_sync_period);
    proxier.clone().run(shutdown).await;
    tracing::info!("shutting down; iptables rules are left in place");
    informers.iter().for_each(|t| t.abort());
    servers.iter().for_each(|t| t.abort());
    Ok(())
}

/// The node-level setup before the first sync, in the calling thread's
/// network namespace:
/// - `--service-cluster-ip-range` given: route the range to the local
///   port-less device [`route::DEFAULT_DEVICE`], so a packet to a cluster IP
///   that no rule DNATs dies on this node instead of following the default
///   route off the machine.
/// - `--iptables-localhost-nodeports` (default on): `route_localnet=1`.
///
/// Why the route is opt-in: kube-proxy's iptables mode has no such flag and
/// adds no route; upstream leaves unmatched service traffic to the node's
/// routing (only the IPVS mode routes the range, to `kube-ipvs0`). The proxy
/// cannot know the range by itself (it is an apiserver flag), and guessing
/// one (upstream's 10.0.0.0/24 default) could hijack a real network. So the
/// caller that knows the range passes it, as `rkube up` does.
pub async fn prepare_node(opts: &Options) -> anyhow::Result<()> {
    if let Some(range) = opts.service_cluster_ip_range {
        route::ensure_service_route(route::DEFAULT_DEVICE, range)
            .await
            .with_context(|| format!("routing --service-cluster-ip-range {range} to {}", route::DEFAULT_DEVICE))?;
    }
    if opts.iptables_localhost_nodeports {
        route::set_route_localnet()?;
    }
    Ok(())
}

/// Watch Services and Endpoints and feed `proxier`. Returns the tasks (abort
/// them to stop). The proxier starts syncing once both have listed.
pub fn start_informers(client: kube::Client, proxier: Arc<Proxier>, resync: std::time::Duration) -> Vec<tokio::task::JoinHandle<()>> {
    let mut services = Informer::<Service>::new(Api::all(client.clone()))
        .labels(LABEL_SELECTOR)
        // The proxier keeps its own copy; the cache need not hold the
        // (large, unused) managed fields of 10,000 objects.
        .transform(|s: &mut Service| s.metadata.managed_fields = None);
    let mut endpoints = Informer::<Endpoints>::new(Api::all(client))
        .labels(LABEL_SELECTOR)
        .transform(|e: &mut Endpoints| e.metadata.managed_fields = None);
    if !resync.is_zero() {
        services = services.resync(resync);
        endpoints = endpoints.resync(resync);
    }

    let (p1, p2, p3) = (proxier.clone(), proxier.clone(), proxier.clone());
    services.add_event_handler(
        HandlerFns::new()
            .on_add(move |s: &Arc<Service>| p1.on_service_update(s))
            .on_update(move |_, s: &Arc<Service>| p2.on_service_update(s))
            .on_delete(move |s: &Arc<Service>| p3.on_service_delete(s)),
    );
    let (p1, p2, p3) = (proxier.clone(), proxier.clone(), proxier.clone());
    endpoints.add_event_handler(
        HandlerFns::new()
            .on_add(move |e: &Arc<Endpoints>| p1.on_endpoints_update(e))
            .on_update(move |_, e: &Arc<Endpoints>| p2.on_endpoints_update(e))
            .on_delete(move |e: &Arc<Endpoints>| p3.on_endpoints_delete(e)),
    );

    let mut tasks = vec![services.spawn(), endpoints.spawn()];
    let p = proxier.clone();
    tasks.push(tokio::spawn(async move {
        services.wait_for_sync().await;
        tracing::info!("services listed");
        p.on_services_synced();
    }));
    tasks.push(tokio::spawn(async move {
        endpoints.wait_for_sync().await;
        tracing::info!("endpoints listed");
        proxier.on_endpoints_synced();
    }));
    tasks
}

/// The addresses NodePorts answer on (empty = all local addresses).
/// `primary` reads the Node object (its InternalIP addresses) when there is
/// an API to ask; without one, or without a Node, the host's addresses
/// other than loopback stand in.
pub async fn resolve_nodeport_addresses(opts: &Options, api: Option<(&kube::Client, &str)>) -> anyhow::Result<Vec<Ipv4Addr>> {
    let NodePortAddresses::Only { cidrs, primary } = opts.nodeport_addresses()? else { return Ok(Vec::new()) };
    let mut ips = local_addresses_in(&cidrs)?;
    if primary {
        let mut node_ips = Vec::new();
        if let Some((client, node_name)) = api {
            match Api::<Node>::all(client.clone()).get_opt(node_name).await {
                Ok(Some(node)) => node_ips = node_internal_ips(&node),
                Ok(None) => tracing::warn!(node = node_name, "no Node object; using this host's addresses as primary"),
                Err(e) => tracing::warn!(node = node_name, "reading the Node object failed ({e}); using this host's addresses as primary"),
            }
        }
        if node_ips.is_empty() {
            node_ips = local_addresses()?.into_iter().filter(|ip| !ip.is_loopback()).collect();
        }
        ips.extend(node_ips);
    }
    ips.sort();
    ips.dedup();
    anyhow::ensure!(!ips.is_empty(), "no local address matches --nodeport-addresses {:?}", opts.nodeport_addresses);
    Ok(ips)
}

/// The IPv4 `InternalIP` addresses of a Node.
pub fn node_internal_ips(node: &Node) -> Vec<Ipv4Addr> {
    node.status
        .as_ref()
        .and_then(|s| s.addresses.as_ref())
        .into_iter()
        .flatten()
        .filter(|a| a.type_ == "InternalIP")
        .filter_map(|a| a.address.parse().ok())
        .collect()
}

/// `--dry-run`: the ruleset for the Services and Endpoints in the
/// apiserver (or in `--from-file`), as a full sync would write it.
pub async fn dry_run(opts: &Options) -> anyhow::Result<String> {
    let (services, endpoints, nodeport_ips) = match &opts.from_file {
        Some(path) => {
            let (s, e) = read_objects(path)?;
            (s, e, resolve_nodeport_addresses(opts, None).await?)
        }
        None => {
            let client = machinery::client::connect_as("proxy", opts.master.as_deref(), opts.kubeconfig.as_deref()).await?;
            let lp = kube::api::ListParams::default().labels(LABEL_SELECTOR);
            let s = Api::<Service>::all(client.clone()).list(&lp).await.context("listing Services")?.items;
            let e = Api::<Endpoints>::all(client.clone()).list(&lp).await.context("listing Endpoints")?.items;
            let node = opts.node_name()?;
            (s, e, resolve_nodeport_addresses(opts, Some((&client, &node))).await?)
        }
    };
    Ok(render_objects(opts, nodeport_ips, &services, &endpoints)?)
}

/// The ruleset for these objects under `opts`, computed without touching
/// the kernel.
pub fn render_objects(opts: &Options, nodeport_ips: Vec<Ipv4Addr>, services: &[Service], endpoints: &[Endpoints]) -> anyhow::Result<String> {
    let p = Proxier::new(opts.proxier_config(nodeport_ips)?, Arc::new(NoKernel), Arc::new(NoKernel));
    services.iter().for_each(|s| p.on_service_update(s));
    endpoints.iter().for_each(|e| p.on_endpoints_update(e));
    Ok(p.render_rules())
}

/// Services and Endpoints from a YAML/JSON file: any number of documents,
/// each an object or a `List` of objects (other kinds are skipped).
pub fn read_objects(path: &Path) -> anyhow::Result<(Vec<Service>, Vec<Endpoints>)> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse_objects(&text).with_context(|| format!("parsing {}", path.display()))
}

/// See [`read_objects`].
pub fn parse_objects(text: &str) -> anyhow::Result<(Vec<Service>, Vec<Endpoints>)> {
    use serde::Deserialize;
    let mut out = (Vec::new(), Vec::new());
    for doc in serde_yaml::Deserializer::from_str(text) {
        let v = serde_json::Value::deserialize(doc)?;
        if !v.is_null() {
            collect_object(v, None, &mut out)?;
        }
    }
    Ok(out)
}

/// One object (or list) into `out`; `kind` stands in for a missing `kind`
/// (items of a typed list such as `ServiceList` may omit it).
fn collect_object(v: serde_json::Value, kind: Option<&str>, out: &mut (Vec<Service>, Vec<Endpoints>)) -> anyhow::Result<()> {
    let k = v.get("kind").and_then(|k| k.as_str()).or(kind).unwrap_or_default().to_string();
    match k.as_str() {
        "Service" => out.0.push(serde_json::from_value(v).context("a Service")?),
        "Endpoints" => out.1.push(serde_json::from_value(v).context("an Endpoints")?),
        k if k.ends_with("List") => {
            let item_kind = k.strip_suffix("List").filter(|s| !s.is_empty());
            for item in v.get("items").and_then(|i| i.as_array()).into_iter().flatten() {
                collect_object(item.clone(), item_kind, out)?;
            }
        }
        other => tracing::debug!(kind = other, "skipping an object that is neither a Service nor Endpoints"),
    }
    Ok(())
}

/// Stands in for iptables and conntrack where nothing may touch the kernel.
struct NoKernel;

impl Iptables for NoKernel {
    fn restore(&self, _: &str) -> Result<(), RestoreError> {
        Err(RestoreError { line: None, context: vec![], stderr: "dry run: not touching the kernel".into() })
    }
    fn save(&self, _: &str) -> anyhow::Result<String> {
        anyhow::bail!("dry run: not touching the kernel")
    }
}

impl Conntrack for NoKernel {
    fn clear(&self, _: &Cleanup) -> anyhow::Result<u64> {
        anyhow::bail!("dry run: not touching the kernel")
    }
}

/// Completes on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("cannot listen for SIGTERM: {e}");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn check(yaml: &str, expected: &[&str]) {
        let (s, e) = parse_objects(yaml).unwrap();
        let mut got: Vec<String> = s.iter().map(|s| format!("svc {}", s.metadata.name.as_deref().unwrap_or("?"))).collect();
        got.extend(e.iter().map(|e| format!("ep {}", e.metadata.name.as_deref().unwrap_or("?"))));
        assert_eq!(got, expected);
    }

    #[test]
    fn objects_from_yaml_table() {
        check(
            "apiVersion: v1\nkind: Service\nmetadata: {name: a, namespace: x}\nspec: {clusterIP: 10.96.0.1, ports: [{port: 80}]}\n---\n\
             apiVersion: v1\nkind: Endpoints\nmetadata: {name: a, namespace: x}\n---\n\
             apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n---\n",
            &["svc a", "ep a"],
        );
        // `kubectl get svc,ep -A -o yaml` prints one List.
        check(
            "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Service, metadata: {name: a}}\n\
             - {apiVersion: v1, kind: Endpoints, metadata: {name: a}}\n- {apiVersion: v1, kind: Service, metadata: {name: b}}\n",
            &["svc a", "svc b", "ep a"],
        );
        // A typed list's items may lack `kind`; JSON is YAML too.
        check(r#"{"kind":"ServiceList","apiVersion":"v1","items":[{"metadata":{"name":"c"}}]}"#, &["svc c"]);
        check("", &[]);
    }

    #[test]
    fn dry_run_renders_without_the_kernel() {
        let opts = Options::try_parse_from(["rkube-proxy", "--dry-run", "--cluster-cidr=10.244.0.0/16"]).unwrap();
        let (s, e) = parse_objects(
            "kind: Service\napiVersion: v1\nmetadata: {name: web, namespace: demo}\n\
             spec: {clusterIP: 10.96.0.10, ports: [{name: http, port: 80}]}\n---\n\
             kind: Endpoints\napiVersion: v1\nmetadata: {name: web, namespace: demo}\n\
             subsets: [{addresses: [{ip: 10.244.1.2}], ports: [{name: http, port: 8080}]}]\n",
        )
        .unwrap();
        let text = render_objects(&opts, vec![], &s, &e).unwrap();
        let svc_chain = crate::chain_names::service_port_chain_name("demo/web:http", "tcp");
        assert!(text.contains(&format!("-d 10.96.0.10 --dport 80 -j {svc_chain}")), "{text}");
        assert!(text.contains("-j DNAT --to-destination 10.244.1.2:8080"), "{text}");
        assert!(text.contains("! -s 10.244.0.0/16 -j KUBE-MARK-MASQ"), "{text}");
    }

    #[test]
    fn node_internal_ips_table() {
        let node: Node = serde_json::from_value(serde_json::json!({"metadata":{"name":"n1"},"status":{"addresses":[
            {"type":"Hostname","address":"n1"},{"type":"InternalIP","address":"192.168.1.5"},
            {"type":"InternalIP","address":"fd00::5"},{"type":"ExternalIP","address":"203.0.113.9"}]}}))
        .unwrap();
        assert_eq!(node_internal_ips(&node), vec![Ipv4Addr::new(192, 168, 1, 5)]);
        assert_eq!(node_internal_ips(&Node::default()), Vec::<Ipv4Addr>::new());
    }
}
