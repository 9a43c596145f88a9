//! The fake runtime (kwok-like): no containers, only the status a real node
//! would report once a pod is up. Used by the simulated nodes
//! ([`crate::simulated`]) so that schedulers and controllers can be tested and
//! benchmarked against thousands of nodes on one machine.
//!
//! Pod IPs come from the node's podCIDR, as host-local IPAM would hand them
//! out: the first address is the bridge's (the gateway), the rest go to pods
//! in order, and a freed address is reused.

use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;

use chrono::{DateTime, Utc};
use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::{ContainerState, ContainerStateRunning, ContainerStatus, HostIP, Pod, PodIP, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::pod_status::{pod_conditions, qos_class};

/// Pod IPs of one node, keyed by pod UID.
#[derive(Debug)]
pub struct IpAllocator {
    net: Ipv4Net,
    next: u32,
    free: BTreeSet<u32>,
    by_pod: HashMap<String, Ipv4Addr>,
}

impl IpAllocator {
    pub fn new(net: Ipv4Net) -> Self {
        // Skip the network address and the gateway.
        Self { net: net.trunc(), next: 2, free: BTreeSet::new(), by_pod: HashMap::new() }
    }

    /// The pod's address (the same one on every call until released).
    pub fn allocate(&mut self, uid: &str) -> Option<Ipv4Addr> {
        if let Some(ip) = self.by_pod.get(uid) {
            return Some(*ip);
        }
        let size = 1u32 << (32 - self.net.prefix_len());
        let offset = match self.free.pop_first() {
            Some(o) => o,
            None if self.next < size - 1 => {
                self.next += 1;
                self.next - 1
            }
            None => return None,
        };
        let ip = Ipv4Addr::from(u32::from(self.net.network()) + offset);
        self.by_pod.insert(uid.to_string(), ip);
        Some(ip)
    }

    /// Records an address handed out before (an agent restart).
    pub fn reserve(&mut self, uid: &str, ip: Ipv4Addr) -> bool {
        if !self.net.contains(&ip) || self.by_pod.values().any(|x| *x == ip) {
            return false;
        }
        let offset = u32::from(ip) - u32::from(self.net.network());
        self.free.remove(&offset);
        while self.next <= offset {
            if self.next != offset {
                self.free.insert(self.next);
            }
            self.next += 1;
        }
        self.by_pod.insert(uid.to_string(), ip);
        true
    }

    pub fn release(&mut self, uid: &str) {
        if let Some(ip) = self.by_pod.remove(uid) {
            self.free.insert(u32::from(ip) - u32::from(self.net.network()));
        }
    }

    pub fn len(&self) -> usize {
        self.by_pod.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_pod.is_empty()
    }
}

/// The status of a pod whose containers all started and are ready.
pub fn running_status(pod: &Pod, host_ip: &str, pod_ip: Ipv4Addr, now: DateTime<Utc>) -> PodStatus {
    let prev = pod.status.as_ref();
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let start = prev.and_then(|s| s.start_time.clone()).unwrap_or(Time(now));
    let containers = pod.spec.as_ref().map(|s| s.containers.clone()).unwrap_or_default();
    let statuses = containers
        .iter()
        .map(|c| {
            let image = c.image.clone().unwrap_or_default();
            ContainerStatus {
                name: c.name.clone(),
                image: image.clone(),
                image_id: format!("fake://{image}"),
                container_id: Some(format!("fake://{uid}/{}", c.name)),
                ready: true,
                started: Some(true),
                restart_count: 0,
                state: Some(ContainerState { running: Some(ContainerStateRunning { started_at: Some(start.clone()) }), ..Default::default() }),
                ..Default::default()
            }
        })
        .collect();
    PodStatus {
        phase: Some("Running".into()),
        conditions: Some(pod_conditions(prev, (true, None), (true, None), now)),
        container_statuses: Some(statuses),
        host_ip: Some(host_ip.into()),
        host_ips: Some(vec![HostIP { ip: host_ip.into() }]),
        pod_ip: Some(pod_ip.to_string()),
        pod_ips: Some(vec![PodIP { ip: pod_ip.to_string() }]),
        qos_class: Some(qos_class(pod).into()),
        start_time: Some(start),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocates_in_order_and_reuses() {
        let mut a = IpAllocator::new("10.1.2.0/30".parse().unwrap());
        // /30: .0 network, .1 gateway, .2 pod, .3 broadcast.
        assert_eq!(a.allocate("p1"), Some("10.1.2.2".parse().unwrap()));
        assert_eq!(a.allocate("p1"), Some("10.1.2.2".parse().unwrap()));
        assert_eq!(a.allocate("p2"), None);
        a.release("p1");
        assert_eq!(a.allocate("p2"), Some("10.1.2.2".parse().unwrap()));
        assert_eq!(a.len(), 1);
        let mut b = IpAllocator::new("10.1.3.0/24".parse().unwrap());
        assert!(b.reserve("old", "10.1.3.4".parse().unwrap()));
        assert!(!b.reserve("dup", "10.1.3.4".parse().unwrap()));
        let got: Vec<String> = ["a", "b", "c"].iter().map(|u| b.allocate(u).unwrap().to_string()).collect();
        assert_eq!(got, ["10.1.3.2", "10.1.3.3", "10.1.3.5"]);
    }

    #[test]
    fn running_status_shape() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "default", "uid": "u1"},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
            "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True", "lastTransitionTime": "2024-01-01T00:00:00Z"}]}
        }))
        .unwrap();
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let s = serde_json::to_value(running_status(&pod, "192.0.2.1", "10.0.0.5".parse().unwrap(), now)).unwrap();
        assert_eq!(s["phase"], "Running");
        assert_eq!(s["podIP"], "10.0.0.5");
        assert_eq!(s["hostIP"], "192.0.2.1");
        assert_eq!(s["qosClass"], "BestEffort");
        assert_eq!(s["containerStatuses"][0]["ready"], true);
        assert!(s["containerStatuses"][0]["state"]["running"]["startedAt"].is_string());
        let types: Vec<&str> = s["conditions"].as_array().unwrap().iter().map(|c| c["type"].as_str().unwrap()).collect();
        assert_eq!(types, ["Initialized", "Ready", "ContainersReady", "PodScheduled"]);
        // The scheduler's PodScheduled condition is kept as it was.
        assert_eq!(s["conditions"][3]["lastTransitionTime"], "2024-01-01T00:00:00Z");
    }
}
