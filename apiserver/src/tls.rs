//! TLS for `--secure-port`, with rustls.
//!
//! Client certificates are *requested* but not required, and not judged at
//! the TLS layer: as kube-apiserver does (Go's `tls.RequestClientCert`), the
//! handshake only proves the client holds the certificate's key, and the
//! x509 authenticator verifies the chain against `--client-ca-file` per
//! request. That is what turns a certificate from another CA into an HTTP
//! 401 `Status` instead of a failed handshake, and lets anonymous clients
//! (`curl -k`) in to be told 403.

use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, Context};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};

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
    verifier: Arc<dyn ClientCertVerifier>,
}

impl ClientCa {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let mut roots = RootCertStore::empty();
        for c in read_certs(path)? {
            roots.add(c).with_context(|| format!("bad CA certificate in {}", path.display()))?;
        }
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .map_err(|e| anyhow!("client CA {}: {e}", path.display()))?;
        Ok(ClientCa { verifier })
    }

    /// Ok when `chain[0]` is valid now and chains up to the CA.
    pub fn verify(&self, chain: &[CertificateDer<'static>]) -> Result<(), String> {
        let (ee, rest) = chain.split_first().ok_or("no client certificate")?;
        self.verifier
            .verify_client_cert(ee, rest, UnixTime::now())
            .map(|_| ())
            .map_err(|e| format!("verifying certificate: {e}"))
    }

    fn hints(&self) -> Vec<DistinguishedName> {
        self.verifier.root_hint_subjects().to_vec()
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
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
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
        .with_safe_default_protocol_versions()
        .map_err(|e| anyhow!("TLS versions: {e}"))?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_single_cert(read_certs(cert)?, read_key(key)?)
        .map_err(|e| anyhow!("--tls-cert-file/--tls-private-key-file: {e}"))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}
