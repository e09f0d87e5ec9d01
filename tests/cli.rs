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
    let mut child = roost()
        .args(["--listen", "127.0.0.1:0", "--db"])
        .arg(dir.join("roost.db"))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("roost logs its address").unwrap();
        if let Some(rest) = line.split("roost listening on ").nth(1) {
            break rest.trim().parse().unwrap();
        }
    };
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
