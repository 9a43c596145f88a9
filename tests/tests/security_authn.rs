//! Bad client credentials over TLS: certificates signed by the right CA but
//! expired, not yet valid, or naming no user (no CN), and garbage in the
//! Authorization header. Each is a clear 401 `Status`; the server neither
//! crashes nor stops serving good clients.
//!
//! (Other-CA certificates and bad bearer tokens: `security_walkthrough.rs`.)

mod security_common;

use std::os::unix::ffi::OsStrExt;
use std::process::Command;

use security_common::Secure;

/// A 401 as kube-apiserver writes it.
fn assert_unauthorized(what: &str, body: &str, code: &str) {
    assert_eq!(code, "401", "{what}: {body}");
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {body}"));
    assert_eq!(
        (v["kind"].as_str(), v["status"].as_str(), v["reason"].as_str(), v["code"].as_i64(), v["message"].as_str()),
        (Some("Status"), Some("Failure"), Some("Unauthorized"), Some(401), Some("Unauthorized")),
        "{what}: {body}"
    );
}

/// The server still answers the admin, and its process is alive.
fn still_serving(s: &Secure) {
    let (body, code) = s.curl_as("admin", &[&format!("{}/api/v1/namespaces/default", s.url)]);
    assert_eq!(code, "200", "{body}");
}

#[test]
fn expired_and_not_yet_valid_certificates_are_401() {
    let s = Secure::start();
    // The RBAC rights exist: only the certificate dates are wrong.
    s.admin(&["create", "clusterrolebinding", "old-is-admin", "--clusterrole=cluster-admin", "--user=old"]);
    s.admin(&["create", "clusterrolebinding", "early-is-admin", "--clusterrole=cluster-admin", "--user=early"]);
    s.sign_dated("expired", "/CN=old/O=dev", "20200101000000Z", "20200102000000Z");
    s.sign_dated("future", "/CN=early/O=dev", "20990101000000Z", "20991231000000Z");
    // The same identity with good dates works, so the dates are the cause.
    s.sign("current", "/CN=old/O=dev");
    let url = format!("{}/api/v1/namespaces", s.url);
    let (body, code) = s.curl_as("current", &[&url]);
    assert_eq!(code, "200", "{body}");

    for round in 0..3 {
        let (body, code) = s.curl_as("expired", &[&url]);
        assert_unauthorized(&format!("expired certificate, round {round}"), &body, &code);
        let (body, code) = s.curl_as("future", &[&url]);
        assert_unauthorized(&format!("not-yet-valid certificate, round {round}"), &body, &code);
        // Not even public information with a bad certificate: a presented
        // credential that fails is 401, not anonymous.
        let (body, code) = s.curl_as("expired", &[&format!("{}/version", s.url)]);
        assert_unauthorized("expired certificate on /version", &body, &code);
        still_serving(&s);
    }
    // kubectl says so too.
    let kc = s.dir.path().join("expired.kubeconfig");
    let k = |args: &[&str]| s.kubectl(&kc, args);
    assert!(k(&["config", "set-cluster", "c", &format!("--server={}", s.url), "--insecure-skip-tls-verify=true"]).status.success());
    assert!(k(&["config", "set-credentials", "u", &format!("--client-certificate={}", s.file("expired.crt")), &format!("--client-key={}", s.file("expired.key"))]).status.success());
    assert!(k(&["config", "set-context", "x", "--cluster=c", "--user=u"]).status.success());
    assert!(k(&["config", "use-context", "x"]).status.success());
    let out = k(&["get", "pods"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    // kubectl's wording for a 401 (on discovery, its first request).
    assert!(err.contains("error: You must be logged in to the server"), "{err}");
    still_serving(&s);
}

#[test]
fn certificate_without_cn_is_401() {
    let s = Secure::start();
    // Signed by the cluster CA, a group but no user.
    s.sign("nocn", "/O=system:masters");
    let (body, code) = s.curl_as("nocn", &[&format!("{}/api/v1/namespaces", s.url)]);
    assert_unauthorized("certificate without CN", &body, &code);
    // An empty CN is no better.
    s.sign("emptycn", "/CN=/O=system:masters");
    let (body, code) = s.curl_as("emptycn", &[&format!("{}/api/v1/namespaces", s.url)]);
    assert_unauthorized("certificate with an empty CN", &body, &code);
    still_serving(&s);
}

#[test]
fn garbage_authorization_headers_are_401() {
    let s = Secure::start();
    let url = format!("{}/api/v1/namespaces", s.url);
    // Bearer tokens that are no token rkube knows, whatever their bytes.
    let headers: Vec<Vec<u8>> = vec![
        b"Authorization: Bearer \xff\xfe\x80garbage".to_vec(),
        b"Authorization: Bearer a b c".to_vec(),
        b"Authorization: bearer s3cr3t-not".to_vec(),
        format!("Authorization: Bearer {}", "x".repeat(8192)).into_bytes(),
    ];
    for h in &headers {
        let out = Command::new("curl")
            .args(["-sk", "-w", "\n%{http_code}", "-H"])
            .arg(std::ffi::OsStr::from_bytes(h))
            .arg(&url)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap();
        assert_unauthorized(&String::from_utf8_lossy(&h[..h.len().min(60)]), body, code);
    }
    // A good client certificate with a bad token beside it: the certificate
    // is tried first and upstream's union authenticator stops at the first
    // success.
    let (body, code) = s.curl_as("admin", &["-H", "Authorization: Bearer nonsense", &url]);
    assert_eq!(code, "200", "{body}");
    still_serving(&s);
}

/// `--anonymous-auth=false`: a request with no credentials authenticates
/// nobody, so every path — resources, discovery, `/version`, health — is a
/// 401 (with anonymous auth on, the same requests are 403 or 200). The
/// bare flag `--anonymous-auth` means true, as a Go bool flag does.
#[test]
fn anonymous_auth_false_makes_credential_less_requests_401() {
    let s = Secure::start_with(&[], &["--anonymous-auth=false"]);
    for path in ["/api/v1/namespaces", "/version", "/healthz", "/api"] {
        let (body, code) = s.curl(&[&format!("{}{path}", s.url)]);
        assert_unauthorized(path, &body, &code);
    }
    // Credentials still work.
    let (body, code) = s.curl_as("admin", &[&format!("{}/version", s.url)]);
    assert_eq!(code, "200", "{body}");
    still_serving(&s);
    drop(s);

    let s = Secure::start_with(&[], &["--anonymous-auth"]);
    let (body, code) = s.curl(&[&format!("{}/api/v1/namespaces", s.url)]);
    assert_eq!(code, "403", "{body}");
    assert!(body.contains(r#"User \"system:anonymous\" cannot list resource \"namespaces\""#), "{body}");
    assert_eq!(s.curl(&[&format!("{}/version", s.url)]).1, "200");
}

/// A certificate signed by the client CA but made for serving (extended key
/// usage serverAuth only) authenticates nobody: the x509 authenticator
/// verifies for clientAuth, as Go's `x509.Verify` with
/// `ExtKeyUsageClientAuth`. Here: the apiserver's own serving certificate.
#[test]
fn serving_certificate_is_no_client_certificate() {
    let s = Secure::start();
    let (body, code) = s.curl_as("apiserver", &[&format!("{}/api/v1/namespaces", s.url)]);
    assert_unauthorized("apiserver.crt as a client certificate", &body, &code);
    still_serving(&s);
}
