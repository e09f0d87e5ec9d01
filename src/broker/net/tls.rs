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

fn certificates(
    listener: &ListenerConfig,
    path: &Path,
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
    Ok(certs)
}

/// Builds the TLS side of a listener from its certificate files.
pub fn listener(config: &ListenerConfig) -> Result<TlsListener, TlsError> {
    let setup = |reason: String| TlsError::Setup {
        listener: config.bind.to_string(),
        reason,
    };
    let certs = certificates(config, &config.tls_cert)?;
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
            for ca in certificates(config, path)? {
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
