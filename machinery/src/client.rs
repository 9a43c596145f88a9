//! Connecting to the apiserver: `--master` and `--kubeconfig`, as every
//! Kubernetes component accepts them.
//!
//! The HTTP client itself is kube-rs's [`kube::Client`] (connection pooling,
//! auth from kubeconfig, TLS via rustls, typed `Api<K>`); this module only
//! decides *which* configuration to build, with client-go's precedence
//! (`clientcmd.BuildConfigFromFlags`):
//!
//! 1. `--kubeconfig FILE` given: use that file's current context. If
//!    `--master URL` is given too, it overrides the file's server URL (but
//!    credentials and CA still come from the file).
//! 2. Only `--master URL`: talk to that URL with no credentials — the
//!    apiserver's insecure `http://` port in a single-box setup.
//! 3. Neither: kube's inference (`$KUBECONFIG`, `~/.kube/config`, then the
//!    in-cluster service account), as `kubectl` does.
//!
//! Every request carries a `User-Agent` naming the component
//! (`rkube-scheduler/0.1.0 (linux/x86_64)`), as client-go components do, so
//! the apiserver's logs and metrics can tell clients apart.

use std::path::Path;

use anyhow::Context;
use http::{header::USER_AGENT, HeaderValue};
use kube::config::{KubeConfigOptions, Kubeconfig};

/// The user agent for `component`: `rkube-<component>/<version> (<os>/<arch>)`.
pub fn user_agent(component: &str) -> String {
    format!(
        "rkube-{component}/{} ({}/{})",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::OS,
        std::env::consts::ARCH
    )
}

/// `--master` values may omit the scheme (`127.0.0.1:8080`), as kubectl's
/// `-s` allows; without TLS settings client-go then assumes plain http.
fn master_url(master: &str) -> anyhow::Result<http::Uri> {
    let with_scheme = if master.contains("://") { master.to_string() } else { format!("http://{master}") };
    let uri: http::Uri = with_scheme.parse().with_context(|| format!("invalid --master URL {master:?}"))?;
    anyhow::ensure!(uri.host().is_some(), "invalid --master URL {master:?}: no host");
    Ok(uri)
}

/// The kube-rs configuration for `--master` / `--kubeconfig` (see the module
/// docs for the precedence). No user agent is set here; see [`connect_as`].
pub async fn config(master: Option<&str>, kubeconfig: Option<&Path>) -> anyhow::Result<kube::Config> {
    let master = master.filter(|m| !m.is_empty());
    let mut config = match (master, kubeconfig) {
        (_, Some(path)) => {
            let file = Kubeconfig::read_from(path).with_context(|| format!("reading kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                .await
                .with_context(|| format!("loading kubeconfig {}", path.display()))?
        }
        (Some(m), None) => kube::Config::new(master_url(m)?),
        (None, None) => kube::Config::infer()
            .await
            .context("no --master or --kubeconfig given, and no kubeconfig or in-cluster config found")?,
    };
    if let (Some(m), Some(_)) = (master, kubeconfig) {
        config.cluster_url = master_url(m)?;
    }
    Ok(config)
}

/// A client for `component` (used in its user agent).
pub async fn connect_as(
    component: &str,
    master: Option<&str>,
    kubeconfig: Option<&Path>,
) -> anyhow::Result<kube::Client> {
    let mut config = config(master, kubeconfig).await?;
    config.headers.push((USER_AGENT, HeaderValue::from_str(&user_agent(component))?));
    // A watch may sit idle for minutes; kube's default read timeout (295 s)
    // is longer than the watcher's server-side timeout (290 s), so a silent
    // watch ends server-side first and is re-established cleanly.
    kube::Client::try_from(config).context("building the API client")
}

/// A client with the generic `rkube` user agent. Components should prefer
/// [`connect_as`] with their own name.
pub async fn connect(master: Option<&str>, kubeconfig: Option<&Path>) -> anyhow::Result<kube::Client> {
    connect_as("client", master, kubeconfig).await
}

#[cfg(test)]
mod tests {
    use super::*;

    const KUBECONFIG: &str = r#"
apiVersion: v1
kind: Config
current-context: demo
clusters:
- name: demo
  cluster:
    server: http://127.0.0.1:6443
contexts:
- name: demo
  context:
    cluster: demo
    user: admin
    namespace: team-a
users:
- name: admin
  user:
    token: secret-token
"#;

    /// `kubeconfig` is the file's content (written to a temp file) or None.
    /// `expect` is "<cluster url> ns=<default namespace> token=<yes|no>" or
    /// "error".
    async fn check(master: Option<&str>, kubeconfig: Option<&str>, expect: &str) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kubeconfig");
        if let Some(content) = kubeconfig {
            std::fs::write(&path, content).unwrap();
        }
        let got = match config(master, kubeconfig.map(|_| path.as_path())).await {
            Ok(c) => format!(
                "{} ns={} token={}",
                c.cluster_url,
                c.default_namespace,
                if c.auth_info.token.is_some() { "yes" } else { "no" }
            ),
            Err(_) => "error".to_string(),
        };
        assert_eq!(got, expect, "master={master:?} kubeconfig={kubeconfig:?}");
    }

    #[tokio::test]
    async fn precedence_of_master_and_kubeconfig() {
        // Plain --master: the insecure http port, no credentials.
        check(Some("http://127.0.0.1:8080"), None, "http://127.0.0.1:8080/ ns=default token=no").await;
        // Scheme-less --master defaults to http, like kubectl -s.
        check(Some("127.0.0.1:8080"), None, "http://127.0.0.1:8080/ ns=default token=no").await;
        check(Some("https://10.0.0.1:6443"), None, "https://10.0.0.1:6443/ ns=default token=no").await;
        // --kubeconfig alone: server, namespace and credentials from the file.
        check(None, Some(KUBECONFIG), "http://127.0.0.1:6443/ ns=team-a token=yes").await;
        // Both: --master overrides the server, the rest still comes from the file.
        check(Some("http://127.0.0.1:9999"), Some(KUBECONFIG), "http://127.0.0.1:9999/ ns=team-a token=yes").await;
        // An empty --master counts as not given.
        check(Some(""), Some(KUBECONFIG), "http://127.0.0.1:6443/ ns=team-a token=yes").await;
        // Broken inputs.
        check(Some("http://"), None, "error").await;
        check(None, Some("not: [a kubeconfig"), "error").await;
    }

    #[test]
    fn user_agent_names_the_component() {
        let ua = user_agent("scheduler");
        assert!(ua.starts_with("rkube-scheduler/0.1.0 ("), "{ua}");
        assert!(ua.ends_with(&format!("{}/{})", std::env::consts::OS, std::env::consts::ARCH)), "{ua}");
    }

    #[tokio::test]
    async fn connect_builds_a_client_for_plain_http() {
        // Building the client does not contact the server.
        let client = connect_as("test", Some("http://127.0.0.1:1"), None).await.unwrap();
        assert_eq!(client.default_namespace(), "default");
    }
}
