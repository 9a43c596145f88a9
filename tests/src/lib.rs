//! End-to-end test harness: real etcd, the real rkube binaries, the real
//! kubectl — each test gets its own, on free ports in its own temp dir, and
//! everything is stopped when the handle drops (also on panic). Processes
//! are started with a parent-death signal, so even a killed test run leaves
//! no servers behind.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub mod ha;
pub mod netns;
pub mod up;

/// A port nobody listens on right now, on 127.0.0.1.
pub fn free_port() -> u16 {
    free_port_on("127.0.0.1")
}

/// A port nobody listens on right now, on the local address `ip`.
pub fn free_port_on(ip: &str) -> u16 {
    TcpListener::bind((ip, 0)).unwrap().local_addr().unwrap().port()
}

/// Starts `cmd` with its output in `log`, so that it dies with the test
/// process (parent-death signal).
pub fn spawn_logged(mut cmd: Command, log: &Path) -> Child {
    let out = std::fs::File::create(log).unwrap();
    let err = out.try_clone().unwrap();
    cmd.stdin(Stdio::null()).stdout(out).stderr(err);
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    cmd.spawn().unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"))
}

/// How often [`eventually`] and [`eventually_blocking`] look again.
const POLL: Duration = Duration::from_millis(50);

/// Polls `f` every 50 ms until it returns `Some`, and returns that; panics
/// with `what` after `timeout`. The blocking form of [`eventually`], for
/// tests without an async runtime.
///
/// A condition is always looked at once more after the deadline, so a
/// machine that was too busy to poll in time still gets its answer.
pub fn eventually_blocking<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        let late = Instant::now() >= deadline;
        if let Some(v) = f() {
            return v;
        }
        assert!(!late, "timed out waiting for {what} (after {timeout:?})");
        std::thread::sleep(POLL);
    }
}

/// A controller's work queue (client-go's `workqueue_*` metrics, label
/// `name`) has nothing queued and nothing in flight: every key added has
/// been processed — `workqueue_adds_total` equals the count of
/// `workqueue_work_duration_seconds`, observed each time a worker is done
/// with a key — and its depth is 0. Returns the number of adds so far (to
/// tell that the queue saw something since an earlier reading), `None`
/// while work is pending or the queue is not in `metrics` at all.
pub fn work_queue_drained(metrics: &str, queue: &str) -> Option<f64> {
    let adds = metric(metrics, &format!("workqueue_adds_total{{name=\"{queue}\"}}"))?;
    let done = metric(metrics, &format!("workqueue_work_duration_seconds_count{{name=\"{queue}\"}}"))?;
    let depth = metric(metrics, &format!("workqueue_depth{{name=\"{queue}\"}}"))?;
    (adds == done && depth == 0.0).then_some(adds)
}

/// The value of one series in a Prometheus text exposition (`/metrics`):
/// `series` is the name with its labels exactly as exposed
/// (`workqueue_adds_total{name="replicaset"}`). `None` when absent.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.split_whitespace().next()?.parse().ok())
}

/// A raw HTTP/1.1 exchange, enough for tests that need exact status codes,
/// headers and bodies without a client library in between.
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub fn http(base: &str, method: &str, path: &str, content_type: Option<&str>, body: &[u8]) -> HttpResponse {
    try_http(base, method, path, content_type, body).unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// [`http`] that reports a failed exchange instead of panicking: for probes
/// of servers that are still starting (they may accept and then reset).
pub fn try_http(base: &str, method: &str, path: &str, content_type: Option<&str>, body: &[u8]) -> std::io::Result<HttpResponse> {
    use std::io::{Error, ErrorKind};
    let hostport = base.trim_start_matches("http://").trim_end_matches('/');
    let mut s = TcpStream::connect(hostport)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    if let Some(ct) = content_type {
        req.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    // A server may answer (413, say) and close before reading a large body:
    // the response is still there to read.
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    if let Err(e) = s.read_to_end(&mut raw) {
        // A reset after the response (see above) still leaves it in `raw`.
        if raw.is_empty() {
            return Err(e);
        }
    }
    let bad = |what: &str| Error::new(ErrorKind::InvalidData, format!("{what} in {:?}", String::from_utf8_lossy(&raw)));
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(|| bad("no HTTP header end"))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| bad("no HTTP status"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':').map(|(k, v)| (k.trim().to_string(), v.trim().to_string())))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked")) {
        body = dechunk(&body);
    }
    Ok(HttpResponse { status, headers, body })
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(nl) = b.windows(2).position(|w| w == b"\r\n") else { break };
        let size = usize::from_str_radix(std::str::from_utf8(&b[..nl]).unwrap().trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&b[nl + 2..nl + 2 + size]);
        b = &b[nl + 2 + size + 2..];
    }
    out
}

/// A private etcd on free ports.
pub struct Etcd {
    child: Child,
    pub endpoint: String,
    pub dir: tempfile::TempDir,
    peer: u16,
}

impl Etcd {
    pub fn start() -> Self {
        let dir = tempfile::Builder::new().prefix("rkube-etcd-").tempdir().unwrap();
        let (client, peer) = (free_port(), free_port());
        let endpoint = format!("http://127.0.0.1:{client}");
        let child = Self::spawn_member(dir.path(), &endpoint, peer);
        Etcd { child, endpoint, dir, peer }
    }

    /// One member on `dir`'s data, serving clients at `endpoint`; waits
    /// until it is healthy. On a data directory that already holds a
    /// member, etcd ignores the bootstrap flags and carries on.
    fn spawn_member(dir: &Path, endpoint: &str, peer: u16) -> Child {
        let peer_url = format!("http://127.0.0.1:{peer}");
        let mut cmd = Command::new("etcd");
        cmd.arg("--name=test")
            .arg(format!("--data-dir={}", dir.join("data").display()))
            .arg(format!("--listen-client-urls={endpoint}"))
            .arg(format!("--advertise-client-urls={endpoint}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=test={peer_url}"))
            .arg("--log-level=error")
            .arg("--logger=zap");
        let child = spawn_logged(cmd, &dir.join("etcd.log"));
        eventually_blocking("etcd healthy", Duration::from_secs(20), || {
            try_http(endpoint, "GET", "/health", None, b"").is_ok_and(|r| r.status == 200).then_some(())
        });
        child
    }

    /// Kills etcd and starts it again on the same data, serving clients at
    /// `endpoint` (its own, or another one nobody else knows about).
    pub fn restart_at(&mut self, endpoint: &str) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = Self::spawn_member(self.dir.path(), endpoint, self.peer);
    }

    /// Every key in etcd, with its mod revision: to prove a request wrote nothing.
    pub async fn keys(&self) -> Vec<(String, i64)> {
        let mut c = etcd_client::Client::connect([self.endpoint.as_str()], None).await.unwrap();
        let resp = c.get("\0", Some(etcd_client::GetOptions::new().with_from_key().with_keys_only())).await.unwrap();
        resp.kvs().iter().map(|kv| (String::from_utf8_lossy(kv.key()).into_owned(), kv.mod_revision())).collect()
    }

    pub async fn client(&self) -> etcd_client::Client {
        etcd_client::Client::connect([self.endpoint.as_str()], None).await.unwrap()
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Path of a workspace binary, built on first use in this test process with
/// the same profile as the running test. Binaries are named after the
/// package that holds them (`rkube-apiserver` in package `rkube-apiserver`).
///
/// It runs `cargo build --workspace --bins --tests`, the command
/// `scripts/test` runs before the tests, so under CI it finds everything
/// fresh. Building one package (`-p name`) would unify features over that
/// package alone and build a second copy of many dependencies.
/// `CARGO_*` variables that configure cargo itself (kept); the rest are
/// what cargo sets for a package's build script or test (removed).
const CARGO_SETTINGS: &[&str] = &["CARGO_HOME", "CARGO_INCREMENTAL", "CARGO_BUILD_", "CARGO_PROFILE_", "CARGO_NET_", "CARGO_REGISTRIES_", "CARGO_HTTP_", "CARGO_TERM_", "CARGO_TARGET_DIR"];

pub fn bin(name: &str) -> PathBuf {
    static BUILT: Mutex<bool> = Mutex::new(false);
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap().to_path_buf(); // target/<profile>
    let path = dir.join(name);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if !*built {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--quiet", "--workspace", "--bins", "--tests"]);
        if dir.file_name().is_some_and(|p| p == "release") {
            cmd.arg("--release");
        }
        // `cargo test` runs this process with the package's build-script
        // variables (CARGO_MANIFEST_DIR, CARGO_PKG_NAME, OUT_DIR, …). Some
        // build scripts (ring's) declare them with `rerun-if-env-changed`,
        // so passing them on would rebuild ring and all that depends on it
        // — and again for each package whose tests call this.
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy();
            if k == "OUT_DIR" || (k.starts_with("CARGO_") && !CARGO_SETTINGS.iter().any(|p| k.starts_with(p))) {
                cmd.env_remove(k.as_ref());
            }
        }
        cmd.env("CARGO_TARGET_DIR", dir.parent().unwrap());
        cmd.current_dir(env!("CARGO_MANIFEST_DIR"));
        let st = cmd.status().expect("cargo build");
        assert!(st.success(), "cargo build --workspace --bins --tests failed (wanted {name})");
        *built = true;
    }
    assert!(path.exists(), "{} not built", path.display());
    path
}

/// A running rkube-apiserver process on its insecure port.
///
/// The harness runs no serviceaccount controller, so unless the caller
/// names admission plugins itself, the apiserver starts with
/// `--disable-admission-plugins=ServiceAccount` — as upstream's integration
/// framework and scheduler_perf do for the same reason: otherwise every
/// pod in a namespace without a `default` ServiceAccount is refused (after
/// the plugin's retries). Tests of the plugin, or ones that run the
/// controller, pass `--enable-admission-plugins=ServiceAccount`.
pub struct ApiServer {
    child: Child,
    pub url: String,
    pub log: PathBuf,
}

impl ApiServer {
    pub fn start(etcd: &Etcd, dir: &Path, extra: &[&str]) -> Self {
        let port = free_port();
        let url = format!("http://127.0.0.1:{port}");
        let mut cmd = Command::new(bin("rkube-apiserver"));
        cmd.arg(format!("--etcd-servers={}", etcd.endpoint)).arg(format!("--insecure-port={port}")).args(extra);
        if !extra.iter().any(|f| f.starts_with("--enable-admission-plugins") || f.starts_with("--disable-admission-plugins")) {
            cmd.arg("--disable-admission-plugins=ServiceAccount");
        }
        let log = dir.join(format!("apiserver-{port}.log"));
        let child = spawn_logged(cmd, &log);
        let mut s = ApiServer { child, url, log };
        let u = s.url.clone();
        let start = Instant::now();
        loop {
            if try_http(&u, "GET", "/readyz", None, b"").is_ok_and(|r| r.status == 200) {
                break;
            }
            if let Ok(Some(st)) = s.child.try_wait() {
                panic!("apiserver exited with {st}: {}", std::fs::read_to_string(&s.log).unwrap_or_default());
            }
            assert!(start.elapsed() < Duration::from_secs(30), "apiserver not ready: {}", std::fs::read_to_string(&s.log).unwrap_or_default());
            std::thread::sleep(Duration::from_millis(50));
        }
        s
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// etcd + apiserver + a kubeconfig for kubectl.
pub struct Cluster {
    pub api: ApiServer,
    pub etcd: Etcd,
    pub dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
}

/// The kubectl binary for `version`: `"default"` is the one the README asks
/// for, `$KUBECTL` or else `kubectl` on `PATH`; another version (`"1.27"`)
/// is a `kubectl.<version>` or `kubectl-<version>` file in one of the
/// colon-separated directories of `RKUBE_KUBECTL_DIRS` (`scripts/test` sets
/// it to the Google Cloud SDK's directory where that exists). `None` when
/// the machine does not have it.
pub fn kubectl_path(version: &str) -> Option<PathBuf> {
    let executable = |p: &Path| p.is_file() && std::fs::metadata(p).map(|m| m.permissions().mode() & 0o111 != 0).unwrap_or(false);
    if version == "default" {
        if let Some(k) = std::env::var_os("KUBECTL").filter(|k| !k.is_empty()) {
            return Some(PathBuf::from(k));
        }
        let path = std::env::var_os("PATH").unwrap_or_default();
        return std::env::split_paths(&path).map(|d| d.join("kubectl")).find(|p| executable(p));
    }
    let dirs = std::env::var_os("RKUBE_KUBECTL_DIRS").unwrap_or_default();
    std::env::split_paths(&dirs)
        .flat_map(|d| [d.join(format!("kubectl.{version}")), d.join(format!("kubectl-{version}"))])
        .find(|p| executable(p))
}

/// The kubectl for `version`, which the caller knows is there: the default
/// one always is (the README requires it); other versions go through
/// [`kubectl_versions`] first.
pub fn kubectl_bin(version: &str) -> PathBuf {
    kubectl_path(version).unwrap_or_else(|| {
        panic!("kubectl {version} not found: the default is $KUBECTL or kubectl on PATH; other versions are kubectl.<version> in RKUBE_KUBECTL_DIRS")
    })
}

/// Of the kubectl versions a test wants, those this machine has, in the
/// same order. Each missing one is announced on the test's stderr (written
/// past the test harness's capture, so the run's output shows it) and
/// skipped: a test never fails for want of a kubectl the README did not ask
/// for, and never passes silently without it either.
pub fn kubectl_versions<'a>(wanted: &[&'a str]) -> Vec<&'a str> {
    wanted
        .iter()
        .copied()
        .filter(|v| {
            let have = kubectl_path(v).is_some();
            if !have {
                let test = std::thread::current().name().unwrap_or("?").to_string();
                let _ = writeln!(std::io::stderr(), "SKIPPED in {test}: kubectl {v} (no kubectl.{v} in RKUBE_KUBECTL_DIRS)");
            }
            have
        })
        .collect()
}

/// One kubectl version, for tests that are about that version: `false`
/// (announced as skipped) when the machine lacks it.
pub fn have_kubectl(version: &str) -> bool {
    !kubectl_versions(&[version]).is_empty()
}

/// The one way tests run kubectl: the kubectl for `version` (see
/// [`kubectl_path`]) against `kubeconfig`, with `home` as its HOME and its
/// discovery cache in `home` too, so a test never reads or writes the
/// user's `~/.kube`, and versions do not share a cache.
pub fn kubectl_command(version: &str, kubeconfig: &Path, home: &Path) -> Command {
    let mut cmd = Command::new(kubectl_bin(version));
    cmd.env("KUBECONFIG", kubeconfig)
        .env("HOME", home)
        .arg(format!("--cache-dir={}", home.join(format!("kube-cache-{version}")).display()));
    cmd
}

/// Runs `cmd` with `input` on its stdin (written from another thread, so a
/// command that answers before reading all of it cannot deadlock), and
/// collects its output.
pub fn output_with_stdin(mut cmd: Command, input: &str) -> Output {
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let mut pipe = child.stdin.take().unwrap();
    let input = input.to_string();
    let writer = std::thread::spawn(move || {
        let _ = pipe.write_all(input.as_bytes());
    });
    let out = child.wait_with_output().unwrap();
    let _ = writer.join();
    out
}

impl Cluster {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    pub fn start_with(apiserver_flags: &[&str]) -> Self {
        let etcd = Etcd::start();
        let dir = tempfile::Builder::new().prefix("rkube-test-").tempdir().unwrap();
        let api = ApiServer::start(&etcd, dir.path(), apiserver_flags);
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: t\n  cluster: {{server: \"{}\"}}\ncontexts:\n- name: t\n  context: {{cluster: t, user: t}}\ncurrent-context: t\nusers:\n- name: t\n  user: {{}}\n",
                api.url
            ),
        )
        .unwrap();
        Cluster { api, etcd, dir, kubeconfig }
    }

    /// Runs a kubectl version (`"default"`, `"1.27"`, `"1.33"`) with this
    /// cluster's kubeconfig and a private cache dir.
    pub fn kubectl_v(&self, version: &str, args: &[&str]) -> Output {
        self.kubectl_cmd(version, args).output().unwrap()
    }

    pub fn kubectl_cmd(&self, version: &str, args: &[&str]) -> Command {
        let mut cmd = kubectl_command(version, &self.kubeconfig, self.dir.path());
        cmd.args(args);
        cmd
    }

    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_v("default", args)
    }

    /// kubectl that must succeed; returns stdout. Stderr must be clean too
    /// (no warnings, no discovery errors) unless the caller expects output there.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        self.kubectl_ok_v("default", args)
    }

    pub fn kubectl_ok_v(&self, version: &str, args: &[&str]) -> String {
        let out = self.kubectl_v(version, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "kubectl {version} {args:?} failed: {stderr}\nstdout: {}", String::from_utf8_lossy(&out.stdout));
        assert!(stderr.trim().is_empty(), "kubectl {version} {args:?} printed to stderr: {stderr}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// kubectl with a manifest on stdin.
    pub fn kubectl_stdin(&self, version: &str, args: &[&str], input: &str) -> Output {
        output_with_stdin(self.kubectl_cmd(version, args), input)
    }

    pub fn http(&self, method: &str, path: &str, content_type: Option<&str>, body: &[u8]) -> HttpResponse {
        http(&self.api.url, method, path, content_type, body)
    }

    pub async fn client(&self) -> kube::Client {
        machinery::client::connect_as("e2e", Some(&self.api.url), None).await.unwrap()
    }
}

/// Polls `f` every 50 ms until it returns `Some`, and returns that; panics
/// with `what` after `timeout` (the condition is looked at once more after
/// the deadline). The async form of [`eventually_blocking`].
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let late = tokio::time::Instant::now() >= deadline;
        if let Some(v) = f().await {
            return v;
        }
        assert!(!late, "timed out waiting for {what} (after {timeout:?})");
        tokio::time::sleep(POLL).await;
    }
}
