//! Is an address on this machine's own networks? Components that dial pod
//! addresses (the agent's probes, the apiserver's proxy) use it so that a
//! packet to a pod or service address never follows a default route off the
//! machine: only addresses a directly connected, non-default route covers
//! (a node's pod bridge, for instance) are dialed.

use std::net::Ipv4Addr;

/// Is there a route for `ip` other than a default route (a pod bridge's subnet)?
/// Reads the calling thread's routing table: `/proc/thread-self/net/route`
/// (`/proc/net/route` is the main thread's, another network namespace when
/// a thread has entered one, as the tests' do).
pub fn local_route_exists(ip: Ipv4Addr) -> bool {
    let table = std::fs::read_to_string("/proc/thread-self/net/route").or_else(|_| std::fs::read_to_string("/proc/net/route")).unwrap_or_default();
    route_covers(&table, ip)
}

/// Whether a directly connected (no gateway), non-default route of `table`
/// (the `/proc/net/route` format) contains `ip`.
pub fn route_covers(table: &str, ip: Ipv4Addr) -> bool {
    let ipn = u32::from_le_bytes(ip.octets());
    table.lines().skip(1).any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() < 8 {
            return false;
        }
        let (Ok(dest), Ok(gw), Ok(mask)) = (u32::from_str_radix(f[1], 16), u32::from_str_radix(f[2], 16), u32::from_str_radix(f[7], 16)) else {
            return false;
        };
        mask != 0 && gw == 0 && ipn & mask == dest
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let table = "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT\n\
eth0\t00000000\t0101A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
rkb1\t0007D50A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";
        assert!(route_covers(table, "10.213.7.9".parse().unwrap()));
        assert!(!route_covers(table, "10.213.8.9".parse().unwrap()));
        assert!(!route_covers(table, "8.8.8.8".parse().unwrap()));
    }
}
