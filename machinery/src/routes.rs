//! Is an address on this machine's own networks? Components that dial pod
//! addresses (the agent's probes, the apiserver's proxy) use it so that a
//! packet to a pod or service address never follows a default route off the
//! machine: only addresses a directly connected, non-default route covers
//! (a node's pod bridge, for instance) are dialed.

use std::net::Ipv4Addr;

/// Is `ip` on one of this machine's own networks? Yes when a non-default
/// route out of a virtual device (a bridge, a veth) contains it: directly
/// connected (a node's pod bridge), or through a gateway that is itself
/// directly connected there (the host's routes to the nodes' pod ranges,
/// via the nodes' addresses on `rkube up`'s bridge). Never through a default
/// route, never out of a physical NIC (its LAN is off the machine too).
/// Reads the calling thread's routing table: `/proc/thread-self/net/route`
/// (`/proc/net/route` is the main thread's, another network namespace when
/// a thread has entered one, as the tests' do).
pub fn local_route_exists(ip: Ipv4Addr) -> bool {
    let table = std::fs::read_to_string("/proc/thread-self/net/route").or_else(|_| std::fs::read_to_string("/proc/net/route")).unwrap_or_default();
    route_covers(&table, ip, &is_virtual_device)
}

/// Not a physical NIC: `/sys/class/net` (the host's, whatever namespace
/// the thread is in) lists it under `/sys/devices/virtual`, or does not
/// list it at all — a device made inside another network namespace (the
/// tests' and nodes' bridges and veths). A NIC moved into a namespace would
/// pass for virtual; rkube never moves one.
fn is_virtual_device(dev: &str) -> bool {
    match std::fs::read_link(format!("/sys/class/net/{dev}")) {
        Ok(target) => target.to_string_lossy().contains("/devices/virtual/"),
        Err(_) => true,
    }
}

struct Route<'a> {
    dev: &'a str,
    dest: u32,
    gateway: u32,
    mask: u32,
}

fn routes(table: &str) -> Vec<Route<'_>> {
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 8 {
                return None;
            }
            let hex = |s: &str| u32::from_str_radix(s, 16).ok();
            Some(Route { dev: f[0], dest: hex(f[1])?, gateway: hex(f[2])?, mask: hex(f[7])? })
        })
        .collect()
}

/// [`local_route_exists`] on a route table in the `/proc/net/route` format.
pub fn route_covers(table: &str, ip: Ipv4Addr, is_virtual: &dyn Fn(&str) -> bool) -> bool {
    let all = routes(table);
    // Addresses in the table are in host byte order as the kernel printed them.
    let direct = |addr: u32, dev: &str| all.iter().any(|r| r.mask != 0 && r.gateway == 0 && addr & r.mask == r.dest && r.dev == dev);
    let ipn = u32::from_le_bytes(ip.octets());
    all.iter().any(|r| r.mask != 0 && ipn & r.mask == r.dest && is_virtual(r.dev) && (r.gateway == 0 || direct(r.gateway, r.dev)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `rkube up`'s host: the nodes' bridge, routes to their pod ranges via
    /// the nodes, a LAN on eth0 with the default route, and (made up) a
    /// route to 10.0.0.0/8 via a LAN router.
    const HOST: &str = "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT\n\
eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
rkube0\t0000C80A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
rkube0\t0001F40A\t0B00C80A\t0003\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
eth0\t0000000A\tFE0200C0\t0003\t0\t0\t0\t000000FF\t0\t0\t0\n";

    fn check(ip: &str, expected: bool) {
        let is_virtual = |dev: &str| dev != "eth0";
        assert_eq!(route_covers(HOST, ip.parse().unwrap(), &is_virtual), expected, "{ip}");
    }

    #[test]
    fn routes() {
        check("10.200.0.11", true); // a node, on the bridge
        check("10.244.1.7", true); // a pod of node 1, via node 1 on the bridge
        check("10.244.2.7", false); // the 10/8 route goes out of eth0 via the router
        check("10.96.0.1", false); // likewise
        check("192.0.2.9", false); // the LAN: directly connected, but out of a NIC
        check("8.8.8.8", false); // only the default route
    }
}
