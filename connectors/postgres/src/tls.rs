//! TLS to PostgreSQL, with rustls: the modes of libpq's `sslmode` that polygate offers.

use std::path::Path;
use std::sync::Arc;

use polygate_connector_core::OptionError;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, ring};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use serde::Deserialize;
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

/// How a source's sessions use TLS (`tls` in catalog.toml), as libpq's `sslmode`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TlsMode {
    /// Never: plain TCP.
    Disable,
    /// Encrypted when the server offers TLS, plain otherwise; the certificate is not checked.
    #[default]
    Prefer,
    /// Always encrypted; the certificate is not checked (it protects against eavesdropping,
    /// not against a server impersonating the real one).
    Require,
    /// Always encrypted, with a certificate signed by the CA of `tls_ca_file` and naming the
    /// host connected to.
    VerifyFull,
}

/// A source's TLS connector, shared by its sessions and their cancel requests.
#[derive(Clone)]
pub(crate) struct Connector(pub(crate) MakeRustlsConnect);

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("rustls")
    }
}

/// The TLS connector and mode of a source.
pub(crate) fn connector(
    mode: TlsMode,
    ca_file: Option<&Path>,
) -> Result<(Connector, SslMode), OptionError> {
    let provider = Arc::new(ring::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| OptionError::new("tls", e.to_string()))?;
    let config = match mode {
        TlsMode::VerifyFull => {
            let path = ca_file.ok_or_else(|| {
                OptionError::new("tls_ca_file", "verify-full needs the CA certificate file")
            })?;
            let mut roots = RootCertStore::empty();
            let certificates = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| OptionError::new("tls_ca_file", format!("{}: {e}", path.display())))?;
            if certificates.is_empty() {
                return Err(OptionError::new(
                    "tls_ca_file",
                    format!("{}: no certificate in the file", path.display()),
                ));
            }
            for certificate in certificates {
                roots.add(certificate).map_err(|e| {
                    OptionError::new("tls_ca_file", format!("{}: {e}", path.display()))
                })?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        TlsMode::Disable | TlsMode::Prefer | TlsMode::Require => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unverified(provider)))
            .with_no_client_auth(),
    };
    let ssl_mode = match mode {
        TlsMode::Disable => SslMode::Disable,
        TlsMode::Prefer => SslMode::Prefer,
        TlsMode::Require | TlsMode::VerifyFull => SslMode::Require,
    };
    Ok((Connector(MakeRustlsConnect::new(config)), ssl_mode))
}

/// Accepts any server certificate, as libpq's `prefer` and `require` do; handshake signatures
/// are still checked.
#[derive(Debug)]
struct Unverified(Arc<CryptoProvider>);

impl ServerCertVerifier for Unverified {
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
