//! A private containerd: the node's container runtime, owned by the project.
//!
//! A kubelet expects a CRI runtime already running on the node. Here nothing
//! runs by itself and no registry is reachable, so the project starts its own
//! containerd, isolated from any other on the machine (or in the same test
//! binary):
//!
//! * its own directory (`/tmp/rkube-ctrd-XXXXXX`) holding `config.toml`, the
//!   gRPC socket, `root` (content store, snapshots, metadata), `state`
//!   (runtime state, sandbox `/dev/shm` mounts), runc's state root, and the
//!   CNI config + host-local lease directory;
//! * its own CNI bridge (`rkb<8 hex>`) and network name (`rkube-<8 hex>`) over
//!   the podCIDR the caller gives, so instances never share leases or cache
//!   files (containerd 1.6 writes its CNI cache as
//!   `/var/lib/cni/results/<network>-<sandbox id>-<ifname>`), and the
//!   network's node-wide iptables chains (FORWARD accept, masquerade; see
//!   [`cni`]);
//! * the CRI plugin pointed at our pause image (`sandbox_image`), Debian's
//!   CNI plugins (`bin_dir`), overlayfs snapshots, and
//!   `restrict_oom_score_adj = true` (root here lacks CAP_SYS_RESOURCE, and
//!   runc fails when a sandbox asks for a negative oom_score_adj).
//!
//! Start-up waits until CRI answers `Version` and `Status` reports both
//! `RuntimeReady` and `NetworkReady`, then imports the local images.
//!
//! Tear-down ([`PrivateContainerd::stop`], or `Drop`) undoes everything:
//! stops and removes every pod sandbox through CRI (which tears down pod
//! networking and stops the shims), stops containerd, kills any shim and
//! runc container that survived, unmounts whatever is still mounted under our
//! directory, deletes the bridge, its iptables chains and our CNI cache
//! files, and removes the directory.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ipnet::Ipv4Net;
use proto::runtime::v1::{ListPodSandboxRequest, RemovePodSandboxRequest, StatusRequest, StopPodSandboxRequest};
use sha2::{Digest, Sha256};

use super::cni::{self, BridgeNetwork, CNI_CACHE_DIR, DEBIAN_CNI_BIN_DIR};
use super::cri::CriClient;
use super::images::{self, DEFAULT_BUSYBOX_BINARY, PAUSE_IMAGE};

/// A Unix socket path must fit in `sockaddr_un.sun_path` (108 bytes with the NUL).
const MAX_SOCKET_PATH: usize = 107;

/// How to start a [`PrivateContainerd`].
#[derive(Clone, Debug)]
pub struct PrivateContainerdConfig {
    /// The node's podCIDR; the CNI bridge hands out addresses from it.
    pub pod_cidr: Ipv4Net,
    /// containerd's `sandbox_image` (the pause image).
    pub sandbox_image: String,
    /// Where the CNI plugin binaries are.
    pub cni_bin_dir: PathBuf,
    /// The static busybox binary the local images are built from.
    pub busybox: PathBuf,
    /// Build and import [`images::BUSYBOX_IMAGE`] and [`images::PAUSE_IMAGE`] once ready.
    pub import_local_images: bool,
    /// Parent of the private directory. Keep it short: the socket lives inside.
    pub parent_dir: PathBuf,
    /// The containerd binary.
    pub containerd: PathBuf,
    /// How long to wait for CRI to become ready.
    pub startup_timeout: Duration,
}

impl PrivateContainerdConfig {
    pub fn new(pod_cidr: Ipv4Net) -> Self {
        Self {
            pod_cidr,
            sandbox_image: PAUSE_IMAGE.into(),
            cni_bin_dir: DEBIAN_CNI_BIN_DIR.into(),
            busybox: DEFAULT_BUSYBOX_BINARY.into(),
            import_local_images: true,
            parent_dir: "/tmp".into(),
            containerd: "containerd".into(),
            startup_timeout: Duration::from_secs(30),
        }
    }
}

/// The paths of one private containerd instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub socket: PathBuf,
    pub log: PathBuf,
    pub root: PathBuf,
    pub state: PathBuf,
    pub runc_root: PathBuf,
    pub opt: PathBuf,
    pub cni_conf_dir: PathBuf,
    pub cni_data_dir: PathBuf,
    pub images: PathBuf,
    /// A place for pod log directories (`PodSandboxConfig.log_directory`).
    pub pod_logs: PathBuf,
}

impl Layout {
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.into(),
            config: dir.join("config.toml"),
            socket: dir.join("containerd.sock"),
            log: dir.join("containerd.log"),
            root: dir.join("root"),
            state: dir.join("state"),
            runc_root: dir.join("runc"),
            opt: dir.join("opt"),
            cni_conf_dir: dir.join("cni/net.d"),
            cni_data_dir: dir.join("cni/ipam"),
            images: dir.join("images"),
            pod_logs: dir.join("pod-logs"),
        }
    }
}

/// A TOML basic string.
fn toml_str(s: impl AsRef<str>) -> String {
    let mut out = String::from("\"");
    for c in s.as_ref().chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn toml_path(p: &Path) -> String {
    toml_str(p.to_string_lossy())
}

/// containerd's `config.toml` (format version 2) for this instance. Anything
/// not set here keeps containerd's built-in default (`containerd config default`).
pub fn render_config(layout: &Layout, sandbox_image: &str, cni_bin_dir: &Path) -> String {
    let cri = r#"plugins."io.containerd.grpc.v1.cri""#;
    format!(
        r#"# Written by rkube for a private containerd; do not edit.
version = 2
root = {root}
state = {state}
# Snapshotters that cannot work here only slow start-up and log errors.
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs"]

[grpc]
  address = {socket}

[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = {opt}

  [{cri}]
    sandbox_image = {sandbox_image}
    # Root here lacks CAP_SYS_RESOURCE: never ask runc for a lower oom_score_adj than our own.
    restrict_oom_score_adj = true
    # Random port for the exec/attach/port-forward streaming server, on loopback.
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"

    [{cri}.containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"

      [{cri}.containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"

        [{cri}.containerd.runtimes.runc.options]
          # Private runc state, so leftovers can be found and deleted on tear-down.
          Root = {runc_root}
          SystemdCgroup = false

    [{cri}.cni]
      bin_dir = {cni_bin}
      conf_dir = {cni_conf}
      max_conf_num = 1
"#,
        root = toml_path(&layout.root),
        state = toml_path(&layout.state),
        socket = toml_path(&layout.socket),
        opt = toml_path(&layout.opt),
        sandbox_image = toml_str(sandbox_image),
        runc_root = toml_path(&layout.runc_root),
        cni_bin = toml_path(cni_bin_dir),
        cni_conf = toml_path(&layout.cni_conf_dir),
    )
}

/// A running private containerd. Dropping it tears everything down (see the module docs).
#[derive(Debug)]
pub struct PrivateContainerd {
    layout: Layout,
    network: BridgeNetwork,
    cni_bin_dir: PathBuf,
    child: Option<Child>,
    torn_down: bool,
}

impl PrivateContainerd {
    /// Starts containerd, waits for CRI to be ready and (by default) imports the local images.
    pub async fn start(config: PrivateContainerdConfig) -> Result<Self> {
        std::fs::create_dir_all(&config.parent_dir)?;
        let dir = tempfile::Builder::new()
            .prefix("rkube-ctrd-")
            .tempdir_in(&config.parent_dir)
            .context("creating private containerd directory")?
            .keep();
        let layout = Layout::new(&dir);
        // From here on, `Drop` cleans up whatever start-up managed to create.
        let id = short_id(&dir);
        let network = BridgeNetwork::new(&format!("rkube-{id}"), &format!("rkb{id}"), config.pod_cidr, &layout.cni_data_dir)?;
        let mut me = Self { layout, network, cni_bin_dir: config.cni_bin_dir.clone(), child: None, torn_down: false };
        me.launch(&config).await?;
        Ok(me)
    }

    async fn launch(&mut self, config: &PrivateContainerdConfig) -> Result<()> {
        let l = &self.layout.clone();
        if l.socket.as_os_str().len() > MAX_SOCKET_PATH {
            bail!("socket path {} is too long for a unix socket; use a shorter parent_dir", l.socket.display());
        }
        for d in [&l.root, &l.state, &l.runc_root, &l.opt, &l.cni_data_dir, &l.images, &l.pod_logs] {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
        }
        self.network.write(&l.cni_conf_dir)?;
        self.network.install_node_rules(None).context("setting up the pod network's iptables rules")?;
        std::fs::write(&l.config, render_config(l, &config.sandbox_image, &config.cni_bin_dir))?;
        let log = std::fs::File::create(&l.log)?;
        let child = Command::new(&config.containerd)
            .arg("--config")
            .arg(&l.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {} (install containerd)", config.containerd.display()))?;
        self.child = Some(child);
        self.wait_ready(config.startup_timeout).await?;
        if config.import_local_images {
            let (socket, busybox, dir) = (l.socket.clone(), config.busybox.clone(), l.images.clone());
            tokio::task::spawn_blocking(move || images::import_local_images(&socket, &busybox, &dir))
                .await
                .context("image import task")??;
        }
        Ok(())
    }

    /// Polls until CRI answers and reports the runtime and the network ready.
    async fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut last = String::from("socket not created yet");
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                bail!("containerd exited during start-up ({status}); log tail:\n{}", self.log_tail(4096));
            }
            if self.layout.socket.exists() {
                match self.probe().await {
                    Ok(()) => return Ok(()),
                    Err(e) => last = format!("{e:#}"),
                }
            }
            if Instant::now() > deadline {
                bail!("containerd not ready after {timeout:?}: {last}; log tail:\n{}", self.log_tail(4096));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn probe(&self) -> Result<()> {
        let mut cri = self.client().await?;
        cri.version().await?;
        let status = cri.runtime.status(StatusRequest { verbose: false }).await?.into_inner();
        let conditions = status.status.map(|s| s.conditions).unwrap_or_default();
        for wanted in ["RuntimeReady", "NetworkReady"] {
            match conditions.iter().find(|c| c.r#type == wanted) {
                Some(c) if c.status => {}
                Some(c) => bail!("{wanted} false: {} {}", c.reason, c.message),
                None => bail!("{wanted} not reported"),
            }
        }
        Ok(())
    }

    /// The CRI socket path.
    pub fn socket(&self) -> &Path {
        &self.layout.socket
    }

    /// The CRI endpoint, `unix:///…/containerd.sock` (what a kubelet takes as
    /// `--container-runtime-endpoint`).
    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.layout.socket.display())
    }

    /// A new CRI client connected to this containerd.
    pub async fn client(&self) -> Result<CriClient> {
        CriClient::connect(&self.endpoint()).await
    }

    /// All the instance's paths.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The CNI network (bridge name, podCIDR, …).
    pub fn network(&self) -> &BridgeNetwork {
        &self.network
    }

    /// The containerd process id (while running).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The last `max` bytes of containerd's log.
    pub fn log_tail(&self, max: u64) -> String {
        let Ok(mut f) = std::fs::File::open(&self.layout.log) else { return String::new() };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = f.seek(SeekFrom::Start(len.saturating_sub(max)));
        let mut s = String::new();
        let _ = f.read_to_string(&mut s);
        s
    }

    /// Stops and removes every pod sandbox (and so every container) through CRI.
    /// Returns how many sandboxes were removed.
    pub async fn remove_all_pods(&self) -> Result<usize> {
        remove_all_pods(&self.endpoint()).await
    }

    /// Tears everything down and reports what could not be cleaned.
    pub async fn stop(self) -> Result<()> {
        let removed = self.remove_all_pods().await;
        let mut me = self;
        let errors = tokio::task::spawn_blocking(move || me.teardown(false)).await?;
        removed.context("removing pod sandboxes")?;
        if !errors.is_empty() {
            bail!("private containerd tear-down: {}", errors.join("; "));
        }
        Ok(())
    }

    /// Synchronous tear-down; `with_cri` removes pods first (from a helper
    /// thread with its own runtime, so it works inside or outside tokio).
    fn teardown(&mut self, with_cri: bool) -> Vec<String> {
        if self.torn_down {
            return vec![];
        }
        self.torn_down = true;
        let mut errors = Vec::new();
        let running = self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)));
        if with_cri && running {
            let endpoint = self.endpoint();
            let res = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                rt.block_on(async { tokio::time::timeout(Duration::from_secs(60), remove_all_pods(&endpoint)).await? })
            })
            .join();
            match res {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => errors.push(format!("removing pods via CRI: {e:#}")),
                Err(_) => errors.push("CRI clean-up thread panicked".into()),
            }
        }
        // Pods CRI could not remove (containerd crashed or hung): remember their
        // network namespaces before their bundles go away.
        let leftover_netns = netns_of_bundles(&self.layout.state);
        if let Some(mut child) = self.child.take() {
            stop_process(&mut child);
        }
        // Shims daemonise and outlive containerd; find ours by their -address argument.
        for pid in pids_with_arg(&self.layout.socket.to_string_lossy()) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
        errors.extend(delete_runc_containers(&self.layout.runc_root));
        // Attachments containerd did not tear down: replay CNI DEL from libcni's
        // cache (releases the IP and any hostPort rules).
        if let Ok(entries) = std::fs::read_dir(CNI_CACHE_DIR) {
            let prefix = format!("{}-", self.network.name);
            for e in entries.flatten().filter(|e| e.file_name().to_string_lossy().starts_with(&prefix)) {
                let name = e.file_name().to_string_lossy().into_owned();
                let netns = leftover_netns.iter().find(|(id, _)| name.contains(id.as_str())).map(|(_, p)| p.as_path());
                if let Err(err) = cni::del_cached_attachment(&e.path(), &self.cni_bin_dir, netns) {
                    errors.push(format!("{err:#}"));
                    let _ = std::fs::remove_file(e.path());
                }
            }
            // containerd's own loopback attachment (`cni-loopback-<id>-lo`): DEL is a no-op, drop the record.
            for (id, _) in &leftover_netns {
                let _ = std::fs::remove_file(Path::new(CNI_CACHE_DIR).join(format!("cni-loopback-{id}-lo")));
            }
        }
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        for m in mounts_under(&mountinfo, &self.layout.dir) {
            if let Err(e) = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH) {
                errors.push(format!("unmounting {}: {e}", m.display()));
            }
        }
        // A netns is kept alive by its bind mount (`/var/run/netns/cni-…`);
        // removing it also deletes the pod's veth pair.
        for (_, ns) in &leftover_netns {
            let _ = nix::mount::umount2(ns, nix::mount::MntFlags::MNT_DETACH);
            if let Err(e) = std::fs::remove_file(ns) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    errors.push(format!("removing netns {}: {e}", ns.display()));
                }
            }
        }
        if let Err(e) = delete_link(&self.network.bridge) {
            errors.push(e);
        }
        errors.extend(self.network.remove_node_rules(None));
        if let Err(e) = std::fs::remove_dir_all(&self.layout.dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                errors.push(format!("removing {}: {e}", self.layout.dir.display()));
            }
        }
        errors
    }
}

impl Drop for PrivateContainerd {
    fn drop(&mut self) {
        for e in self.teardown(true) {
            eprintln!("rkube: private containerd clean-up: {e}");
        }
    }
}

/// Stops and removes every pod sandbox of the runtime at `endpoint`.
pub async fn remove_all_pods(endpoint: &str) -> Result<usize> {
    let mut cri = CriClient::connect(endpoint).await?;
    let pods = cri.runtime.list_pod_sandbox(ListPodSandboxRequest { filter: None }).await?.into_inner().items;
    for pod in &pods {
        let id = pod.id.clone();
        cri.runtime.stop_pod_sandbox(StopPodSandboxRequest { pod_sandbox_id: id.clone() }).await.with_context(|| format!("StopPodSandbox {id}"))?;
        cri.runtime.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: id.clone() }).await.with_context(|| format!("RemovePodSandbox {id}"))?;
    }
    Ok(pods.len())
}

/// 8 hex characters derived from the instance directory (unique per instance).
fn short_id(dir: &Path) -> String {
    let sum = Sha256::digest(dir.as_os_str().as_encoded_bytes());
    sum[..4].iter().map(|b| format!("{b:02x}")).collect()
}

/// SIGTERM, up to 5 s of grace, then SIGKILL; always reaps the child.
fn stop_process(child: &mut Child) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    if matches!(child.try_wait(), Ok(Some(_))) {
        return;
    }
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Processes having `arg` as one of their command-line arguments.
fn pids_with_arg(arg: &str) -> Vec<i32> {
    let mut pids = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else { return pids };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        if let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) {
            if cmdline.split(|b| *b == 0).any(|a| a == arg.as_bytes()) {
                pids.push(pid);
            }
        }
    }
    pids
}

/// `runc delete --force` for every container left in our runc root
/// (`<root>/<containerd namespace>/<container id>`).
fn delete_runc_containers(runc_root: &Path) -> Vec<String> {
    let mut errors = Vec::new();
    let Ok(namespaces) = std::fs::read_dir(runc_root) else { return errors };
    for ns in namespaces.flatten().filter(|e| e.path().is_dir()) {
        let Ok(containers) = std::fs::read_dir(ns.path()) else { continue };
        for c in containers.flatten().filter(|e| e.path().is_dir()) {
            let out = Command::new("runc").arg("--root").arg(ns.path()).args(["delete", "--force"]).arg(c.file_name()).output();
            match out {
                Ok(o) if o.status.success() => {}
                Ok(o) => errors.push(format!("runc delete {:?}: {}", c.file_name(), String::from_utf8_lossy(&o.stderr).trim())),
                Err(e) => errors.push(format!("running runc: {e}")),
            }
        }
    }
    errors
}

/// Network namespace paths named in the OCI bundles of containers still
/// known to the runc v2 shim (`<state>/io.containerd.runtime.v2.task/<ns>/<id>/config.json`),
/// limited to the named namespaces CNI creates under `/var/run/netns` or `/run/netns`.
/// Returns (container id, netns path) pairs; for a sandbox, the id is the one CNI saw.
pub fn netns_of_bundles(state: &Path) -> Vec<(String, PathBuf)> {
    let mut found = Vec::new();
    let Ok(namespaces) = std::fs::read_dir(state.join("io.containerd.runtime.v2.task")) else { return found };
    for ns in namespaces.flatten() {
        let Ok(bundles) = std::fs::read_dir(ns.path()) else { continue };
        for bundle in bundles.flatten() {
            let Ok(text) = std::fs::read_to_string(bundle.path().join("config.json")) else { continue };
            if let Some(ns) = netns_of_spec(&text) {
                found.push((bundle.file_name().to_string_lossy().into_owned(), ns));
            }
        }
    }
    found.sort();
    found.dedup_by(|a, b| a.1 == b.1);
    found
}

/// The named network namespace of one OCI runtime spec (`linux.namespaces[type=network].path`).
fn netns_of_spec(spec: &str) -> Option<PathBuf> {
    let spec: serde_json::Value = serde_json::from_str(spec).ok()?;
    let path = spec["linux"]["namespaces"].as_array()?.iter().find(|n| n["type"] == "network")?["path"].as_str()?;
    (path.starts_with("/var/run/netns/") || path.starts_with("/run/netns/")).then(|| PathBuf::from(path))
}

/// `ip link del NAME`; a missing link is not an error (no pod ever ran).
///
/// Asks netlink (`ip`), not `/sys/class/net`: sysfs lists the interfaces of
/// the network namespace it was mounted in, which is not ours when we run
/// in a namespace of our own (as the benchmark and the tests do).
fn delete_link(name: &str) -> Result<(), String> {
    let exists = Command::new("ip").args(["link", "show", "dev", name]).output().is_ok_and(|o| o.status.success());
    if !exists {
        return Ok(());
    }
    match Command::new("ip").args(["link", "del", name]).output() {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(format!("ip link del {name}: {}", String::from_utf8_lossy(&o.stderr).trim())),
        Err(e) => Err(format!("running ip: {e}")),
    }
}

/// Mount points strictly below `dir` in a `/proc/self/mountinfo` text, in
/// reverse mount order (children after their parents in mountinfo, so this
/// unmounts children first, as `umount -R` does).
pub fn mounts_under(mountinfo: &str, dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(unescape_mountinfo(field)))
        .filter(|p| p.starts_with(dir) && p != dir)
        .collect();
    found.reverse();
    found
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo` octal.
fn unescape_mountinfo(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(mountinfo: &str, dir: &str, expected: &[&str]) {
        let got = mounts_under(mountinfo, Path::new(dir));
        let expected: Vec<PathBuf> = expected.iter().map(PathBuf::from).collect();
        assert_eq!(got, expected, "mounts under {dir}");
    }

    #[test]
    fn mounts_under_dir_in_reverse_order() {
        let info = "\
22 1 8:1 / / rw - ext4 /dev/vda rw
30 22 0:40 / /tmp/rkube-ctrd-a/state/x/shm rw - tmpfs shm rw
31 22 0:41 / /tmp/rkube-ctrd-a/state/rootfs rw - overlay overlay rw
32 22 0:42 / /tmp/rkube-ctrd-ab rw - tmpfs t rw
33 22 0:43 / /tmp/rkube-ctrd-a/with\\040space rw - tmpfs t rw
34 22 0:44 / /tmp/rkube-ctrd-a rw - tmpfs t rw
";
        check(info, "/tmp/rkube-ctrd-a", &["/tmp/rkube-ctrd-a/with space", "/tmp/rkube-ctrd-a/state/rootfs", "/tmp/rkube-ctrd-a/state/x/shm"]);
        check(info, "/nowhere", &[]);
    }

    #[test]
    fn config_sets_private_paths_and_knobs() {
        let layout = Layout::new(Path::new("/tmp/rkube-ctrd-x"));
        let text = render_config(&layout, PAUSE_IMAGE, Path::new("/usr/lib/cni"));
        for needle in [
            "root = \"/tmp/rkube-ctrd-x/root\"",
            "state = \"/tmp/rkube-ctrd-x/state\"",
            "address = \"/tmp/rkube-ctrd-x/containerd.sock\"",
            "sandbox_image = \"docker.io/rkube/pause:1\"",
            "restrict_oom_score_adj = true",
            "snapshotter = \"overlayfs\"",
            "bin_dir = \"/usr/lib/cni\"",
            "conf_dir = \"/tmp/rkube-ctrd-x/cni/net.d\"",
            "Root = \"/tmp/rkube-ctrd-x/runc\"",
        ] {
            assert!(text.contains(needle), "config lacks {needle:?}:\n{text}");
        }
    }

    /// containerd itself parses the generated file and reports our settings.
    #[test]
    fn containerd_accepts_config() {
        if Command::new("containerd").arg("--version").output().is_err() {
            panic!("containerd is not installed (apt-get install -y containerd)");
        }
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        std::fs::write(&layout.config, render_config(&layout, PAUSE_IMAGE, Path::new("/usr/lib/cni"))).unwrap();
        let out = Command::new("containerd").arg("--config").arg(&layout.config).args(["config", "dump"]).output().unwrap();
        let dump = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(dump.contains("sandbox_image = \"docker.io/rkube/pause:1\""), "{dump}");
        assert!(dump.contains("restrict_oom_score_adj = true"), "{dump}");
        assert!(dump.contains(&format!("conf_dir = \"{}\"", layout.cni_conf_dir.display())), "{dump}");
    }

    #[test]
    fn netns_from_oci_spec() {
        let spec = |path: &str| format!(r#"{{"linux":{{"namespaces":[{{"type":"pid"}},{{"type":"network","path":"{path}"}}]}}}}"#);
        assert_eq!(netns_of_spec(&spec("/var/run/netns/cni-1")), Some(PathBuf::from("/var/run/netns/cni-1")));
        // A container joining its sandbox's netns through /proc is not a netns we own.
        assert_eq!(netns_of_spec(&spec("/proc/42/ns/net")), None);
        assert_eq!(netns_of_spec(r#"{"linux":{"namespaces":[{"type":"network"}]}}"#), None);
        assert_eq!(netns_of_spec("not json"), None);
    }

    #[test]
    fn toml_strings_are_escaped() {
        assert_eq!(toml_str(r#"a"b\c"#), r#""a\"b\\c""#);
    }

    #[test]
    fn short_ids_differ_per_dir() {
        let a = short_id(Path::new("/tmp/rkube-ctrd-a"));
        let b = short_id(Path::new("/tmp/rkube-ctrd-b"));
        assert_eq!(a.len(), 8);
        assert_ne!(a, b);
    }
}
