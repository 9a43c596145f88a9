//! `cargo run --release -p rkube-agent --example bench -- [--nodes 5000] [--window 60] [--pods 20] [--skip-startup]`
//!
//! Starts its own etcd + rkube-apiserver (release build), then:
//! 1. runs N simulated nodes *in this process* and reports registration
//!    time, CPU (cores) and peak RSS while they heartbeat;
//! 2. starts a private containerd and an `rkube-agent` on it, creates 20 pods
//!    bound to that node at once, and reports create → Running+Ready p50/p99.

use std::time::Duration;

use rkube_agent::bench;
use rkube_agent::simulated::{NodeGroup, SimConfig};

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned()).unwrap_or_else(|| default.to_string())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let nodes: usize = arg("--nodes", "5000").parse()?;
    let window = Duration::from_secs(arg("--window", "60").parse()?);
    let n_pods: usize = arg("--pods", "20").parse()?;
    let skip_startup = std::env::args().any(|a| a == "--skip-startup");
    let cluster = e2e::Cluster::start();
    let client = cluster.client().await;

    let cfg = SimConfig {
        prefix: "bench-sim-".into(),
        groups: vec![NodeGroup { count: nodes, name_prefix: None, cpu: "32".into(), memory: "256Gi".into(), ephemeral_storage: "1Ti".into(), pods: 110, labels: Default::default(), taints: vec![] }],
        internal_ip: "127.0.0.1".into(),
        port: 10250,
        lease_duration_seconds: 40,
        renew_interval: Duration::from_secs(10),
        status_report_frequency: Duration::from_secs(300),
        cluster_cidr: "10.128.0.0/9".parse()?,
        pod_start_delay: Duration::ZERO,
        concurrency: 32,
        single_name: None,
    };
    let r = bench::simulated_nodes(client.clone(), cfg, window).await?;
    println!("## simulated nodes");
    println!("nodes: {}  registered+Ready in {:.1}s  window {:.0}s", r.nodes, r.registration.as_secs_f64(), r.window.as_secs_f64());
    println!("agent CPU: {:.3} cores  peak RSS: {:.1} MiB  Ready at end: {}/{}", r.cpu_cores, r.max_rss_bytes as f64 / (1 << 20) as f64, r.ready_at_end, r.nodes);

    if skip_startup {
        return Ok(());
    }
    use rkube_agent::runtime::containerd::{PrivateContainerd, PrivateContainerdConfig};
    let ctrd = PrivateContainerd::start(PrivateContainerdConfig::new("10.216.1.0/24".parse()?)).await?;
    let root = tempfile::tempdir()?;
    let port = e2e::free_port();
    let mut agent = std::process::Command::new(e2e::bin("rkube-agent"))
        .arg(format!("--master={}", cluster.api.url))
        .arg("--node-name=bench-real")
        .arg(format!("--container-runtime-endpoint={}", ctrd.endpoint()))
        .arg(format!("--root-dir={}", root.path().display()))
        .arg(format!("--pod-log-dir={}", ctrd.layout().pod_logs.display()))
        .arg(format!("--port={port}"))
        .args(["--address=127.0.0.1", "--node-ip=127.0.0.1", "--healthz-port=0"])
        .stderr(std::process::Stdio::null())
        .spawn()?;
    // Wait for the node.
    let api: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(client.clone());
    for _ in 0..600 {
        if api.get_opt("bench-real").await?.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let res = bench::pod_startup(client.clone(), "bench-real", rkube_agent::runtime::images::BUSYBOX_IMAGE, n_pods, Duration::from_secs(120)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let _ = agent.kill();
    let _ = agent.wait();
    let r = res?;
    println!("## pod startup (real containerd, {} pods created at once, bound to one node)", r.pods);
    println!("p50: {:.3}s  p99: {:.3}s  max: {:.3}s", r.percentile(50.0).as_secs_f64(), r.percentile(99.0).as_secs_f64(), r.latencies.last().unwrap().as_secs_f64());
    drop(ctrd);
    Ok(())
}
