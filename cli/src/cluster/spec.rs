//! What one single-box cluster is made of: names, addresses, ports and
//! paths, decided once by `rkube up` and saved as `<state-dir>/cluster.json`
//! so `status`, `logs` and `down` act on exactly what was created.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Spec {
    pub state_dir: PathBuf,
    /// Prefix of every host-visible name (bridge, namespaces, veths, node names).
    pub prefix: String,
    /// The node network's first address (a /24): host `.1`, node N `.(10+N)`.
    pub subnet: Ipv4Addr,
    pub nodes: u32,
    /// The pods' range (a /16); node N gets the /24 number N, as the
    /// controller's node IPAM (`--cluster-cidr`, mask 24) hands them out.
    pub cluster_cidr: Ipv4Addr,
    pub service_cidr: String,
    pub etcd_client_port: u16,
    pub etcd_peer_port: u16,
    pub apiserver_port: u16,
    pub apiserver_insecure_port: u16,
    pub controller_port: u16,
    pub scheduler_port: u16,
}

/// `a.b.c.0/24` → `a.b.c.0` (only /24 accepted).
pub fn parse_net(s: &str, prefix: u8) -> anyhow::Result<Ipv4Addr> {
    let (ip, len) = s.split_once('/').with_context(|| format!("{s:?}: want an address/{prefix} CIDR"))?;
    let ip: Ipv4Addr = ip.parse().with_context(|| format!("{s:?}: bad address"))?;
    if len != prefix.to_string() {
        bail!("{s:?}: only /{prefix} is supported");
    }
    let o = ip.octets();
    Ok(match prefix {
        24 => Ipv4Addr::new(o[0], o[1], o[2], 0),
        16 => Ipv4Addr::new(o[0], o[1], 0, 0),
        _ => bail!("unsupported prefix /{prefix}"),
    })
}

impl Spec {
    pub fn file(state_dir: &Path) -> PathBuf {
        state_dir.join("cluster.json")
    }

    pub fn load(state_dir: &Path) -> anyhow::Result<Option<Spec>> {
        let f = Self::file(state_dir);
        match std::fs::read(&f) {
            Ok(b) => Ok(Some(serde_json::from_slice(&b).with_context(|| format!("reading {}", f.display()))?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", f.display())),
        }
    }

    pub fn save(&self) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.state_dir)?;
        std::fs::write(Self::file(&self.state_dir), serde_json::to_vec_pretty(self)?)?;
        Ok(())
    }

    fn octet(&self, last: u8) -> Ipv4Addr {
        let o = self.subnet.octets();
        Ipv4Addr::new(o[0], o[1], o[2], last)
    }
    /// The host's address on the node network: where the apiserver listens.
    pub fn host_ip(&self) -> Ipv4Addr {
        self.octet(1)
    }
    pub fn subnet_cidr(&self) -> String {
        format!("{}/24", self.subnet)
    }
    pub fn bridge(&self) -> String {
        format!("{}0", self.prefix)
    }
    pub fn node_name(&self, n: u32) -> String {
        format!("{}-node{n}", self.prefix)
    }
    /// The node's network namespace: named like the node.
    pub fn netns(&self, n: u32) -> String {
        self.node_name(n)
    }
    /// Host end of the node's veth (inside, the other end is `eth0`).
    pub fn veth(&self, n: u32) -> String {
        format!("{}-n{n}", self.prefix)
    }
    pub fn node_ip(&self, n: u32) -> Ipv4Addr {
        self.octet(10 + n as u8)
    }
    pub fn pod_cidr(&self, n: u32) -> String {
        let o = self.cluster_cidr.octets();
        format!("{}.{}.{n}.0/24", o[0], o[1])
    }
    pub fn cluster_cidr_str(&self) -> String {
        format!("{}/16", self.cluster_cidr)
    }
    pub fn apiserver_url(&self) -> String {
        format!("https://{}:{}", self.host_ip(), self.apiserver_port)
    }
    pub fn insecure_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.apiserver_insecure_port)
    }
    pub fn etcd_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.etcd_client_port)
    }
    pub fn pki(&self) -> PathBuf {
        self.state_dir.join("pki")
    }
    pub fn admin_kubeconfig(&self) -> PathBuf {
        self.pki().join("admin.kubeconfig")
    }
    pub fn logs(&self) -> PathBuf {
        self.state_dir.join("logs")
    }
    pub fn log(&self, component: &str) -> PathBuf {
        self.logs().join(format!("{component}.log"))
    }
    pub fn run_dir(&self) -> PathBuf {
        self.state_dir.join("run")
    }
    pub fn node_dir(&self, n: u32) -> PathBuf {
        self.state_dir.join("nodes").join(format!("node{n}"))
    }
    /// The node's containerd directory (kept short: the socket lives in it).
    pub fn containerd_dir(&self, n: u32) -> PathBuf {
        self.node_dir(n).join("ctrd")
    }
    /// The node's CNI network name; containerd names its cache files in
    /// /var/lib/cni/results after it, so it is unique per cluster and node.
    pub fn cni_network(&self, n: u32) -> String {
        format!("{}-node{n}", self.prefix)
    }
    pub fn node_range(&self) -> impl Iterator<Item = u32> {
        1..=self.nodes
    }
    /// Every supervised component, in start order.
    pub fn components(&self) -> Vec<String> {
        let mut v: Vec<String> = ["etcd", "apiserver", "controller", "scheduler"].iter().map(|s| s.to_string()).collect();
        for n in self.node_range() {
            for c in ["containerd", "agent", "proxy"] {
                v.push(format!("node{n}-{c}"));
            }
        }
        v
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        if self.prefix.is_empty() || self.prefix.len() > 9 || !self.prefix.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()) {
            bail!("--name-prefix {:?}: 1 to 9 lower-case letters or digits (interface names are at most 15 bytes)", self.prefix);
        }
        if self.nodes == 0 || self.nodes > 200 {
            bail!("--nodes must be between 1 and 200");
        }
        if self.cluster_cidr.octets()[0] == self.subnet.octets()[0] && self.cluster_cidr.octets()[1] == self.subnet.octets()[1] {
            bail!("--cluster-cidr {} overlaps --subnet {}", self.cluster_cidr_str(), self.subnet_cidr());
        }
        for (what, ip) in [("--subnet", self.subnet), ("--cluster-cidr", self.cluster_cidr)] {
            if !ip.is_private() {
                bail!("{what} {ip} is not a private (RFC 1918) range: cluster addresses must stay on this machine");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> Spec {
        Spec {
            state_dir: "/s".into(),
            prefix: "rkube".into(),
            subnet: parse_net("10.200.0.0/24", 24).unwrap(),
            nodes: 2,
            cluster_cidr: parse_net("10.244.0.0/16", 16).unwrap(),
            service_cidr: "10.96.0.0/12".into(),
            etcd_client_port: 1,
            etcd_peer_port: 2,
            apiserver_port: 6443,
            apiserver_insecure_port: 3,
            controller_port: 4,
            scheduler_port: 5,
        }
    }

    fn check(got: String, expected: &str) {
        assert_eq!(got, expected);
    }

    #[test]
    fn names_and_addresses() {
        let s = spec();
        check(s.host_ip().to_string(), "10.200.0.1");
        check(s.node_ip(2).to_string(), "10.200.0.12");
        check(s.pod_cidr(1), "10.244.1.0/24");
        check(s.bridge(), "rkube0");
        check(s.netns(2), "rkube-node2");
        check(s.veth(1), "rkube-n1");
        check(s.apiserver_url(), "https://10.200.0.1:6443");
        check(s.components().join(","), "etcd,apiserver,controller,scheduler,node1-containerd,node1-agent,node1-proxy,node2-containerd,node2-agent,node2-proxy");
    }

    #[test]
    fn validation() {
        assert!(spec().validate().is_ok());
        assert!(Spec { prefix: "waytoolongprefix".into(), ..spec() }.validate().is_err());
        assert!(Spec { cluster_cidr: "10.200.0.0".parse().unwrap(), ..spec() }.validate().is_err());
        assert!(Spec { subnet: "8.8.8.0".parse().unwrap(), ..spec() }.validate().is_err());
        assert!(parse_net("10.1.2.3/24", 24).unwrap() == Ipv4Addr::new(10, 1, 2, 0));
        assert!(parse_net("10.1.2.3/20", 24).is_err());
    }
}
