//! High-availability harness: a 3-member etcd cluster, several apiservers
//! on it (each on its own loopback address, its "advertise address"),
//! HAProxy in front of them, and processes that tests can kill -9, freeze
//! (SIGSTOP) and thaw (SIGCONT) or restart — the faults an HA control plane
//! must survive.
//!
//! Everything listens on 127.0.0.0/8 only, on free ports, in temp dirs; every
//! process dies with the test process (parent-death signal) and on drop.

use std::io::Write;
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{eventually_blocking, free_port, free_port_on, http};

/// A child process that can be killed, frozen and restarted with the same
/// command line. Killed on drop.
pub struct Proc {
    pub name: String,
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    pub log: PathBuf,
    child: Option<Child>,
    frozen: bool,
}

impl Proc {
    pub fn start(name: &str, program: &Path, args: &[String], log: &Path) -> Proc {
        Self::start_env(name, program, args, &[("RUST_LOG", "info")], log)
    }

    pub fn start_env(name: &str, program: &Path, args: &[String], env: &[(&str, &str)], log: &Path) -> Proc {
        let mut p = Proc {
            name: name.to_string(),
            program: program.to_path_buf(),
            args: args.to_vec(),
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            log: log.to_path_buf(),
            child: None,
            frozen: false,
        };
        p.spawn();
        p
    }

    fn spawn(&mut self) {
        let out = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let err = out.try_clone().unwrap();
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args).stdin(Stdio::null()).stdout(out).stderr(err);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        self.child = Some(cmd.spawn().unwrap_or_else(|e| panic!("cannot start {}: {e}", self.program.display())));
        self.frozen = false;
    }

    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.id() as i32)
    }

    /// Running (not exited; a frozen process counts as running).
    pub fn running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// The exit status, once exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    fn signal(&self, sig: i32) {
        if let Some(pid) = self.pid() {
            unsafe {
                libc::kill(pid, sig);
            }
        }
    }

    /// kill -9: no chance to clean up, as a crash or a power cut.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.frozen = false;
    }

    /// SIGTERM, then wait up to `grace` for the process to exit (SIGKILL after).
    pub fn terminate(&mut self, grace: Duration) -> Option<std::process::ExitStatus> {
        self.signal(libc::SIGTERM);
        let start = Instant::now();
        while start.elapsed() < grace {
            if let Some(st) = self.exited() {
                self.child = None;
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill9();
        None
    }

    /// SIGSTOP: the process stays, holds its sockets, and does nothing —
    /// what a long GC pause, a frozen VM or a partition looks like.
    pub fn freeze(&mut self) {
        self.signal(libc::SIGSTOP);
        self.frozen = true;
    }

    pub fn thaw(&mut self) {
        self.signal(libc::SIGCONT);
        self.frozen = false;
    }

    /// kill -9 if running, then the same command line again.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `n` lines of the log.
    pub fn log_tail(&self, n: usize) -> String {
        let t = self.log_text();
        let lines: Vec<&str> = t.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.frozen {
            self.thaw();
        }
        if std::thread::panicking() && self.child.is_some() {
            eprintln!("---- {} log tail ({}) ----\n{}", self.name, self.log.display(), self.log_tail(40));
        }
        self.kill9();
    }
}

/// GET `path` with a connect and read timeout; None when nothing answers.
pub fn try_get(base: &str, path: &str, timeout: Duration) -> Option<crate::HttpResponse> {
    let hostport = base.trim_start_matches("http://").trim_end_matches('/').to_string();
    let addr: std::net::SocketAddr = hostport.parse().ok()?;
    let s = TcpStream::connect_timeout(&addr, timeout).ok()?;
    drop(s);
    let (tx, rx) = std::sync::mpsc::channel();
    let (b, p) = (base.to_string(), path.to_string());
    std::thread::spawn(move || {
        let r = std::panic::catch_unwind(|| http(&b, "GET", &p, None, b""));
        let _ = tx.send(r.ok());
    });
    rx.recv_timeout(timeout).ok().flatten()
}

/// One etcd member of an [`EtcdCluster`].
pub struct Member {
    pub name: String,
    pub client_url: String,
    pub proc: Proc,
}

/// A real etcd cluster of `n` members on loopback (raft over the peer
/// ports), each with its own data dir. Members can be killed and restarted
/// with their data, as a machine reboot.
pub struct EtcdCluster {
    pub members: Vec<Member>,
    pub dir: tempfile::TempDir,
}

impl EtcdCluster {
    pub fn start(n: usize) -> EtcdCluster {
        let dir = tempfile::Builder::new().prefix("rkube-etcd-cluster-").tempdir().unwrap();
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let initial: Vec<String> = ports.iter().enumerate().map(|(i, (_, p))| format!("m{i}=http://127.0.0.1:{p}")).collect();
        let token = format!("rkube-{}", std::process::id() as u64 * 1000 + free_port() as u64);
        let mut members = Vec::new();
        for (i, (c, p)) in ports.iter().enumerate() {
            let client_url = format!("http://127.0.0.1:{c}");
            let peer_url = format!("http://127.0.0.1:{p}");
            let args = vec![
                format!("--name=m{i}"),
                format!("--data-dir={}", dir.path().join(format!("m{i}")).display()),
                format!("--listen-client-urls={client_url}"),
                format!("--advertise-client-urls={client_url}"),
                format!("--listen-peer-urls={peer_url}"),
                format!("--initial-advertise-peer-urls={peer_url}"),
                format!("--initial-cluster={}", initial.join(",")),
                format!("--initial-cluster-token={token}"),
                "--initial-cluster-state=new".to_string(),
                "--log-level=error".to_string(),
                "--logger=zap".to_string(),
            ];
            let proc = Proc::start(&format!("etcd m{i}"), Path::new("etcd"), &args, &dir.path().join(format!("etcd-m{i}.log")));
            members.push(Member { name: format!("m{i}"), client_url, proc });
        }
        let c = EtcdCluster { members, dir };
        for i in 0..n {
            c.wait_healthy(i, Duration::from_secs(30));
        }
        c
    }

    /// Comma-separated client URLs, for `--etcd-servers`.
    pub fn endpoints(&self) -> String {
        self.members.iter().map(|m| m.client_url.as_str()).collect::<Vec<_>>().join(",")
    }

    /// `/health` answers true: the member is up and the cluster has a leader.
    pub fn healthy(&self, i: usize) -> bool {
        try_get(&self.members[i].client_url, "/health", Duration::from_secs(2))
            .is_some_and(|r| r.status == 200 && r.text().contains("\"health\":\"true\""))
    }

    pub fn wait_healthy(&self, i: usize, timeout: Duration) {
        eventually_blocking(&format!("etcd member {i} healthy"), timeout, || self.healthy(i).then_some(()));
    }

    pub fn kill9(&mut self, i: usize) {
        self.members[i].proc.kill9();
    }

    /// Starts a killed member again on its data dir (it rejoins with its
    /// identity and catches up from the leader).
    pub fn restart(&mut self, i: usize) {
        self.members[i].proc.restart();
    }

    /// Index of the current raft leader, asked through any live member.
    pub async fn leader(&self) -> Option<usize> {
        for m in &self.members {
            let Ok(mut c) = etcd_client::Client::connect([m.client_url.as_str()], None).await else { continue };
            let Ok(st) = tokio::time::timeout(Duration::from_secs(2), c.status()).await else { continue };
            let Ok(st) = st else { continue };
            let leader = st.leader();
            let Ok(Ok(list)) = tokio::time::timeout(Duration::from_secs(2), c.member_list()).await else { continue };
            let name = list.members().iter().find(|x| x.id() == leader).map(|x| x.name().to_string())?;
            return self.members.iter().position(|m| m.name == name);
        }
        None
    }

    /// A client over every member.
    pub async fn client(&self) -> etcd_client::Client {
        let eps: Vec<&str> = self.members.iter().map(|m| m.client_url.as_str()).collect();
        etcd_client::Client::connect(eps, None).await.unwrap()
    }
}

/// One rkube-apiserver of an HA set, on its own loopback address (its
/// advertise address: `127.0.0.<10+i>`), insecure port only.
pub struct HaApiServer {
    pub ip: String,
    pub port: u16,
    pub url: String,
    pub proc: Proc,
}

impl HaApiServer {
    pub fn start(etcd_endpoints: &str, dir: &Path, i: usize, extra: &[&str]) -> HaApiServer {
        let ip = format!("127.0.0.{}", 10 + i);
        let port = free_port_on(&ip);
        let url = format!("http://{ip}:{port}");
        let mut args = vec![
            format!("--etcd-servers={etcd_endpoints}"),
            format!("--insecure-bind-address={ip}"),
            format!("--insecure-port={port}"),
            format!("--advertise-address={ip}"),
        ];
        if !extra.iter().any(|f| f.contains("admission-plugins")) {
            // No serviceaccount controller runs in these tests.
            args.push("--disable-admission-plugins=ServiceAccount".into());
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let proc = Proc::start(&format!("apiserver {ip}"), &crate::bin("rkube-apiserver"), &args, &dir.join(format!("apiserver-{ip}.log")));
        let mut a = HaApiServer { ip, port, url, proc };
        a.wait_ready(Duration::from_secs(30));
        a
    }

    pub fn ready(&self) -> bool {
        try_get(&self.url, "/readyz", Duration::from_secs(3)).is_some_and(|r| r.status == 200)
    }

    pub fn wait_ready(&mut self, timeout: Duration) {
        let start = Instant::now();
        while !self.ready() {
            if let Some(st) = self.proc.exited() {
                panic!("apiserver {} exited with {st}: {}", self.ip, self.proc.log_tail(30));
            }
            assert!(start.elapsed() < timeout, "apiserver {} not ready: {}", self.ip, self.proc.log_tail(30));
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn restart(&mut self) {
        self.proc.restart();
        self.wait_ready(Duration::from_secs(30));
    }
}

/// HAProxy (Debian's `haproxy`) in TCP mode in front of the apiservers,
/// health-checking each one's `/readyz` — the single address clients use.
pub struct Haproxy {
    pub url: String,
    pub proc: Proc,
    pub config: PathBuf,
}

impl Haproxy {
    pub fn start(dir: &Path, backends: &[(String, u16)]) -> Haproxy {
        let port = free_port();
        let config = dir.join("haproxy.cfg");
        let mut f = std::fs::File::create(&config).unwrap();
        write!(f, "{}", haproxy_config("127.0.0.1", port, backends, false)).unwrap();
        let args = vec!["-f".to_string(), config.display().to_string(), "-db".to_string()];
        let proc = Proc::start_env("haproxy", Path::new("haproxy"), &args, &[], &dir.join("haproxy.log"));
        let h = Haproxy { url: format!("http://127.0.0.1:{port}"), proc, config };
        eventually_blocking("haproxy to answer /readyz", Duration::from_secs(20), || {
            try_get(&h.url, "/readyz", Duration::from_secs(2)).is_some_and(|r| r.status == 200).then_some(())
        });
        h
    }
}

/// The HAProxy configuration `rkube up --ha` also writes (there with TLS
/// checks): TCP mode, round robin, `/readyz` checked every 500 ms, a server
/// out after 2 failed checks and back after 2 good ones; its sessions are
/// cut when it goes down, so watches move to a live apiserver.
pub fn haproxy_config(bind_ip: &str, port: u16, backends: &[(String, u16)], tls_check: bool) -> String {
    let mut s = format!(
        "global\n  maxconn 4096\n\ndefaults\n  mode tcp\n  retries 3\n  option redispatch 1\n  timeout connect 2s\n  timeout client 1h\n  timeout server 1h\n\n\
         frontend apiserver\n  bind {bind_ip}:{port}\n  default_backend apiservers\n\n\
         backend apiservers\n  balance roundrobin\n  option httpchk GET /readyz\n  http-check expect status 200\n\
         \x20 default-server inter 500ms fall 2 rise 2 on-marked-down shutdown-sessions\n"
    );
    for (i, (ip, p)) in backends.iter().enumerate() {
        let ssl = if tls_check { " check-ssl verify none" } else { "" };
        s.push_str(&format!("  server apiserver{} {ip}:{p} check{ssl}\n", i + 1));
    }
    s
}

/// The whole HA control plane of the tests: 3 etcd members, `n` apiservers
/// on all of them, HAProxy in front.
pub struct HaControlPlane {
    pub etcd: EtcdCluster,
    pub apiservers: Vec<HaApiServer>,
    pub lb: Haproxy,
    pub dir: tempfile::TempDir,
}

impl HaControlPlane {
    pub fn start(apiservers: usize, apiserver_flags: &[&str]) -> HaControlPlane {
        let etcd = EtcdCluster::start(3);
        let dir = tempfile::Builder::new().prefix("rkube-ha-").tempdir().unwrap();
        let eps = etcd.endpoints();
        let apis: Vec<HaApiServer> = (0..apiservers).map(|i| HaApiServer::start(&eps, dir.path(), i, apiserver_flags)).collect();
        let backends: Vec<(String, u16)> = apis.iter().map(|a| (a.ip.clone(), a.port)).collect();
        let lb = Haproxy::start(dir.path(), &backends);
        HaControlPlane { etcd, apiservers: apis, lb, dir }
    }

    /// A kubeconfig pointing at HAProxy (no credentials: insecure ports).
    pub fn kubeconfig(&self) -> PathBuf {
        let path = self.dir.path().join("kubeconfig");
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: ha\n  cluster: {{server: \"{}\"}}\ncontexts:\n- name: ha\n  context: {{cluster: ha, user: u}}\ncurrent-context: ha\nusers:\n- name: u\n  user: {{}}\n",
                self.lb.url
            ),
        )
        .unwrap();
        path
    }

    pub async fn client(&self) -> kube::Client {
        client_for(&self.lb.url).await
    }

    /// Starts a control-plane component (`rkube-controller`,
    /// `rkube-scheduler`, `rkube-agent`) talking to HAProxy.
    pub fn component(&self, name: &str, binary: &str, flags: &[&str]) -> Proc {
        let mut args = vec![format!("--master={}", self.lb.url)];
        args.extend(flags.iter().map(|s| s.to_string()));
        Proc::start(name, &crate::bin(binary), &args, &self.dir.path().join(format!("{}.log", name.replace(' ', "-"))))
    }
}

pub async fn client_for(url: &str) -> kube::Client {
    machinery::client::connect_as("e2e", Some(url), None).await.unwrap()
}

/// What a pod watch saw: per pod, how often it was added and deleted, and
/// the nodes it was bound to in order (an entry per pod seen; a pod bound
/// twice has two nodes). The HA fault tests count these to prove that no
/// pod was lost, doubled or bound twice.
#[derive(Default, Debug)]
pub struct PodHistory {
    pub added: std::collections::BTreeMap<String, usize>,
    pub deleted: std::collections::BTreeMap<String, usize>,
    pub nodes: std::collections::BTreeMap<String, Vec<String>>,
}

/// Follows the pods of `ns` from `rv` through the apiserver at `url`
/// (resuming from the last resourceVersion when a stream ends) into `h`.
pub fn record_pods(
    url: String,
    ns: &'static str,
    rv: String,
    h: std::sync::Arc<std::sync::Mutex<PodHistory>>,
) -> tokio::task::JoinHandle<()> {
    use futures::TryStreamExt;
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{Api, WatchEvent, WatchParams};
    tokio::spawn(async move {
        let api: Api<Pod> = Api::namespaced(client_for(&url).await, ns);
        let mut rv = rv;
        loop {
            let Ok(stream) = api.watch(&WatchParams::default().timeout(120), &rv).await else {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            };
            futures::pin_mut!(stream);
            while let Ok(Some(ev)) = stream.try_next().await {
                let (kind, p) = match ev {
                    WatchEvent::Added(p) => ("A", p),
                    WatchEvent::Modified(p) => ("M", p),
                    WatchEvent::Deleted(p) => ("D", p),
                    WatchEvent::Bookmark(_) => continue,
                    WatchEvent::Error(e) => panic!("watch error: {e:?}"),
                };
                rv = p.metadata.resource_version.clone().unwrap();
                let name = p.metadata.name.clone().unwrap();
                let node = p.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default();
                let mut h = h.lock().unwrap();
                match kind {
                    "A" => *h.added.entry(name.clone()).or_default() += 1,
                    "D" => *h.deleted.entry(name.clone()).or_default() += 1,
                    _ => {}
                }
                let seen = h.nodes.entry(name).or_default();
                if !node.is_empty() && seen.last() != Some(&node) {
                    seen.push(node);
                }
            }
        }
    })
}
