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
    /// Set by `rkube up --ha`: the high-availability control plane's ports
    /// (absent from older cluster.json files: a single control plane).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ha: Option<HaPorts>,
}

/// Ports of the HA control plane (`rkube up --ha`, see [`super::ha`]):
/// 3 etcd members, 3 apiservers, HAProxy, 2 controllers, 2 schedulers.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Default)]
pub struct HaPorts {
    /// (client, peer) of each etcd member, on 127.0.0.1.
    pub etcd: Vec<(u16, u16)>,
    /// Each apiserver's insecure port on 127.0.0.1 (health checks, `rkube status`).
    pub apiserver_insecure: Vec<u16>,
    pub controller: Vec<u16>,
    pub scheduler: Vec<u16>,
    /// HAProxy's own health endpoint (`monitor-uri`) on 127.0.0.1.
    pub haproxy_monitor: u16,
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

/// `a.b.c.d/len` → its first and last address.
pub fn cidr_bounds(s: &str) -> anyhow::Result<(Ipv4Addr, Ipv4Addr)> {
    let (ip, len) = s.split_once('/').context("want an address/prefix CIDR")?;
    let ip: Ipv4Addr = ip.parse().context("bad address")?;
    let len: u32 = len.parse().ok().filter(|l| *l <= 32).context("bad prefix length")?;
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    let first = u32::from(ip) & mask;
    Ok((first.into(), (first | !mask).into()))
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
    /// The address every client uses: the apiserver's, or with `--ha`
    /// HAProxy's, in front of the apiservers.
    pub fn apiserver_url(&self) -> String {
        format!("https://{}:{}", self.host_ip(), self.apiserver_port)
    }
    /// With `--ha`, apiserver `i` (1..=3) listens on, and advertises, its own
    /// address on the node network: `.(1+i)` (the host keeps `.1`, HAProxy's).
    pub fn apiserver_ip(&self, i: u32) -> Ipv4Addr {
        self.octet(1 + i as u8)
    }
    /// The apiservers' own addresses (the host address without `--ha`).
    pub fn apiserver_ips(&self) -> Vec<Ipv4Addr> {
        match &self.ha {
            Some(h) => (1..=h.apiserver_insecure.len() as u32).map(|i| self.apiserver_ip(i)).collect(),
            None => vec![self.host_ip()],
        }
    }
    /// Every etcd member's client URL, for `--etcd-servers`.
    pub fn etcd_urls(&self) -> Vec<String> {
        match &self.ha {
            Some(h) => h.etcd.iter().map(|(c, _)| format!("http://127.0.0.1:{c}")).collect(),
            None => vec![self.etcd_url()],
        }
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
    /// The control-plane components, in start order.
    pub fn control_plane(&self) -> Vec<String> {
        match &self.ha {
            None => ["etcd", "apiserver", "controller", "scheduler"].iter().map(|s| s.to_string()).collect(),
            Some(h) => {
                let mut v = Vec::new();
                v.extend((1..=h.etcd.len()).map(|i| format!("etcd-{i}")));
                v.extend((1..=h.apiserver_insecure.len()).map(|i| format!("apiserver-{i}")));
                v.push("haproxy".to_string());
                v.extend((1..=h.controller.len()).map(|i| format!("controller-{i}")));
                v.extend((1..=h.scheduler.len()).map(|i| format!("scheduler-{i}")));
                v
            }
        }
    }

    /// Where a control-plane component answers its health check (plain
    /// HTTP on 127.0.0.1): (address, path).
    pub fn health_endpoint(&self, component: &str) -> Option<(String, &'static str)> {
        let local = |p: u16| format!("127.0.0.1:{p}");
        let (kind, idx) = match component.rsplit_once('-') {
            Some((k, i)) if i.parse::<usize>().is_ok() => (k, i.parse::<usize>().unwrap()),
            _ => (component, 0),
        };
        match (&self.ha, kind, idx) {
            (None, "etcd", 0) => Some((local(self.etcd_client_port), "/health")),
            (None, "apiserver", 0) => Some((local(self.apiserver_insecure_port), "/healthz")),
            (None, "controller", 0) => Some((local(self.controller_port), "/healthz")),
            (None, "scheduler", 0) => Some((local(self.scheduler_port), "/healthz")),
            (Some(h), "etcd", i) if i >= 1 => h.etcd.get(i - 1).map(|(c, _)| (local(*c), "/health")),
            (Some(h), "apiserver", i) if i >= 1 => h.apiserver_insecure.get(i - 1).map(|p| (local(*p), "/readyz")),
            (Some(h), "haproxy", 0) => Some((local(h.haproxy_monitor), "/healthz")),
            (Some(h), "controller", i) if i >= 1 => h.controller.get(i - 1).map(|p| (local(*p), "/healthz")),
            (Some(h), "scheduler", i) if i >= 1 => h.scheduler.get(i - 1).map(|p| (local(*p), "/healthz")),
            _ => None,
        }
    }

    /// Every supervised component, in start order.
    pub fn components(&self) -> Vec<String> {
        let mut v = self.control_plane();
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
        // ClusterIPs are dialled from pods and nodes: a public range would
        // shadow real addresses, and a packet no proxy rule matched could
        // leave for the Internet. Both ends must be private (RFC 1918 blocks
        // are aligned, so first and last private means the whole range is).
        let (first, last) = cidr_bounds(&self.service_cidr).with_context(|| format!("--service-cluster-ip-range {:?}", self.service_cidr))?;
        if !first.is_private() || !last.is_private() {
            bail!("--service-cluster-ip-range {} is not inside a private (RFC 1918) range: cluster addresses must stay on this machine", self.service_cidr);
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
            ha: None,
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
    fn ha_shape() {
        let s = Spec {
            ha: Some(HaPorts {
                etcd: vec![(11, 12), (13, 14), (15, 16)],
                apiserver_insecure: vec![21, 22, 23],
                controller: vec![31, 32],
                scheduler: vec![41, 42],
                haproxy_monitor: 50,
            }),
            nodes: 1,
            ..spec()
        };
        check(s.components().join(","), "etcd-1,etcd-2,etcd-3,apiserver-1,apiserver-2,apiserver-3,haproxy,controller-1,controller-2,scheduler-1,scheduler-2,node1-containerd,node1-agent,node1-proxy");
        check(s.etcd_urls().join(","), "http://127.0.0.1:11,http://127.0.0.1:13,http://127.0.0.1:15");
        check(format!("{:?}", s.apiserver_ips()), "[10.200.0.2, 10.200.0.3, 10.200.0.4]");
        // Clients keep one address: HAProxy's, on the host's.
        check(s.apiserver_url(), "https://10.200.0.1:6443");
        check(format!("{:?}", s.health_endpoint("apiserver-2")), "Some((\"127.0.0.1:22\", \"/readyz\"))");
        check(format!("{:?}", s.health_endpoint("haproxy")), "Some((\"127.0.0.1:50\", \"/healthz\"))");
        check(format!("{:?}", s.health_endpoint("scheduler-2")), "Some((\"127.0.0.1:42\", \"/healthz\"))");
        check(format!("{:?}", s.health_endpoint("scheduler-3")), "None");
        check(format!("{:?}", spec().health_endpoint("scheduler")), "Some((\"127.0.0.1:5\", \"/healthz\"))");
        // A cluster.json written before --ha existed still loads.
        let mut old = serde_json::to_value(spec()).unwrap();
        old.as_object_mut().unwrap().remove("ha");
        assert_eq!(serde_json::from_value::<Spec>(old).unwrap(), spec());
    }

    #[test]
    fn validation() {
        assert!(spec().validate().is_ok());
        assert!(Spec { prefix: "waytoolongprefix".into(), ..spec() }.validate().is_err());
        assert!(Spec { cluster_cidr: "10.200.0.0".parse().unwrap(), ..spec() }.validate().is_err());
        assert!(Spec { subnet: "8.8.8.0".parse().unwrap(), ..spec() }.validate().is_err());
        // The service range must be private from end to end.
        assert!(Spec { service_cidr: "172.20.0.0/16".into(), ..spec() }.validate().is_ok());
        let err = Spec { service_cidr: "100.64.0.0/12".into(), ..spec() }.validate().unwrap_err();
        assert!(err.to_string().contains("not inside a private"), "{err}");
        assert!(Spec { service_cidr: "8.8.0.0/16".into(), ..spec() }.validate().is_err());
        // Starts private (10.0.0.0) but /7 runs on into public 11.x.
        assert!(Spec { service_cidr: "10.0.0.0/7".into(), ..spec() }.validate().is_err());
        assert!(Spec { service_cidr: "10.96.0.0".into(), ..spec() }.validate().is_err());
        assert_eq!(cidr_bounds("10.96.0.0/12").unwrap(), (Ipv4Addr::new(10, 96, 0, 0), Ipv4Addr::new(10, 111, 255, 255)));
        assert!(parse_net("10.1.2.3/24", 24).unwrap() == Ipv4Addr::new(10, 1, 2, 0));
        assert!(parse_net("10.1.2.3/20", 24).is_err());
    }
}
