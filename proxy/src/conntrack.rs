//! Stale UDP conntrack entries.
//!
//! NAT decisions are made once per connection and remembered by conntrack.
//! For TCP a dead endpoint resets the connection and the client reconnects
//! (new conntrack entry, new DNAT). UDP has no connection to reset: a client
//! that keeps sending from the same port keeps hitting the conntrack entry
//! DNATed to the removed endpoint, forever. So, as kube-proxy does
//! (pkg/proxy/conntrack), the proxy deletes those entries with the
//! `conntrack` tool (Debian `conntrack` package):
//! - endpoint removed: entries to the cluster IP (and to the NodePort)
//!   that were DNATed to that endpoint;
//! - a service port goes from no endpoints to some: entries to the cluster
//!   IP (created while packets were being rejected).

use std::net::Ipv4Addr;
use std::process::Command;

/// One cleanup to do after rules are applied.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Cleanup {
    /// `conntrack -D -p udp --orig-dst <service_ip> --dst-nat <endpoint_ip>`
    ServiceEndpoint { service_ip: Ipv4Addr, endpoint_ip: Ipv4Addr },
    /// `conntrack -D -p udp --dport <node_port> --dst-nat <endpoint_ip>`
    NodePortEndpoint { node_port: u16, endpoint_ip: Ipv4Addr },
    /// `conntrack -D -p udp --orig-dst <service_ip>`
    ServiceIp { service_ip: Ipv4Addr },
}

impl Cleanup {
    pub fn args(&self) -> Vec<String> {
        let mut a: Vec<String> = vec!["-D".into(), "-p".into(), "udp".into()];
        match self {
            Cleanup::ServiceEndpoint { service_ip, endpoint_ip } => {
                a.extend(["--orig-dst".into(), service_ip.to_string(), "--dst-nat".into(), endpoint_ip.to_string()])
            }
            Cleanup::NodePortEndpoint { node_port, endpoint_ip } => {
                a.extend(["--dport".into(), node_port.to_string(), "--dst-nat".into(), endpoint_ip.to_string()])
            }
            Cleanup::ServiceIp { service_ip } => a.extend(["--orig-dst".into(), service_ip.to_string()]),
        }
        a
    }
}

/// Runs cleanups. A fake records them in unit tests.
pub trait Conntrack: Send + Sync {
    fn clear(&self, c: &Cleanup) -> anyhow::Result<u64>;
}

/// The `conntrack` binary, run in the calling thread's network namespace.
#[derive(Debug, Clone)]
pub struct ConntrackCmd {
    pub bin: String,
}

impl Default for ConntrackCmd {
    fn default() -> Self {
        ConntrackCmd { bin: "conntrack".into() }
    }
}

impl Conntrack for ConntrackCmd {
    /// Returns how many entries were deleted.
    fn clear(&self, c: &Cleanup) -> anyhow::Result<u64> {
        let out = Command::new(&self.bin).args(c.args()).output()?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        // conntrack exits 1 when nothing matched; that is not an error here.
        if let Some(n) = deleted_count(&stderr) {
            return Ok(n);
        }
        if out.status.success() {
            return Ok(0);
        }
        anyhow::bail!("conntrack {}: {}", c.args().join(" "), stderr.trim())
    }
}

/// Parses `conntrack v1.4.7 (conntrack-tools): 3 flow entries have been deleted.`
pub fn deleted_count(stderr: &str) -> Option<u64> {
    let idx = stderr.find(" flow entries have been deleted")?;
    stderr[..idx].rsplit(' ').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(c: Cleanup, expected: &str) {
        assert_eq!(c.args().join(" "), expected);
    }

    #[test]
    fn cleanup_args() {
        let s: Ipv4Addr = "10.96.0.10".parse().unwrap();
        let e: Ipv4Addr = "10.1.0.2".parse().unwrap();
        check(Cleanup::ServiceEndpoint { service_ip: s, endpoint_ip: e }, "-D -p udp --orig-dst 10.96.0.10 --dst-nat 10.1.0.2");
        check(Cleanup::NodePortEndpoint { node_port: 30053, endpoint_ip: e }, "-D -p udp --dport 30053 --dst-nat 10.1.0.2");
        check(Cleanup::ServiceIp { service_ip: s }, "-D -p udp --orig-dst 10.96.0.10");
        assert_eq!(deleted_count("conntrack v1.4.7 (conntrack-tools): 0 flow entries have been deleted.\n"), Some(0));
        assert_eq!(deleted_count("conntrack v1.4.7 (conntrack-tools): 12 flow entries have been deleted."), Some(12));
        assert_eq!(deleted_count("conntrack: invalid parameter"), None);
    }
}
