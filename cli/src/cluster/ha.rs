//! The high-availability control plane of `rkube up --ha`: the shape of a
//! production cluster's masters, on one machine.
//!
//! ```text
//!   kubectl, agents, proxies, controllers, schedulers
//!                    │ https://<host .1>:6443  (every kubeconfig)
//!                    ▼
//!        HAProxy (TCP mode; GET /readyz over TLS every second)
//!        │                 │                 │
//!   apiserver-1       apiserver-2       apiserver-3     each on its own address
//!   <.2>:6443         <.3>:6443         <.4>:6443       on the node bridge, each
//!        └──────── etcd-1, etcd-2, etcd-3 ─────────┘    given all three members
//!
//!   controller-1, controller-2   one leads (Lease kube-system/kube-controller-manager)
//!   scheduler-1,  scheduler-2    one leads (Lease kube-system/kube-scheduler)
//! ```
//!
//! - **etcd**: a real 3-member raft cluster (one member may die).
//! - **apiservers**: each keeps a master lease, so the `kubernetes` Service
//!   lists the live ones (`apiserver/src/masterleases.rs`).
//! - **HAProxy** (Debian's `haproxy`) is the single address: it passes TCP
//!   through (TLS ends at the apiservers, so client certificates still
//!   authenticate) and sends connections only to apiservers whose `/readyz`
//!   answers 200 — one that lost etcd or died is out within two checks, and
//!   its open connections (watches) are cut so clients reconnect elsewhere.
//! - **controllers and schedulers** run twice with `--leader-elect`: the
//!   standby takes over when the leader's Lease is not renewed.
//!
//! In production HAProxy runs on two machines sharing a floating IP
//! (keepalived's VRRP, or pacemaker) so the load balancer is not itself the
//! single point of failure; on one box there is nothing to fail over to, so
//! that pair is out of scope (README: "High availability").

use std::path::Path;
use std::time::Duration;

use super::control_plane::{apiserver_args, controller_args, scheduler_args};
use super::kubectl::kubectl;
use super::progress::step;
use super::spec::{HaPorts, Spec};
use super::supervise::Supervisor;
use super::wait::{wait_component_healthy, wait_for};
use super::{run_cmd, which, Binaries};

// How many of each member the HA control plane runs.
pub const ETCD_MEMBERS: usize = 3;
pub const APISERVERS: usize = 3;
pub const CONTROLLERS: usize = 2;
pub const SCHEDULERS: usize = 2;

/// The etcd members' `--initial-cluster`.
fn initial_cluster(h: &HaPorts) -> String {
    h.etcd.iter().enumerate().map(|(i, (_, p))| format!("etcd-{}=http://127.0.0.1:{p}", i + 1)).collect::<Vec<_>>().join(",")
}

/// Starts the three etcd members and waits until each reports healthy
/// (which needs a leader, so a quorum).
pub fn start_etcd(spec: &Spec, sup: &Supervisor, h: &HaPorts) -> anyhow::Result<()> {
    let etcd = which("etcd")?;
    for (i, (c, p)) in h.etcd.iter().enumerate() {
        let name = format!("etcd-{}", i + 1);
        let client = format!("http://127.0.0.1:{c}");
        let peer = format!("http://127.0.0.1:{p}");
        let args = vec![
            format!("--name={name}"),
            format!("--data-dir={}", spec.state_dir.join(&name).display()),
            format!("--listen-client-urls={client}"),
            format!("--advertise-client-urls={client}"),
            format!("--listen-peer-urls={peer}"),
            format!("--initial-advertise-peer-urls={peer}"),
            format!("--initial-cluster={}", initial_cluster(h)),
            format!("--initial-cluster-token={}-etcd", spec.prefix),
            // Ignored once the member has data: a restart rejoins as itself.
            "--initial-cluster-state=new".to_string(),
            "--log-level=warn".to_string(),
            "--logger=zap".to_string(),
        ];
        sup.start(&name, None, Path::new(&etcd), &args)?;
    }
    for i in 1..=h.etcd.len() {
        wait_component_healthy(spec, sup, &format!("etcd-{i}"))?;
    }
    Ok(())
}

/// HAProxy's configuration: TCP passthrough to the apiservers, each
/// health-checked with `GET /readyz` over TLS (`check-ssl verify none`: the
/// check only needs the status; clients verify the certificate themselves).
pub fn haproxy_config(spec: &Spec, h: &HaPorts) -> String {
    let mut s = format!(
        "# Written by rkube up --ha. TCP passthrough: TLS ends at the apiservers.\n\
         global\n  maxconn 4096\n\n\
         defaults\n  mode tcp\n  # A refused connection (apiserver just died, not yet marked down) is\n  # retried on another server.\n  retries 3\n  option redispatch 1\n  timeout connect 2s\n  timeout check 2s\n  # Watches are long-lived connections.\n  timeout client 1h\n  timeout server 1h\n\n\
         frontend monitor\n  mode http\n  bind 127.0.0.1:{}\n  monitor-uri /healthz\n\n\
         frontend apiserver\n  bind {}:{}\n  default_backend apiservers\n\n\
         backend apiservers\n  balance roundrobin\n  option httpchk GET /readyz\n  http-check expect status 200\n\
         \x20 # Out after 2 failed checks, back after 2 good ones; a server marked\n\
         \x20 # down has its sessions cut, so watches reconnect to a live one.\n\
         \x20 default-server inter 1s fall 2 rise 2 on-marked-down shutdown-sessions\n",
        h.haproxy_monitor,
        spec.host_ip(),
        spec.apiserver_port
    );
    for (i, ip) in spec.apiserver_ips().iter().enumerate() {
        s.push_str(&format!("  server apiserver-{} {ip}:{} check check-ssl verify none\n", i + 1, spec.apiserver_port));
    }
    s
}

/// Apiservers, HAProxy, controllers and schedulers.
pub fn start_control_plane(spec: &Spec, sup: &Supervisor, bins: &Binaries, h: &HaPorts) -> anyhow::Result<()> {
    let etcd_servers = spec.etcd_urls().join(",");
    step(&format!("{} rkube-apiservers on {}", h.apiserver_insecure.len(), ips(spec)), || {
        for (i, port) in h.apiserver_insecure.iter().enumerate() {
            let ip = spec.apiserver_ip(i as u32 + 1);
            let mut args = apiserver_args(spec, &etcd_servers, &ip.to_string(), *port);
            args.push(format!("--advertise-address={ip}"));
            sup.start(&format!("apiserver-{}", i + 1), None, &bins.apiserver, &args)?;
        }
        for i in 1..=h.apiserver_insecure.len() {
            wait_component_healthy(spec, sup, &format!("apiserver-{i}"))?;
        }
        Ok(())
    })?;
    step(&format!("haproxy on {} (checks /readyz of each apiserver)", spec.apiserver_url()), || {
        let cfg = spec.state_dir.join("haproxy.cfg");
        std::fs::write(&cfg, haproxy_config(spec, h))?;
        let haproxy = which("haproxy")?;
        run_cmd(&haproxy, &["-c", "-q", "-f", &cfg.to_string_lossy()])?;
        // -db: stay in the foreground (the supervisor keeps the pid).
        sup.start("haproxy", None, Path::new(&haproxy), &["-db".into(), "-f".into(), cfg.to_string_lossy().into_owned()])?;
        wait_component_healthy(spec, sup, "haproxy")?;
        // Through HAProxy, over TLS, with the admin's certificate.
        wait_for("kubectl through haproxy", Duration::from_secs(30), || Ok(kubectl(spec, &["get", "--raw", "/readyz"]).ok()))?;
        Ok(())
    })?;
    step(&format!("{} rkube-controllers (leader election)", h.controller.len()), || {
        for (i, port) in h.controller.iter().enumerate() {
            sup.start(&format!("controller-{}", i + 1), None, &bins.controller, &controller_args(spec, *port))?;
        }
        for i in 1..=h.controller.len() {
            wait_component_healthy(spec, sup, &format!("controller-{i}"))?;
        }
        Ok(())
    })?;
    step(&format!("{} rkube-schedulers (leader election)", h.scheduler.len()), || {
        for (i, port) in h.scheduler.iter().enumerate() {
            sup.start(&format!("scheduler-{}", i + 1), None, &bins.scheduler, &scheduler_args(spec, *port))?;
        }
        for i in 1..=h.scheduler.len() {
            wait_component_healthy(spec, sup, &format!("scheduler-{i}"))?;
        }
        Ok(())
    })?;
    Ok(())
}

fn ips(spec: &Spec) -> String {
    spec.apiserver_ips().iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn haproxy_checks_each_apiserver_over_tls() {
        let spec = Spec {
            state_dir: "/s".into(),
            prefix: "rkube".into(),
            subnet: "10.200.0.0".parse().unwrap(),
            nodes: 1,
            cluster_cidr: "10.244.0.0".parse().unwrap(),
            service_cidr: "10.96.0.0/12".into(),
            etcd_client_port: 1,
            etcd_peer_port: 2,
            apiserver_port: 6443,
            apiserver_insecure_port: 3,
            controller_port: 4,
            scheduler_port: 5,
            ha: Some(HaPorts { etcd: vec![(11, 12), (13, 14), (15, 16)], apiserver_insecure: vec![21, 22, 23], controller: vec![31, 32], scheduler: vec![41, 42], haproxy_monitor: 50 }),
        };
        let h = spec.ha.clone().unwrap();
        let cfg = haproxy_config(&spec, &h);
        assert!(cfg.contains("  mode tcp\n"), "{cfg}");
        assert!(cfg.contains("  bind 10.200.0.1:6443\n"), "{cfg}");
        assert!(cfg.contains("  option httpchk GET /readyz\n"), "{cfg}");
        for (i, ip) in ["10.200.0.2", "10.200.0.3", "10.200.0.4"].iter().enumerate() {
            assert!(cfg.contains(&format!("  server apiserver-{} {ip}:6443 check check-ssl verify none\n", i + 1)), "{cfg}");
        }
        assert!(cfg.contains("  bind 127.0.0.1:50\n  monitor-uri /healthz\n"), "{cfg}");
        assert_eq!(initial_cluster(&h), "etcd-1=http://127.0.0.1:12,etcd-2=http://127.0.0.1:14,etcd-3=http://127.0.0.1:16");
        // HAProxy itself accepts it (when installed).
        if std::path::Path::new("/usr/sbin/haproxy").exists() {
            let dir = tempfile::tempdir().unwrap();
            let f = dir.path().join("h.cfg");
            std::fs::write(&f, &cfg).unwrap();
            let out = std::process::Command::new("/usr/sbin/haproxy").args(["-c", "-f"]).arg(&f).output().unwrap();
            assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        }
    }
}
