//! Node IPAM (upstream `pkg/controller/nodeipam`, the range allocator):
//! every node gets its own pod subnet, `spec.podCIDR`, carved from
//! `--cluster-cidr` in blocks of `--node-cidr-mask-size` (10.244.0.0/16 in
//! /24s: 256 nodes of 254 pods). The node agent and CNI plugin give pods
//! addresses from it, so pod IPs never collide across nodes.
//!
//! The allocator is a bitmap over the blocks (upstream `cidrset`). At
//! start it marks the blocks nodes already have; a node without one gets
//! the next free block (searching on from the last allocation, as upstream
//! does, so a just-freed block is not handed out again at once); a deleted
//! node's block is freed.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use machinery::events::{EventRecorder, EventType};
use machinery::informer::{HandlerFns, Store};
use machinery::workqueue::WorkQueue;
use serde_json::json;

use crate::context::Context;
use crate::controller_utils::*;

/// A bitmap of `/mask` blocks inside `cluster`.
pub struct CidrSet {
    cluster: Ipv4Net,
    mask: u8,
    used: Vec<bool>,
    next: usize,
}

impl CidrSet {
    pub fn new(cluster: Ipv4Net, mask: u8) -> anyhow::Result<Self> {
        anyhow::ensure!(mask >= cluster.prefix_len() && mask <= 32, "--node-cidr-mask-size {mask} does not fit in --cluster-cidr {cluster}");
        anyhow::ensure!(mask - cluster.prefix_len() <= 24, "--node-cidr-mask-size {mask} gives too many blocks in {cluster}");
        let n = 1usize << (mask - cluster.prefix_len());
        Ok(CidrSet { cluster: cluster.trunc(), mask, used: vec![false; n], next: 0 })
    }

    fn block(&self, i: usize) -> Ipv4Net {
        let base = u32::from(self.cluster.network()) + ((i as u32) << (32 - self.mask as u32));
        Ipv4Net::new(Ipv4Addr::from(base), self.mask).expect("valid prefix")
    }

    fn index(&self, cidr: &Ipv4Net) -> Option<usize> {
        if cidr.prefix_len() != self.mask || !self.cluster.contains(&cidr.network()) {
            return None;
        }
        let off = u32::from(cidr.network()) - u32::from(self.cluster.network());
        Some((off >> (32 - self.mask as u32)) as usize)
    }

    /// The next free block, or None when all are taken.
    pub fn allocate(&mut self) -> Option<Ipv4Net> {
        let n = self.used.len();
        for k in 0..n {
            let i = (self.next + k) % n;
            if !self.used[i] {
                self.used[i] = true;
                self.next = (i + 1) % n;
                return Some(self.block(i));
            }
        }
        None
    }

    /// Mark an existing node's block taken. False if it is not in the range.
    pub fn occupy(&mut self, cidr: &Ipv4Net) -> bool {
        match self.index(cidr) {
            Some(i) => {
                self.used[i] = true;
                true
            }
            None => false,
        }
    }

    pub fn release(&mut self, cidr: &Ipv4Net) {
        if let Some(i) = self.index(cidr) {
            self.used[i] = false;
        }
    }
}

fn pod_cidr(node: &Node) -> Option<Ipv4Net> {
    node.spec.as_ref()?.pod_cidr.as_deref()?.parse().ok()
}

pub struct NodeIpamController {
    client: Client,
    store: Store<Node>,
    set: Arc<Mutex<CidrSet>>,
    /// Blocks handed out whose podCIDR patch the cache has not shown yet.
    /// A node update arriving in between (its status, say) must get the
    /// same block again, not a second one (upstream keeps a set of nodes
    /// in processing for the same reason).
    assigned: Arc<Mutex<HashMap<String, Ipv4Net>>>,
    pub queue: WorkQueue<String>,
    recorder: EventRecorder,
}

impl NodeIpamController {
    pub fn new(ctx: &Context) -> anyhow::Result<Arc<Self>> {
        let set = Arc::new(Mutex::new(CidrSet::new(ctx.opts.cluster_cidr, ctx.opts.node_cidr_mask_size)?));
        let inf = ctx.informers.nodes();
        let queue = ctx.queue("nodeipam");
        let (q1, q2, q3, s, store) = (queue.clone(), queue.clone(), queue.clone(), set.clone(), inf.store());
        let assigned: Arc<Mutex<HashMap<String, Ipv4Net>>> = Arc::default();
        let a = assigned.clone();
        inf.add_event_handler(
            HandlerFns::new()
                .on_add(move |n: &Arc<Node>| q1.add(name(&n.metadata).to_string()))
                .on_update(move |_, n: &Arc<Node>| {
                    if pod_cidr(n).is_none() {
                        q2.add(name(&n.metadata).to_string())
                    }
                })
                .on_delete(move |n: &Arc<Node>| {
                    let pending = a.lock().unwrap().remove(name(&n.metadata));
                    if let Some(c) = pod_cidr(n).or(pending) {
                        tracing::info!(node = name(&n.metadata), cidr = %c, "releasing pod CIDR of deleted node");
                        s.lock().unwrap().release(&c);
                        // Nodes refused for lack of a block (CIDRNotAvailable)
                        // wait in backoff: the freed block is theirs now.
                        for n in store.list().iter().filter(|n| pod_cidr(n).is_none()) {
                            q3.add(name(&n.metadata).to_string());
                        }
                    }
                }),
        );
        Ok(Arc::new(NodeIpamController { client: ctx.client.clone(), store: inf.store(), set, assigned, queue, recorder: ctx.recorder("cidrAllocator") }))
    }

    pub async fn run(self: Arc<Self>, gate: Gate) {
        // The informer has synced: mark every block already in use before
        // handing out any.
        for n in self.store.list() {
            if let Some(c) = pod_cidr(&n) {
                self.set.lock().unwrap().occupy(&c);
            }
        }
        let c = self.clone();
        run_workers("nodeipam", self.queue.clone(), 1, gate, move |key| {
            let c = c.clone();
            async move { c.sync(&key).await }
        })
        .await
    }

    pub async fn sync(&self, node_name: &str) -> anyhow::Result<()> {
        let Some(node) = self.store.get(node_name) else { return Ok(()) };
        if let Some(c) = pod_cidr(&node) {
            self.set.lock().unwrap().occupy(&c);
            if let Some(mine) = self.assigned.lock().unwrap().remove(node_name).filter(|m| *m != c) {
                self.set.lock().unwrap().release(&mine);
            }
            return Ok(());
        }
        let pending = self.assigned.lock().unwrap().get(node_name).copied();
        let cidr = match pending {
            Some(c) => c,
            None => {
                let Some(c) = self.set.lock().unwrap().allocate() else {
                    self.recorder.event(node.as_ref(), EventType::Normal, "CIDRNotAvailable", &format!("Node {node_name} status is now: CIDRNotAvailable"));
                    anyhow::bail!("no pod CIDR left in the cluster CIDR for node {node_name}");
                };
                self.assigned.lock().unwrap().insert(node_name.to_string(), c);
                c
            }
        };
        let api: Api<Node> = Api::all(self.client.clone());
        let patch = json!({"spec": {"podCIDR": cidr.to_string(), "podCIDRs": [cidr.to_string()]}});
        match api.patch(node_name, &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(_) => {
                if pending.is_none() {
                    tracing::info!(node = node_name, cidr = %cidr, "allocated pod CIDR");
                }
                Ok(())
            }
            Err(e) if is_not_found(&e) => {
                self.assigned.lock().unwrap().remove(node_name);
                self.set.lock().unwrap().release(&cidr);
                Ok(())
            }
            // Kept as assigned: the retry sends the same block.
            Err(e) => Err(e).context("setting podCIDR"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Script of `alloc`, `occupy CIDR`, `release CIDR`; the allocations
    /// (or "none") in order.
    fn check(cluster: &str, mask: u8, script: &[&str], expect: &[&str]) {
        let mut s = CidrSet::new(cluster.parse().unwrap(), mask).unwrap();
        let mut got = Vec::new();
        for line in script {
            let (op, arg) = line.split_once(' ').unwrap_or((line, ""));
            match op {
                "alloc" => got.push(s.allocate().map(|c| c.to_string()).unwrap_or_else(|| "none".into())),
                "occupy" => assert!(s.occupy(&arg.parse().unwrap())),
                "release" => s.release(&arg.parse().unwrap()),
                _ => panic!("{op}"),
            }
        }
        assert_eq!(got, expect);
    }

    #[test]
    fn allocation() {
        check("10.244.0.0/16", 24, &["alloc", "alloc"], &["10.244.0.0/24", "10.244.1.0/24"]);
        check("10.244.0.0/16", 24, &["occupy 10.244.0.0/24", "alloc"], &["10.244.1.0/24"]);
        // A freed block is reused only after the others.
        check("10.0.0.0/30", 31, &["alloc", "alloc", "alloc", "release 10.0.0.0/31", "alloc"], &["10.0.0.0/31", "10.0.0.2/31", "none", "10.0.0.0/31"]);
        check("10.0.0.0/24", 26, &["alloc", "alloc", "release 10.0.0.0/26", "alloc", "alloc", "alloc"], &["10.0.0.0/26", "10.0.0.64/26", "10.0.0.128/26", "10.0.0.192/26", "10.0.0.0/26"]);
        assert!(CidrSet::new("10.0.0.0/24".parse().unwrap(), 16).is_err());
    }
}
