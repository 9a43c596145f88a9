//! The pod network, as CNI configuration.
//!
//! Kubernetes leaves pod networking to CNI plugins called by the runtime: for
//! each sandbox, containerd creates a network namespace and runs the plugins
//! of the first conflist in its `conf_dir`. A single node needs no overlay:
//!
//! * `bridge` — a Linux bridge on the host, one veth per pod. `isGateway`
//!   gives the bridge the subnet's first address so it is each pod's default
//!   gateway; `ipMasq` SNATs pod traffic leaving the subnet (pod addresses
//!   never leave the machine); `hairpinMode` lets a pod reach itself through
//!   a Service IP (kube-proxy's DNAT sends the packet back out the same port).
//!   `hairpinMode` and `promiscMode` must not both be set.
//! * `host-local` IPAM — hands out addresses from the node's `podCIDR`
//!   (`Node.spec.podCIDR`), recording leases as files in `dataDir`.
//! * `firewall` — accepts the pod's traffic in FORWARD, so pods work even on a
//!   host whose FORWARD policy is DROP.
//! * `portmap` — `hostPort` support.
//!
//! containerd adds the `loopback` plugin by itself.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use ipnet::Ipv4Net;
use serde_json::{json, Value};

/// The CNI spec version the conflist declares; the Debian plugins (1.1) and
/// containerd 1.6's libcni both speak it.
pub const CNI_VERSION: &str = "1.0.0";

/// Where Debian's `containernetworking-plugins` installs the plugins.
pub const DEBIAN_CNI_BIN_DIR: &str = "/usr/lib/cni";

/// One node's bridge network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BridgeNetwork {
    /// CNI network name (also names containerd's cache files under /var/lib/cni/results).
    pub name: String,
    /// Host bridge interface name (at most 15 bytes, the kernel's IFNAMSIZ-1).
    pub bridge: String,
    /// The node's podCIDR.
    pub subnet: Ipv4Net,
    /// host-local's lease directory (private, so instances never share leases).
    pub data_dir: PathBuf,
}

impl BridgeNetwork {
    pub fn new(name: &str, bridge: &str, subnet: Ipv4Net, data_dir: impl Into<PathBuf>) -> Result<Self> {
        if bridge.is_empty() || bridge.len() > 15 || bridge.contains(['/', ' ']) {
            bail!("invalid bridge name {bridge:?}: 1..=15 bytes, no '/' or space");
        }
        if subnet.prefix_len() > 30 {
            bail!("pod CIDR {subnet} too small: needs a gateway and at least one pod address");
        }
        Ok(Self { name: name.into(), bridge: bridge.into(), subnet: subnet.trunc(), data_dir: data_dir.into() })
    }

    /// The bridge's own address: the first host address, as host-local picks it.
    pub fn gateway(&self) -> std::net::Ipv4Addr {
        self.subnet.hosts().next().expect("prefix <= 30 has hosts")
    }

    /// The conflist JSON.
    pub fn conflist(&self) -> Value {
        json!({
            "cniVersion": CNI_VERSION,
            "name": self.name,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": self.bridge,
                    "isGateway": true,
                    "ipMasq": true,
                    "hairpinMode": true,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{ "subnet": self.subnet.to_string() }]],
                        "routes": [{ "dst": "0.0.0.0/0" }],
                        "dataDir": self.data_dir,
                    }
                },
                { "type": "firewall" },
                { "type": "portmap", "capabilities": { "portMappings": true } }
            ]
        })
    }

    /// Writes the conflist into `conf_dir` as `10-<name>.conflist` and returns its path.
    pub fn write(&self, conf_dir: &Path) -> Result<PathBuf> {
        std::fs::create_dir_all(conf_dir).with_context(|| format!("creating {}", conf_dir.display()))?;
        let path = conf_dir.join(format!("10-{}.conflist", self.name));
        let text = serde_json::to_string_pretty(&self.conflist())?;
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(subnet: &str, expected_subnet: &str, expected_gateway: &str) {
        let net = BridgeNetwork::new("rk", "rkbr0", subnet.parse().unwrap(), "/d").unwrap();
        let list = net.conflist();
        assert_eq!(list["cniVersion"], CNI_VERSION);
        assert_eq!(list["name"], "rk");
        let types: Vec<&str> = list["plugins"].as_array().unwrap().iter().map(|p| p["type"].as_str().unwrap()).collect();
        assert_eq!(types, ["bridge", "firewall", "portmap"]);
        let bridge = &list["plugins"][0];
        assert_eq!(bridge["bridge"], "rkbr0");
        assert_eq!(bridge["hairpinMode"], true);
        assert!(bridge.get("promiscMode").is_none(), "hairpinMode and promiscMode must not be set together");
        assert_eq!(bridge["ipam"]["type"], "host-local");
        assert_eq!(bridge["ipam"]["ranges"][0][0]["subnet"], expected_subnet);
        assert_eq!(bridge["ipam"]["dataDir"], "/d");
        assert_eq!(net.gateway().to_string(), expected_gateway);
    }

    #[test]
    fn conflist_for_pod_cidr() {
        check("10.244.1.0/24", "10.244.1.0/24", "10.244.1.1");
        // A host address inside the CIDR is normalised to the network.
        check("10.244.2.77/24", "10.244.2.0/24", "10.244.2.1");
        check("10.128.0.0/16", "10.128.0.0/16", "10.128.0.1");
    }

    #[test]
    fn rejects_bad_input() {
        assert!(BridgeNetwork::new("n", "a-very-long-bridge", "10.0.0.0/24".parse().unwrap(), "/d").is_err());
        assert!(BridgeNetwork::new("n", "", "10.0.0.0/24".parse().unwrap(), "/d").is_err());
        assert!(BridgeNetwork::new("n", "br", "10.0.0.0/31".parse().unwrap(), "/d").is_err());
    }

    #[test]
    fn write_creates_conflist_file() {
        let dir = tempfile::tempdir().unwrap();
        let net = BridgeNetwork::new("rkube-x", "rkbr1", "10.9.9.0/24".parse().unwrap(), dir.path().join("ipam")).unwrap();
        let path = net.write(&dir.path().join("net.d")).unwrap();
        assert_eq!(path.file_name().unwrap(), "10-rkube-x.conflist");
        let back: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        assert_eq!(back, net.conflist());
    }
}
