//! TLS and several listeners: a plain listener and a TLS one on the same
//! broker route to each other; a listener with `tls_client_ca` refuses a
//! client without a certificate from that CA, and with
//! `use_identity_as_username` the certificate's common name is the user
//! name the ACL sees. Certificates are made in the test with rcgen; the
//! client side is tokio-rustls, the MQTT bytes are built by hand.

use crate::common::raw::{self, RawClient, CONNACK_OK};
use crate::common::{TestBroker, TIMEOUT};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls;

/// A CA, a server certificate for 127.0.0.1/localhost, and client
/// certificates, written as PEM files into a directory.
pub(crate) struct Pki {
    pub(crate) dir: tempfile::TempDir,
    ca: rcgen::Certificate,
    ca_key: KeyPair,
}

impl Pki {
    pub(crate) fn new() -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "roost test CA");
        let ca_key = KeyPair::generate().unwrap();
        let ca = params.self_signed(&ca_key).unwrap();
        let pki = Pki {
            dir: tempfile::tempdir().unwrap(),
            ca,
            ca_key,
        };
        std::fs::write(pki.path("ca.pem"), pki.ca.pem()).unwrap();
        let params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        pki.issue("server", params);
        pki
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes NAME.pem and NAME.key, signed by this CA.
    fn issue(&self, name: &str, params: CertificateParams) {
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca, &self.ca_key).unwrap();
        std::fs::write(self.path(&format!("{name}.pem")), cert.pem()).unwrap();
        std::fs::write(self.path(&format!("{name}.key")), key.serialize_pem()).unwrap();
    }

    fn client(&self, name: &str, common_name: &str) {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        self.issue(name, params);
    }
}

fn certs(path: &Path) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_file_iter(path)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// A TLS connection to `addr` trusting `ca`, with a client certificate if
/// `client` names one (NAME.pem / NAME.key in `dir`).
pub(crate) async fn tls_connect(
    addr: std::net::SocketAddr,
    ca: &Path,
    client: Option<(&Path, &str)>,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    for c in certs(ca) {
        roots.add(c).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match client {
        Some((dir, name)) => {
            let chain = certs(&dir.join(format!("{name}.pem")));
            let key = PrivateKeyDer::from_pem_file(dir.join(format!("{name}.key"))).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let mut tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await?;
    // With TLS 1.3 a refused client certificate shows only at the first
    // read: callers check that CONNECT gets its CONNACK.
    tls.flush().await?;
    Ok(tls)
}

/// Reads one MQTT packet: (first byte, body).
async fn read_packet<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> std::io::Result<(u8, Vec<u8>)> {
    let read = async {
        let first = s.read_u8().await?;
        let (mut len, mut shift) = (0usize, 0);
        loop {
            let b = s.read_u8().await?;
            len |= usize::from(b & 0x7F) << shift;
            shift += 7;
            if b & 0x80 == 0 {
                break;
            }
        }
        let mut body = vec![0; len];
        s.read_exact(&mut body).await?;
        Ok((first, body))
    };
    tokio::time::timeout(TIMEOUT, read)
        .await
        .unwrap_or_else(|_| Err(std::io::Error::other("no packet within TIMEOUT")))
}

async fn mqtt_connect<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    s: &mut S,
    client_id: &str,
) -> std::io::Result<Vec<u8>> {
    s.write_all(&raw::connect(client_id, true)).await?;
    let (first, body) = read_packet(s).await?;
    Ok(raw::packet(first, &body))
}

/// A broker with its plain listener plus one more listener on 127.0.0.1:0
/// configured by `tls`.
fn broker_with_listener(tweak: impl FnOnce(&mut roost::config::ListenerConfig)) -> TestBroker {
    let mut extra = roost::Config::defaults().listener;
    extra.bind = "127.0.0.1:0".parse().unwrap();
    tweak(&mut extra);
    TestBroker::start_with(move |c| c.listeners.push(extra))
}

/// A TLS listener beside the plain one: a client over TLS subscribes, a
/// plain TCP client publishes, and the message crosses listeners.
#[tokio::test]
async fn tls_listener_beside_plain_listener_routes_between_them() {
    let pki = Pki::new();
    let broker = broker_with_listener(|l| {
        l.tls_cert = pki.path("server.pem");
        l.tls_key = pki.path("server.key");
    });
    let tls_addr = broker.handle.local_addrs()[1];
    let mut tls = tls_connect(tls_addr, &pki.path("ca.pem"), None)
        .await
        .expect("TLS handshake");
    assert_eq!(
        mqtt_connect(&mut tls, "over-tls").await.unwrap(),
        CONNACK_OK
    );
    tls.write_all(&raw::subscribe(1, &[("tls/#", 1)]))
        .await
        .unwrap();
    let (first, body) = read_packet(&mut tls).await.unwrap();
    assert_eq!(raw::packet(first, &body), raw::suback(1, &[1]));

    let mut plain = RawClient::connected(broker.addr(), "over-tcp", true).await;
    plain
        .publish_ok("tls/t", b"across listeners", 1, 1, false)
        .await;
    let (first, body) = read_packet(&mut tls).await.unwrap();
    let got = raw::RawPacket { first, body }.publish();
    assert_eq!(
        (got.topic.as_str(), got.payload.as_slice()),
        ("tls/t", &b"across listeners"[..])
    );
}

/// With `tls_client_ca`, a client without a certificate, or with one from
/// another CA, does not get through the handshake; one from the CA does.
#[tokio::test]
async fn mtls_listener_requires_a_certificate_from_the_client_ca() {
    let pki = Pki::new();
    pki.client("alice", "alice");
    let other = Pki::new();
    other.client("mallory", "mallory");
    let broker = broker_with_listener(|l| {
        l.tls_cert = pki.path("server.pem");
        l.tls_key = pki.path("server.key");
        l.tls_client_ca = pki.path("ca.pem");
    });
    let addr = broker.handle.local_addrs()[1];
    let ca = pki.path("ca.pem");
    for client in [None, Some((other.dir.path(), "mallory"))] {
        let refused = match tls_connect(addr, &ca, client).await {
            Err(_) => true,
            Ok(mut s) => mqtt_connect(&mut s, "no-cert").await.is_err(),
        };
        assert!(refused, "client {:?} got through", client.map(|c| c.1));
    }
    let mut s = tls_connect(addr, &ca, Some((pki.dir.path(), "alice")))
        .await
        .unwrap();
    assert_eq!(mqtt_connect(&mut s, "alice-tls").await.unwrap(), CONNACK_OK);
    assert!(
        broker
            .handle
            .metrics()
            .tls_handshake_failures
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 2
    );
}

/// With `use_identity_as_username`, the certificate's common name is the
/// user name: the ACL grants alice her subtree only.
#[tokio::test]
async fn mtls_identity_as_username_is_what_the_acl_sees() {
    let pki = Pki::new();
    pki.client("alice", "alice");
    let acl = pki.path("acl");
    std::fs::write(&acl, "user alice\ntopic read alice/#\n").unwrap();
    let mut extra = roost::Config::defaults().listener;
    extra.bind = "127.0.0.1:0".parse().unwrap();
    extra.tls_cert = pki.path("server.pem");
    extra.tls_key = pki.path("server.key");
    extra.tls_client_ca = pki.path("ca.pem");
    extra.use_identity_as_username = true;
    let broker = TestBroker::start_with(move |c| {
        c.listeners.push(extra);
        c.auth.acl_file = acl;
    });
    let addr = broker.handle.local_addrs()[1];
    let mut s = tls_connect(addr, &pki.path("ca.pem"), Some((pki.dir.path(), "alice")))
        .await
        .unwrap();
    assert_eq!(
        mqtt_connect(&mut s, "alice-device").await.unwrap(),
        CONNACK_OK
    );
    s.write_all(&raw::subscribe(1, &[("alice/#", 1), ("bob/#", 1)]))
        .await
        .unwrap();
    let (first, body) = read_packet(&mut s).await.unwrap();
    assert_eq!(raw::packet(first, &body), raw::suback(1, &[1, 0x80]));
}

/// A certificate file that cannot be read stops the start with an error
/// naming the listener and the file.
#[test]
fn unreadable_certificate_fails_the_start_naming_the_file() {
    let mut config = roost::Config::defaults();
    config.listener.bind = "127.0.0.1:0".parse().unwrap();
    let dir = tempfile::tempdir().unwrap();
    config.store.db = dir.path().join("roost.db");
    config.listener.tls_cert = dir.path().join("missing.pem");
    config.listener.tls_key = dir.path().join("missing.key");
    let err = roost::start(config).err().expect("start fails");
    assert!(err.to_string().contains("missing.pem"), "{err}");
}

/// An X.509 v1 certificate (what `openssl x509 -req` makes without an
/// `-extfile`) stops the start with a sentence that says so and what to
/// do, not rustls' `UnsupportedCertVersion`.
#[test]
fn a_v1_certificate_is_refused_in_words() {
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut config = roost::Config::defaults();
    config.listener.bind = "127.0.0.1:0".parse().unwrap();
    let dir = tempfile::tempdir().unwrap();
    config.store.db = dir.path().join("roost.db");
    config.listener.tls_cert = fixtures.join("x509-v1-server.pem");
    config.listener.tls_key = fixtures.join("x509-v1-server.key");
    let err = roost::start(config).err().expect("start fails").to_string();
    assert!(
        err.contains("the server certificate is X.509 v1; rustls needs v3 (see the README"),
        "{err}"
    );
    assert!(!err.contains("UnsupportedCertVersion"), "{err}");
}
