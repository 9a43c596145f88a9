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

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use base64::Engine;
use ipnet::Ipv4Net;
use serde::Deserialize;
use serde_json::{json, Value};

/// The CNI spec version the conflist declares; the Debian plugins (1.1) and
/// containerd 1.6's libcni both speak it.
pub const CNI_VERSION: &str = "1.0.0";

/// Where Debian's `containernetworking-plugins` installs the plugins.
pub const DEBIAN_CNI_BIN_DIR: &str = "/usr/lib/cni";

/// Where libcni (inside containerd 1.6) caches each attachment's config and
/// result, as `<network name>-<container id>-<ifname>`, so DEL can be replayed.
pub const CNI_CACHE_DIR: &str = "/var/lib/cni/results";

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
    /// The bridge plugin's `ipMasq`: SNAT everything a pod sends outside its
    /// own subnet, pods on other nodes included. True by default (one node,
    /// no other pods to reach); `rkube up` turns it off and masquerades only
    /// what leaves the cluster CIDR, so pods see each other's real addresses.
    pub ip_masq: bool,
}

impl BridgeNetwork {
    pub fn new(name: &str, bridge: &str, subnet: Ipv4Net, data_dir: impl Into<PathBuf>) -> Result<Self> {
        if bridge.is_empty() || bridge.len() > 15 || bridge.contains(['/', ' ']) {
            bail!("invalid bridge name {bridge:?}: 1..=15 bytes, no '/' or space");
        }
        if subnet.prefix_len() > 30 {
            bail!("pod CIDR {subnet} too small: needs a gateway and at least one pod address");
        }
        Ok(Self { name: name.into(), bridge: bridge.into(), subnet: subnet.trunc(), data_dir: data_dir.into(), ip_masq: true })
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
                    "ipMasq": self.ip_masq,
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

/// libcni's cache record for one attachment.
#[derive(Debug, Deserialize)]
struct CachedAttachment {
    #[serde(rename = "containerId")]
    container_id: String,
    /// The conflist bytes, base64 (Go's `[]byte` in JSON).
    config: String,
    #[serde(rename = "ifName")]
    if_name: String,
    #[serde(rename = "cniArgs", default)]
    cni_args: Vec<[String; 2]>,
    #[serde(default)]
    result: Option<Value>,
}

/// The stdin of one plugin invocation within a conflist, as libcni builds it:
/// the plugin's own object plus the list's `name` and `cniVersion`, and the
/// attachment's cached result as `prevResult`.
pub fn plugin_stdin(conflist: &Value, plugin: &Value, prev_result: Option<&Value>) -> Value {
    let mut conf = plugin.clone();
    conf["name"] = conflist["name"].clone();
    conf["cniVersion"] = conflist["cniVersion"].clone();
    if let Some(prev) = prev_result {
        conf["prevResult"] = prev.clone();
    }
    conf
}

/// Replays CNI DEL for an attachment found in libcni's cache (what containerd
/// does on StopPodSandbox): every plugin of the cached conflist, in reverse
/// order. Used when containerd can no longer do it (it crashed). `netns` is
/// the pod's network namespace if it still exists: the bridge plugin needs it
/// to find the pod's addresses and remove its masquerade rules.
/// Removes the cache file on success.
pub fn del_cached_attachment(cache_file: &Path, bin_dir: &Path, netns: Option<&Path>) -> Result<()> {
    let text = std::fs::read_to_string(cache_file).with_context(|| format!("reading {}", cache_file.display()))?;
    let cached: CachedAttachment = serde_json::from_str(&text).with_context(|| format!("parsing {}", cache_file.display()))?;
    let conflist_bytes = base64::engine::general_purpose::STANDARD.decode(&cached.config).context("cached config is not base64")?;
    let conflist: Value = serde_json::from_slice(&conflist_bytes).context("cached config is not JSON")?;
    let plugins = conflist["plugins"].as_array().cloned().unwrap_or_default();
    let args = cached.cni_args.iter().map(|[k, v]| format!("{k}={v}")).collect::<Vec<_>>().join(";");
    for plugin in plugins.iter().rev() {
        let Some(kind) = plugin["type"].as_str() else { bail!("plugin without type in {}", cache_file.display()) };
        let stdin = serde_json::to_vec(&plugin_stdin(&conflist, plugin, cached.result.as_ref()))?;
        let mut child = Command::new(bin_dir.join(kind))
            .env("CNI_COMMAND", "DEL")
            .env("CNI_CONTAINERID", &cached.container_id)
            .env("CNI_NETNS", netns.map(|p| p.as_os_str()).unwrap_or_default())
            .env("CNI_IFNAME", &cached.if_name)
            .env("CNI_ARGS", &args)
            .env("CNI_PATH", bin_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("running CNI plugin {kind}"))?;
        child.stdin.take().expect("piped").write_all(&stdin)?;
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "CNI DEL {kind} for {}: {}{}",
                cached.container_id,
                String::from_utf8_lossy(&out.stdout).trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
    }
    std::fs::remove_file(cache_file)?;
    Ok(())
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
    fn ip_masq_can_be_turned_off() {
        let mut net = BridgeNetwork::new("n", "cni0", "10.0.1.0/24".parse().unwrap(), "/d").unwrap();
        assert_eq!(net.conflist()["plugins"][0]["ipMasq"], true);
        net.ip_masq = false;
        assert_eq!(net.conflist()["plugins"][0]["ipMasq"], false);
    }

    #[test]
    fn rejects_bad_input() {
        assert!(BridgeNetwork::new("n", "a-very-long-bridge", "10.0.0.0/24".parse().unwrap(), "/d").is_err());
        assert!(BridgeNetwork::new("n", "", "10.0.0.0/24".parse().unwrap(), "/d").is_err());
        assert!(BridgeNetwork::new("n", "br", "10.0.0.0/31".parse().unwrap(), "/d").is_err());
    }

    #[test]
    fn plugin_stdin_like_libcni() {
        let net = BridgeNetwork::new("rk", "rkbr0", "10.1.0.0/24".parse().unwrap(), "/d").unwrap();
        let list = net.conflist();
        let prev = json!({ "cniVersion": CNI_VERSION, "ips": [{ "address": "10.1.0.2/24" }] });
        let conf = plugin_stdin(&list, &list["plugins"][1], Some(&prev));
        assert_eq!(conf, json!({ "type": "firewall", "name": "rk", "cniVersion": CNI_VERSION, "prevResult": prev }));
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
