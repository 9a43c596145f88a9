//! The ClusterIP and NodePort repair loops (upstream's `repair.go` in
//! `pkg/registry/core/service/ipallocator/controller` and
//! `.../portallocator/controller`).
//!
//! The allocation bitmaps in etcd ([`super::allocator`]) and the Services
//! are written in two steps: a create takes its ClusterIP and NodePorts
//! first, then writes the Service; a delete removes the Service, then gives
//! them back. An apiserver killed between the two steps leaves a value
//! marked used that no Service holds — a leak, which with several
//! apiservers being killed and restarted (the HA shape) adds up until the
//! range is full. Every apiserver therefore runs a repair loop, as upstream
//! does, every `--service-repair-interval` (upstream: 3 minutes, fixed):
//!
//! 1. read the bitmap (and its revision) — *before* listing Services, so a
//!    value allocated after this read cannot be lost: the final write is a
//!    compare-and-swap on this revision and fails if anything changed;
//! 2. list every Service from etcd, and rebuild the bitmap from the values
//!    they hold — reporting values in use but not marked (repaired),
//!    values held by two Services, and values outside the range;
//! 3. a value marked but held by no Service may be a leak, or a create
//!    between its two steps: it stays marked until it has been seen
//!    unheld by [`NUM_REPAIRS_BEFORE_LEAK_CLEANUP`] passes in a row, then is
//!    freed;
//! 4. write the rebuilt bitmap if it differs (compare-and-swap; on conflict
//!    the next pass tries again).
//!
//! Steps 2–3 are the pure [`rebuild`]; [`RepairLoop`] does the IO.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use machinery::resources;
use serde_json::Value;

use super::allocator::{is_set, mark, AllocError, Range};
use super::store::Registry;

/// Upstream's `numRepairsBeforeLeakCleanup`: a value unheld on this many
/// passes in a row is freed on the last of them.
pub const NUM_REPAIRS_BEFORE_LEAK_CLEANUP: u32 = 3;

/// What one pass found in one range, as offsets into the range.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Findings {
    /// Held by a Service but not marked used: now marked.
    pub not_allocated: Vec<u32>,
    /// Held by more than one Service (upstream: `ClusterIPAlreadyAllocated`).
    pub duplicates: Vec<u32>,
    /// Marked, held by no Service, kept for now.
    pub suspected_leaks: Vec<u32>,
    /// Marked, held by no Service for long enough: freed.
    pub freed: Vec<u32>,
}

/// Rebuilds a bitmap from what the Services hold (`in_use`, offsets inside
/// the range), the stored bitmap, and the leak counters of earlier passes
/// (updated here). Reserved offsets are never marked.
pub fn rebuild(stored: &[u8], size: u32, reserved: &[u32], in_use: &[u32], leaks: &mut HashMap<u32, u32>) -> (Vec<u8>, Findings) {
    let mut data = vec![0u8; stored.len()];
    let mut f = Findings::default();
    for &o in in_use {
        if o >= size || reserved.contains(&o) {
            continue;
        }
        if is_set(&data, o) {
            f.duplicates.push(o);
            continue;
        }
        mark(&mut data, o, true);
        if !is_set(stored, o) {
            f.not_allocated.push(o);
        }
    }
    // A value no longer marked at all starts afresh if it leaks again.
    leaks.retain(|o, _| is_set(stored, *o) && !is_set(&data, *o));
    let unheld: Vec<u32> = (0..size).filter(|o| is_set(stored, *o) && !is_set(&data, *o) && !reserved.contains(o)).collect();
    for o in unheld {
        let left = leaks.get(&o).copied().unwrap_or(NUM_REPAIRS_BEFORE_LEAK_CLEANUP - 1);
        if left > 0 {
            leaks.insert(o, left - 1);
            mark(&mut data, o, true);
            f.suspected_leaks.push(o);
        } else {
            leaks.remove(&o);
            f.freed.push(o);
        }
    }
    (data, f)
}

/// The repair loop of one apiserver, over both ranges.
pub struct RepairLoop {
    registry: Arc<Registry>,
    ip_leaks: HashMap<u32, u32>,
    port_leaks: HashMap<u32, u32>,
}

impl RepairLoop {
    pub fn new(registry: Arc<Registry>) -> Self {
        RepairLoop { registry, ip_leaks: HashMap::new(), port_leaks: HashMap::new() }
    }

    /// Runs a pass now and then every `interval`, for the life of the process.
    pub fn spawn(mut self, interval: Duration) {
        tokio::spawn(async move {
            loop {
                if let Err(e) = self.run_once().await {
                    tracing::warn!("service allocation repair: {e}");
                }
                tokio::time::sleep(interval).await;
            }
        });
    }

    /// One pass over the ClusterIP range, then the NodePort range.
    pub async fn run_once(&mut self) -> Result<(Findings, Findings), String> {
        let reg = self.registry.clone();
        let ips = self.repair_range(&reg.ips.range, "ClusterIP", |svc, out| {
            for ip in cluster_ips(svc) {
                out.push(reg.ips.offset(ip).ok_or(ip.to_string()));
            }
        }, true).await?;
        let (base, last) = (reg.ports.base, reg.ports.last);
        let ports = self.repair_range(&reg.ports.range, "NodePort", |svc, out| {
            for p in node_ports(svc) {
                out.push(if p >= base && p <= last { Ok((p - base) as u32) } else { Err(p.to_string()) });
            }
        }, false).await?;
        Ok((ips, ports))
    }

    async fn repair_range(
        &mut self,
        range: &Range,
        what: &str,
        held: impl Fn(&Value, &mut Vec<Result<u32, String>>),
        is_ip: bool,
    ) -> Result<Findings, String> {
        let etcd = &self.registry.etcd;
        let err = |e: AllocError| format!("{what} range: {e:?}");
        // 1. The bitmap first (see the module docs for why the order matters).
        let (stored, rev) = range.load(etcd).await.map_err(err)?;
        // 2. Every Service, straight from etcd.
        let services = resources::find("", "v1", "services").expect("services are served");
        let prefix = resources::collection_key(&self.registry.prefix, services, None);
        let (kvs, _, _) = etcd.range(&prefix, None, 0, 0).await.map_err(|e| format!("listing services: {e}"))?;
        let mut in_use = Vec::new();
        for kv in &kvs {
            let Ok(svc) = serde_json::from_slice::<Value>(&kv.value) else { continue };
            let mut values = Vec::new();
            held(&svc, &mut values);
            for v in values {
                match v {
                    Ok(o) => in_use.push(o),
                    Err(v) => tracing::warn!(service = %service_name(&svc), "{what} {v} is not within the configured range; it cannot be repaired"),
                }
            }
        }
        // 3. Rebuild.
        let leaks = if is_ip { &mut self.ip_leaks } else { &mut self.port_leaks };
        let (data, f) = rebuild(&stored, range.size(), range.reserved(), &in_use, leaks);
        for o in &f.not_allocated {
            tracing::warn!("{what} offset {o} is held by a Service but was not marked allocated; repaired");
        }
        for o in &f.duplicates {
            tracing::error!("{what} offset {o} is held by more than one Service");
        }
        for o in &f.suspected_leaks {
            tracing::info!("{what} offset {o} is marked allocated but held by no Service: may have leaked");
        }
        for o in &f.freed {
            tracing::warn!("{what} offset {o} leaked: freed");
        }
        // 4. Write it back if anything changed.
        if data != stored && !range.store(etcd, &data, rev).await.map_err(err)? {
            return Err(format!("{what} range changed during the repair; next pass"));
        }
        Ok(f)
    }
}

fn service_name(svc: &Value) -> String {
    format!("{}/{}", svc["metadata"]["namespace"].as_str().unwrap_or(""), svc["metadata"]["name"].as_str().unwrap_or(""))
}

/// `spec.clusterIPs` (or the older `spec.clusterIP`), IPv4 only; `None`
/// (headless) and empty hold nothing.
fn cluster_ips(svc: &Value) -> Vec<Ipv4Addr> {
    let spec = &svc["spec"];
    let list: Vec<&str> = match spec["clusterIPs"].as_array() {
        Some(a) if !a.is_empty() => a.iter().filter_map(Value::as_str).collect(),
        _ => spec["clusterIP"].as_str().into_iter().collect(),
    };
    list.into_iter().filter_map(|s| s.parse().ok()).collect()
}

/// Every `spec.ports[].nodePort` and `spec.healthCheckNodePort`.
fn node_ports(svc: &Value) -> Vec<u16> {
    let spec = &svc["spec"];
    let mut out: Vec<u16> = spec["ports"].as_array().into_iter().flatten().filter_map(|p| p["nodePort"].as_u64()).map(|n| n as u16).collect();
    if let Some(h) = spec["healthCheckNodePort"].as_u64() {
        out.push(h as u16);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bits(size: u32, on: &[u32]) -> Vec<u8> {
        let mut d = vec![0u8; (size as usize).div_ceil(8)];
        for &o in on {
            mark(&mut d, o, true);
        }
        d
    }

    fn on(data: &[u8], size: u32) -> Vec<u32> {
        (0..size).filter(|o| is_set(data, *o)).collect()
    }

    /// One pass: stored bits, offsets held by Services → bits after, findings.
    fn check(stored: &[u32], in_use: &[u32], leaks: &mut HashMap<u32, u32>, want_bits: &[u32], want: Findings) {
        let (data, f) = rebuild(&bits(16, stored), 16, &[0, 15], in_use, leaks);
        assert_eq!(on(&data, 16), want_bits, "bits after stored {stored:?} in use {in_use:?}");
        assert_eq!(f, want);
    }

    #[test]
    fn in_sync_changes_nothing() {
        check(&[1, 2], &[2, 1], &mut HashMap::new(), &[1, 2], Findings::default());
    }

    #[test]
    fn held_but_unmarked_is_marked_and_doubles_are_reported() {
        let want = Findings { not_allocated: vec![3], duplicates: vec![1], ..Default::default() };
        check(&[1], &[1, 3, 1], &mut HashMap::new(), &[1, 3], want);
    }

    #[test]
    fn reserved_and_out_of_range_offsets_are_never_marked() {
        check(&[], &[0, 15, 99], &mut HashMap::new(), &[], Findings::default());
    }

    #[test]
    fn a_leak_is_freed_on_the_third_pass_in_a_row() {
        let mut leaks = HashMap::new();
        let kept = Findings { suspected_leaks: vec![5], ..Default::default() };
        check(&[1, 5], &[1], &mut leaks, &[1, 5], kept);
        let kept = Findings { suspected_leaks: vec![5], ..Default::default() };
        check(&[1, 5], &[1], &mut leaks, &[1, 5], kept);
        check(&[1, 5], &[1], &mut leaks, &[1], Findings { freed: vec![5], ..Default::default() });
        assert!(leaks.is_empty());
    }

    #[test]
    fn a_create_finishing_between_passes_is_not_a_leak() {
        let mut leaks = HashMap::new();
        // Pass 1: 5 allocated, its Service not written yet.
        check(&[5], &[], &mut leaks, &[5], Findings { suspected_leaks: vec![5], ..Default::default() });
        // Pass 2: the Service exists.
        check(&[5], &[5], &mut leaks, &[5], Findings::default());
        assert!(leaks.is_empty());
        // Freed and taken again later: the count starts afresh.
        check(&[], &[], &mut leaks, &[], Findings::default());
        check(&[5], &[], &mut leaks, &[5], Findings { suspected_leaks: vec![5], ..Default::default() });
        check(&[5], &[], &mut leaks, &[5], Findings { suspected_leaks: vec![5], ..Default::default() });
    }
}
