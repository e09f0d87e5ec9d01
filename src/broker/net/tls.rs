//! TLS listeners through rustls: the server certificate and key of a
//! `[listener]`/`[[listeners]]` entry, and optionally client certificates
//! (mTLS) checked against `tls_client_ca`, whose common name can serve as
//! the user name.

use crate::config::ListenerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;
use tokio_rustls::rustls;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("listener {listener}: {path}: {reason}")]
    File {
        listener: String,
        path: String,
        reason: String,
    },
    #[error("listener {listener}: {reason}")]
    Setup { listener: String, reason: String },
}

/// What a TLS listener needs for each accepted socket.
pub struct TlsListener {
    pub acceptor: tokio_rustls::TlsAcceptor,
    /// The client certificate's common name is the user name.
    pub identity_as_username: bool,
}

/// What the server's own certificate is called in errors.
const SERVER: &str = "the server certificate";

/// The certificates of a PEM file; `what` names them in errors ([`SERVER`],
/// "a client CA certificate").
fn certificates(
    listener: &ListenerConfig,
    path: &Path,
    what: &str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let file_error = |reason: String| TlsError::File {
        listener: listener.bind.to_string(),
        path: path.display().to_string(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(e.to_string()))?;
    if certs.is_empty() {
        return Err(file_error("no PEM certificate in it".into()));
    }
    // The server's own certificate, the first of its chain: rustls
    // (webpki) takes only X.509 v3 there, and what `openssl x509 -req`
    // makes without an -extfile is v1, which rustls refuses with only
    // `UnsupportedCertVersion`. CA certificates (trust anchors) may be v1.
    let leaf = if what == SERVER { certs.first() } else { None };
    if let Some(cert) = leaf {
        match x509_parser::parse_x509_certificate(cert.as_ref()) {
            Ok((_, parsed)) if parsed.version() != x509_parser::x509::X509Version::V3 => {
                return Err(file_error(format!(
                    "{what} is X.509 v{}; rustls needs v3 (see the README, \"Listeners and TLS\")",
                    parsed.version().0 + 1
                )))
            }
            Ok(_) => {}
            Err(e) => return Err(file_error(format!("{what} cannot be read: {e}"))),
        }
    }
    Ok(certs)
}

/// Why a TLS handshake failed, in words: rustls shows some of its reasons
/// as Rust debug names (`UnknownIssuer`, `Other(..UnsupportedCertVersion)`).
pub fn explain(e: &std::io::Error) -> String {
    use rustls::{AlertDescription as A, CertificateError as C, Error as E};
    let Some(error) = e.get_ref().and_then(|i| i.downcast_ref::<E>()) else {
        return e.to_string();
    };
    match error {
        E::InvalidCertificate(c) => {
            let why = match c {
                C::UnknownIssuer => "is not signed by a CA of tls_client_ca".to_string(),
                C::Expired | C::ExpiredContext { .. } => "has expired".to_string(),
                C::NotValidYet | C::NotValidYetContext { .. } => "is not valid yet".to_string(),
                C::Revoked => "is revoked".to_string(),
                C::BadEncoding => "is not a well-formed certificate".to_string(),
                C::BadSignature => "has a signature that does not verify".to_string(),
                C::InvalidPurpose | C::InvalidPurposeContext { .. } => {
                    "is not for client authentication (extended key usage)".to_string()
                }
                other if format!("{other:?}").contains("UnsupportedCertVersion") => {
                    "is X.509 v1; rustls needs v3".to_string()
                }
                other => format!("was refused: {other}"),
            };
            format!("the client's certificate {why}")
        }
        E::NoCertificatesPresented => {
            "the client presented no certificate (this listener's tls_client_ca asks for one)"
                .to_string()
        }
        E::AlertReceived(alert) => {
            let why = match alert {
                A::UnknownCA => "it does not trust the CA that signed our certificate",
                A::BadCertificate => "it finds our certificate bad",
                A::CertificateExpired => "it finds our certificate expired",
                A::CertificateUnknown => "it does not accept our certificate",
                A::ProtocolVersion => "no TLS version in common",
                A::HandshakeFailure => "no cipher suite or parameters in common",
                _ => "",
            };
            if why.is_empty() {
                format!(
                    "the client ended the handshake (TLS alert {})",
                    u8::from(*alert)
                )
            } else {
                format!("the client ended the handshake: {why}")
            }
        }
        E::InvalidMessage(_) => {
            "what the client sent is not TLS (a plain MQTT client on the TLS port?)".to_string()
        }
        E::PeerIncompatible(_) => {
            "the client has no TLS version, cipher suite or key exchange in common with roost"
                .to_string()
        }
        E::PeerMisbehaved(_)
        | E::InappropriateMessage { .. }
        | E::InappropriateHandshakeMessage { .. } => {
            "the client broke the TLS handshake's rules".to_string()
        }
        other => other.to_string(),
    }
}

/// Builds the TLS side of a listener from its certificate files.
pub fn listener(config: &ListenerConfig) -> Result<TlsListener, TlsError> {
    let setup = |reason: String| TlsError::Setup {
        listener: config.bind.to_string(),
        reason,
    };
    let certs = certificates(config, &config.tls_cert, SERVER)?;
    let key = PrivateKeyDer::from_pem_file(&config.tls_key).map_err(|e| TlsError::File {
        listener: config.bind.to_string(),
        path: config.tls_key.display().to_string(),
        reason: e.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| setup(e.to_string()))?;
    let builder = match config.client_ca() {
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for ca in certificates(config, path, "a client CA certificate")? {
                roots
                    .add(ca)
                    .map_err(|e| setup(format!("client CA: {e}")))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .map_err(|e| setup(format!("client CA: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let server = builder
        .with_single_cert(certs, key)
        .map_err(|e| setup(format!("certificate and key: {e}")))?;
    Ok(TlsListener {
        acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(server)),
        identity_as_username: config.use_identity_as_username,
    })
}

/// The common name of the certificate the client presented, if any.
pub fn peer_common_name(connection: &rustls::ServerConnection) -> Option<String> {
    let cert = connection.peer_certificates()?.first()?;
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let cn = parsed.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_string)
}
