//! The pod network, as CNI configuration plus a few node-wide rules.
//!
//! Kubernetes leaves pod networking to CNI plugins called by the runtime: for
//! each sandbox, containerd creates a network namespace and runs the plugins
//! of the first conflist in its `conf_dir`. A single node needs no overlay.
//! The set-up is kubenet's, the network plugin kubelet itself shipped:
//!
//! * `bridge` — a Linux bridge on the host, one veth per pod. `isGateway`
//!   gives the bridge the subnet's first address so it is each pod's default
//!   gateway; `hairpinMode` lets a pod reach itself through a Service IP
//!   (kube-proxy's DNAT sends the packet back out the same port).
//!   `hairpinMode` and `promiscMode` must not both be set.
//! * `host-local` IPAM — hands out addresses from the node's `podCIDR`
//!   (`Node.spec.podCIDR`), recording leases as files in `dataDir`.
//! * `portmap` — `hostPort` support.
//!
//! containerd adds the `loopback` plugin by itself.
//!
//! What the plugins could do per pod is done once per node instead
//! ([`BridgeNetwork::install_node_rules`]): accepting the bridge's traffic in
//! FORWARD (so pods work on a host whose FORWARD policy is DROP) and
//! masquerading what pods send outside `non_masquerade_cidr` (kubelet's
//! former `--non-masquerade-cidr`). The bridge plugin's `ipMasq` and the
//! `firewall` plugin would add and remove rules for every pod: about fourteen
//! `iptables` runs per sandbox, a quarter of the runtime's CPU per pod here
//! (docs/benchmarks.md, "Agent"). Two chains per node cover every pod.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use base64::Engine;
use ipnet::Ipv4Net;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

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
    /// Masquerade (SNAT to the node's address) what pods send to
    /// destinations outside this range; `None` masquerades nothing. By
    /// default the node's own podCIDR (one node, no other pods to reach; what
    /// the bridge plugin's `ipMasq` does); `rkube up` sets the cluster CIDR,
    /// so pods on other nodes see each other's real addresses.
    pub non_masquerade_cidr: Option<Ipv4Net>,
}

impl BridgeNetwork {
    pub fn new(name: &str, bridge: &str, subnet: Ipv4Net, data_dir: impl Into<PathBuf>) -> Result<Self> {
        if bridge.is_empty() || bridge.len() > 15 || bridge.contains(['/', ' ']) {
            bail!("invalid bridge name {bridge:?}: 1..=15 bytes, no '/' or space");
        }
        if subnet.prefix_len() > 30 {
            bail!("pod CIDR {subnet} too small: needs a gateway and at least one pod address");
        }
        let subnet = subnet.trunc();
        Ok(Self { name: name.into(), bridge: bridge.into(), subnet, data_dir: data_dir.into(), non_masquerade_cidr: Some(subnet) })
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
                    // Masquerading is one node-wide rule (install_node_rules).
                    "ipMasq": false,
                    "hairpinMode": true,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{ "subnet": self.subnet.to_string() }]],
                        "routes": [{ "dst": "0.0.0.0/0" }],
                        "dataDir": self.data_dir,
                    }
                },
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

/// Where the node-wide rules live, and in which network namespace.
impl BridgeNetwork {
    /// The filter chain accepting the bridge's traffic and the nat chain
    /// masquerading it: `RKUBE-PODS-<8 hex>` and `RKUBE-MASQ-<8 hex>`, from
    /// the network's name (iptables allows 28 characters).
    pub fn chains(&self) -> (String, String) {
        let sum = Sha256::digest(self.name.as_bytes());
        let tag: String = sum[..4].iter().map(|b| format!("{b:02x}")).collect();
        (format!("RKUBE-PODS-{tag}"), format!("RKUBE-MASQ-{tag}"))
    }

    fn comment(&self) -> String {
        format!("rkube pod network {}", self.name)
    }

    /// The `iptables` runs (arguments after `iptables -w`) that set the rules
    /// up. Each chain is created (an error if it exists is ignored), flushed
    /// and filled, so a re-run converges; the jumps from FORWARD and
    /// POSTROUTING are added when `-C` does not find them.
    pub fn node_rules(&self) -> Vec<Vec<String>> {
        let (pods, masq) = self.chains();
        let comment = self.comment();
        let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let mut runs = vec![
            v(&["-t", "filter", "-N", &pods]),
            v(&["-t", "filter", "-F", &pods]),
            v(&["-t", "filter", "-A", &pods, "-i", &self.bridge, "-j", "ACCEPT"]),
            v(&["-t", "filter", "-A", &pods, "-o", &self.bridge, "-j", "ACCEPT"]),
            v(&["-t", "filter", "-I", "FORWARD", "-m", "comment", "--comment", &comment, "-j", &pods]),
        ];
        if let Some(keep) = self.non_masquerade_cidr {
            let (subnet, keep) = (self.subnet.to_string(), keep.to_string());
            runs.extend([
                v(&["-t", "nat", "-N", &masq]),
                v(&["-t", "nat", "-F", &masq]),
                v(&["-t", "nat", "-A", &masq, "-d", &keep, "-j", "RETURN"]),
                // Multicast stays as it is (the bridge plugin's ipMasq does the same).
                v(&["-t", "nat", "-A", &masq, "-d", "224.0.0.0/4", "-j", "RETURN"]),
                v(&["-t", "nat", "-A", &masq, "-j", "MASQUERADE"]),
                v(&["-t", "nat", "-I", "POSTROUTING", "-s", &subnet, "-m", "comment", "--comment", &comment, "-j", &masq]),
            ]);
        }
        runs
    }

    /// Sets up the node-wide rules (see the module docs), in the network
    /// namespace `netns` (a name under /run/netns) or the caller's own.
    pub fn install_node_rules(&self, netns: Option<&str>) -> Result<()> {
        for args in self.node_rules() {
            let (table, op) = (&args[1], args[2].as_str());
            match op {
                // An existing chain (left by an earlier run) is flushed next.
                "-N" => {
                    let _ = iptables(netns, &args);
                }
                // Add a jump only once.
                "-I" => {
                    let mut check = args.clone();
                    check[2] = "-C".into();
                    if iptables(netns, &check).is_err() {
                        iptables(netns, &args).with_context(|| format!("adding the {table} jump to {}", args[3]))?;
                    }
                }
                _ => iptables(netns, &args)?,
            }
        }
        Ok(())
    }

    /// Removes the node-wide rules; what is already gone is no error.
    /// Returns what could not be removed.
    pub fn remove_node_rules(&self, netns: Option<&str>) -> Vec<String> {
        let mut errors = Vec::new();
        for args in self.node_rules().into_iter().filter(|a| a[2] == "-I") {
            let mut del = args.clone();
            del[2] = "-D".into();
            // Delete every copy of the jump (a crashed run may have left one).
            for _ in 0..16 {
                if iptables(netns, &del).is_err() {
                    break;
                }
            }
        }
        let (pods, masq) = self.chains();
        for (table, chain) in [("filter", pods), ("nat", masq)] {
            let exists = iptables(netns, &["-t".into(), table.into(), "-S".into(), chain.clone()]).is_ok();
            if !exists {
                continue;
            }
            for op in ["-F", "-X"] {
                if let Err(e) = iptables(netns, &["-t".into(), table.into(), op.into(), chain.clone()]) {
                    errors.push(format!("{e:#}"));
                    break;
                }
            }
        }
        errors
    }
}

/// Runs `iptables -w ARGS`, in `netns` if given (`ip netns exec`).
fn iptables(netns: Option<&str>, args: &[String]) -> Result<()> {
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, "iptables"]);
            c
        }
        None => Command::new("iptables"),
    };
    let out = cmd.arg("-w").args(args).stdin(Stdio::null()).output().context("running iptables (install iptables)")?;
    if !out.status.success() {
        bail!("iptables {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
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
        assert_eq!(types, ["bridge", "portmap"]);
        assert_eq!(list["plugins"][0]["ipMasq"], false, "masquerading is a node-wide rule");
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

    fn check_rules(non_masquerade_cidr: Option<&str>, expected: &[&str]) {
        let mut net = BridgeNetwork::new("rkube-n1", "cni0", "10.244.1.0/24".parse().unwrap(), "/d").unwrap();
        net.non_masquerade_cidr = non_masquerade_cidr.map(|c| c.parse().unwrap());
        let (pods, masq) = net.chains();
        let got: Vec<String> = net.node_rules().iter().map(|a| a.join(" ").replace(&pods, "PODS").replace(&masq, "MASQ")).collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn node_rules() {
        let filter = [
            "-t filter -N PODS",
            "-t filter -F PODS",
            "-t filter -A PODS -i cni0 -j ACCEPT",
            "-t filter -A PODS -o cni0 -j ACCEPT",
            "-t filter -I FORWARD -m comment --comment rkube pod network rkube-n1 -j PODS",
        ];
        let nat = |keep: &str| {
            [
                "-t nat -N MASQ".to_string(),
                "-t nat -F MASQ".into(),
                format!("-t nat -A MASQ -d {keep} -j RETURN"),
                "-t nat -A MASQ -d 224.0.0.0/4 -j RETURN".into(),
                "-t nat -A MASQ -j MASQUERADE".into(),
                "-t nat -I POSTROUTING -s 10.244.1.0/24 -m comment --comment rkube pod network rkube-n1 -j MASQ".into(),
            ]
        };
        // By default: everything leaving the node's own podCIDR is masqueraded.
        let default: Vec<String> = filter.iter().map(|s| s.to_string()).chain(nat("10.244.1.0/24")).collect();
        let net = BridgeNetwork::new("rkube-n1", "cni0", "10.244.1.0/24".parse().unwrap(), "/d").unwrap();
        assert_eq!(net.non_masquerade_cidr, Some("10.244.1.0/24".parse().unwrap()));
        check_rules(Some("10.244.1.0/24"), &default.iter().map(String::as_str).collect::<Vec<_>>());
        // A cluster: pod to pod keeps its addresses.
        let cluster: Vec<String> = filter.iter().map(|s| s.to_string()).chain(nat("10.244.0.0/16")).collect();
        check_rules(Some("10.244.0.0/16"), &cluster.iter().map(String::as_str).collect::<Vec<_>>());
        check_rules(None, &filter);
        // Chain names fit iptables' 28 characters and differ per network.
        let (p, m) = net.chains();
        assert!(p.starts_with("RKUBE-PODS-") && m.starts_with("RKUBE-MASQ-") && p.len() <= 28 && m.len() <= 28, "{p} {m}");
        let other = BridgeNetwork::new("rkube-n2", "cni0", "10.244.1.0/24".parse().unwrap(), "/d").unwrap();
        assert_ne!(other.chains(), net.chains());
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
        assert_eq!(conf, json!({ "type": "portmap", "capabilities": { "portMappings": true }, "name": "rk", "cniVersion": CNI_VERSION, "prevResult": prev }));
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
