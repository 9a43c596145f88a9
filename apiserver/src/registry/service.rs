//! Service strategy (upstream `pkg/registry/core/service/strategy.go` and
//! the allocation hooks of its REST storage, `storage/alloc.go`): a
//! Service's ClusterIP and NodePorts are taken from the bitmaps in etcd
//! when it is created, kept or changed when it is updated, and given back
//! when it is deleted.

use std::net::Ipv4Addr;

use serde_json::{json, Value};

use super::allocator::{AllocError, NodePorts, ServiceIps};
use super::defaults;
use super::strategy::{Hook, Revert, Strategy};
use super::validation::{self, NameRule};
use crate::status::{ApiError, ApiResult, FieldError};
use crate::storage::etcd::Etcd;

/// The strategy holds the allocators (the bitmaps' keys and ranges).
#[derive(Clone)]
pub struct ServiceStrategy {
    pub ips: ServiceIps,
    pub ports: NodePorts,
}

impl Strategy for ServiceStrategy {
    /// Service names are DNS-1035 labels: they become DNS names.
    fn name_rule(&self) -> NameRule {
        NameRule::Dns1035
    }

    fn tracks_generation(&self) -> bool {
        true
    }

    fn set_defaults(&self, obj: &mut Value) {
        defaults::service(obj);
    }

    /// A new Service has no load balancer yet.
    fn prepare_for_create(&self, obj: &mut Value) {
        obj["status"] = json!({"loadBalancer": {}});
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        validation::service(obj)
    }

    fn begin_create<'a>(&'a self, etcd: &'a Etcd, obj: &'a mut Value) -> Option<Hook<'a, Revert>> {
        Some(Box::pin(async move {
            let got = allocate(self, etcd, obj, None).await?;
            // Owned copies: the revert may run after this borrow ends.
            let (allocators, etcd) = (self.clone(), etcd.clone());
            let revert: Revert = Box::pin(async move { release(&allocators, &etcd, &got).await });
            Ok(revert)
        }))
    }

    fn begin_update<'a>(&'a self, etcd: &'a Etcd, new: &'a mut Value, old: &'a Value) -> Option<Hook<'a, ()>> {
        Some(Box::pin(update_allocations(self, etcd, new, old)))
    }

    fn after_delete<'a>(&'a self, etcd: &'a Etcd, obj: &'a Value) -> Option<Hook<'a, ()>> {
        Some(Box::pin(async move {
            release(self, etcd, &Allocated::of(obj)).await;
            Ok(())
        }))
    }
}

/// What one service holds, so it can be given back.
#[derive(Default, Debug)]
struct Allocated {
    ip: Option<Ipv4Addr>,
    ports: Vec<u16>,
}

impl Allocated {
    fn of(svc: &Value) -> Self {
        let ip = svc["spec"]["clusterIP"].as_str().and_then(|s| s.parse().ok());
        let ports = svc["spec"]["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["nodePort"].as_u64().map(|n| n as u16))
            .collect();
        Allocated { ip, ports }
    }
}

fn wants_node_ports(svc: &Value) -> bool {
    matches!(svc["spec"]["type"].as_str(), Some("NodePort" | "LoadBalancer"))
}

fn invalid(svc: &Value, field: &str, value: String, detail: String) -> ApiError {
    let name = svc["metadata"]["name"].as_str().unwrap_or("");
    ApiError::invalid("", "Service", name, vec![FieldError::invalid(field, value, detail)])
}

/// Allocates the ClusterIP (unless headless or ExternalName) and NodePorts.
/// `old` holds what an update may keep. On error, everything taken is given back.
async fn allocate(allocators: &ServiceStrategy, etcd: &Etcd, svc: &mut Value, old: Option<&Value>) -> ApiResult<Allocated> {
    let mut got = Allocated::default();
    let result = allocate_inner(allocators, etcd, svc, old, &mut got).await;
    if result.is_err() {
        release(allocators, etcd, &got).await;
    }
    result.map(|_| got)
}

async fn allocate_inner(allocators: &ServiceStrategy, etcd: &Etcd, svc: &mut Value, old: Option<&Value>, got: &mut Allocated) -> ApiResult<()> {
    // Check requested NodePorts first, without writing, so that a request
    // rejected for its ports has not touched the ClusterIP bitmap either.
    if wants_node_ports(svc) {
        let kept: Vec<u64> = old
            .map(|o| o["spec"]["ports"].as_array().into_iter().flatten().filter_map(|p| p["nodePort"].as_u64()).collect())
            .unwrap_or_default();
        let n = svc["spec"]["ports"].as_array().map(Vec::len).unwrap_or(0);
        for i in 0..n {
            let Some(np) = svc["spec"]["ports"][i]["nodePort"].as_u64().filter(|n| *n != 0 && !kept.contains(n)) else { continue };
            match allocators.ports.check(etcd, np.min(u16::MAX as u64) as u16).await {
                Ok(()) => {}
                Err(AllocError::InUse) => {
                    return Err(invalid(svc, &format!("spec.ports[{i}].nodePort"), np.to_string(), "provided port is already allocated".into()))
                }
                Err(AllocError::OutOfRange) | Err(AllocError::Full) => {
                    return Err(invalid(svc, &format!("spec.ports[{i}].nodePort"), np.to_string(),
                        format!("provided port is not in the valid range. The range of valid ports is {}-{}", allocators.ports.base, allocators.ports.last)))
                }
                Err(AllocError::Storage(e)) => return Err(ApiError::unavailable(e)),
            }
        }
    }
    let ty = svc["spec"]["type"].as_str().unwrap_or("ClusterIP").to_string();
    if ty != "ExternalName" && old.is_none() {
        let requested = svc["spec"]["clusterIP"].as_str().unwrap_or("").to_string();
        if requested != "None" {
            let want = if requested.is_empty() {
                None
            } else {
                Some(requested.parse::<Ipv4Addr>().map_err(|_| {
                    invalid(svc, "spec.clusterIPs[0]", requested.clone(), "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)".into())
                })?)
            };
            match allocators.ips.allocate(etcd, want).await {
                Ok(ip) => {
                    got.ip = Some(ip);
                    svc["spec"]["clusterIP"] = json!(ip.to_string());
                    svc["spec"]["clusterIPs"] = json!([ip.to_string()]);
                }
                Err(AllocError::InUse) => {
                    return Err(invalid(svc, "spec.clusterIPs", format!("[]string{{\"{requested}\"}}"),
                        format!("failed to allocate IP {requested}: provided IP is already allocated")))
                }
                Err(AllocError::OutOfRange) => {
                    return Err(invalid(svc, "spec.clusterIPs", format!("[]string{{\"{requested}\"}}"),
                        format!("failed to allocate IP {requested}: the provided IP ({requested}) is not in the valid range. The range of valid IPs is {}", allocators.ips.net)))
                }
                Err(AllocError::Full) => return Err(ApiError::internal("failed to allocate a serviceIP: range is full")),
                Err(AllocError::Storage(e)) => return Err(ApiError::unavailable(e)),
            }
        } else {
            svc["spec"]["clusterIPs"] = json!(["None"]);
        }
    }
    if wants_node_ports(svc) {
        let old_ports: Vec<(i64, String, u16)> = old
            .filter(|o| wants_node_ports(o))
            .map(|o| {
                o["spec"]["ports"].as_array().into_iter().flatten().filter_map(|p| {
                    Some((p["port"].as_i64()?, p["protocol"].as_str().unwrap_or("TCP").to_string(), p["nodePort"].as_u64()? as u16))
                }).collect()
            })
            .unwrap_or_default();
        let n = svc["spec"]["ports"].as_array().map(Vec::len).unwrap_or(0);
        for i in 0..n {
            let p = &svc["spec"]["ports"][i];
            let port = p["port"].as_i64().unwrap_or(0);
            let proto = p["protocol"].as_str().unwrap_or("TCP").to_string();
            let requested = p["nodePort"].as_u64().map(|n| n as u16).filter(|n| *n != 0);
            // An update keeps the port it had for the same service port.
            let kept = old_ports.iter().find(|(op, opr, _)| *op == port && *opr == proto).map(|(_, _, np)| *np);
            if let (Some(k), None | Some(_)) = (kept, requested) {
                if requested.is_none() || requested == Some(k) {
                    svc["spec"]["ports"][i]["nodePort"] = json!(k);
                    continue;
                }
            }
            match allocators.ports.allocate(etcd, requested).await {
                Ok(np) => {
                    got.ports.push(np);
                    svc["spec"]["ports"][i]["nodePort"] = json!(np);
                }
                Err(AllocError::InUse) => {
                    let r = requested.unwrap_or(0);
                    return Err(invalid(svc, &format!("spec.ports[{i}].nodePort"), r.to_string(), format!("provided port is already allocated")));
                }
                Err(AllocError::OutOfRange) => {
                    let r = requested.unwrap_or(0);
                    return Err(invalid(svc, &format!("spec.ports[{i}].nodePort"), r.to_string(),
                        format!("provided port is not in the valid range. The range of valid ports is {}-{}", allocators.ports.base, allocators.ports.last)));
                }
                Err(AllocError::Full) => return Err(ApiError::internal("failed to allocate a nodePort: range is full")),
                Err(AllocError::Storage(e)) => return Err(ApiError::unavailable(e)),
            }
        }
    }
    Ok(())
}

/// On update: the ClusterIP may not change (an empty one keeps the old, as
/// upstream patches allocated values back in); NodePorts follow the ports.
async fn update_allocations(allocators: &ServiceStrategy, etcd: &Etcd, new: &mut Value, old: &Value) -> ApiResult<()> {
    let old_ip = old["spec"]["clusterIP"].as_str().unwrap_or("").to_string();
    let new_ip = new["spec"]["clusterIP"].as_str().unwrap_or("").to_string();
    if new_ip.is_empty() {
        new["spec"]["clusterIP"] = old["spec"]["clusterIP"].clone();
        new["spec"]["clusterIPs"] = old["spec"]["clusterIPs"].clone();
    } else if new_ip != old_ip {
        return Err(invalid(new, "spec.clusterIPs[0]", new_ip, "may not change once set".into()));
    }
    if new["spec"]["clusterIPs"].is_null() {
        new["spec"]["clusterIPs"] = old["spec"]["clusterIPs"].clone();
    }
    let before = Allocated::of(old);
    let _new_alloc = allocate(allocators, etcd, new, Some(old)).await?;
    let after = Allocated::of(new);
    let freed = Allocated { ip: None, ports: before.ports.into_iter().filter(|p| !after.ports.contains(p)).collect() };
    release(allocators, etcd, &freed).await;
    Ok(())
}

async fn release(allocators: &ServiceStrategy, etcd: &Etcd, a: &Allocated) {
    if let Some(ip) = a.ip {
        if let Err(e) = allocators.ips.release(etcd, ip).await {
            tracing::warn!("releasing {ip}: {e:?}");
        }
    }
    for p in &a.ports {
        if let Err(e) = allocators.ports.release(etcd, *p).await {
            tracing::warn!("releasing node port {p}: {e:?}");
        }
    }
}
