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

/// Password checks are no weapon: 300 concurrent CONNECTs with a wrong
/// password for a real argon2id user (19 MiB a check, as `roost passwd`
/// writes it) grow the broker's memory by less than 256 MiB, and meanwhile
/// another user's CONNECT is answered within 2 s. Every flood CONNECT is
/// answered (0x04) or closed within the connect timeout and one check.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_of_wrong_passwords_is_bounded_in_memory_and_time() {
    let dir = tempfile::tempdir().unwrap();
    let passwd = dir.path().join("passwd");
    roost::auth::set_password(&passwd, "alice", b"alice-pw").unwrap();
    roost::auth::set_password(&passwd, "bob", b"bob-pw").unwrap();
    let config = dir.path().join("roost.toml");
    std::fs::write(
        &config,
        format!(
            "[auth]\nallow_anonymous = false\npassword_file = {:?}\n[limits]\nconnect_timeout_secs = 3\n",
            passwd.display().to_string()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_roost"))
        .args(["--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .arg("--db")
        .arg(dir.path().join("roost.db"))
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let stderr = child.stderr.take().unwrap();
    let addr: std::net::SocketAddr = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        let mut lines = std::io::BufReader::new(stderr).lines();
        let addr = loop {
            let line = lines.next().expect("roost logs its address").unwrap();
            if let Some(rest) = line.split("roost listening on ").nth(1) {
                break rest.trim().parse().unwrap();
            }
        };
        // Keep reading, so the pipe never fills.
        std::thread::spawn(move || for _ in lines {});
        addr
    })
    .await
    .unwrap();
    let before = crate::common::rss_kib(pid);
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(before));
    let sampling = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                peak.fetch_max(
                    crate::common::rss_kib(pid),
                    std::sync::atomic::Ordering::Relaxed,
                );
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        })
    };
    let started = std::time::Instant::now();
    let flood: Vec<_> = (0..300)
        .map(|i| {
            tokio::spawn(async move {
                let id = format!("flood-{i}");
                let options = ConnectOptions {
                    username: Some("alice"),
                    password: Some(b"wrong"),
                    ..ConnectOptions::new(&id)
                };
                let mut c = RawClient::connect(addr).await;
                c.send(&options.bytes()).await;
                c.expect_closed().await
            })
        })
        .collect();
    // Once the flood is in, a legitimate user.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let asked = std::time::Instant::now();
    let options = ConnectOptions {
        username: Some("bob"),
        password: Some(b"bob-pw"),
        ..ConnectOptions::new("bob")
    };
    let (_bob, ack) = RawClient::connect_with(addr, &options).await;
    let bob_took = asked.elapsed();
    assert_eq!(ack.bytes(), CONNACK_OK);
    for answer in flood {
        let got: Vec<Vec<u8>> = answer.await.unwrap().iter().map(|p| p.bytes()).collect();
        assert!(
            got.is_empty() || got == [raw::connack_refused(4)],
            "a flood CONNECT got {got:?}"
        );
    }
    let flood_took = started.elapsed();
    sampling.abort();
    let grew_mib = peak
        .load(std::sync::atomic::Ordering::Relaxed)
        .saturating_sub(before)
        / 1024;
    let _ = child.kill();
    let _ = child.wait();
    println!("flood of 300: RSS grew {grew_mib} MiB, bob answered in {bob_took:?}, all answered in {flood_took:?}");
    assert!(
        bob_took < std::time::Duration::from_secs(2),
        "bob waited {bob_took:?}"
    );
    assert!(grew_mib < 256, "RSS grew by {grew_mib} MiB");
    assert!(
        flood_took < std::time::Duration::from_secs(10),
        "the flood took {flood_took:?}: the connect timeout (3 s) did not apply"
    );
}
