//! TLS settings shared by WebSocket and HTTP steps: the default roots, a custom CA (`--ca-cert`), or an
//! explicit opt-out of certificate checks (`--insecure`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("--ca-cert {path}: {message}")]
    CaCert { path: PathBuf, message: String },
    #[error("TLS setup failed: {0}")]
    Rustls(#[from] rustls::Error),
}

/// How to verify servers. `None` from [`TlsSettings::client_config`] means: the libraries' defaults.
#[derive(Debug, Clone, Default)]
pub struct TlsSettings {
    pub ca_cert: Option<PathBuf>,
    pub insecure: bool,
}

impl TlsSettings {
    /// A rustls config for the custom CA or `--insecure`; `None` when the defaults apply.
    pub fn client_config(&self) -> Result<Option<Arc<ClientConfig>>, TlsSetupError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?;
        if self.insecure {
            let config = builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
                .with_no_client_auth();
            return Ok(Some(Arc::new(config)));
        }
        let Some(path) = &self.ca_cert else {
            return Ok(None);
        };
        let roots = load_roots(path)?;
        Ok(Some(Arc::new(
            builder.with_root_certificates(roots).with_no_client_auth(),
        )))
    }
}

/// The certificates of a PEM file as the only trust anchors: a private CA replaces the public roots.
fn load_roots(path: &Path) -> Result<RootCertStore, TlsSetupError> {
    let err = |message: String| TlsSetupError::CaCert {
        path: path.to_path_buf(),
        message,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("no PEM certificate found".into()));
    }
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots.add(cert).map_err(|e| err(e.to_string()))?;
    }
    Ok(roots)
}

/// `--insecure`: accepts any certificate but still checks handshake signatures.
#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_need_no_config() {
        assert!(TlsSettings::default().client_config().unwrap().is_none());
        let insecure = TlsSettings {
            ca_cert: None,
            insecure: true,
        };
        assert!(insecure.client_config().unwrap().is_some());
    }

    #[test]
    fn missing_or_empty_ca_file_is_a_clear_error() {
        let s = TlsSettings {
            ca_cert: Some(PathBuf::from("/nonexistent/ca.pem")),
            insecure: false,
        };
        let e = s.client_config().unwrap_err().to_string();
        assert!(e.starts_with("--ca-cert /nonexistent/ca.pem:"), "{e}");
        let dir = std::env::temp_dir().join(format!("wschat-tls-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("empty.pem");
        std::fs::write(&f, "not a certificate\n").unwrap();
        let s = TlsSettings {
            ca_cert: Some(f),
            insecure: false,
        };
        let e = s.client_config().unwrap_err().to_string();
        assert!(e.contains("no PEM certificate found"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
