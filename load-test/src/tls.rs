//! The TLS client configuration for `https://` targets: which certificates are trusted, which
//! protocol ALPN offers, and whether a new connection may resume an earlier session.
//!
//! It is built here and handed to reqwest whole (`tls_backend_preconfigured`), because reqwest's
//! own settings cannot turn session resumption off, and the tester must be able to: with
//! `--no-keepalive` each request stands for a new client, as each of the official Gatling test's
//! one-request users was, so each of its connections makes a full handshake. The cryptography is
//! rustls's ring provider; no system OpenSSL is involved.

use std::{path::Path, sync::Arc};

use rustls::{
    ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
    client::{
        Resumption,
        danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    },
    crypto::{CryptoProvider, WebPkiSupportedAlgorithms, ring},
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime, pem::PemObject};

use crate::error::Error;

/// Which servers the client believes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// The operating system's trusted roots.
    System,
    /// Only the CA certificates in this PEM file (`--cacert`).
    CaFile(std::path::PathBuf),
    /// Any certificate, for any name (`--insecure`): the connection is encrypted, but to whoever
    /// answers. Handshake signatures are still checked, so the TLS work is the real one.
    Anyone,
}

/// What the TLS client offers and keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsOptions {
    /// Which certificates are accepted.
    pub trust: Trust,
    /// ALPN offers `h2` only (true) or `http/1.1` only: the protocol asked for is the one spoken,
    /// or the handshake fails.
    pub http2: bool,
    /// Whether a new connection may resume a session of an earlier one (an abbreviated
    /// handshake); without, every connection makes a full handshake.
    pub resumption: bool,
}

/// rustls's cryptography: ring rather than aws-lc-rs, for no C build beyond ring's own. rustls
/// marks it deprecated for its lack of post-quantum key exchange, which the servers this tester
/// loads (nginx on OpenSSL 3.0) do not offer either: X25519 or P-256 is used either way.
fn provider() -> CryptoProvider {
    #[allow(deprecated)]
    ring::default_provider()
}

/// Makes [`provider`] the process's default, once; reqwest takes it for the TLS configuration
/// it builds for every client, plain http:// ones included.
pub fn install_crypto_provider() {
    // Err means a provider is installed already: this one, by an earlier call.
    let _ = provider().install_default();
}

/// The rustls configuration for `options`.
pub fn client_config(options: &TlsOptions) -> Result<ClientConfig, Error> {
    let provider = Arc::new(provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::InvalidOptions(format!("TLS: {e}")))?;
    let mut config = match &options.trust {
        Trust::System => {
            let verifier = rustls_platform_verifier::Verifier::new(provider)
                .map_err(|e| Error::InvalidOptions(format!("TLS: the system's roots: {e}")))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier))
                .with_no_client_auth()
        }
        Trust::CaFile(path) => builder
            .with_root_certificates(roots_from(path)?)
            .with_no_client_auth(),
        Trust::Anyone => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate {
                algorithms: provider.signature_verification_algorithms,
            }))
            .with_no_client_auth(),
    };
    config.alpn_protocols = vec![if options.http2 {
        b"h2".to_vec()
    } else {
        b"http/1.1".to_vec()
    }];
    if !options.resumption {
        config.resumption = Resumption::disabled();
    }
    Ok(config)
}

/// Every certificate in the PEM file at `path`, as trust anchors; an unreadable file, or one
/// with no certificate, is an error naming it.
fn roots_from(path: &Path) -> Result<RootCertStore, Error> {
    let invalid =
        |why: String| Error::InvalidOptions(format!("--cacert {}: {why}", path.display()));
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(|e| invalid(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(e.to_string()))?;
    if certificates.is_empty() {
        return Err(invalid("no PEM certificate in the file".into()));
    }
    let mut roots = RootCertStore::empty();
    for certificate in certificates {
        roots
            .add(certificate)
            .map_err(|e| invalid(format!("not a usable CA certificate: {e}")))?;
    }
    Ok(roots)
}

/// `--insecure`: accepts whatever certificate the server presents, for whatever name, and checks
/// only that the handshake is signed by the key in it.
#[derive(Debug)]
struct AcceptAnyCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AcceptAnyCertificate {
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
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alpn_offers_exactly_the_protocol_asked_for_and_resumption_can_be_turned_off() {
        let options = |http2, resumption| TlsOptions {
            trust: Trust::Anyone,
            http2,
            resumption,
        };
        let h2 = client_config(&options(true, false)).expect("a config");
        assert_eq!(h2.alpn_protocols, [b"h2".to_vec()]);
        let h1 = client_config(&options(false, true)).expect("a config");
        assert_eq!(h1.alpn_protocols, [b"http/1.1".to_vec()]);
        // Resumption's settings are opaque; a disabled one differs from the default.
        assert_ne!(
            format!("{:?}", h2.resumption),
            format!("{:?}", h1.resumption)
        );
    }

    #[test]
    fn a_ca_file_that_holds_no_certificate_is_refused_naming_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("ca.pem");
        std::fs::write(&file, "not a certificate\n").expect("write");
        let options = TlsOptions {
            trust: Trust::CaFile(file.clone()),
            http2: false,
            resumption: true,
        };
        let error = client_config(&options).expect_err("refused").to_string();
        assert!(error.contains(&file.display().to_string()), "{error}");
        let missing = TlsOptions {
            trust: Trust::CaFile(dir.path().join("missing.pem")),
            ..options
        };
        let error = client_config(&missing).expect_err("refused").to_string();
        assert!(error.contains("missing.pem"), "{error}");
    }
}
