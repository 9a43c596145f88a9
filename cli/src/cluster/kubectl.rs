//! kubectl as the cluster admin (the admin kubeconfig from [`super::pki`]):
//! `rkube up` waits for the API, applies the demo and shows the result the
//! way a user would.

use anyhow::{bail, Context};

use super::run_cmd;
use super::spec::Spec;

/// `kubectl --kubeconfig <admin> <args>`: its stdout, or an error with its stderr.
pub fn kubectl(spec: &Spec, args: &[&str]) -> anyhow::Result<String> {
    let kc = spec.admin_kubeconfig();
    let mut a = vec!["--kubeconfig", kc.to_str().context("kubeconfig path")?];
    a.extend_from_slice(args);
    run_cmd("kubectl", &a)
}

/// `kubectl apply -f -` of `doc`.
pub fn kubectl_apply(spec: &Spec, doc: &serde_json::Value) -> anyhow::Result<String> {
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
