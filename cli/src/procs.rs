//! Starting the real processes the benchmarks need: etcd and the rkube
//! binaries (found next to the running `rkube`), each on free ports, logging
//! to a file, killed when the handle drops; and a throwaway network namespace
//! for benchmarks that make real pod networks.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A binary shipped beside the running `rkube` (target/<profile>/...).
pub fn sibling_binary(name: &str) -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe()?;
    let p = me.parent().context("no parent dir")?.join(name);
    if !p.exists() {
        bail!("{} not found next to {}: build it with `cargo build --release -p {name}`", p.display(), me.display());
    }
    Ok(p)
}

pub struct Proc {
    pub child: Child,
    pub name: String,
}

impl Proc {
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> anyhow::Result<Self> {
        let out = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        cmd.stdin(Stdio::null()).stdout(out.try_clone()?).stderr(out);
        // Its own process group: a Ctrl-C at the terminal reaches only
        // `rkube`, which then stops its children in order (see Drop).
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd.spawn().with_context(|| format!("starting {name} ({cmd:?})"))?;
        Ok(Proc { child, name: name.to_string() })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory in KiB, from /proc.
    pub fn rss_kib(&self) -> Option<u64> {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        s.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `url` answers 200.
pub async fn wait_http_ok(url: &str, timeout: Duration) -> anyhow::Result<()> {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let start = Instant::now();
    loop {
        if let Ok(r) = client.get(url.parse()?).await {
            if r.status() == 200 {
                return Ok(());
            }
        }
        if start.elapsed() > timeout {
            bail!("{url} did not answer 200 within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The `rkube-apiserver` beside `rkube`, on a free insecure port on
/// 127.0.0.1 against `etcd_url`, logging to `dir/apiserver.log`; returns once
/// `/readyz` answers, with its base URL.
pub async fn start_apiserver(dir: &Path, etcd_url: &str) -> anyhow::Result<(Proc, String)> {
    let port = free_port()?;
    let mut cmd = Command::new(sibling_binary("rkube-apiserver")?);
    cmd.arg(format!("--etcd-servers={etcd_url}")).arg(format!("--insecure-port={port}"));
    let log = dir.join("apiserver.log");
    let api = Proc::spawn("rkube-apiserver", cmd, &log)?;
    let base = format!("http://127.0.0.1:{port}");
    wait_http_ok(&format!("{base}/readyz"), Duration::from_secs(30))
        .await
        .with_context(|| std::fs::read_to_string(&log).unwrap_or_default())?;
    Ok((api, base))
}

/// A network namespace of our own (`ip netns add <name>`, loopback up, no
/// other interface and so no route out), deleted on drop. A thread that
/// [`enter`](Netns::enter)s it moves there with every thread and process it
/// starts afterwards (namespaces are inherited), as `nsenter --net` would
/// move one program; the mount namespace stays the host's, which runc needs.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn create(name: &str) -> anyhow::Result<Self> {
        crate::cluster::run_cmd("ip", &["netns", "add", name])?;
        let ns = Netns { name: name.to_string() };
        crate::cluster::run_cmd("ip", &["-n", name, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn path(&self) -> PathBuf {
        machinery::netns::path(&self.name)
    }

    /// Moves the calling thread into the namespace.
    pub fn enter(&self) -> anyhow::Result<()> {
        machinery::netns::enter(&machinery::netns::open(&self.name)?)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(e) = crate::cluster::run_cmd("ip", &["netns", "del", &self.name]) {
            eprintln!("rkube: removing network namespace {}: {e:#}", self.name);
        }
    }
}

/// A tmpfs mounted on a fresh directory under /tmp, unmounted and removed on
/// drop (lazily, so a busy mount cannot fail the drop).
pub struct Tmpfs {
    pub path: PathBuf,
}

impl Tmpfs {
    pub fn mount(prefix: &str) -> anyhow::Result<Self> {
        let path = tempfile::Builder::new().prefix(prefix).tempdir()?.keep();
        let me = Tmpfs { path };
        nix::mount::mount(Some("tmpfs"), &me.path, Some("tmpfs"), nix::mount::MsFlags::empty(), Some("mode=0755"))
            .with_context(|| format!("mounting a tmpfs on {}", me.path.display()))?;
        Ok(me)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.path, nix::mount::MntFlags::MNT_DETACH);
        if let Err(e) = std::fs::remove_dir_all(&self.path) {
            eprintln!("rkube: removing {}: {e}", self.path.display());
        }
    }
}

/// Where a benchmark measures its raw etcd ceiling, and how it clears up.
///
/// etcd 3.4 (Debian's) copies its whole write-back read buffer on every
/// transaction (`bucketBuffer.Copy` in `ConcurrentReadTx`; upstream fixed it
/// in etcd-io/etcd#16508, 3.5.10+), and that buffer never shrinks: one
/// delete-range of 10,000 keys grows it to 16,384 entries and every later
/// transaction then pays a copy of about 0.8 MB. Measured here, that made the
/// apiserver's creates after the ceiling run 5–8× dearer in etcd CPU than on
/// a fresh etcd. So the ceiling runs on a twin etcd (same binary, flags and
/// disk) when the benchmark starts its own, and against a given etcd it is
/// cleared in small deletes that never grow that buffer.
pub struct CeilingEtcd {
    pub url: String,
    _twin: Option<Proc>,
}

impl CeilingEtcd {
    /// A twin of the private etcd in `dir/ceiling`, or `given` itself.
    pub fn new(dir: &Path, given: Option<&str>) -> anyhow::Result<Self> {
        match given {
            Some(url) => Ok(CeilingEtcd { url: url.to_string(), _twin: None }),
            None => {
                let dir = dir.join("ceiling");
                std::fs::create_dir_all(&dir)?;
                let (p, url) = start_etcd(&dir)?;
                Ok(CeilingEtcd { url, _twin: Some(p) })
            }
        }
    }

    /// Remove the scratch keys under `prefix`: nothing to do on a twin (it
    /// dies with this handle); on a shared etcd, 256 keys per delete.
    pub async fn clear(&self, prefix: &str) -> anyhow::Result<()> {
        if self._twin.is_some() {
            return Ok(());
        }
        let mut kv = etcd_client::Client::connect([self.url.as_str()], None).await?.kv_client();
        loop {
            let opts = etcd_client::GetOptions::new().with_prefix().with_keys_only().with_limit(256);
            let resp = kv.get(prefix, Some(opts)).await?;
            let (Some(first), Some(last)) = (resp.kvs().first(), resp.kvs().last()) else { return Ok(()) };
            let mut end = last.key().to_vec();
            end.push(0);
            kv.delete(first.key(), Some(etcd_client::DeleteOptions::new().with_range(end))).await?;
        }
    }
}

/// A private etcd in `dir` on free ports.
pub fn start_etcd(dir: &Path) -> anyhow::Result<(Proc, String)> {
    let (client, peer) = (free_port()?, free_port()?);
    let url = format!("http://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let mut cmd = Command::new("etcd");
    cmd.arg("--name=bench")
        .arg(format!("--data-dir={}", dir.join("etcd").display()))
        .arg(format!("--listen-client-urls={url}"))
        .arg(format!("--advertise-client-urls={url}"))
        .arg(format!("--listen-peer-urls={peer_url}"))
        .arg(format!("--initial-advertise-peer-urls={peer_url}"))
        .arg(format!("--initial-cluster=bench={peer_url}"))
        .arg("--quota-backend-bytes=8589934592")
        .arg("--log-level=error")
        .arg("--logger=zap");
    let p = Proc::spawn("etcd", cmd, &dir.join("etcd.log"))?;
    // Callers start an apiserver next, which exits when etcd does not answer;
    // on a loaded machine etcd takes a while to elect itself, so wait for its
    // own health endpoint first.
    let addr = format!("127.0.0.1:{client}");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        match crate::cluster::http_get(&addr, "/health") {
            Ok((200, body)) if body.contains("true") => break,
            _ if std::time::Instant::now() > deadline => {
                anyhow::bail!("etcd at {url} not healthy after 30s: {}", std::fs::read_to_string(dir.join("etcd.log")).unwrap_or_default())
            }
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    }
    Ok((p, url))
}
