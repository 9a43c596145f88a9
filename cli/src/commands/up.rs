//! `rkube up`: a whole cluster on this machine, started step by step.
//!
//! Order matters as in a real cluster bootstrap (kubeadm's phases): the
//! node network first (the apiserver listens on it), then etcd, the PKI,
//! the apiserver, the controller manager and the scheduler, then each node
//! (runtime, agent, proxy), and last a workload to show it all working.
//! Each component is a daemon (see [`crate::cluster::supervise`]); `rkube up`
//! returns once the demo answers and leaves them running.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rkube_agent::runtime::cni::{BridgeNetwork, DEBIAN_CNI_BIN_DIR};
use rkube_agent::runtime::containerd::{render_config, Layout};
use rkube_agent::runtime::images::{self, DEFAULT_BUSYBOX_BINARY, PAUSE_IMAGE};

use crate::cluster::progress::step;
use crate::cluster::spec::{parse_net, Spec};
use crate::cluster::supervise::Supervisor;
use crate::cluster::{demo, network, run_cmd};
use crate::procs::free_port;

#[derive(clap::Args, Debug, Clone)]
pub struct Options {
    /// Where data, certificates, kubeconfigs, pid files and logs live
    /// (default /var/lib/rkube as root, else ~/.rkube).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// How many nodes (each a network namespace with its own runtime, agent and proxy).
    #[arg(long, default_value_t = 2)]
    pub nodes: u32,
    /// Prefix of the host bridge, node namespaces, veths and node names.
    #[arg(long, default_value = "rkube")]
    pub name_prefix: String,
    /// The node network (a private /24): host .1, node N .(10+N).
    #[arg(long, default_value = "10.200.0.0/24")]
    pub subnet: String,
    /// The pods' range (a private /16); node N gets its /24 number N.
    #[arg(long, default_value = "10.244.0.0/16")]
    pub cluster_cidr: String,
    /// The Services' cluster IP range.
    #[arg(long, default_value = "10.96.0.0/12")]
    pub service_cluster_ip_range: String,
    /// The apiserver's secure port (on the node network's host address).
    #[arg(long, default_value_t = 6443)]
    pub apiserver_port: u16,
    /// Directory holding rkube-apiserver, rkube-agent, … (default: next to `rkube`).
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
    /// Do not deploy the demo application.
    #[arg(long)]
    pub no_demo: bool,
    /// Do not install missing Debian packages; only report them.
    #[arg(long)]
    pub no_install: bool,
    /// High availability: a 3-member etcd cluster, three apiservers behind
    /// HAProxy (the single address in every kubeconfig), two controllers
    /// and two schedulers with leader election (see `cluster/ha.rs`).
    #[arg(long)]
    pub ha: bool,
}

/// Commands the cluster needs, and the Debian package providing each.
const PREREQUISITES: &[(&str, &str)] = &[
    ("etcd", "etcd-server"),
    ("containerd", "containerd"),
    ("ctr", "containerd"),
    ("runc", "runc"),
    ("/usr/lib/cni/bridge", "containernetworking-plugins"),
    ("iptables", "iptables"),
    ("iptables-restore", "iptables"),
    ("conntrack", "conntrack"),
    ("ip", "iproute2"),
    (DEFAULT_BUSYBOX_BINARY, "busybox-static"),
];

/// What `--ha` needs on top.
const HA_PREREQUISITES: &[(&str, &str)] = &[("haproxy", "haproxy")];

fn have(cmd: &str) -> bool {
    if cmd.starts_with('/') {
        return Path::new(cmd).exists();
    }
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(cmd).is_file()))
        .unwrap_or(false)
}

/// Missing Debian packages (deduplicated, in order).
pub fn missing_packages(have: impl Fn(&str) -> bool) -> Vec<&'static str> {
    missing_packages_for(false, have)
}

pub fn missing_packages_for(ha: bool, have: impl Fn(&str) -> bool) -> Vec<&'static str> {
    let mut v: Vec<&'static str> = Vec::new();
    let extra: &[(&str, &str)] = if ha { HA_PREREQUISITES } else { &[] };
    for (cmd, pkg) in PREREQUISITES.iter().chain(extra) {
        if !have(cmd) && !v.contains(pkg) {
            v.push(pkg);
        }
    }
    v
}

fn prerequisites(o: &Options, ha: bool) -> anyhow::Result<()> {
    if !crate::cluster::is_root() {
        bail!("rkube up needs root: it creates network namespaces, a bridge and routes");
    }
    let missing = missing_packages_for(ha, have);
    if !missing.is_empty() {
        if o.no_install || !have("apt-get") {
            bail!("missing Debian packages: {} (install them: apt-get install -y {})", missing.join(" "), missing.join(" "));
        }
        run_cmd("apt-get", &["update", "-qq"])?;
        let mut args = vec!["install", "-y", "-qq"];
        args.extend(missing.iter().copied());
        run_cmd("apt-get", &args).context("installing the missing packages")?;
    }
    if !have("kubectl") {
        bail!("kubectl not found in PATH (it is not a Debian package: install it from https://kubernetes.io/docs/tasks/tools/)");
    }
    Ok(())
}

/// The component binaries.
pub struct Binaries {
    pub apiserver: PathBuf,
    pub controller: PathBuf,
    pub scheduler: PathBuf,
    pub agent: PathBuf,
    pub proxy: PathBuf,
}

impl Binaries {
    pub fn find(dir: Option<&Path>) -> anyhow::Result<Self> {
        let dir = match dir {
            Some(d) => d.to_path_buf(),
            None => std::env::current_exe()?.parent().context("no parent dir")?.to_path_buf(),
        };
        let f = |name: &str| -> anyhow::Result<PathBuf> {
            let p = dir.join(name);
            if !p.exists() {
                bail!("{} not found: build it with `cargo build --release -p {name}`", p.display());
            }
            Ok(std::fs::canonicalize(p)?)
        };
        Ok(Binaries {
            apiserver: f("rkube-apiserver")?,
            controller: f("rkube-controller")?,
            scheduler: f("rkube-scheduler")?,
            agent: f("rkube-agent")?,
            proxy: f("rkube-proxy")?,
        })
    }
}

/// Polls `f` until it returns `Ok(Some(v))`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> anyhow::Result<Option<T>>) -> anyhow::Result<T> {
    let start = Instant::now();
    let mut last = String::from("not yet");
    loop {
        match f() {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last = format!("{e:#}"),
        }
        if start.elapsed() > timeout {
            bail!("{what}: not done after {timeout:?} (last: {last})");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub fn kubectl(spec: &Spec, args: &[&str]) -> anyhow::Result<String> {
    let kc = spec.admin_kubeconfig();
    let mut a = vec!["--kubeconfig", kc.to_str().context("kubeconfig path")?];
    a.extend_from_slice(args);
    run_cmd("kubectl", &a)
}

fn kubectl_apply(spec: &Spec, doc: &serde_json::Value) -> anyhow::Result<String> {
    use std::io::Write;
    let kc = spec.admin_kubeconfig();
    let mut child = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&kc)
        .args(["apply", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    child.stdin.take().unwrap().write_all(doc.to_string().as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("kubectl apply: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Fails if a component exited (its log tail in the error).
fn ensure_running(sup: &Supervisor, name: &str) -> anyhow::Result<()> {
    if sup.pid(name).is_none() {
        let log = std::fs::read_to_string(sup.log_file(name)).unwrap_or_default();
        let tail: String = log.lines().rev().take(15).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
        bail!("{name} exited; log tail:\n{tail}");
    }
    Ok(())
}

fn wait_healthy(sup: &Supervisor, name: &str, addr: &str, path: &str) -> anyhow::Result<()> {
    wait_for(&format!("{name} {path} on {addr}"), Duration::from_secs(60), || {
        ensure_running(sup, name)?;
        Ok(crate::cluster::http_get(addr, path).ok().filter(|(s, _)| *s == 200).map(|_| ()))
    })
}

/// Waits for a control-plane component's health endpoint ([`Spec::health_endpoint`]).
pub fn wait_component_healthy(spec: &Spec, sup: &Supervisor, name: &str) -> anyhow::Result<()> {
    let (addr, path) = spec.health_endpoint(name).with_context(|| format!("no health endpoint for {name}"))?;
    wait_healthy(sup, name, &addr, path)
}

/// An apiserver's flags: TLS with client certificates, Node+RBAC, the
/// secure port on `bind_ip`, the insecure one on 127.0.0.1.
pub fn apiserver_args(spec: &Spec, etcd_servers: &str, bind_ip: &str, insecure_port: u16) -> Vec<String> {
    let pki = spec.pki();
    vec![
        format!("--etcd-servers={etcd_servers}"),
        format!("--bind-address={bind_ip}"),
        format!("--secure-port={}", spec.apiserver_port),
        format!("--tls-cert-file={}", pki.join("apiserver.crt").display()),
        format!("--tls-private-key-file={}", pki.join("apiserver.key").display()),
        format!("--client-ca-file={}", pki.join("ca.crt").display()),
        s("--authorization-mode=Node,RBAC"),
        s("--insecure-bind-address=127.0.0.1"),
        format!("--insecure-port={insecure_port}"),
        format!("--service-cluster-ip-range={}", spec.service_cidr),
    ]
}

pub fn controller_args(spec: &Spec, port: u16) -> Vec<String> {
    vec![
        format!("--kubeconfig={}", spec.pki().join("kube-controller-manager.kubeconfig").display()),
        format!("--cluster-cidr={}", spec.cluster_cidr_str()),
        s("--node-cidr-mask-size=24"),
        s("--allocate-node-cidrs=true"),
        s("--bind-address=127.0.0.1"),
        format!("--secure-port={port}"),
    ]
}

pub fn scheduler_args(spec: &Spec, port: u16) -> Vec<String> {
    vec![
        format!("--kubeconfig={}", spec.pki().join("kube-scheduler.kubeconfig").display()),
        s("--bind-address=127.0.0.1"),
        format!("--secure-port={port}"),
    ]
}

fn s<T: ToString>(v: T) -> String {
    v.to_string()
}

fn new_spec(o: &Options, state_dir: PathBuf) -> anyhow::Result<Spec> {
    let spec = Spec {
        state_dir,
        prefix: o.name_prefix.clone(),
        subnet: parse_net(&o.subnet, 24).context("--subnet")?,
        nodes: o.nodes,
        cluster_cidr: parse_net(&o.cluster_cidr, 16).context("--cluster-cidr")?,
        service_cidr: o.service_cluster_ip_range.clone(),
        etcd_client_port: free_port()?,
        etcd_peer_port: free_port()?,
        apiserver_port: o.apiserver_port,
        apiserver_insecure_port: free_port()?,
        controller_port: free_port()?,
        scheduler_port: free_port()?,
        ha: if o.ha { Some(crate::cluster::spec::HaPorts::allocate()?) } else { None },
    };
    spec.validate()?;
    Ok(spec)
}

/// The first address of the service range: the `kubernetes` Service's IP.
fn first_service_ip(cidr: &str) -> anyhow::Result<Ipv4Addr> {
    let base: Ipv4Addr = cidr.split('/').next().unwrap_or("").parse().with_context(|| format!("service range {cidr:?}"))?;
    Ok(Ipv4Addr::from(u32::from(base) + 1))
}

/// Is any component of the cluster in `state_dir` running?
pub fn running_components(spec: &Spec) -> Vec<String> {
    let sup = Supervisor::new(spec.run_dir(), spec.logs());
    spec.components().into_iter().filter(|c| sup.pid(c).is_some()).collect()
}

pub fn run(o: Options) -> anyhow::Result<()> {
    let state_dir = o.state_dir.clone().unwrap_or_else(crate::cluster::default_state_dir);
    let started = Instant::now();
    let spec = match Spec::load(&state_dir)? {
        Some(spec) => {
            let running = running_components(&spec);
            if !running.is_empty() {
                println!("A cluster is already running from {} ({} of {} components up). `rkube status` shows it; `rkube down` stops it.", state_dir.display(), running.len(), spec.components().len());
                return Ok(());
            }
            eprintln!("Restarting the stopped cluster in {} (its names, addresses and data are kept; `rkube down --purge` forgets it).", state_dir.display());
            if o.ha != spec.ha.is_some() {
                eprintln!("(It was made {} --ha, and keeps that shape.)", if spec.ha.is_some() { "with" } else { "without" });
            }
            spec
        }
        None => new_spec(&o, state_dir.clone())?,
    };
    let shape = if spec.ha.is_some() { ", high availability (3 etcd, 3 apiservers behind haproxy, 2 controllers, 2 schedulers)" } else { "" };
    eprintln!("rkube up: {} node(s){shape}, state in {}", spec.nodes, spec.state_dir.display());
    step("prerequisites", || prerequisites(&o, spec.ha.is_some()))?;
    let bins = step("component binaries", || Binaries::find(o.bin_dir.as_deref()))?;
    spec.save()?;
    let sup = Supervisor::new(spec.run_dir(), spec.logs());
    let result = bring_up(&o, &spec, &sup, &bins);
    if let Err(e) = &result {
        eprintln!("\nrkube up failed: {e:#}\nLogs are in {}; `rkube down` removes what was started.", spec.logs().display());
    } else {
        eprintln!("\nrkube up: done in {:.1}s", started.elapsed().as_secs_f64());
    }
    result
}

fn bring_up(o: &Options, spec: &Spec, sup: &Supervisor, bins: &Binaries) -> anyhow::Result<()> {
    step(&format!("node network: bridge {} ({}), namespaces {}..{}", spec.bridge(), spec.host_ip(), spec.netns(1), spec.netns(spec.nodes)), || {
        network::create(spec)
    })?;

    match &spec.ha {
        Some(h) => step(&format!("etcd: {} members", h.etcd.len()), || crate::cluster::ha::start_etcd(spec, sup, h))?,
        None => step("etcd", || {
            let (c, p) = (spec.etcd_url(), format!("http://127.0.0.1:{}", spec.etcd_peer_port));
            let args = vec![
                s("--name=rkube"),
                format!("--data-dir={}", spec.state_dir.join("etcd").display()),
                format!("--listen-client-urls={c}"),
                format!("--advertise-client-urls={c}"),
                format!("--listen-peer-urls={p}"),
                format!("--initial-advertise-peer-urls={p}"),
                format!("--initial-cluster=rkube={p}"),
                s("--log-level=warn"),
                s("--logger=zap"),
            ];
            sup.start("etcd", None, Path::new(&which("etcd")?), &args)?;
            wait_healthy(sup, "etcd", &format!("127.0.0.1:{}", spec.etcd_client_port), "/health")
        })?,
    }

    step("certificates and kubeconfigs", || {
        // The serving certificate names every address an apiserver is
        // reached at: the host's (HAProxy's with --ha) and each apiserver's own.
        let mut sans = vec![spec.host_ip().to_string()];
        sans.extend(spec.apiserver_ips().iter().map(|ip| ip.to_string()).filter(|ip| *ip != spec.host_ip().to_string()));
        let opts = crate::commands::certs::Options {
            dir: spec.pki(),
            server: spec.apiserver_url(),
            apiserver_sans: sans,
            service_ip: first_service_ip(&spec.service_cidr)?.into(),
            nodes: spec.node_range().map(|n| spec.node_name(n)).collect(),
            ..Default::default()
        };
        crate::commands::certs::generate(&opts).map(|_| ())
    })?;

    if let Some(h) = &spec.ha {
        crate::cluster::ha::start_control_plane(spec, sup, bins, h)?;
    } else {
        start_control_plane(spec, sup, bins)?;
    }

    for n in spec.node_range() {
        step(&format!("{}: containerd ({}), images", spec.node_name(n), spec.pod_cidr(n)), || start_containerd(spec, sup, n))?;
        step(&format!("{}: rkube-agent on {}", spec.node_name(n), spec.node_ip(n)), || start_agent(spec, sup, bins, n))?;
        step(&format!("{}: rkube-proxy", spec.node_name(n)), || start_proxy(spec, sup, bins, n))?;
    }

    step("nodes Ready", || {
        wait_for("all nodes Ready", Duration::from_secs(90), || {
            let out = kubectl(spec, &["get", "nodes", "-o", "jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}{end}"])?;
            let ready = out.lines().filter(|l| l.ends_with("=True")).count();
            Ok((ready as u32 == spec.nodes).then_some(()))
        })
    })?;

    if o.no_demo {
        print_summary(spec, false)?;
        return Ok(());
    }
    step("demo application: backend (ClusterIP) and frontend (NodePort)", || deploy_demo(spec))?;
    print_summary(spec, true)
}

/// The single control plane: one apiserver, one controller, one scheduler.
fn start_control_plane(spec: &Spec, sup: &Supervisor, bins: &Binaries) -> anyhow::Result<()> {
    step(&format!("rkube-apiserver on {}", spec.apiserver_url()), || {
        let args = apiserver_args(spec, &spec.etcd_url(), &spec.host_ip().to_string(), spec.apiserver_insecure_port);
        sup.start("apiserver", None, &bins.apiserver, &args)?;
        wait_healthy(sup, "apiserver", &format!("127.0.0.1:{}", spec.apiserver_insecure_port), "/healthz")?;
        // And through TLS with the admin's client certificate, as users will.
        wait_for("kubectl through the secure port", Duration::from_secs(30), || Ok(kubectl(spec, &["get", "--raw", "/healthz"]).ok()))?;
        Ok(())
    })?;

    step("rkube-controller", || {
        sup.start("controller", None, &bins.controller, &controller_args(spec, spec.controller_port))?;
        wait_healthy(sup, "controller", &format!("127.0.0.1:{}", spec.controller_port), "/healthz")
    })?;

    step("rkube-scheduler", || {
        sup.start("scheduler", None, &bins.scheduler, &scheduler_args(spec, spec.scheduler_port))?;
        wait_healthy(sup, "scheduler", &format!("127.0.0.1:{}", spec.scheduler_port), "/healthz")
    })?;
    Ok(())
}

pub fn which(cmd: &str) -> anyhow::Result<String> {
    let p = std::env::var_os("PATH").context("no PATH")?;
    std::env::split_paths(&p)
        .map(|d| d.join(cmd))
        .find(|p| p.is_file())
        .map(|p| p.to_string_lossy().into_owned())
        .with_context(|| format!("{cmd} not found in PATH"))
}

fn start_containerd(spec: &Spec, sup: &Supervisor, n: u32) -> anyhow::Result<()> {
    let dir = spec.containerd_dir(n);
    let layout = Layout::new(&dir);
    for d in [&layout.root, &layout.state, &layout.runc_root, &layout.opt, &layout.cni_data_dir, &layout.images, &layout.pod_logs] {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    // The CNI bridge lives inside the node's namespace, so every node can
    // call it cni0; the network name must be unique machine-wide (cache files).
    let pod_cidr = spec.pod_cidr(n).parse().context("pod CIDR")?;
    let mut net = BridgeNetwork::new(&spec.cni_network(n), "cni0", pod_cidr, &layout.cni_data_dir)?;
    // Pods reach pods on other nodes with their own addresses (no NAT, as
    // Kubernetes' network model asks); the node masquerades only traffic
    // leaving the cluster CIDR, as kubenet's `! -d <cluster-cidr> -j
    // MASQUERADE`. The rules are in the node's namespace, so they go with it.
    net.non_masquerade_cidr = Some(spec.cluster_cidr_str().parse().context("cluster CIDR")?);
    net.write(&layout.cni_conf_dir)?;
    net.install_node_rules(Some(&spec.netns(n)))?;
    std::fs::write(&layout.config, render_config(&layout, PAUSE_IMAGE, Path::new(DEBIAN_CNI_BIN_DIR)))?;
    let name = format!("node{n}-containerd");
    sup.start(&name, Some(&spec.netns(n)), Path::new(&which("containerd")?), &[s("--config"), layout.config.to_string_lossy().into_owned()])?;
    let endpoint = format!("unix://{}", layout.socket.display());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    wait_for("containerd CRI ready", Duration::from_secs(60), || {
        ensure_running(sup, &name)?;
        if !layout.socket.exists() {
            return Ok(None);
        }
        rt.block_on(cri_ready(&endpoint)).map(Some)
    })?;
    images::import_local_images(&layout.socket, Path::new(DEFAULT_BUSYBOX_BINARY), &layout.images)
}

/// CRI answers `Version` and reports RuntimeReady and NetworkReady.
pub async fn cri_ready(endpoint: &str) -> anyhow::Result<()> {
    let mut cri = rkube_agent::runtime::cri::CriClient::connect(endpoint).await?;
    cri.version().await?;
    let status = cri.runtime.status(proto::runtime::v1::StatusRequest { verbose: false }).await?.into_inner();
    let conditions = status.status.map(|s| s.conditions).unwrap_or_default();
    for wanted in ["RuntimeReady", "NetworkReady"] {
        if !conditions.iter().any(|c| c.r#type == wanted && c.status) {
            bail!("{wanted} not true");
        }
    }
    Ok(())
}

fn start_agent(spec: &Spec, sup: &Supervisor, bins: &Binaries, n: u32) -> anyhow::Result<()> {
    let node = spec.node_name(n);
    let ip = spec.node_ip(n).to_string();
    let layout = Layout::new(&spec.containerd_dir(n));
    let args = vec![
        format!("--node-name={node}"),
        format!("--kubeconfig={}", spec.pki().join(format!("node-{node}.kubeconfig")).display()),
        format!("--container-runtime-endpoint=unix://{}", layout.socket.display()),
        format!("--node-ip={ip}"),
        format!("--pod-cidr={}", spec.pod_cidr(n)),
        format!("--root-dir={}", spec.node_dir(n).join("agent").display()),
        format!("--healthz-bind-address={ip}"),
        format!("--address={ip}"),
    ];
    let name = format!("node{n}-agent");
    sup.start(&name, Some(&spec.netns(n)), &bins.agent, &args)?;
    wait_healthy(sup, &name, &format!("{ip}:10248"), "/healthz")
}

fn start_proxy(spec: &Spec, sup: &Supervisor, bins: &Binaries, n: u32) -> anyhow::Result<()> {
    let ip = spec.node_ip(n).to_string();
    let args = vec![
        format!("--kubeconfig={}", spec.pki().join("kube-proxy.kubeconfig").display()),
        format!("--hostname-override={}", spec.node_name(n)),
        format!("--cluster-cidr={}", spec.cluster_cidr_str()),
        format!("--service-cluster-ip-range={}", spec.service_cidr),
        format!("--healthz-bind-address={ip}:10256"),
        s("--metrics-bind-address=127.0.0.1:10249"),
    ];
    let name = format!("node{n}-proxy");
    sup.start(&name, Some(&spec.netns(n)), &bins.proxy, &args)?;
    wait_healthy(sup, &name, &format!("{ip}:10256"), "/healthz")
}

fn deploy_demo(spec: &Spec) -> anyhow::Result<()> {
    // The demo's pods run as the `default` ServiceAccount, which the
    // controller manager's serviceaccount controller creates; the
    // ServiceAccount admission plugin refuses pods until it exists.
    wait_for("the default ServiceAccount", Duration::from_secs(60), || {
        Ok(kubectl(spec, &["get", "serviceaccount", "default", "-n", "default", "-o", "name"]).ok())
    })?;
    kubectl_apply(spec, &demo::backend(2))?;
    let backend_ip = kubectl(spec, &["get", "service", "backend", "-o", "jsonpath={.spec.clusterIP}"])?;
    kubectl_apply(spec, &demo::frontend(spec.nodes.max(2) + 1, backend_ip.trim()))?;
    for d in ["backend", "frontend"] {
        kubectl(spec, &["rollout", "status", &format!("deployment/{d}"), "--timeout=180s"])?;
    }
    // The Endpoints controller and every node's proxy follow, each at its
    // own pace; wait until the app answers through the ClusterIP and through
    // the NodePort of every node, so the summary never races a proxy sync.
    wait_for("frontend answering through its ClusterIP", Duration::from_secs(60), || {
        Ok(fetch_cluster_ip(spec, "frontend").ok().filter(|a| a.contains("backend")))
    })?;
    for n in spec.node_range() {
        wait_for(&format!("frontend answering through the NodePort of node {n}"), Duration::from_secs(60), || {
            Ok(fetch_node_port(spec, n).ok().filter(|a| a.contains("backend")))
        })?;
    }
    Ok(())
}

/// GET the demo path from inside `netns` (a thread that entered it).
pub fn http_get_in_netns(netns: &str, addr: String) -> anyhow::Result<(u16, String)> {
    machinery::netns::run(netns, move || crate::cluster::http_get(&addr, demo::PATH))?
}

/// The demo answer through `service`'s ClusterIP, asked from node 1.
pub fn fetch_cluster_ip(spec: &Spec, service: &str) -> anyhow::Result<String> {
    let ip = kubectl(spec, &["get", "service", service, "-o", "jsonpath={.spec.clusterIP}"])?;
    let (status, body) = http_get_in_netns(&spec.netns(1), format!("{}:80", ip.trim()))?;
    if status != 200 {
        bail!("HTTP {status}");
    }
    Ok(body.trim().to_string())
}

/// The demo answer through the frontend's NodePort on node `n`, asked from the host.
pub fn fetch_node_port(spec: &Spec, n: u32) -> anyhow::Result<String> {
    let port = kubectl(spec, &["get", "service", "frontend", "-o", "jsonpath={.spec.ports[0].nodePort}"])?;
    let (status, body) = crate::cluster::http_get(&format!("{}:{}", spec.node_ip(n), port.trim()), demo::PATH)?;
    if status != 200 {
        bail!("HTTP {status}");
    }
    Ok(body.trim().to_string())
}

fn print_summary(spec: &Spec, demo: bool) -> anyhow::Result<()> {
    println!("\n$ kubectl get nodes -o wide\n{}", kubectl(spec, &["get", "nodes", "-o", "wide"])?);
    if demo {
        println!("$ kubectl get all -o wide\n{}", kubectl(spec, &["get", "all", "-o", "wide"])?);
        let ip = kubectl(spec, &["get", "service", "frontend", "-o", "jsonpath={.spec.clusterIP}"])?;
        println!("frontend through its ClusterIP {} (from {}): {}", ip.trim(), spec.netns(1), fetch_cluster_ip(spec, "frontend")?);
        let port = kubectl(spec, &["get", "service", "frontend", "-o", "jsonpath={.spec.ports[0].nodePort}"])?;
        for n in spec.node_range() {
            println!("frontend through NodePort {}:{} (from the host): {}", spec.node_ip(n), port.trim(), fetch_node_port(spec, n)?);
        }
    }
    if spec.ha.is_some() {
        println!("\nHigh availability: every client goes through haproxy at {} to the apiservers on {} (each checked on /readyz; `kubectl get endpoints kubernetes` lists the live ones); etcd has {} members; controllers and schedulers run twice, one of each leading (`kubectl -n kube-system get leases`).",
            spec.apiserver_url(),
            spec.apiserver_ips().iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", "),
            spec.etcd_urls().len());
    }
    println!("\nUse the cluster with:\n  export KUBECONFIG={}\n  kubectl get pods -o wide", spec.admin_kubeconfig().display());
    println!("  ip netns exec {} sh    # a shell on node 1 (ClusterIPs work from there)", spec.netns(1));
    println!("rkube status | rkube logs <component> | rkube down [--purge]   (add --state-dir {} if not the default)", spec.state_dir.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(present: &[&str], expected: &[&str]) {
        let got = missing_packages(|c| present.contains(&c));
        assert_eq!(got, expected);
    }

    #[test]
    fn missing_packages_are_named_once() {
        let all: Vec<&str> = PREREQUISITES.iter().map(|(c, _)| *c).collect();
        check(&all, &[]);
        check(&all.iter().copied().filter(|c| *c != "ctr" && *c != "containerd").collect::<Vec<_>>(), &["containerd"]);
        check(&[], &["etcd-server", "containerd", "runc", "containernetworking-plugins", "iptables", "conntrack", "iproute2", "busybox-static"]);
    }

    #[test]
    fn service_ip() {
        assert_eq!(first_service_ip("10.96.0.0/12").unwrap(), Ipv4Addr::new(10, 96, 0, 1));
        assert!(first_service_ip("x/12").is_err());
    }
}
