//! Keeping service traffic on the machine.
//!
//! A cluster IP belongs to no interface. A connection to one from the node
//! itself needs *some* route before the nat `OUTPUT` chain gets to DNAT it,
//! and a packet to a cluster IP that no rule matched must not follow the
//! default route off the machine. So, like kube-proxy's IPVS mode with its
//! `kube-ipvs0` dummy device, the proxy routes the whole service CIDR to a
//! local device. This kernel has no `dummy` driver; a bridge with no ports
//! serves the same purpose: it exists, it is up, and whatever is sent to it
//! goes nowhere.
//!
//! Done over rtnetlink (the `rtnetlink` crate: what `ip link` / `ip route`
//! speak), in the network namespace of the calling thread.
//!
//! NodePorts on 127.0.0.1 need `net.ipv4.conf.all.route_localnet=1`, or the
//! kernel drops DNATed packets with a loopback source as martians.

use std::net::Ipv4Addr;

use anyhow::Context;
use futures::TryStreamExt;
use ipnet::Ipv4Net;
use rtnetlink::packet_route::route::RouteScope;
use rtnetlink::{new_connection, Handle, LinkBridge, LinkUnspec, RouteMessageBuilder};

/// Default name of the holder device (kube-proxy IPVS mode: `kube-ipvs0`).
pub const DEFAULT_DEVICE: &str = "rkube-svc0";

async fn link_index(handle: &Handle, name: &str) -> anyhow::Result<Option<u32>> {
    let mut links = handle.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(Some(l)) => Ok(Some(l.header.index)),
        Ok(None) => Ok(None),
        // ENODEV comes back as an error, not an empty answer.
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -19 => Ok(None),
        Err(e) => Err(e).context("looking up link"),
    }
}

/// Create (if missing) the port-less bridge `device`, bring it up and route
/// `cidr` to it. Idempotent: safe at every start.
pub async fn ensure_service_route(device: &str, cidr: Ipv4Net) -> anyhow::Result<()> {
    let (conn, handle, _) = new_connection().context("netlink socket")?;
    let task = tokio::spawn(conn);
    let result = async {
        let index = match link_index(&handle, device).await? {
            Some(i) => i,
            None => {
                handle.link().add(LinkBridge::new(device).build()).execute().await.context("creating bridge")?;
                link_index(&handle, device).await?.context("bridge vanished")?
            }
        };
        handle.link().set(LinkUnspec::new_with_index(index).up().build()).execute().await.context("link up")?;
        let route = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(cidr.network(), cidr.prefix_len())
            .output_interface(index)
            .scope(RouteScope::Link)
            .build();
        handle.route().add(route).replace().execute().await.context("adding service CIDR route")?;
        Ok(())
    }
    .await;
    task.abort();
    result
}

/// Delete the holder device (its route goes with it).
pub async fn remove_service_route(device: &str) -> anyhow::Result<()> {
    let (conn, handle, _) = new_connection().context("netlink socket")?;
    let task = tokio::spawn(conn);
    let result = async {
        if let Some(i) = link_index(&handle, device).await? {
            handle.link().del(i).execute().await.context("deleting link")?;
        }
        Ok(())
    }
    .await;
    task.abort();
    result
}

/// [`ensure_service_route`] for synchronous callers (runs a single-thread
/// runtime on the calling thread, so it stays in the thread's namespace).
pub fn ensure_service_route_blocking(device: &str, cidr: Ipv4Net) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(ensure_service_route(device, cidr))
}

/// Set `net.ipv4.conf.all.route_localnet=1` (per network namespace).
pub fn set_route_localnet() -> anyhow::Result<()> {
    std::fs::write("/proc/sys/net/ipv4/conf/all/route_localnet", "1").context("setting route_localnet")
}
