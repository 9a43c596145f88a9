//! Shared by the `security_*` tests: etcd + rkube-apiserver on its TLS port
//! (client certificates against the cluster CA, a static token file,
//! `--authorization-mode=Node,RBAC`), the PKI `rkube certs` makes, and
//! helpers around the real openssl and curl.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};

use e2e::{bin, free_port, ApiServer, Etcd};

pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A component process on the secure port (its kubeconfig from `rkube
/// certs`), killed on drop and even if the test process dies; its log is
/// printed when the test fails.
pub struct Component {
    child: Child,
    pub log: PathBuf,
    /// Its plain-HTTP health port (`/healthz`, `/metrics`).
    pub health_url: String,
}

impl Component {
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Its `/metrics` text, or None while it does not answer.
    pub fn metrics(&self) -> Option<String> {
        e2e::try_http(&self.health_url, "GET", "/metrics", None, b"").ok().filter(|r| r.status == 200).map(|r| r.text())
    }
}

impl Drop for Component {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- {} ----\n{}", self.log.display(), self.logs());
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Secure {
    pub api: ApiServer,
    pub etcd: Etcd,
    pub dir: tempfile::TempDir,
    pub url: String,
}

impl Secure {
    pub fn start() -> Self {
        Self::start_with(&[], &[])
    }

    /// `nodes`: node identities `rkube certs` makes certificates for
    /// (`node-<n>.crt`, `node-<n>.kubeconfig`); `extra`: more apiserver flags.
    pub fn start_with(nodes: &[&str], extra: &[&str]) -> Self {
        let etcd = Etcd::start();
        let dir = tempfile::Builder::new().prefix("rkube-sec-").tempdir().unwrap();
        let port = free_port();
        let url = format!("https://127.0.0.1:{port}");
        let pki = dir.path().join("pki");
        let mut certs = Command::new(bin("rkube"));
        certs.args(["certs", "--dir", pki.to_str().unwrap(), "--server", &url]);
        for n in nodes {
            certs.args(["--node", n]);
        }
        run(&mut certs);
        std::fs::write(dir.path().join("tokens.csv"), "s3cr3t,token-user,uid-1,\"dev,qa\"\n").unwrap();
        let p = |f: &str| pki.join(f).display().to_string();
        let mut flags = vec![
            format!("--secure-port={port}"),
            "--bind-address=127.0.0.1".to_string(),
            format!("--tls-cert-file={}", p("apiserver.crt")),
            format!("--tls-private-key-file={}", p("apiserver.key")),
            format!("--client-ca-file={}", p("ca.crt")),
            format!("--token-auth-file={}", dir.path().join("tokens.csv").display()),
            "--authorization-mode=Node,RBAC".to_string(),
        ];
        flags.extend(extra.iter().map(|s| s.to_string()));
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let api = ApiServer::start(&etcd, dir.path(), &flags);
        Secure { api, etcd, dir, url }
    }

    /// rkube-controller with the controller manager's certificate
    /// (`system:kube-controller-manager`), no leader election, its health
    /// port on a free port.
    pub fn start_controller(&self, flags: &[&str]) -> Component {
        let port = free_port();
        let log = self.dir.path().join(format!("controller-{port}.log"));
        let mut cmd = Command::new(bin("rkube-controller"));
        cmd.arg(format!("--kubeconfig={}", self.pki("kube-controller-manager.kubeconfig")))
            .arg("--leader-elect=false")
            .arg(format!("--secure-port={port}"))
            .args(flags)
            .env("RUST_LOG", "info");
        Component { child: e2e::spawn_logged(cmd, &log), log, health_url: format!("http://127.0.0.1:{port}") }
    }

    /// A file of the PKI `rkube certs` wrote.
    pub fn pki(&self, f: &str) -> String {
        self.dir.path().join("pki").join(f).display().to_string()
    }

    /// A file in the test's directory.
    pub fn file(&self, f: &str) -> String {
        self.dir.path().join(f).display().to_string()
    }

    pub fn kubectl(&self, kubeconfig: &Path, args: &[&str]) -> Output {
        e2e::kubectl_command("default", kubeconfig, self.dir.path()).args(args).output().unwrap()
    }

    pub fn admin_kubeconfig(&self) -> PathBuf {
        self.dir.path().join("pki/admin.kubeconfig")
    }

    pub fn admin(&self, args: &[&str]) -> String {
        let out = self.kubectl(&self.admin_kubeconfig(), args);
        assert!(out.status.success(), "admin kubectl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// curl against the server (CA not checked: `-k`); (body, HTTP code).
    pub fn curl(&self, args: &[&str]) -> (String, String) {
        let out = Command::new("curl").args(["-sk", "-w", "\n%{http_code}"]).args(args).output().unwrap();
        let s = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = s.rsplit_once('\n').unwrap();
        (body.to_string(), code.to_string())
    }

    /// curl with the client certificate `<stem>.crt`/`<stem>.key`, from the
    /// PKI (`admin`, `kube-scheduler`, `node-n1`, …) or the test directory.
    pub fn curl_as(&self, stem: &str, args: &[&str]) -> (String, String) {
        let (crt, key) = if Path::new(&self.pki(&format!("{stem}.crt"))).exists() {
            (self.pki(&format!("{stem}.crt")), self.pki(&format!("{stem}.key")))
        } else {
            (self.file(&format!("{stem}.crt")), self.file(&format!("{stem}.key")))
        };
        let mut all = vec!["--cert", crt.as_str(), "--key", key.as_str()];
        all.extend_from_slice(args);
        self.curl(&all)
    }

    /// A new key and a CSR for `subject` (openssl's `/CN=../O=..` form) in
    /// the test directory: `<stem>.key`, `<stem>.csr`.
    pub fn key_and_csr(&self, stem: &str, subject: &str) {
        run(Command::new("openssl").args(["genrsa", "-out", &self.file(&format!("{stem}.key")), "2048"]));
        run(Command::new("openssl").args([
            "req", "-new", "-key", &self.file(&format!("{stem}.key")), "-out", &self.file(&format!("{stem}.csr")), "-subj", subject,
        ]));
    }

    /// `<stem>.crt` for `subject`, signed by the cluster CA, valid for two days from now.
    pub fn sign(&self, stem: &str, subject: &str) {
        self.key_and_csr(stem, subject);
        run(Command::new("openssl").args([
            "x509", "-req", "-in", &self.file(&format!("{stem}.csr")), "-CA", &self.pki("ca.crt"), "-CAkey", &self.pki("ca.key"),
            "-CAcreateserial", "-out", &self.file(&format!("{stem}.crt")), "-days", "2",
        ]));
    }

    /// `<stem>.crt` for `subject`, signed by the cluster CA, valid from
    /// `start` to `end` (`YYYYMMDDHHMMSSZ`) — `openssl ca`, since
    /// `openssl x509 -req` only counts days from now.
    pub fn sign_dated(&self, stem: &str, subject: &str, start: &str, end: &str) {
        self.key_and_csr(stem, subject);
        let ca_dir = self.dir.path().join("openssl-ca");
        if !ca_dir.exists() {
            std::fs::create_dir_all(ca_dir.join("newcerts")).unwrap();
            std::fs::write(ca_dir.join("index.txt"), "").unwrap();
            std::fs::write(
                ca_dir.join("ca.cnf"),
                format!(
                    "[ ca ]\ndefault_ca = test_ca\n[ test_ca ]\ndatabase = {d}/index.txt\nnew_certs_dir = {d}/newcerts\n\
                     serial = {d}/serial\nrand_serial = yes\ndefault_md = sha256\npolicy = any\nunique_subject = no\n\
                     email_in_dn = no\n[ any ]\ncommonName = optional\norganizationName = optional\n",
                    d = ca_dir.display()
                ),
            )
            .unwrap();
        }
        run(Command::new("openssl").args([
            "ca", "-batch", "-notext", "-config", &ca_dir.join("ca.cnf").display().to_string(), "-cert", &self.pki("ca.crt"),
            "-keyfile", &self.pki("ca.key"), "-in", &self.file(&format!("{stem}.csr")), "-out", &self.file(&format!("{stem}.crt")),
            "-startdate", start, "-enddate", end,
        ]));
    }
}
