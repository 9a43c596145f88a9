//! Client certificates as identities (k8s.io/apiserver/pkg/authentication/request/x509).
//!
//! With `--client-ca-file`, the TLS layer asks clients for a certificate and
//! verifies its chain against that CA during the handshake. What is left for
//! authentication is to *read* the verified leaf certificate: the subject's
//! Common Name is the user name and each Organization is a group. That is
//! why a user made with `openssl req -subj "/CN=jane/O=dev"` and signed by
//! the cluster CA is user `jane` in group `dev` — Kubernetes stores no users.
//!
//! A certificate without a CN names nobody and is refused here
//! ([`X509Error::NoCommonName`]). (Upstream's CommonNameUserConversion
//! instead returns "no user" and lets the request fall through to the next
//! authenticator, usually anonymous; rkube makes it an explicit 401 so the
//! mistake is visible.)
//!
//! Validity dates are checked by the TLS verifier; [`check_validity`] does
//! the same check for callers that read certificates outside a handshake.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use x509_parser::prelude::*;

use super::UserInfo;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum X509Error {
    /// Not a DER X.509 certificate.
    Parse(String),
    /// The subject has no (or an empty) Common Name.
    NoCommonName,
    /// Outside notBefore..notAfter (Go's crypto/x509 wording).
    Expired { now: i64, not_before: i64, not_after: i64 },
}

impl fmt::Display for X509Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            X509Error::Parse(e) => write!(f, "x509: malformed certificate: {e}"),
            X509Error::NoCommonName => write!(f, "x509: client certificate has no common name (CN): it names no user"),
            X509Error::Expired { now, not_before, not_after } => {
                let t = |s: i64| {
                    chrono::DateTime::from_timestamp(s, 0).map(|d| d.format("%Y-%m-%dT%H:%M:%SZ").to_string()).unwrap_or_default()
                };
                if now < not_before {
                    write!(f, "x509: certificate has expired or is not yet valid: current time {} is before {}", t(*now), t(*not_before))
                } else {
                    write!(f, "x509: certificate has expired or is not yet valid: current time {} is after {}", t(*now), t(*not_after))
                }
            }
        }
    }
}

impl std::error::Error for X509Error {}

fn parse(der: &[u8]) -> Result<X509Certificate<'_>, X509Error> {
    let (rest, cert) = X509Certificate::from_der(der).map_err(|e| X509Error::Parse(e.to_string()))?;
    if !rest.is_empty() {
        return Err(X509Error::Parse(format!("{} trailing bytes after the certificate", rest.len())));
    }
    Ok(cert)
}

/// The user a (verified) client certificate names: CN → user name, every O
/// → a group, in order. `system:authenticated` is added by
/// [`super::authenticate`], not here.
pub fn user_from_certificate(der: &[u8]) -> Result<UserInfo, X509Error> {
    let cert = parse(der)?;
    let subject = cert.subject();
    let cn = subject
        .iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok())
        .filter(|s| !s.is_empty())
        .ok_or(X509Error::NoCommonName)?;
    let groups = subject.iter_organization().filter_map(|a| a.as_str().ok()).map(str::to_string).collect();
    Ok(UserInfo { name: cn.to_string(), groups, ..Default::default() })
}

/// The user of a verified peer chain (leaf first, as rustls hands it over).
pub fn user_from_chain<C: AsRef<[u8]>>(chain: &[C]) -> Option<Result<UserInfo, X509Error>> {
    chain.first().map(|leaf| user_from_certificate(leaf.as_ref()))
}

/// Checks notBefore <= now <= notAfter.
pub fn check_validity(der: &[u8], now: SystemTime) -> Result<(), X509Error> {
    let cert = parse(der)?;
    let now = now.duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    let not_before = cert.validity().not_before.timestamp();
    let not_after = cert.validity().not_after.timestamp();
    if now < not_before || now > not_after {
        return Err(X509Error::Expired { now, not_before, not_after });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};
    use std::time::Duration;

    /// A self-signed certificate with the given subject attributes.
    fn cert(attrs: &[(DnType, &str)], days_valid: (i64, i64)) -> Vec<u8> {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        let mut dn = DistinguishedName::new();
        for (t, v) in attrs {
            dn.push(t.clone(), *v);
        }
        params.distinguished_name = dn;
        let now = ::time::OffsetDateTime::now_utc();
        params.not_before = now + ::time::Duration::days(days_valid.0);
        params.not_after = now + ::time::Duration::days(days_valid.1);
        let key = KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    fn check(attrs: &[(DnType, &str)], expected: Result<(&str, &[&str]), X509Error>) {
        let der = cert(attrs, (-1, 1));
        let got = user_from_certificate(&der);
        match (got, expected) {
            (Ok(u), Ok((name, groups))) => {
                assert_eq!(u.name, name);
                assert_eq!(u.groups, groups.iter().map(|g| g.to_string()).collect::<Vec<_>>());
            }
            (Err(e), Err(want)) => assert_eq!(e, want),
            (got, want) => panic!("{attrs:?}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn subject_to_user() {
        check(&[(DnType::CommonName, "jane"), (DnType::OrganizationName, "dev")], Ok(("jane", &["dev"])));
        check(
            &[(DnType::CommonName, "kubernetes-admin"), (DnType::OrganizationName, "system:masters")],
            Ok(("kubernetes-admin", &["system:masters"])),
        );
        check(&[(DnType::CommonName, "system:node:n1"), (DnType::OrganizationName, "system:nodes")], Ok(("system:node:n1", &["system:nodes"])));
        check(&[(DnType::CommonName, "solo")], Ok(("solo", &[])));
        check(&[(DnType::OrganizationName, "dev")], Err(X509Error::NoCommonName));
        check(&[(DnType::CommonName, ""), (DnType::OrganizationName, "dev")], Err(X509Error::NoCommonName));
        check(&[], Err(X509Error::NoCommonName));
    }

    #[test]
    fn several_organizations_are_several_groups() {
        // rcgen keeps one value per attribute type, so build the subject with
        // two O attributes through openssl-compatible DER instead: a CSR-free
        // path is to sign with rcgen's custom DN entries.
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "multi");
        dn.push(DnType::OrganizationName, "a");
        dn.push(DnType::CustomDnType(vec![2, 5, 4, 10]), "b");
        params.distinguished_name = dn;
        let key = KeyPair::generate().unwrap();
        let der = params.self_signed(&key).unwrap().der().to_vec();
        let u = user_from_certificate(&der).unwrap();
        assert_eq!(u.name, "multi");
        assert_eq!(u.groups, vec!["a".to_string(), "b".to_string()]);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [&b""[..], b"\x30\x03\x02\x01\x01", b"not a certificate", &[0xff; 64]] {
            assert!(matches!(user_from_certificate(bad), Err(X509Error::Parse(_))), "{bad:?}");
        }
        assert_eq!(user_from_chain::<Vec<u8>>(&[]), None);
    }

    #[test]
    fn validity_window() {
        let now = SystemTime::now();
        assert_eq!(check_validity(&cert(&[(DnType::CommonName, "ok")], (-1, 1)), now), Ok(()));
        let expired = check_validity(&cert(&[(DnType::CommonName, "old")], (-10, -1)), now).unwrap_err();
        assert!(expired.to_string().starts_with("x509: certificate has expired or is not yet valid: current time"));
        assert!(expired.to_string().contains("is after"));
        let future = check_validity(&cert(&[(DnType::CommonName, "new")], (1, 10)), now).unwrap_err();
        assert!(future.to_string().contains("is before"));
        // And it is valid once its time comes.
        assert_eq!(check_validity(&cert(&[(DnType::CommonName, "new")], (1, 10)), now + Duration::from_secs(2 * 86400)), Ok(()));
    }
}
