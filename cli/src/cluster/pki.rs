//! The cluster's public-key infrastructure, as `kubeadm init phase certs`
//! and `kubeconfig` make it (`rkube up` makes it in its state directory;
//! `rkube certs` anywhere).
//!
//! A cluster trusts one certificate authority (CA). The apiserver serves
//! TLS with a certificate the CA signed for every name clients reach it by
//! (127.0.0.1, the host name, the `kubernetes` Service at the first service
//! IP and its DNS names), and accepts client certificates the CA signed:
//! the subject's CN is the user and each O a group. So each component gets
//! its identity as a certificate —
//!
//! | file                       | CN                              | O                |
//! |----------------------------|---------------------------------|------------------|
//! | admin                      | kubernetes-admin                | system:masters   |
//! | kube-scheduler             | system:kube-scheduler           |                  |
//! | kube-controller-manager    | system:kube-controller-manager  |                  |
//! | kube-proxy                 | system:kube-proxy               |                  |
//! | node-<name> (`--node`)     | system:node:<name>              | system:nodes     |
//!
//! — and a kubeconfig embedding CA, certificate and key (base64), which is
//! what kubectl and the components read. The RBAC bootstrap policy grants
//! each of these identities what it needs.
//!
//! Keys are ECDSA P-256 in PKCS#8 PEM, which openssl reads: a new user can be
//! made by hand, as in the textbook walkthrough:
//!
//! ```text
//! openssl genrsa -out jane.key 2048
//! openssl req -new -key jane.key -subj "/CN=jane/O=dev" -out jane.csr
//! openssl x509 -req -in jane.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 -out jane.crt
//! ```
//!
//! Running again keeps an existing CA (so new node certificates join the
//! same cluster) and rewrites the other files; `force` makes a new CA.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// What to make: where, for which apiserver, nodes and lifetime.
pub struct Config {
    /// Directory the certificates, keys and kubeconfigs are written to.
    pub dir: PathBuf,
    /// The apiserver URL written into the kubeconfigs.
    pub server: String,
    /// Extra names or IP addresses for the apiserver serving certificate.
    pub apiserver_sans: Vec<String>,
    /// The `kubernetes` Service's cluster IP: the first address of the service CIDR.
    pub service_ip: IpAddr,
    /// The nodes to make a client certificate and kubeconfig for.
    pub nodes: Vec<String>,
    /// Validity of the component certificates, in days (the CA gets ten years).
    pub days: u32,
    /// Make a new CA even if one exists (every certificate signed by the old one stops working).
    pub force: bool,
    /// The cluster name used in the kubeconfigs.
    pub cluster_name: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            dir: PathBuf::from("pki"),
            server: "https://127.0.0.1:6443".into(),
            apiserver_sans: Vec::new(),
            service_ip: IpAddr::from([10, 96, 0, 1]),
            nodes: Vec::new(),
            days: 365,
            force: false,
            cluster_name: "rkube".into(),
        }
    }
}

/// One client identity: file stem, CN, O.
pub struct Identity {
    pub stem: String,
    pub common_name: String,
    pub organizations: Vec<String>,
}

/// The client identities made for this configuration.
pub fn identities(o: &Config) -> Vec<Identity> {
    let id = |stem: &str, cn: &str, orgs: &[&str]| Identity {
        stem: stem.into(),
        common_name: cn.into(),
        organizations: orgs.iter().map(|s| s.to_string()).collect(),
    };
    let mut v = vec![
        id("admin", "kubernetes-admin", &["system:masters"]),
        id("kube-scheduler", "system:kube-scheduler", &[]),
        id("kube-controller-manager", "system:kube-controller-manager", &[]),
        id("kube-proxy", "system:kube-proxy", &[]),
    ];
    for n in &o.nodes {
        v.push(id(&format!("node-{n}"), &format!("system:node:{n}"), &["system:nodes"]));
    }
    v
}

/// Names the apiserver certificate covers.
pub fn apiserver_sans(o: &Config) -> Vec<String> {
    let mut sans = vec![
        "127.0.0.1".to_string(),
        o.service_ip.to_string(),
        "localhost".into(),
        "kubernetes".into(),
        "kubernetes.default".into(),
        "kubernetes.default.svc".into(),
        "kubernetes.default.svc.cluster.local".into(),
    ];
    if let Some(h) = hostname() {
        sans.push(h);
    }
    sans.extend(o.apiserver_sans.iter().cloned());
    let mut seen = Vec::new();
    sans.retain(|s| {
        let new = !seen.contains(s);
        seen.push(s.clone());
        new
    });
    sans
}

fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

fn write(path: &Path, content: &[u8], private: bool) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(if private { 0o600 } else { 0o644 })
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(content)?;
    Ok(())
}

fn validity(params: &mut CertificateParams, days: i64) {
    let now = time::OffsetDateTime::now_utc();
    // An hour back, so a little clock skew between machines does not matter.
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(days);
}

fn subject(cn: &str, orgs: &[String]) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    for (i, o) in orgs.iter().enumerate() {
        // DistinguishedName keeps one value per type; further O values go in
        // under the same OID spelled as a custom type.
        if i == 0 {
            dn.push(DnType::OrganizationName, o.as_str());
        } else {
            dn.push(DnType::CustomDnType(vec![2, 5, 4, 10]), o.as_str());
        }
    }
    dn
}

/// Loads the CA from `dir`, or makes one.
fn ca(dir: &Path, force: bool) -> anyhow::Result<(Issuer<'static, KeyPair>, String)> {
    let (crt, key_path) = (dir.join("ca.crt"), dir.join("ca.key"));
    if !force && crt.exists() && key_path.exists() {
        let cert_pem = std::fs::read_to_string(&crt)?;
        let key_pem = std::fs::read_to_string(&key_path)?;
        let key = KeyPair::from_pem(&key_pem).context("reading ca.key")?;
        let issuer = Issuer::from_ca_cert_pem(&cert_pem, key).context("reading ca.crt")?;
        return Ok((issuer, cert_pem));
    }
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = subject("kubernetes", &[]);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    validity(&mut params, 3650);
    let cert = params.self_signed(&key)?;
    write(&crt, cert.pem().as_bytes(), false)?;
    write(&key_path, key.serialize_pem().as_bytes(), true)?;
    Ok((Issuer::new(params, key), cert.pem()))
}

/// Signs a leaf certificate; returns (cert PEM, key PEM).
fn leaf(
    issuer: &Issuer<'_, KeyPair>,
    cn: &str,
    orgs: &[String],
    sans: Vec<String>,
    usage: ExtendedKeyUsagePurpose,
    days: u32,
) -> anyhow::Result<(String, String)> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(sans)?;
    params.distinguished_name = subject(cn, orgs);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = vec![usage];
    params.use_authority_key_identifier_extension = true;
    validity(&mut params, days as i64);
    let cert = params.signed_by(&key, issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// A kubeconfig with everything embedded, as kubectl writes one.
pub fn kubeconfig(cluster: &str, server: &str, ca_pem: &str, user: &str, cert_pem: &str, key_pem: &str) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    let context = format!("{user}@{cluster}");
    let doc = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster, "cluster": {"server": server, "certificate-authority-data": b64(ca_pem)}}],
        "users": [{"name": user, "user": {"client-certificate-data": b64(cert_pem), "client-key-data": b64(key_pem)}}],
        "contexts": [{"name": context, "context": {"cluster": cluster, "user": user}}],
        "current-context": context,
        "preferences": {},
    });
    serde_yaml::to_string(&doc).expect("kubeconfig serializes")
}

/// Writes everything; returns the paths written (CA first if new).
pub fn generate(o: &Config) -> anyhow::Result<Vec<PathBuf>> {
    if o.days == 0 {
        bail!("--days must be at least 1");
    }
    for n in &o.nodes {
        if n.is_empty() || n.contains('/') || n.contains(':') {
            bail!("invalid node name {n:?}");
        }
    }
    std::fs::create_dir_all(&o.dir).with_context(|| format!("creating {}", o.dir.display()))?;
    let ca_existed = !o.force && o.dir.join("ca.crt").exists() && o.dir.join("ca.key").exists();
    let (issuer, ca_pem) = ca(&o.dir, o.force)?;
    let mut written = Vec::new();
    if !ca_existed {
        written.extend([o.dir.join("ca.crt"), o.dir.join("ca.key")]);
    }

    let (crt, key) =
        leaf(&issuer, "kube-apiserver", &[], apiserver_sans(o), ExtendedKeyUsagePurpose::ServerAuth, o.days)?;
    for (name, content, private) in [("apiserver.crt", &crt, false), ("apiserver.key", &key, true)] {
        write(&o.dir.join(name), content.as_bytes(), private)?;
        written.push(o.dir.join(name));
    }

    for id in identities(o) {
        let (crt, key) =
            leaf(&issuer, &id.common_name, &id.organizations, Vec::new(), ExtendedKeyUsagePurpose::ClientAuth, o.days)?;
        let kc = kubeconfig(&o.cluster_name, &o.server, &ca_pem, &id.common_name, &crt, &key);
        for (name, content, private) in [
            (format!("{}.crt", id.stem), crt.as_str(), false),
            (format!("{}.key", id.stem), key.as_str(), true),
            (format!("{}.kubeconfig", id.stem), kc.as_str(), true),
        ] {
            write(&o.dir.join(&name), content.as_bytes(), private)?;
            written.push(o.dir.join(name));
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn openssl(dir: &Path, args: &[&str]) -> String {
        let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl runs");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn options(dir: &Path, nodes: &[&str]) -> Config {
        Config {
            dir: dir.to_path_buf(),
            server: "https://10.0.0.5:6443".into(),
            apiserver_sans: vec!["api.example.test".into(), "192.0.2.7".into()],
            nodes: nodes.iter().map(|s| s.to_string()).collect(),
            ..Config::default()
        }
    }

    /// `openssl x509 -subject` in RFC 2253 form: `CN=..,O=..` for comparing.
    fn subject_of(dir: &Path, file: &str) -> String {
        openssl(dir, &["x509", "-in", file, "-noout", "-subject", "-nameopt", "RFC2253"]).trim().to_string()
    }

    #[test]
    fn certificates_verify_with_openssl() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let written = generate(&options(dir, &["n1", "n2"])).unwrap();
        assert!(written.contains(&dir.join("ca.key")));

        for (file, subject) in [
            ("admin.crt", "subject=O=system:masters,CN=kubernetes-admin"),
            ("kube-scheduler.crt", "subject=CN=system:kube-scheduler"),
            ("kube-controller-manager.crt", "subject=CN=system:kube-controller-manager"),
            ("kube-proxy.crt", "subject=CN=system:kube-proxy"),
            ("node-n1.crt", "subject=O=system:nodes,CN=system:node:n1"),
            ("node-n2.crt", "subject=O=system:nodes,CN=system:node:n2"),
            ("apiserver.crt", "subject=CN=kube-apiserver"),
        ] {
            let purpose = if file == "apiserver.crt" { "sslserver" } else { "sslclient" };
            let out = openssl(dir, &["verify", "-CAfile", "ca.crt", "-purpose", purpose, file]);
            assert_eq!(out.trim(), format!("{file}: OK"));
            assert_eq!(subject_of(dir, file), subject);
        }

        let sans = openssl(dir, &["x509", "-in", "apiserver.crt", "-noout", "-ext", "subjectAltName"]);
        for want in [
            "IP Address:127.0.0.1",
            "IP Address:10.96.0.1",
            "IP Address:192.0.2.7",
            "DNS:localhost",
            "DNS:kubernetes",
            "DNS:kubernetes.default",
            "DNS:kubernetes.default.svc",
            "DNS:api.example.test",
        ] {
            assert!(sans.contains(want), "{want} missing from {sans}");
        }

        // Private keys are private.
        use std::os::unix::fs::PermissionsExt;
        for f in ["ca.key", "admin.key", "admin.kubeconfig"] {
            assert_eq!(std::fs::metadata(dir.join(f)).unwrap().permissions().mode() & 0o777, 0o600, "{f}");
        }
    }

    #[test]
    fn kubeconfig_embeds_what_kubectl_needs() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        generate(&options(dir, &["n1"])).unwrap();
        let kc: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(dir.join("node-n1.kubeconfig")).unwrap()).unwrap();
        let b64 = |v: &serde_yaml::Value| {
            String::from_utf8(base64::engine::general_purpose::STANDARD.decode(v.as_str().unwrap()).unwrap()).unwrap()
        };
        assert_eq!(kc["clusters"][0]["cluster"]["server"].as_str(), Some("https://10.0.0.5:6443"));
        assert_eq!(b64(&kc["clusters"][0]["cluster"]["certificate-authority-data"]), std::fs::read_to_string(dir.join("ca.crt")).unwrap());
        assert_eq!(b64(&kc["users"][0]["user"]["client-certificate-data"]), std::fs::read_to_string(dir.join("node-n1.crt")).unwrap());
        assert_eq!(b64(&kc["users"][0]["user"]["client-key-data"]), std::fs::read_to_string(dir.join("node-n1.key")).unwrap());
        assert_eq!(kc["current-context"].as_str(), Some("system:node:n1@rkube"));
        assert_eq!(kc["users"][0]["name"].as_str(), Some("system:node:n1"));
        // The key matches the certificate (openssl compares the public keys).
        let from_key = openssl(dir, &["pkey", "-in", "node-n1.key", "-pubout"]);
        let from_cert = openssl(dir, &["x509", "-in", "node-n1.crt", "-noout", "-pubkey"]);
        assert_eq!(from_key, from_cert);
        // kubectl itself accepts it (no server contacted).
        if let Ok(out) = Command::new("kubectl")
            .args(["config", "view", "--raw", "--kubeconfig", dir.join("node-n1.kubeconfig").to_str().unwrap(), "-o", "jsonpath={.users[0].name}"])
            .output()
        {
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            assert_eq!(String::from_utf8_lossy(&out.stdout), "system:node:n1");
        }
    }

    #[test]
    fn openssl_signs_a_user_with_the_ca_key() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        generate(&options(dir, &[])).unwrap();
        openssl(dir, &["genrsa", "-out", "jane.key", "2048"]);
        openssl(dir, &["req", "-new", "-key", "jane.key", "-subj", "/CN=jane/O=dev", "-out", "jane.csr"]);
        openssl(dir, &["x509", "-req", "-in", "jane.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "30", "-out", "jane.crt"]);
        assert_eq!(openssl(dir, &["verify", "-CAfile", "ca.crt", "jane.crt"]).trim(), "jane.crt: OK");
        assert_eq!(subject_of(dir, "jane.crt"), "subject=O=dev,CN=jane");
    }

    #[test]
    fn rerun_keeps_the_ca_unless_forced() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        generate(&options(dir, &[])).unwrap();
        let ca1 = std::fs::read_to_string(dir.join("ca.crt")).unwrap();
        let written = generate(&options(dir, &["late"])).unwrap();
        assert!(!written.contains(&dir.join("ca.crt")));
        assert_eq!(std::fs::read_to_string(dir.join("ca.crt")).unwrap(), ca1);
        assert_eq!(openssl(dir, &["verify", "-CAfile", "ca.crt", "node-late.crt"]).trim(), "node-late.crt: OK");
        // --force: a new CA; the old certificates no longer verify against it.
        std::fs::copy(dir.join("node-late.crt"), dir.join("old.crt")).unwrap();
        generate(&Config { force: true, ..options(dir, &[]) }).unwrap();
        assert_ne!(std::fs::read_to_string(dir.join("ca.crt")).unwrap(), ca1);
        let out = Command::new("openssl").args(["verify", "-CAfile", "ca.crt", "old.crt"]).current_dir(dir).output().unwrap();
        assert!(!out.status.success());
    }

    #[test]
    fn bad_options() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(generate(&Config { days: 0, ..options(tmp.path(), &[]) }).is_err());
        assert!(generate(&options(tmp.path(), &["a/b"])).is_err());
    }
}
