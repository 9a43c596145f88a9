//! The proxy's view of the cluster: what kube-proxy calls the *service port
//! map* and the *endpoints map* (pkg/proxy/servicechangetracker.go,
//! endpointschangetracker.go), built from core/v1 `Service` + `Endpoints`.
//!
//! A Service with several ports becomes several independent "service ports",
//! each named `namespace/name:portname` (or `namespace/name` when the port has
//! no name). That string, plus the protocol, is what the iptables chain names
//! are hashed from ([`crate::chain_names`]), so it must be spelled exactly as
//! upstream spells it.
//!
//! Endpoints are matched to a service port **by port name and protocol**: the
//! endpoints controller has already resolved named target ports
//! (`targetPort: http`) to container port numbers per pod and published them
//! under the *service* port's name. The proxy never looks at pods.
//!
//! Only IPv4 is proxied (this proxy drives `iptables`, not `ip6tables`).

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{Endpoints, Service};

use crate::chain_names;

/// Upstream default for `sessionAffinityConfig.clientIP.timeoutSeconds` (3 hours).
pub const DEFAULT_AFFINITY_TIMEOUT_SECONDS: i32 = 10800;

/// `namespace/name` of a Service (and of its Endpoints object, which shares it).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NamespacedName {
    pub namespace: String,
    pub name: String,
}

impl NamespacedName {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        NamespacedName { namespace: namespace.into(), name: name.into() }
    }

    /// From an object's metadata; `None` when it has no name.
    pub fn of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Option<Self> {
        let name = meta.name.clone()?;
        let namespace = meta.namespace.clone().unwrap_or_else(|| "default".to_string());
        Some(NamespacedName { namespace, name })
    }
}

impl fmt::Display for NamespacedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// L4 protocol of a service port. iptables wants it in lower case
/// (`-p tcp -m tcp`), and the chain-name hash uses the lower-case form too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// Kubernetes spelling (`TCP`); absent means TCP, unknown is rejected.
    pub fn parse(s: Option<&str>) -> Option<Protocol> {
        match s.unwrap_or("TCP") {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }

    pub fn lower(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// kube-proxy's `ServicePortName`: a Service plus one of its port names.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServicePortName {
    pub service: NamespacedName,
    /// The port's `name`; empty for a single unnamed port.
    pub port: String,
    pub protocol: Protocol,
}

impl fmt::Display for ServicePortName {
    /// `ns/name:port`, or `ns/name` when the port is unnamed (upstream's
    /// `fmtPortName` adds the colon only for a non-empty name).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.port.is_empty() {
            write!(f, "{}", self.service)
        } else {
            write!(f, "{}:{}", self.service, self.port)
        }
    }
}

/// One backend of a service port (`ip:port`) and its `KUBE-SEP-` chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointInfo {
    pub ip: Ipv4Addr,
    pub port: u16,
    /// `ip:port`, as kube-proxy's `endpointInfo.String()`.
    pub addr: String,
    pub chain: String,
}

/// One proxied service port with everything the rule writer needs,
/// chain names precomputed (hashing is the costly part of a sync).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxiedPort {
    pub name: ServicePortName,
    /// `name.to_string()`, used in every comment.
    pub name_string: String,
    pub cluster_ip: Ipv4Addr,
    pub port: u16,
    pub node_port: Option<u16>,
    pub external_ips: Vec<Ipv4Addr>,
    /// `Some(timeout seconds)` when `sessionAffinity: ClientIP`.
    pub affinity_timeout: Option<i32>,
    /// `KUBE-SVC-…`: picks an endpoint.
    pub svc_chain: String,
    /// `KUBE-EXT-…`: entry for "external" traffic (NodePort, external IPs).
    pub ext_chain: String,
    /// Ready endpoints, sorted by (ip, port) so output is stable.
    pub endpoints: Vec<EndpointInfo>,
}

impl ProxiedPort {
    pub fn has_endpoints(&self) -> bool {
        !self.endpoints.is_empty()
    }
    /// Reachable from outside the cluster IP: NodePort or external IPs.
    pub fn externally_accessible(&self) -> bool {
        self.node_port.is_some() || !self.external_ips.is_empty()
    }
}

/// Ready endpoints of an Endpoints object, keyed by (port name, protocol).
/// Addresses or ports that cannot be used (bad IP, port 0) are skipped, as
/// upstream's `isValidEndpoint` does; `notReadyAddresses` never get traffic.
pub fn endpoints_by_port(eps: &Endpoints) -> BTreeMap<(String, Protocol), Vec<(Ipv4Addr, u16)>> {
    let mut out: BTreeMap<(String, Protocol), Vec<(Ipv4Addr, u16)>> = BTreeMap::new();
    for subset in eps.subsets.iter().flatten() {
        for port in subset.ports.iter().flatten() {
            let Some(protocol) = Protocol::parse(port.protocol.as_deref()) else { continue };
            if port.port <= 0 || port.port > 65535 {
                continue;
            }
            let key = (port.name.clone().unwrap_or_default(), protocol);
            for addr in subset.addresses.iter().flatten() {
                let Ok(ip) = addr.ip.parse::<Ipv4Addr>() else { continue };
                let list = out.entry(key.clone()).or_default();
                let ep = (ip, port.port as u16);
                if !list.contains(&ep) {
                    list.push(ep);
                }
            }
        }
    }
    for list in out.values_mut() {
        list.sort();
    }
    out
}

/// The service ports of a Service with their endpoints. Empty for what
/// kube-proxy does not proxy: headless (`clusterIP: None`), no cluster IP,
/// `ExternalName`, non-IPv4 cluster IPs, or no ports at all.
pub fn build(svc: &Service, eps: Option<&Endpoints>) -> Vec<ProxiedPort> {
    let Some(name) = NamespacedName::of(&svc.metadata) else { return Vec::new() };
    let Some(spec) = svc.spec.as_ref() else { return Vec::new() };
    if spec.type_.as_deref() == Some("ExternalName") {
        return Vec::new();
    }
    let Some(cluster_ip) = spec.cluster_ip.as_deref().and_then(|s| s.parse::<Ipv4Addr>().ok()) else {
        return Vec::new();
    };
    let affinity_timeout = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
        spec.session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds)
            .filter(|t| *t > 0)
            .unwrap_or(DEFAULT_AFFINITY_TIMEOUT_SECONDS)
    });
    let external_ips: Vec<Ipv4Addr> = spec
        .external_ips
        .iter()
        .flatten()
        .filter_map(|s| s.parse().ok())
        .collect();
    let by_port = eps.map(endpoints_by_port).unwrap_or_default();

    let mut out = Vec::new();
    for sp in spec.ports.iter().flatten() {
        let Some(protocol) = Protocol::parse(sp.protocol.as_deref()) else { continue };
        if sp.port <= 0 || sp.port > 65535 {
            continue;
        }
        let spn = ServicePortName {
            service: name.clone(),
            port: sp.name.clone().unwrap_or_default(),
            protocol,
        };
        let name_string = spn.to_string();
        let node_port = sp.node_port.filter(|p| *p > 0 && *p <= 65535).map(|p| p as u16);
        let endpoints = by_port
            .get(&(spn.port.clone(), protocol))
            .map(|list| {
                list.iter()
                    .map(|(ip, port)| {
                        let addr = format!("{ip}:{port}");
                        let chain = chain_names::service_port_endpoint_chain_name(&name_string, protocol.lower(), &addr);
                        EndpointInfo { ip: *ip, port: *port, addr, chain }
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.push(ProxiedPort {
            svc_chain: chain_names::service_port_chain_name(&name_string, protocol.lower()),
            ext_chain: chain_names::service_external_chain_name(&name_string, protocol.lower()),
            name: spn,
            name_string,
            cluster_ip,
            port: sp.port as u16,
            node_port,
            external_ips: external_ips.clone(),
            affinity_timeout,
            endpoints,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc(v: serde_json::Value) -> Service {
        serde_json::from_value(v).unwrap()
    }
    fn eps(v: serde_json::Value) -> Endpoints {
        serde_json::from_value(v).unwrap()
    }

    /// Renders the model compactly: one line per service port.
    fn check(service: serde_json::Value, endpoints: Option<serde_json::Value>, expected: &[&str]) {
        let s = svc(service);
        let e = endpoints.map(eps);
        let got: Vec<String> = build(&s, e.as_ref())
            .iter()
            .map(|p| {
                let eps: Vec<&str> = p.endpoints.iter().map(|e| e.addr.as_str()).collect();
                format!(
                    "{} {}:{}/{} np={:?} aff={:?} eps=[{}]",
                    p.name_string,
                    p.cluster_ip,
                    p.port,
                    p.name.protocol.lower(),
                    p.node_port,
                    p.affinity_timeout,
                    eps.join(",")
                )
            })
            .collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn model_table() {
        // Named ports are matched to Endpoints ports of the same name; the
        // endpoints controller already resolved `targetPort: http` to 8080.
        check(
            json!({"metadata":{"namespace":"ns1","name":"web"},
                   "spec":{"clusterIP":"10.96.0.10","ports":[
                       {"name":"http","port":80,"targetPort":"http"},
                       {"name":"dns","port":53,"protocol":"UDP"}]}}),
            Some(json!({"metadata":{"namespace":"ns1","name":"web"},"subsets":[
                {"addresses":[{"ip":"10.1.0.3"},{"ip":"10.1.0.2"}],
                 "notReadyAddresses":[{"ip":"10.1.0.9"}],
                 "ports":[{"name":"http","port":8080},{"name":"dns","port":5353,"protocol":"UDP"}]}]})),
            &[
                "ns1/web:dns 10.96.0.10:53/udp np=None aff=None eps=[10.1.0.2:5353,10.1.0.3:5353]",
                "ns1/web:http 10.96.0.10:80/tcp np=None aff=None eps=[10.1.0.2:8080,10.1.0.3:8080]",
            ],
        );
        // Unnamed single port: comment/hash name has no colon.
        check(
            json!({"metadata":{"namespace":"ns1","name":"one"},
                   "spec":{"type":"NodePort","clusterIP":"10.96.0.11","sessionAffinity":"ClientIP",
                           "sessionAffinityConfig":{"clientIP":{"timeoutSeconds":60}},
                           "ports":[{"port":80,"nodePort":30080}]}}),
            Some(json!({"metadata":{"namespace":"ns1","name":"one"},"subsets":[
                {"addresses":[{"ip":"10.1.0.2"}],"ports":[{"port":80}]}]})),
            &["ns1/one 10.96.0.11:80/tcp np=Some(30080) aff=Some(60) eps=[10.1.0.2:80]"],
        );
        // ClientIP affinity without a config gets the upstream default.
        check(
            json!({"metadata":{"namespace":"ns1","name":"aff"},
                   "spec":{"clusterIP":"10.96.0.12","sessionAffinity":"ClientIP","ports":[{"port":80}]}}),
            None,
            &["ns1/aff 10.96.0.12:80/tcp np=None aff=Some(10800) eps=[]"],
        );
        // A port name that matches nothing in Endpoints: no endpoints.
        check(
            json!({"metadata":{"namespace":"ns1","name":"miss"},
                   "spec":{"clusterIP":"10.96.0.13","ports":[{"name":"grpc","port":9000}]}}),
            Some(json!({"metadata":{"namespace":"ns1","name":"miss"},"subsets":[
                {"addresses":[{"ip":"10.1.0.2"}],"ports":[{"name":"http","port":80}]}]})),
            &["ns1/miss:grpc 10.96.0.13:9000/tcp np=None aff=None eps=[]"],
        );
        // Endpoints without ports, subsets without addresses, bad IPs, port 0.
        check(
            json!({"metadata":{"namespace":"ns1","name":"odd"},
                   "spec":{"clusterIP":"10.96.0.14","ports":[{"port":80}]}}),
            Some(json!({"metadata":{"namespace":"ns1","name":"odd"},"subsets":[
                {"addresses":[{"ip":"10.1.0.2"}]},
                {"ports":[{"port":80}]},
                {"addresses":[{"ip":"not-an-ip"},{"ip":"10.1.0.5"}],"ports":[{"port":0},{"port":80}]}]})),
            &["ns1/odd 10.96.0.14:80/tcp np=None aff=None eps=[10.1.0.5:80]"],
        );
        // Not proxied: headless, no cluster IP, ExternalName, no ports, IPv6.
        check(json!({"metadata":{"namespace":"a","name":"h"},"spec":{"clusterIP":"None","ports":[{"port":80}]}}), None, &[]);
        check(json!({"metadata":{"namespace":"a","name":"n"},"spec":{"ports":[{"port":80}]}}), None, &[]);
        check(json!({"metadata":{"namespace":"a","name":"x"},"spec":{"type":"ExternalName","externalName":"e.com"}}), None, &[]);
        check(json!({"metadata":{"namespace":"a","name":"p"},"spec":{"clusterIP":"10.96.0.1"}}), None, &[]);
        check(json!({"metadata":{"namespace":"a","name":"v6"},"spec":{"clusterIP":"fd00::1","ports":[{"port":80}]}}), None, &[]);
        check(json!({"metadata":{"namespace":"a","name":"nospec"}}), None, &[]);
    }
}
