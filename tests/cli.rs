//! The `roost` binary: flags, configuration errors (exit code 2, naming the
//! key), and a start/SIGTERM cycle on a real socket.

use crate::common::raw::{RawClient, CONNACK_OK};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

fn roost() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_roost"));
    c.env_remove("RUST_LOG");
    c
}

type LogLines = std::io::Lines<BufReader<std::process::ChildStderr>>;

/// Spawns the binary and reads its log until `roost listening on ADDR`;
/// returns the child, the rest of its log, and the address.
fn spawn_listening(mut command: Command) -> (std::process::Child, LogLines, std::net::SocketAddr) {
    let mut child = command.stderr(Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("roost logs its address").unwrap();
        if let Some(rest) = line.split("roost listening on ").nth(1) {
            break rest.trim().parse().unwrap();
        }
    };
    (child, lines, addr)
}

#[test]
fn help_lists_the_flags() {
    let out = roost().arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in ["--config", "--listen", "--db"] {
        assert!(text.contains(flag), "--help lacks {flag}:\n{text}");
    }
}

#[test]
fn invalid_environment_value_exits_2_naming_the_key() {
    let out = roost()
        .env("ROOST__SESSION__MAX_INFLIGHT", "0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("session.max_inflight"), "{err}");
}

#[test]
fn unknown_key_in_config_file_exits_2_naming_the_key() {
    let dir = std::env::temp_dir().join(format!("roost-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.toml");
    std::fs::write(&file, "[limits]\nmax_packet_sise = 10\n").unwrap();
    let out = roost().arg("--config").arg(&file).output().unwrap();
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("max_packet_sise"), "{err}");
}

#[test]
fn missing_config_file_exits_2() {
    let out = roost()
        .args(["--config", "/nonexistent/roost.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// `roost --listen 127.0.0.1:0` serves MQTT, logs at info by default, and
/// exits 0 on SIGTERM.
#[tokio::test]
async fn binary_serves_and_stops_on_sigterm() {
    let dir = std::env::temp_dir().join(format!("roost-cli-run-{}", std::process::id()));
    let mut command = roost();
    command
        .args(["--listen", "127.0.0.1:0", "--db"])
        .arg(dir.join("roost.db"));
    let (mut child, _lines, addr) = spawn_listening(command);
    let mut c = RawClient::connect(addr).await;
    c.send(&crate::common::raw::connect("cli", true)).await;
    assert_eq!(c.recv().await.bytes(), CONNACK_OK);
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let code = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert_eq!(code.code(), Some(0));
    std::fs::remove_dir_all(&dir).ok();
}

/// `roost inspect` prints the database as tables, read-only, while the
/// broker runs: sessions with their counts, subscriptions, queued messages
/// and retained messages; `--client` narrows to one client.
#[tokio::test]
async fn inspect_prints_sessions_subscriptions_queued_and_retained_while_running() {
    use crate::common::raw::ConnectOptions;
    let broker = crate::common::TestBroker::start();
    let db = broker.db_path();
    let options = ConnectOptions {
        clean: false,
        username: Some("ops"),
        ..ConnectOptions::new("sensor-9")
    };
    let mut away = RawClient::connected_expecting(broker.addr(), &options, &CONNACK_OK).await;
    away.subscribe_ok(1, &[("plant/+/temp", 1)]).await;
    away.disconnect().await;
    // A 5.0 session of an hour, and one for ever (0xFFFFFFFF).
    for (id, secs) in [("five-hour", 3600), ("five-ever", u32::MAX)] {
        let expiry = [crate::common::raw5::Prop::Four(0x11, secs)];
        let _ = RawClient::connected_v5(broker.addr(), id, true, &expiry).await;
    }
    let mut publisher = RawClient::connected(broker.addr(), "inspect-pub", true).await;
    publisher
        .publish_ok("plant/7/temp", b"21.5", 1, 1, false)
        .await;
    publisher
        .publish_ok("plant/7/status", b"running", 1, 2, true)
        .await;
    let inspect = |args: &[&str]| {
        let out = roost()
            .arg("inspect")
            .args(args)
            .arg("--db")
            .arg(&db)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let sessions = inspect(&["sessions", "--client", "sensor-9"]);
    let lines: Vec<&str> = sessions.lines().collect();
    assert!(lines[0].starts_with("client_id"), "{sessions}");
    let row: Vec<&str> = lines[2].split_whitespace().collect();
    // client_id persistent connected user connected_since last_seen keep_alive subscriptions queued in_flight awaiting_pubrel protocol session_expiry
    assert_eq!(
        (row[0], row[1], row[2], row[3], row[7], row[8], row[11], row[12]),
        ("sensor-9", "yes", "no", "ops", "1", "1", "3.1.1", "-"),
        "{sessions}"
    );
    assert_eq!(lines.len(), 3, "only sensor-9: {sessions}");
    for (id, protocol, expiry) in [("five-hour", "5.0", "3600s"), ("five-ever", "5.0", "never")] {
        let sessions = inspect(&["sessions", "--client", id]);
        let row: Vec<&str> = sessions
            .lines()
            .nth(2)
            .unwrap()
            .split_whitespace()
            .collect();
        assert_eq!((row[11], row[12]), (protocol, expiry), "{sessions}");
    }
    assert!(inspect(&["subscriptions"]).contains("plant/+/temp"));
    let queued = inspect(&["queued", "--client", "sensor-9"]);
    assert!(
        queued.lines().nth(2).is_some_and(|l| l.contains("queued")
            && l.contains("plant/7/temp")
            && l.contains("21.5")),
        "{queued}"
    );
    let retained = inspect(&["retained"]);
    assert!(
        retained
            .lines()
            .any(|l| l.starts_with("plant/7/status") && l.contains("running")),
        "{retained}"
    );
}

#[test]
fn inspect_of_a_missing_database_fails_without_creating_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("none.db");
    let out = roost()
        .args(["inspect", "sessions", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such database"));
    assert!(!db.exists());
}

/// SIGHUP reloads the ACL file (and the rest of what `reload` covers)
/// without dropping connections: a subscription the new ACL refuses gets
/// 0x80 on the same connection, which stays usable; the reload is logged.
#[tokio::test]
async fn sighup_reloads_the_acl_without_dropping_connections() {
    let dir = tempfile::tempdir().unwrap();
    let acl = dir.path().join("acl");
    std::fs::write(
        &acl,
        "topic readwrite open/#\ntopic readwrite soon-closed/#\n",
    )
    .unwrap();
    let config = dir.path().join("roost.toml");
    std::fs::write(
        &config,
        format!("[auth]\nacl_file = {:?}\n", acl.display().to_string()),
    )
    .unwrap();
    let mut command = roost();
    command
        .arg("--config")
        .arg(&config)
        .args(["--listen", "127.0.0.1:0", "--db"])
        .arg(dir.path().join("roost.db"));
    let (mut child, mut lines, addr) = spawn_listening(command);
    let mut c = RawClient::connected(addr, "hup", true).await;
    c.subscribe_ok(1, &[("soon-closed/a", 0)]).await;
    std::fs::write(&acl, "topic readwrite open/#\n").unwrap();
    assert!(Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let mut lines = tokio::task::spawn_blocking(move || loop {
        let line = lines.next().expect("roost logs the reload").unwrap();
        if line.contains("configuration reloaded") {
            return lines;
        }
    })
    .await
    .unwrap();
    c.send(&crate::common::raw::subscribe(
        2,
        &[("soon-closed/b", 0), ("open/x", 0)],
    ))
    .await;
    assert_eq!(
        c.recv().await.bytes(),
        crate::common::raw::suback(2, &[0x80, 0])
    );
    c.ping().await;
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    tokio::task::spawn_blocking(move || {
        for _ in lines.by_ref() {}
        child.wait().unwrap()
    })
    .await
    .unwrap();
}

/// A client id is the client's own text: in the log it is escaped, so one
/// with a newline cannot start a line of its own that looks like roost's.
#[tokio::test]
async fn a_client_id_with_a_newline_cannot_forge_a_log_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = roost();
    command
        .args(["--listen", "127.0.0.1:0", "--db"])
        .arg(dir.path().join("roost.db"));
    let (mut child, lines, addr) = spawn_listening(command);
    let forged = "x\n[2026-01-01T00:00:00Z ERROR roost] FORGED";
    let mut first = RawClient::connect(addr).await;
    first.send(&crate::common::raw::connect(forged, true)).await;
    assert_eq!(first.recv().await.bytes(), CONNACK_OK);
    // A takeover (logged by the session), then a second CONNECT (a protocol
    // violation, logged by the connection): both name the client id.
    let mut c = RawClient::connect(addr).await;
    c.send(&crate::common::raw::connect(forged, true)).await;
    assert_eq!(c.recv().await.bytes(), CONNACK_OK);
    first.expect_closed().await;
    c.send_lossy(&crate::common::raw::connect(forged, true))
        .await;
    c.expect_closed_silently().await;
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let log: Vec<String> = tokio::task::spawn_blocking(move || {
        let log = lines.map_while(Result::ok).collect();
        child.wait().unwrap();
        log
    })
    .await
    .unwrap();
    let closing = log
        .iter()
        .find(|l| l.contains("second CONNECT"))
        .unwrap_or_else(|| panic!("no line about the second CONNECT: {log:#?}"));
    assert!(closing.contains(r#""x\n[2026"#), "{closing}");
    let taken_over = log
        .iter()
        .find(|l| l.contains("taken over"))
        .unwrap_or_else(|| panic!("no line about the takeover: {log:#?}"));
    assert!(taken_over.contains(r#""x\n[2026"#), "{taken_over}");
    assert!(
        !log.iter().any(|l| l.starts_with("[2026-01-01")),
        "a forged line: {log:#?}"
    );
}
