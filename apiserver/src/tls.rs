//! TLS for `--secure-port`, with rustls.
//!
//! Client certificates are *requested* but not required, and not judged at
//! the TLS layer: as kube-apiserver does (Go's `tls.RequestClientCert`), the
//! handshake only proves the client holds the certificate's key, and the
//! x509 authenticator verifies the chain against `--client-ca-file` per
//! request. That is what turns a certificate from another CA into an HTTP
//! 401 `Status` instead of a failed handshake, and lets anonymous clients
//! (`curl -k`) in to be told 403.
//!
//! Why not webpki for the chain: `openssl x509 -req` (the textbook way to
//! sign a user's CSR) makes X.509 **v1** certificates, which Go accepts and
//! webpki refuses. So the chain is checked with x509-parser (signature by a
//! CA certificate, validity window), and the handshake signature with the
//! certificate's raw public key. TLS 1.3 only: the raw-key check rustls
//! offers is 1.3's, and every current kubectl, curl and kube-rs speaks it.

use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, Context};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub fn read_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<_, _>>()
        .with_context(|| format!("parsing certificates in {}", path.display()))?;
    if certs.is_empty() {
        anyhow::bail!("no PEM certificate in {}", path.display());
    }
    Ok(certs)
}

fn read_key(path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .with_context(|| format!("parsing private key in {}", path.display()))?
        .ok_or_else(|| anyhow!("no PEM private key in {}", path.display()))
}

/// Verifies client certificate chains against the client CA bundle — the
/// x509 authenticator's half of client-certificate authentication.
#[derive(Clone)]
pub struct ClientCa {
    cas: Vec<Vec<u8>>,
    hints: Vec<DistinguishedName>,
}

impl ClientCa {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let mut cas = Vec::new();
        let mut hints = Vec::new();
        for c in read_certs(path)? {
            let (_, parsed) = x509_parser::parse_x509_certificate(&c)
                .map_err(|e| anyhow!("bad CA certificate in {}: {e}", path.display()))?;
            hints.push(DistinguishedName::from(parsed.subject().as_raw().to_vec()));
            cas.push(c.to_vec());
        }
        Ok(ClientCa { cas, hints })
    }

    /// Ok when `chain[0]` is valid now, signed by one of the CAs (directly;
    /// intermediates are not followed), and usable for client
    /// authentication: the x509 authenticator verifies with
    /// `ExtKeyUsageClientAuth`, so a certificate (leaf or CA) that carries an
    /// extended key usage extension must list clientAuth (or any). A
    /// serving certificate (serverAuth only) authenticates nobody.
    pub fn verify(&self, chain: &[CertificateDer<'static>]) -> Result<(), String> {
        let leaf = chain.first().ok_or("no client certificate")?;
        let (_, cert) = x509_parser::parse_x509_certificate(leaf).map_err(|e| format!("parsing certificate: {e}"))?;
        if !cert.validity().is_valid() {
            return Err(format!(
                "verifying certificate: x509: certificate has expired or is not yet valid: valid from {} to {}",
                cert.validity().not_before, cert.validity().not_after
            ));
        }
        for ca in &self.cas {
            let Ok((_, ca)) = x509_parser::parse_x509_certificate(ca) else { continue };
            if ca.subject() == cert.issuer() && cert.verify_signature(Some(ca.public_key())).is_ok() {
                if !allows_client_auth(&cert) || !allows_client_auth(&ca) {
                    return Err("verifying certificate: x509: certificate specifies an incompatible key usage".into());
                }
                return Ok(());
            }
        }
        Err("verifying certificate: x509: certificate signed by unknown authority".into())
    }

    fn hints(&self) -> Vec<DistinguishedName> {
        self.hints.clone()
    }
}

/// No extended key usage extension means any usage; with one, it must
/// name clientAuth or anyExtendedKeyUsage. An unparsable one allows nothing.
fn allows_client_auth(cert: &x509_parser::certificate::X509Certificate<'_>) -> bool {
    match cert.extended_key_usage() {
        Ok(None) => true,
        Ok(Some(eku)) => eku.value.client_auth || eku.value.any,
        Err(_) => false,
    }
}

/// Asks for a client certificate, accepts whatever comes (see module docs),
/// and checks only the handshake signature.
#[derive(Debug)]
struct RequestClientCert {
    hints: Vec<DistinguishedName>,
    provider: Arc<CryptoProvider>,
}

impl ClientCertVerifier for RequestClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }
    fn client_auth_mandatory(&self) -> bool {
        false
    }
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }
    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("TLS 1.2 client certificates are not supported; use TLS 1.3".into()))
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // The key in the certificate, whatever its X.509 version.
        let (_, parsed) = x509_parser::parse_x509_certificate(cert)
            .map_err(|e| rustls::Error::General(format!("client certificate: {e}")))?;
        let spki = rustls::pki_types::SubjectPublicKeyInfoDer::from(parsed.public_key().raw);
        rustls::crypto::verify_tls13_signature_with_raw_key(message, &spki, dss, &self.provider.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// The rustls server configuration for the secure port.
pub fn server_config(cert: &Path, key: &Path, client_ca: Option<&ClientCa>) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let provider = provider();
    let verifier = RequestClientCert { hints: client_ca.map(|c| c.hints()).unwrap_or_default(), provider: provider.clone() };
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| anyhow!("TLS versions: {e}"))?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_single_cert(read_certs(cert)?, read_key(key)?)
        .map_err(|e| anyhow!("--tls-cert-file/--tls-private-key-file: {e}"))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, BasicConstraints, KeyPair};

    /// A CA (`ca_eku` on it) and a leaf it signs (`leaf_eku`); empty = no extension.
    fn verify_with(ca_eku: Vec<ExtendedKeyUsagePurpose>, leaf_eku: Vec<ExtendedKeyUsagePurpose>) -> Result<(), String> {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.distinguished_name.push(DnType::CommonName, "ca");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.extended_key_usages = ca_eku;
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let mut leaf = CertificateParams::new(Vec::<String>::new()).unwrap();
        leaf.distinguished_name.push(DnType::CommonName, "jane");
        leaf.extended_key_usages = leaf_eku;
        let leaf = leaf.signed_by(&KeyPair::generate().unwrap(), &issuer).unwrap();
        let ca = ClientCa { cas: vec![ca_cert.der().to_vec()], hints: vec![] };
        ca.verify(&[leaf.der().clone()])
    }

    #[test]
    fn client_certificates_need_the_client_auth_usage() {
        use ExtendedKeyUsagePurpose::*;
        assert_eq!(verify_with(vec![], vec![]), Ok(()));
        assert_eq!(verify_with(vec![], vec![ClientAuth]), Ok(()));
        assert_eq!(verify_with(vec![], vec![ServerAuth, ClientAuth]), Ok(()));
        assert_eq!(verify_with(vec![], vec![Any]), Ok(()));
        let incompatible = Err("verifying certificate: x509: certificate specifies an incompatible key usage".to_string());
        // A serving certificate presented as a client certificate.
        assert_eq!(verify_with(vec![], vec![ServerAuth]), incompatible);
        // A CA restricted to serving certificates vouches for no client.
        assert_eq!(verify_with(vec![ServerAuth], vec![ClientAuth]), incompatible);
    }
}
