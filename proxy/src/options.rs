//! Command-line flags, named as kube-proxy names them
//! (`cmd/kube-proxy/app/server.go`). Durations are Go duration strings
//! (`1s`, `500ms`, `1m30s`) as upstream takes them.
//!
//! Only the iptables mode exists here; `--proxy-mode` is accepted so that
//! command lines written for kube-proxy work, and anything but `iptables`
//! (or empty, upstream's "default mode") is refused with a clear error.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{ArgAction, Parser};
use ipnet::Ipv4Net;

use crate::proxier::ProxierConfig;
use crate::rules::RulesConfig;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "rkube-proxy",
    version,
    about = "The service proxy (kube-proxy, iptables mode): makes Service cluster IPs and NodePorts work on this node."
)]
pub struct Options {
    /// Path to a kubeconfig file with the apiserver's address and credentials.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,

    /// The address of the apiserver (overrides the kubeconfig's server).
    #[arg(long)]
    pub master: Option<String>,

    /// The name of this node (default: the host name, lower-cased). Its Node
    /// object gives the addresses for `--nodeport-addresses primary`.
    #[arg(long)]
    pub hostname_override: Option<String>,

    /// Which iptables build to drive: `system` (whatever `iptables-restore`
    /// is, as kube-proxy does), `nft` or `legacy`. Not a kube-proxy flag:
    /// upstream's image chooses with its iptables-wrapper script instead.
    #[arg(long, default_value = "system")]
    pub iptables_backend: crate::iptables::Backend,

    /// Which proxy mode to use. Only `iptables` is implemented.
    #[arg(long, default_value = "iptables")]
    pub proxy_mode: String,

    /// The pods' CIDR. Traffic to a cluster IP from outside it is
    /// masqueraded, so the replies come back through this node.
    #[arg(long)]
    pub cluster_cidr: Option<String>,

    /// The Service cluster IP range (the apiserver's flag of the same name).
    /// When set, the range is routed to a local port-less device
    /// (`rkube-svc0`), so that connections to cluster IPs from this node have
    /// a route and a packet to a cluster IP that no rule matched dies here
    /// instead of leaving through the default route. Not a kube-proxy flag:
    /// upstream's iptables mode relies on the node's routing for this. Off
    /// unless given, because the proxy cannot know the range and a guessed
    /// one could capture a real network; give it on any node with a default
    /// route (`rkube up` does).
    #[arg(long)]
    pub service_cluster_ip_range: Option<Ipv4Net>,

    /// Which addresses accept NodePort traffic: comma-separated CIDRs
    /// (`10.0.0.0/8,127.0.0.0/8`) matched against this node's addresses,
    /// or `primary` for the node's InternalIP. Empty (default): all local
    /// addresses.
    #[arg(long, value_delimiter = ',')]
    pub nodeport_addresses: Vec<String>,

    /// Masquerade (SNAT) all traffic sent to cluster IPs.
    #[arg(long, default_value_t = false, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub masquerade_all: bool,

    /// The bit of the packet mark that means "masquerade this" ([0, 31]).
    #[arg(long, default_value_t = 14, value_parser = clap::value_parser!(u8).range(0..=31))]
    pub iptables_masquerade_bit: u8,

    /// Accept NodePort connections on 127.0.0.1 (sets route_localnet=1).
    #[arg(long, default_value_t = true, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub iptables_localhost_nodeports: bool,

    /// The minimum interval between syncs: a burst of changes within it is
    /// applied by one `iptables-restore`.
    #[arg(long, alias = "iptables-min-sync-period", default_value = "1s", value_parser = machinery::duration::parse)]
    pub min_sync_period: Duration,

    /// The interval of full resyncs (every chain rewritten, tables re-read).
    #[arg(long, alias = "iptables-sync-period", default_value = "30s", value_parser = machinery::duration::parse)]
    pub sync_period: Duration,

    /// How often the informers replay their whole cache (0 disables).
    #[arg(long, default_value = "15m", value_parser = machinery::duration::parse)]
    pub config_sync_period: Duration,

    /// `ip:port` for `/healthz` (empty disables).
    #[arg(long, default_value = "0.0.0.0:10256")]
    pub healthz_bind_address: String,

    /// `ip:port` for `/metrics` (empty disables).
    #[arg(long, default_value = "127.0.0.1:10249")]
    pub metrics_bind_address: String,

    /// Print the ruleset (iptables-restore input) for the current Services
    /// and Endpoints and exit, without touching the kernel (no root needed).
    #[arg(long)]
    pub dry_run: bool,

    /// With `--dry-run`: read Services and Endpoints from this YAML or JSON
    /// file (several documents, or a `List` as `kubectl get svc,ep -o yaml`
    /// prints) instead of the apiserver.
    #[arg(long, requires = "dry_run")]
    pub from_file: Option<PathBuf>,
}

/// What `--nodeport-addresses` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodePortAddresses {
    /// Every local address (`-m addrtype --dst-type LOCAL`).
    All,
    /// Local addresses within these CIDRs, plus the node's primary
    /// addresses when `primary` is set.
    Only { cidrs: Vec<Ipv4Net>, primary: bool },
}

impl Options {
    /// Checks that need no IO.
    pub fn validate(&self) -> anyhow::Result<()> {
        match self.proxy_mode.as_str() {
            "" | "iptables" => {}
            other => bail!(
                "unsupported --proxy-mode {other:?}: rkube-proxy implements only \"iptables\" (kube-proxy's ipvs, nftables and kernelspace modes are not implemented)"
            ),
        }
        if self.sync_period.is_zero() {
            bail!("--sync-period must be greater than 0");
        }
        self.cluster_cidr()?;
        self.nodeport_addresses()?;
        for (flag, v) in [("--healthz-bind-address", &self.healthz_bind_address), ("--metrics-bind-address", &self.metrics_bind_address)] {
            if !v.is_empty() {
                v.parse::<SocketAddr>().with_context(|| format!("{flag} {v:?}: want ip:port"))?;
            }
        }
        Ok(())
    }

    /// `--cluster-cidr`, parsed. Upstream takes a comma-separated dual-stack
    /// pair; only the IPv4 entry matters to an IPv4-only proxy.
    pub fn cluster_cidr(&self) -> anyhow::Result<Option<Ipv4Net>> {
        let Some(s) = self.cluster_cidr.as_deref().filter(|s| !s.is_empty()) else { return Ok(None) };
        let mut v4 = None;
        for part in s.split(',').map(str::trim) {
            if part.contains(':') {
                continue; // IPv6: not proxied here.
            }
            let net: Ipv4Net = part.parse().with_context(|| format!("invalid --cluster-cidr {part:?}"))?;
            v4.get_or_insert(net);
        }
        Ok(v4)
    }

    /// `--nodeport-addresses`, parsed.
    pub fn nodeport_addresses(&self) -> anyhow::Result<NodePortAddresses> {
        let mut cidrs = Vec::new();
        let mut primary = false;
        for v in self.nodeport_addresses.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
            if v == "primary" {
                primary = true;
            } else if v.contains(':') {
                continue; // IPv6 CIDR: nothing to do for an IPv4 proxy.
            } else {
                let net: Ipv4Net = v.parse().with_context(|| format!("invalid --nodeport-addresses entry {v:?}: want a CIDR or \"primary\""))?;
                if net.prefix_len() == 0 {
                    // 0.0.0.0/0 means every address, as no flag does.
                    return Ok(NodePortAddresses::All);
                }
                cidrs.push(net);
            }
        }
        if cidrs.is_empty() && !primary {
            return Ok(NodePortAddresses::All);
        }
        Ok(NodePortAddresses::Only { cidrs, primary })
    }

    /// The node name: `--hostname-override`, else the host name, lower-cased
    /// (upstream's `nodeutil.GetHostname`).
    pub fn node_name(&self) -> anyhow::Result<String> {
        let name = match self.hostname_override.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            Some(n) => n.to_string(),
            // gethostname(2) reads the same (per UTS namespace) value.
            None => std::fs::read_to_string("/proc/sys/kernel/hostname").context("reading the host name")?.trim().to_string(),
        };
        Ok(name.to_lowercase())
    }

    /// The proxier's configuration; `nodeport_ips` are the resolved
    /// `--nodeport-addresses` (empty = all local addresses).
    pub fn proxier_config(&self, nodeport_ips: Vec<Ipv4Addr>) -> anyhow::Result<ProxierConfig> {
        Ok(ProxierConfig {
            rules: RulesConfig {
                masquerade_mark: format!("{:#x}", 1u32 << self.iptables_masquerade_bit),
                cluster_cidr: self.cluster_cidr()?,
                masquerade_all: self.masquerade_all,
                localhost_nodeports: self.iptables_localhost_nodeports,
                nodeport_addresses: nodeport_ips,
                random_fully: false,
            },
            min_sync_period: self.min_sync_period,
            sync_period: self.sync_period,
            ..Default::default()
        })
    }
}

/// The local addresses (IPv4, of every interface that is up) within any of
/// `cidrs`, sorted and without duplicates.
pub fn local_addresses_in(cidrs: &[Ipv4Net]) -> anyhow::Result<Vec<Ipv4Addr>> {
    let mut out: Vec<Ipv4Addr> = local_addresses()?.into_iter().filter(|ip| cidrs.iter().any(|c| c.contains(ip))).collect();
    out.sort();
    out.dedup();
    Ok(out)
}

/// Every IPv4 address of this network namespace's interfaces.
pub fn local_addresses() -> anyhow::Result<Vec<Ipv4Addr>> {
    let mut out = Vec::new();
    for ifa in nix::ifaddrs::getifaddrs().context("listing interface addresses")? {
        if let Some(sin) = ifa.address.as_ref().and_then(|a| a.as_sockaddr_in()) {
            out.push(sin.ip());
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parse a command line and render the outcome compactly: the error's
    /// first line, or the fields that flags set.
    fn check(args: &[&str], expected: &str) {
        let mut argv = vec!["rkube-proxy"];
        argv.extend_from_slice(args);
        let got = match Options::try_parse_from(&argv).map_err(|e| anyhow::anyhow!(e.to_string())).and_then(|o| {
            o.validate()?;
            let cfg = o.proxier_config(vec![])?;
            Ok(format!(
                "mode={} cidr={:?} np={:?} mark={} masq_all={} lo_np={} min={:?} sync={:?} healthz={} metrics={} dry={} file={:?}",
                o.proxy_mode,
                cfg.rules.cluster_cidr.map(|c| c.to_string()),
                o.nodeport_addresses()?,
                cfg.rules.masquerade_mark,
                cfg.rules.masquerade_all,
                cfg.rules.localhost_nodeports,
                cfg.min_sync_period,
                cfg.sync_period,
                o.healthz_bind_address,
                o.metrics_bind_address,
                o.dry_run,
                o.from_file,
            ))
        }) {
            Ok(s) => s,
            Err(e) => format!("error: {}", e.to_string().lines().next().unwrap_or_default()),
        };
        assert_eq!(got, expected, "{args:?}");
    }

    #[test]
    fn flags_table() {
        check(
            &[],
            "mode=iptables cidr=None np=All mark=0x4000 masq_all=false lo_np=true min=1s sync=30s healthz=0.0.0.0:10256 metrics=127.0.0.1:10249 dry=false file=None",
        );
        check(
            &[
                "--proxy-mode=iptables",
                "--cluster-cidr=10.244.0.0/16,fd00::/48",
                "--nodeport-addresses=192.168.0.0/16,primary",
                "--masquerade-all",
                "--iptables-masquerade-bit=15",
                "--iptables-localhost-nodeports=false",
                "--iptables-min-sync-period=250ms",
                "--sync-period=1m30s",
                "--healthz-bind-address=127.0.0.1:20256",
                "--metrics-bind-address=",
                "--dry-run",
                "--from-file=x.yaml",
            ],
            "mode=iptables cidr=Some(\"10.244.0.0/16\") np=Only { cidrs: [192.168.0.0/16], primary: true } mark=0x8000 masq_all=true lo_np=false min=250ms sync=90s healthz=127.0.0.1:20256 metrics= dry=true file=Some(\"x.yaml\")",
        );
        check(
            &["--min-sync-period", "0", "--nodeport-addresses", "0.0.0.0/0,10.0.0.0/8"],
            "mode=iptables cidr=None np=All mark=0x4000 masq_all=false lo_np=true min=0ns sync=30s healthz=0.0.0.0:10256 metrics=127.0.0.1:10249 dry=false file=None",
        );
        check(
            &["--proxy-mode=ipvs"],
            "error: unsupported --proxy-mode \"ipvs\": rkube-proxy implements only \"iptables\" (kube-proxy's ipvs, nftables and kernelspace modes are not implemented)",
        );
        check(&["--sync-period=0"], "error: --sync-period must be greater than 0");
        check(&["--sync-period=5"], "error: error: invalid value '5' for '--sync-period <SYNC_PERIOD>': missing unit in duration \"5\"");
        check(&["--cluster-cidr=10.244.0.0"], "error: invalid --cluster-cidr \"10.244.0.0\"");
        check(&["--nodeport-addresses=eth0"], "error: invalid --nodeport-addresses entry \"eth0\": want a CIDR or \"primary\"");
        check(&["--healthz-bind-address=10256"], "error: --healthz-bind-address \"10256\": want ip:port");
        check(&["--iptables-masquerade-bit=32"], "error: error: invalid value '32' for '--iptables-masquerade-bit <IPTABLES_MASQUERADE_BIT>': 32 is not in 0..=31");
        check(&["--from-file=x.yaml"], "error: error: the following required arguments were not provided:");
    }

    #[test]
    fn loopback_is_a_local_address() {
        let got = local_addresses_in(&["127.0.0.0/8".parse().unwrap()]).unwrap();
        assert!(got.contains(&Ipv4Addr::LOCALHOST), "{got:?}");
    }
}
