//! Authentication with a password file in Mosquitto's format: files written
//! by `mosquitto_passwd` work unchanged, `roost passwd` adds argon2id users;
//! wrong credentials get CONNACK 0x04, anonymous clients 0x05 when
//! `auth.allow_anonymous` is false.

use crate::common::raw::{self, ConnectOptions, RawClient, CONNACK_OK};
use crate::common::TestBroker;
use std::io::Write;
use std::process::{Command, Stdio};

/// Written by `mosquitto_passwd` 2.0.11: alice/s3cret (PBKDF2, the default),
/// carol/letmein (`-H sha512`).
const MOSQUITTO_FILE: &str = "\
alice:$7$101$dgNmAaJOVwHvByD0$GQniOLQWmSEyXP3//VAt93HkRUdohqBrxhuC0Ypb5TWXx5X0SZXvmaGXDySIEGWMnyJOD8WcmUhmZ7+91RFaiw==
carol:$6$FwlqCh48Beafqxjd$DKVRlttI9TU5l86s28ssvmm3blbIJeCp9cih0kcPdAI/UBiCigQGiFfZAfSYDBUn65H4hlhBSh8w7yckOiHnzg==
";

/// A broker that allows no anonymous clients, with `text` as its password
/// file (written in the broker's own temporary directory).
fn broker_with_passwords(text: &str) -> TestBroker {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("passwd");
    std::fs::write(&path, text).unwrap();
    // The broker reads the file once, at start.
    TestBroker::start_with(|c| {
        c.auth.allow_anonymous = Some(false);
        c.auth.password_file = path.clone();
    })
}

async fn connack(broker: &TestBroker, user: Option<&str>, password: Option<&[u8]>) -> Vec<u8> {
    let options = ConnectOptions {
        username: user,
        password,
        ..ConnectOptions::new("auth-client")
    };
    let (_c, ack) = RawClient::connect_with(broker.addr(), &options).await;
    ack.bytes()
}

#[tokio::test]
async fn mosquitto_passwd_file_works_unchanged() {
    let broker = broker_with_passwords(MOSQUITTO_FILE);
    assert_eq!(
        connack(&broker, Some("alice"), Some(b"s3cret")).await,
        CONNACK_OK
    );
    assert_eq!(
        connack(&broker, Some("carol"), Some(b"letmein")).await,
        CONNACK_OK
    );
}

#[tokio::test]
async fn wrong_password_or_unknown_user_gets_0x04() {
    let broker = broker_with_passwords(MOSQUITTO_FILE);
    assert_eq!(
        connack(&broker, Some("alice"), Some(b"wrong")).await,
        raw::connack_refused(4)
    );
    assert_eq!(
        connack(&broker, Some("mallory"), Some(b"s3cret")).await,
        raw::connack_refused(4)
    );
    assert_eq!(
        connack(&broker, Some("alice"), None).await,
        raw::connack_refused(4)
    );
}

#[tokio::test]
async fn anonymous_client_gets_0x05_when_not_allowed() {
    let broker = broker_with_passwords(MOSQUITTO_FILE);
    assert_eq!(connack(&broker, None, None).await, raw::connack_refused(5));
}

#[tokio::test]
async fn roost_passwd_adds_an_argon2id_user_the_broker_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("passwd");
    std::fs::write(&path, MOSQUITTO_FILE).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_roost"))
        .arg("passwd")
        .arg(&path)
        .arg("dave")
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"pa55word\n")
        .unwrap();
    assert!(child.wait().unwrap().success());
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("dave:$argon2id$"), "{text}");
    assert!(
        text.contains("alice:$7$101$"),
        "other users are kept: {text}"
    );
    let broker = broker_with_passwords(&text);
    assert_eq!(
        connack(&broker, Some("dave"), Some(b"pa55word")).await,
        CONNACK_OK
    );
    assert_eq!(
        connack(&broker, Some("alice"), Some(b"s3cret")).await,
        CONNACK_OK
    );
}

/// A real client with credentials (rumqttc).
#[tokio::test]
async fn rumqttc_with_credentials_connects() {
    let broker = broker_with_passwords(MOSQUITTO_FILE);
    let mut options = broker.mqtt_options("rumqttc-auth");
    options.set_credentials("alice", "s3cret");
    let (client, mut eventloop) = rumqttc::AsyncClient::new(options, 10);
    match tokio::time::timeout(crate::common::TIMEOUT, eventloop.poll()).await {
        Ok(Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(ack)))) => {
            assert_eq!(ack.code, rumqttc::ConnectReturnCode::Success)
        }
        other => panic!("expected CONNACK, got {other:?}"),
    }
    drop(client);
}

/// A reload (SIGHUP in the binary) reads the password file again and
/// applies `auth.allow_anonymous`, for the next CONNECT; an unreadable file
/// leaves the running settings as they were.
#[tokio::test]
async fn reload_reads_the_password_file_again_and_keeps_settings_on_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("passwd");
    std::fs::write(&path, MOSQUITTO_FILE).unwrap();
    let p = path.clone();
    let broker = TestBroker::start_with(move |c| {
        c.auth.allow_anonymous = Some(false);
        c.auth.password_file = p;
    });
    assert_eq!(
        connack(&broker, Some("dave"), Some(b"pw")).await,
        raw::connack_refused(4)
    );
    let status = Command::new(env!("CARGO_BIN_EXE_roost"))
        .arg("passwd")
        .arg(&path)
        .arg("dave")
        .stdin(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            child.stdin.take().unwrap().write_all(b"pw\n")?;
            child.wait()
        })
        .unwrap();
    assert!(status.success());
    let mut config = broker.config.clone();
    broker.handle.reload(&config).unwrap();
    assert_eq!(
        connack(&broker, Some("dave"), Some(b"pw")).await,
        CONNACK_OK
    );
    assert_eq!(connack(&broker, None, None).await, raw::connack_refused(5));
    config.auth.allow_anonymous = Some(true);
    config.auth.password_file = dir.path().join("missing");
    assert!(broker.handle.reload(&config).is_err());
    assert_eq!(
        connack(&broker, None, None).await,
        raw::connack_refused(5),
        "a failed reload changes nothing"
    );
    config.auth.password_file = path;
    broker.handle.reload(&config).unwrap();
    assert_eq!(connack(&broker, None, None).await, CONNACK_OK);
}

/// A config whose listener is on every interface (not loopback), with a
/// database in the returned directory.
fn exposed_config(tweak: impl FnOnce(&mut roost::Config)) -> (tempfile::TempDir, roost::Config) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = roost::Config::defaults();
    config.listener.bind = "0.0.0.0:0".parse().unwrap();
    config.broker.workers = 1;
    config.store.db = dir.path().join("roost.db");
    tweak(&mut config);
    (dir, config)
}

/// As Mosquitto 2: a listener that is not on loopback, with no password
/// file, starts only if `auth.allow_anonymous = true` is set explicitly;
/// the error says so. Set, anonymous clients are accepted.
#[tokio::test]
async fn a_listener_off_loopback_without_passwords_needs_allow_anonymous_set() {
    let (_dir, config) = exposed_config(|_| {});
    let error = match roost::start(config) {
        Ok(_) => panic!("started open to the network without being told"),
        Err(e) => e.to_string(),
    };
    assert!(
        error.contains("0.0.0.0") && error.contains("auth.allow_anonymous = true"),
        "{error}"
    );
    let (_dir, config) = exposed_config(|c| c.auth.allow_anonymous = Some(true));
    let broker = roost::start(config).expect("starts when told");
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], broker.local_addr().port()));
    let (mut c, ack) = RawClient::connect_with(addr, &ConnectOptions::new("anon")).await;
    assert_eq!(ack.bytes(), CONNACK_OK);
    c.ping().await;
}

/// Off loopback with a password file and `allow_anonymous` unset: users
/// with a password connect, anonymous clients get 0x05.
#[tokio::test]
async fn off_loopback_with_a_password_file_anonymous_clients_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("passwd");
    std::fs::write(&path, MOSQUITTO_FILE).unwrap();
    let (_db_dir, config) = exposed_config(|c| c.auth.password_file = path.clone());
    let broker = roost::start(config).unwrap();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], broker.local_addr().port()));
    let (_c, ack) = RawClient::connect_with(addr, &ConnectOptions::new("anon")).await;
    assert_eq!(ack.bytes(), raw::connack_refused(5));
    let options = ConnectOptions {
        username: Some("alice"),
        password: Some(b"s3cret"),
        ..ConnectOptions::new("alice")
    };
    let (_c, ack) = RawClient::connect_with(addr, &options).await;
    assert_eq!(ack.bytes(), CONNACK_OK);
}
