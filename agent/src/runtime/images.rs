//! Small OCI images built locally, for a machine with no registry.
//!
//! A container image is a content-addressed tree (the OCI image spec):
//! filesystem *layers* (tar archives), a *config* (entrypoint, env, the
//! layers' `diff_ids`) and a *manifest* listing both by sha256 digest. An
//! *OCI image layout* packs them as `oci-layout`, `index.json` and
//! `blobs/sha256/<hex>`; `ctr images import` loads such a tarball straight
//! into containerd's content store and unpacks it for the snapshotter.
//!
//! We build two images from Debian's statically linked busybox, in pure Rust:
//!
//! * [`BUSYBOX_IMAGE`] — `/bin/busybox` and a symlink for each applet
//!   (`sh`, `httpd`, `nc`, `sleep`, `cat`, `echo`, …); default command `sh`.
//! * [`PAUSE_IMAGE`] — the pod *sandbox* image. In Kubernetes every pod has a
//!   "pause" container that holds the pod's namespaces and does nothing else.
//!   Ours is a busybox `sh` that sleeps forever and exits 0 on SIGTERM/SIGINT
//!   (a trap is needed: as PID 1 of the pod's PID namespace, a signal with no
//!   handler would be ignored).
//!
//! Both share one layer, so containerd stores it once. Archives are
//! reproducible (fixed mtimes and owners), so digests only change when the
//! busybox binary does.
//!
//! Names are full references: CRI normalises `rkube/busybox:1` to
//! `docker.io/rkube/busybox:1` and looks images up under that name only.
//! On a machine with a registry, ordinary images still go through CRI
//! `PullImage` unchanged; these two are simply already present.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// The busybox image (for pods in tests and the demo).
pub const BUSYBOX_IMAGE: &str = "docker.io/rkube/busybox:1";
/// The pod sandbox ("pause") image; containerd's `sandbox_image`.
pub const PAUSE_IMAGE: &str = "docker.io/rkube/pause:1";
/// Where Debian's `busybox-static` installs the binary.
pub const DEFAULT_BUSYBOX_BINARY: &str = "/bin/busybox";

/// The pause process: sleep forever, exit cleanly on SIGTERM or SIGINT.
const PAUSE_SCRIPT: &str = "trap 'exit 0' TERM INT; while :; do sleep 2147483647 & wait $!; done";

/// Applets linked when `busybox --list` cannot be run (always includes the
/// ones the project's tests rely on).
const FALLBACK_APPLETS: &[&str] = &[
    "sh", "ash", "cat", "echo", "sleep", "httpd", "nc", "ls", "mkdir", "rm", "cp", "mv", "env", "hostname",
    "ip", "ifconfig", "ps", "kill", "true", "false", "test", "[", "printf", "head", "tail", "grep", "sed",
    "wc", "date", "id", "touch", "uname", "pwd", "seq", "tee", "timeout", "wget", "ping", "nslookup",
];

/// What an image runs, as in the OCI config's `Entrypoint` and `Cmd`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageDefinition {
    /// Full reference, e.g. `docker.io/rkube/busybox:1`.
    pub name: String,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
}

impl ImageDefinition {
    pub fn busybox() -> Self {
        Self { name: BUSYBOX_IMAGE.into(), entrypoint: vec![], cmd: vec!["sh".into()] }
    }
    pub fn pause() -> Self {
        Self {
            name: PAUSE_IMAGE.into(),
            entrypoint: vec!["/bin/sh".into(), "-c".into(), PAUSE_SCRIPT.into()],
            cmd: vec![],
        }
    }
}

/// A blob in the layout: its bytes and `sha256:<hex>` digest.
struct Blob {
    digest: String,
    bytes: Vec<u8>,
}

impl Blob {
    fn new(bytes: Vec<u8>) -> Self {
        Self { digest: sha256_digest(&bytes), bytes }
    }
    fn descriptor(&self, media_type: &str) -> Value {
        json!({ "mediaType": media_type, "digest": self.digest, "size": self.bytes.len() })
    }
}

/// `sha256:<lowercase hex>`, the OCI digest form.
pub fn sha256_digest(bytes: &[u8]) -> String {
    let sum = Sha256::digest(bytes);
    let mut s = String::with_capacity(71);
    s.push_str("sha256:");
    for b in sum {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// The OCI platform names for this build (`amd64`, `arm64`, …).
pub fn oci_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    }
}

/// Lists busybox's applets by running `busybox --list` (falls back to a fixed list).
pub fn busybox_applets(busybox: &Path) -> Vec<String> {
    let listed = Command::new(busybox).arg("--list").output().ok().filter(|o| o.status.success());
    let mut applets: Vec<String> = match listed {
        Some(out) => String::from_utf8_lossy(&out.stdout).lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect(),
        None => FALLBACK_APPLETS.iter().map(|s| s.to_string()).collect(),
    };
    applets.retain(|a| a != "busybox" && !a.contains('/'));
    applets.sort();
    applets.dedup();
    applets
}

/// The root filesystem layer: a few directories, `/bin/busybox`, one symlink per applet.
pub fn busybox_layer(busybox: &Path) -> Result<Vec<u8>> {
    let binary = std::fs::read(busybox).with_context(|| format!("reading {} (install busybox-static)", busybox.display()))?;
    let applets = busybox_applets(busybox);
    let mut tar = tar::Builder::new(Vec::new());
    // (path, mode): the usual skeleton; /tmp is world-writable and sticky.
    for (dir, mode) in [("bin", 0o755), ("dev", 0o755), ("etc", 0o755), ("proc", 0o755), ("root", 0o700), ("sys", 0o755), ("tmp", 0o1777), ("var", 0o755), ("var/www", 0o755)] {
        let mut h = header(tar::EntryType::Directory, mode, 0);
        tar.append_data(&mut h, format!("{dir}/"), std::io::empty())?;
    }
    // Minimal user database: `id`, `httpd` and friends look up root.
    for (path, text) in [("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"), ("etc/group", "root:x:0:\nnogroup:x:65534:\n")] {
        let mut h = header(tar::EntryType::Regular, 0o644, text.len() as u64);
        tar.append_data(&mut h, path, text.as_bytes())?;
    }
    let mut h = header(tar::EntryType::Regular, 0o755, binary.len() as u64);
    tar.append_data(&mut h, "bin/busybox", binary.as_slice())?;
    for applet in applets {
        let mut h = header(tar::EntryType::Symlink, 0o777, 0);
        tar.append_link(&mut h, format!("bin/{applet}"), "busybox")?;
    }
    Ok(tar.into_inner()?)
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h
}

/// Builds an OCI image layout tarball holding one single-layer image.
pub fn oci_archive(image: &ImageDefinition, layer: &[u8]) -> Result<Vec<u8>> {
    if image.name.matches('/').count() < 2 || !image.name.contains(':') {
        bail!("image name {:?} must be a full reference like docker.io/org/name:tag", image.name);
    }
    let layer = Blob::new(layer.to_vec());
    let config = Blob::new(serde_json::to_vec(&json!({
        "architecture": oci_arch(),
        "os": "linux",
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Entrypoint": if image.entrypoint.is_empty() { Value::Null } else { json!(image.entrypoint) },
            "Cmd": if image.cmd.is_empty() { Value::Null } else { json!(image.cmd) },
            "WorkingDir": "/",
        },
        // Uncompressed layer: its diff_id is its own digest.
        "rootfs": { "type": "layers", "diff_ids": [layer.digest] },
        "history": [{ "created_by": "rkube: busybox-static and applet links" }],
    }))?);
    let manifest = Blob::new(serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config.descriptor("application/vnd.oci.image.config.v1+json"),
        "layers": [layer.descriptor("application/vnd.oci.image.layer.v1.tar")],
    }))?);
    let tag = image.name.rsplit_once(':').map(|(_, t)| t).unwrap_or("latest");
    let mut entry = manifest.descriptor("application/vnd.oci.image.manifest.v1+json");
    entry["platform"] = json!({ "architecture": oci_arch(), "os": "linux" });
    // containerd names the imported image from this annotation.
    entry["annotations"] = json!({
        "io.containerd.image.name": image.name,
        "org.opencontainers.image.ref.name": tag,
    });
    let index = serde_json::to_vec(&json!({ "schemaVersion": 2, "manifests": [entry] }))?;

    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    files.insert("oci-layout".into(), br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec());
    files.insert("index.json".into(), index);
    for blob in [layer, config, manifest] {
        files.insert(format!("blobs/sha256/{}", &blob.digest["sha256:".len()..]), blob.bytes);
    }
    let mut tar = tar::Builder::new(Vec::new());
    for dir in ["blobs/", "blobs/sha256/"] {
        let mut h = header(tar::EntryType::Directory, 0o755, 0);
        tar.append_data(&mut h, dir, std::io::empty())?;
    }
    for (path, bytes) in files {
        let mut h = header(tar::EntryType::Regular, 0o644, bytes.len() as u64);
        tar.append_data(&mut h, path, bytes.as_slice())?;
    }
    Ok(tar.into_inner()?)
}

/// Builds the busybox and pause archives into `dir` (returns their paths, in that order).
pub fn build_local_images(busybox: &Path, dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let layer = busybox_layer(busybox)?;
    let mut paths = Vec::new();
    for (file, image) in [("busybox.tar", ImageDefinition::busybox()), ("pause.tar", ImageDefinition::pause())] {
        let path = dir.join(file);
        let mut f = std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        f.write_all(&oci_archive(&image, &layer)?)?;
        paths.push(path);
    }
    Ok(paths)
}

/// Imports an OCI archive into containerd's `k8s.io` namespace (the one CRI
/// uses) with `ctr`, which also unpacks it for the default snapshotter.
pub fn ctr_import(socket: &Path, archive: &Path) -> Result<()> {
    let out = Command::new("ctr")
        .arg("--address")
        .arg(socket)
        .args(["--namespace", "k8s.io", "images", "import"])
        .arg(archive)
        .output()
        .context("running ctr (install containerd)")?;
    if !out.status.success() {
        bail!(
            "ctr images import {} failed ({}): {}",
            archive.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Builds both images (in `work_dir`) and imports them into the containerd at `socket`.
pub fn import_local_images(socket: &Path, busybox: &Path, work_dir: &Path) -> Result<()> {
    for archive in build_local_images(busybox, work_dir)? {
        ctr_import(socket, &archive)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// Unpacks a tarball into path → (entry type, bytes or link target).
    fn entries(tar_bytes: &[u8]) -> BTreeMap<String, (tar::EntryType, Vec<u8>)> {
        let mut out = BTreeMap::new();
        let mut ar = tar::Archive::new(tar_bytes);
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let path = e.path().unwrap().to_string_lossy().into_owned();
            let kind = e.header().entry_type();
            let mut data = Vec::new();
            if kind == tar::EntryType::Symlink {
                data = e.link_name().unwrap().unwrap().to_string_lossy().into_owned().into_bytes();
            } else {
                e.read_to_end(&mut data).unwrap();
            }
            out.insert(path, (kind, data));
        }
        out
    }

    fn blob<'a>(files: &'a BTreeMap<String, (tar::EntryType, Vec<u8>)>, digest: &str) -> &'a [u8] {
        let bytes = &files[&format!("blobs/sha256/{}", digest.strip_prefix("sha256:").unwrap())].1;
        assert_eq!(sha256_digest(bytes), digest, "blob content matches its digest");
        bytes
    }

    /// Builds the archive for `image` and checks the layout chain
    /// index → manifest → config/layer, and the config's entrypoint and cmd.
    fn check(image: ImageDefinition, expected_entrypoint: Value, expected_cmd: Value) {
        let layer = busybox_layer(Path::new(DEFAULT_BUSYBOX_BINARY)).unwrap();
        let archive = oci_archive(&image, &layer).unwrap();
        let files = entries(&archive);
        assert_eq!(files["oci-layout"].1, br#"{"imageLayoutVersion":"1.0.0"}"#);
        let index: Value = serde_json::from_slice(&files["index.json"].1).unwrap();
        let m = &index["manifests"][0];
        assert_eq!(m["annotations"]["io.containerd.image.name"], image.name.as_str());
        let manifest: Value = serde_json::from_slice(blob(&files, m["digest"].as_str().unwrap())).unwrap();
        assert_eq!(m["size"], blob(&files, m["digest"].as_str().unwrap()).len());
        let config: Value = serde_json::from_slice(blob(&files, manifest["config"]["digest"].as_str().unwrap())).unwrap();
        let layer_digest = manifest["layers"][0]["digest"].as_str().unwrap();
        assert_eq!(blob(&files, layer_digest), layer.as_slice());
        assert_eq!(config["rootfs"]["diff_ids"][0], layer_digest);
        assert_eq!(config["os"], "linux");
        assert_eq!(config["config"]["Entrypoint"], expected_entrypoint);
        assert_eq!(config["config"]["Cmd"], expected_cmd);
    }

    #[test]
    fn oci_layouts() {
        check(ImageDefinition::busybox(), Value::Null, json!(["sh"]));
        check(ImageDefinition::pause(), json!(["/bin/sh", "-c", PAUSE_SCRIPT]), Value::Null);
    }

    #[test]
    fn busybox_layer_has_binary_and_applets() {
        let bin = Path::new(DEFAULT_BUSYBOX_BINARY);
        let files = entries(&busybox_layer(bin).unwrap());
        assert_eq!(files["bin/busybox"].1, std::fs::read(bin).unwrap());
        for applet in ["sh", "httpd", "nc", "sleep", "cat", "echo"] {
            let (kind, target) = &files[&format!("bin/{applet}")];
            assert_eq!((*kind, target.as_slice()), (tar::EntryType::Symlink, &b"busybox"[..]), "applet {applet}");
        }
        assert_eq!(files["tmp/"].0, tar::EntryType::Directory);
    }

    #[test]
    fn archives_are_reproducible() {
        let bin = Path::new(DEFAULT_BUSYBOX_BINARY);
        let a = oci_archive(&ImageDefinition::pause(), &busybox_layer(bin).unwrap()).unwrap();
        let b = oci_archive(&ImageDefinition::pause(), &busybox_layer(bin).unwrap()).unwrap();
        assert_eq!(sha256_digest(&a), sha256_digest(&b));
    }

    #[test]
    fn short_names_are_rejected() {
        let image = ImageDefinition { name: "busybox:1".into(), entrypoint: vec![], cmd: vec![] };
        assert!(oci_archive(&image, b"").is_err());
    }

    #[test]
    fn digest_format() {
        // sha256 of the empty string.
        assert_eq!(sha256_digest(b""), "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }
}
