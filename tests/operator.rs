//! The first hour of an operator, on the `roost` binary: the start-up
//! block, Mosquitto's command-line habits, log lines an operator can use
//! (connects, disconnects and refusals in words), the log destination and
//! time stamps, configuration errors that name their file, SIGHUP's
//! warnings about keys that need a restart, and `roost passwd`.

use crate::common::raw::{self, ConnectOptions, RawClient, CONNACK_OK};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long a line roost is expected to log may take.
const LINE_WAIT: Duration = Duration::from_secs(20);

fn roost() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_roost"));
    c.env_remove("RUST_LOG");
    c
}

/// `roost -c DIR/roost.toml --db DIR/r.db`, the file holding `config`.
fn roost_with_config(dir: &Path, config: &str) -> Command {
    let file = dir.join("roost.toml");
    std::fs::write(&file, config).unwrap();
    let mut command = roost();
    command
        .arg("-c")
        .arg(file)
        .arg("--db")
        .arg(dir.join("r.db"));
    command
}

/// `roost passwd FILE USER`, the password on standard input.
fn add_user(file: &Path, user: &str, password: &str) {
    let mut add = roost()
        .arg("passwd")
        .arg(file)
        .arg(user)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = add.stdin.take().unwrap();
    stdin.write_all(format!("{password}\n").as_bytes()).unwrap();
    drop(stdin);
    assert!(add.wait().unwrap().success());
}

/// A running `roost` whose standard error is read line by line on a thread
/// of its own, so a test can wait for a line without blocking its runtime.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    /// Every line read so far.
    seen: Vec<String>,
}

impl Running {
    fn spawn(mut command: Command) -> Running {
        let mut child = command.stderr(Stdio::piped()).spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Running {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for the next line that contains `text`, and returns it.
    fn wait_for(&mut self, text: &str) -> String {
        let deadline = std::time::Instant::now() + LINE_WAIT;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(text) {
                        return line;
                    }
                }
                Err(_) => panic!("no line with {text:?}; the log:\n{}", self.seen.join("\n")),
            }
        }
    }

    /// The addresses of the `roost listening on A, B (TLS), ...` line.
    fn listening(&mut self) -> Vec<std::net::SocketAddr> {
        let line = self.wait_for("roost listening on ");
        let rest = line.split("roost listening on ").nth(1).unwrap();
        rest.split(", ")
            .map(|a| a.split(' ').next().unwrap().parse().unwrap())
            .collect()
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// SIGTERM, then every line up to the exit.
    fn stop(mut self) -> Vec<String> {
        self.signal("TERM");
        let status = self.child.wait().unwrap();
        assert_eq!(status.code(), Some(0), "{}", self.seen.join("\n"));
        self.seen.extend(self.lines.try_iter());
        self.seen
    }
}

/// The block at start names what an operator needs to know, in one place,
/// ending with the line scripts wait for: the version, the configuration
/// layers (the file as an absolute path, the environment variables by
/// name), the database as an absolute path with what was restored, the
/// threads, who may connect, and every listener. A host name works as a
/// listener address in the config file.
#[test]
fn the_start_up_block_says_what_matters() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("roost.toml"),
        "[listener]\nbind = \"localhost:0\"\n",
    )
    .unwrap();
    let mut command = roost();
    command
        .current_dir(dir.path())
        .args(["-c", "roost.toml", "--db", "data/state.db"])
        .env("ROOST__SESSION__MAX_INFLIGHT", "64");
    let mut roost = Running::spawn(command);
    let addrs = roost.listening();
    assert_eq!(addrs.len(), 1);
    assert!(addrs[0].ip().is_loopback(), "{addrs:?}");
    let log = roost.stop();
    let start = log
        .iter()
        .position(|l| l.contains(concat!("roost ", env!("CARGO_PKG_VERSION"), " (MQTT")))
        .unwrap_or_else(|| panic!("no version line:\n{}", log.join("\n")));
    let block = &log[start..start + 6];
    let dir = dir.path();
    let expect = [
        format!(
            "configuration: embedded defaults + {} + environment (ROOST__SESSION__MAX_INFLIGHT)",
            dir.join("roost.toml").display()
        ),
        format!(
            "database: {} (synchronous = normal): 0 persistent sessions, 0 queued messages, 0 retained messages restored",
            dir.join("data/state.db").display()
        ),
        "threads: ".to_string(),
        "auth: anonymous clients allowed; no password file".to_string(),
        format!("roost listening on {}", addrs[0]),
    ];
    for (line, expected) in block[1..].iter().zip(&expect) {
        assert!(
            line.contains(expected.as_str()),
            "{expected:?} in:\n{}",
            block.join("\n")
        );
    }
}

/// Mosquitto's habits: `-c FILE`, `-p PORT` (on loopback, as Mosquitto 2
/// without a config), `-v`, and `--listen` repeated, with a host name; each
/// address is a listener that serves MQTT. `-v` logs roost's debug lines
/// but not sqlx's statements.
#[tokio::test]
async fn mosquitto_flags_and_repeated_listeners() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = roost_with_config(dir.path(), "[session]\nmax_inflight = 10\n");
    command.args(["-p", "0", "--listen", "localhost:0", "-v"]);
    let mut roost = Running::spawn(command);
    let addrs = roost.listening();
    assert_eq!(addrs.len(), 2, "{addrs:?}");
    for (i, addr) in addrs.iter().enumerate() {
        assert!(addr.ip().is_loopback(), "{addr}");
        let mut c = RawClient::connected(*addr, &format!("flags-{i}"), true).await;
        c.subscribe_ok(1, &[("t", 0)]).await;
        c.disconnect().await;
    }
    roost.wait_for(r#"client "flags-1""#);
    let log = roost.stop();
    assert!(log.iter().any(|l| l.contains(" DEBUG ")), "-v: {log:#?}");
    assert!(!log.iter().any(|l| l.contains("sqlx")), "{log:#?}");
}

/// A fatal error at start is printed once, not as a log line and again.
#[test]
fn a_fatal_error_is_printed_once() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let dir = tempfile::tempdir().unwrap();
    let out = roost()
        .args(["-p", &port, "--db"])
        .arg(dir.path().join("r.db"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.matches("cannot start").count(), 1, "{err}");
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
}

/// Configuration errors say where the bad key is (the file, as the user
/// wrote its name, or the environment), and a value of a fixed set lists
/// the set.
#[test]
fn configuration_errors_name_the_file_and_the_valid_values() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("conf")).unwrap();
    let run = |file: &str, text: &str, env: &[(&str, &str)]| {
        std::fs::write(dir.path().join(file), text).unwrap();
        let out = roost()
            .current_dir(dir.path())
            .args(["-c", file])
            .envs(env.iter().copied())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = run("conf/bad.toml", "[sesion]\nmax_inflight = 3\n", &[]);
    assert!(
        err.contains("configuration file conf/bad.toml: unknown field `sesion`"),
        "{err}"
    );
    let err = run("conf/sync.toml", "[store]\nsynchronous = \"off\"\n", &[]);
    assert!(
        err.contains(r#""off" is not one of "normal", "full""#),
        "{err}"
    );
    assert!(err.contains("conf/sync.toml"), "{err}");
    assert!(!err.contains("variant"), "{err}");
    let err = run("conf/ok.toml", "", &[("ROOST__LOG__LEVEL", "loud")]);
    assert!(err.contains("from the environment"), "{err}");
    assert!(
        err.contains(r#""loud" is not one of "error", "warn", "info", "debug", "trace""#),
        "{err}"
    );
    let err = run("conf/bind.toml", "[listener]\nbind = \"nowhere\"\n", &[]);
    assert!(err.contains(r#""nowhere": expected HOST:PORT"#), "{err}");
}

/// Connects, disconnects and refusals at info and warn, as an operator
/// reads them: a connect names the client, its address, protocol version,
/// clean flag, keep-alive and user; a disconnect says why; a refused
/// password names the user and what was wrong (never an enum name); the
/// ACL's refusals name the user.
#[tokio::test]
async fn connects_disconnects_and_refusals_are_logged_in_words() {
    let dir = tempfile::tempdir().unwrap();
    let passwd = dir.path().join("passwd");
    add_user(&passwd, "alice", "wonder");
    let acl = dir.path().join("acl");
    std::fs::write(&acl, "user alice\ntopic readwrite lab/#\n").unwrap();
    let mut command = roost();
    command
        .args(["-p", "0", "--db"])
        .arg(dir.path().join("r.db"))
        .env("ROOST__AUTH__PASSWORD_FILE", &passwd)
        .env("ROOST__AUTH__ACL_FILE", &acl)
        .env("ROOST__AUTH__ALLOW_ANONYMOUS", "false");
    let mut roost = Running::spawn(command);
    let addr = roost.listening()[0];

    let alice = |id: &'static str, password: &'static [u8]| ConnectOptions {
        username: Some("alice"),
        password: Some(password),
        will: Some(raw::Will {
            topic: "lab/gone",
            payload: b"x",
            qos: 0,
            retain: false,
        }),
        keep_alive: 30,
        clean: false,
        ..ConnectOptions::new(id)
    };
    let mut c = RawClient::connected_expecting(addr, &alice("lab-1", b"wonder"), &CONNACK_OK).await;
    let line = roost.wait_for(r#"client "lab-1""#);
    assert!(
        line.contains(
            r#"connected: MQTT 3.1.1, clean session 0, keep-alive 30 s, user "alice", with a will"#
        ),
        "{line}"
    );
    // The ACL refuses a filter and a publish: both lines name the user.
    c.send(&raw::subscribe(1, &[("secret/#", 0)])).await;
    assert_eq!(c.recv().await.bytes(), raw::suback(1, &[0x80]));
    let line = roost.wait_for("SUBSCRIBE");
    assert!(line.contains(r#"client "lab-1", user "alice""#), "{line}");
    c.send(&raw::publish("secret/x", b"1", 0, 0, false, false))
        .await;
    let line = roost.wait_for("PUBLISH to");
    assert!(
        line.contains(r#"user "alice""#) && line.contains("ACL"),
        "{line}"
    );
    drop(c);
    let line = roost.wait_for(r#"client "lab-1" ("#);
    assert!(
        line.contains("disconnected: closed the connection without DISCONNECT; will published"),
        "{line}"
    );

    RawClient::connected_expecting(addr, &alice("lab-2", b"nope"), &raw::connack_refused(4)).await;
    let line = roost.wait_for(r#"client "lab-2""#);
    assert!(
        line.contains(r#"user "alice": CONNECT refused with CONNACK 0x04 (bad user name or password): wrong password for user "alice""#),
        "{line}"
    );
    let mallory = ConnectOptions {
        username: Some("mallory"),
        password: Some(b"x"),
        ..ConnectOptions::new("lab-3")
    };
    RawClient::connected_expecting(addr, &mallory, &raw::connack_refused(4)).await;
    let line = roost.wait_for(r#"client "lab-3""#);
    assert!(
        line.contains(r#"user "mallory" is not in the password file"#),
        "{line}"
    );
    RawClient::connected_expecting(
        addr,
        &ConnectOptions::new("lab-4"),
        &raw::connack_refused(5),
    )
    .await;
    let line = roost.wait_for(r#"client "lab-4""#);
    assert!(
        line.contains("no user name: CONNECT refused with CONNACK 0x05 (not authorized)"),
        "{line}"
    );

    let mut c = RawClient::connected_expecting(addr, &alice("lab-5", b"wonder"), &CONNACK_OK).await;
    roost.wait_for(r#"client "lab-5""#);
    c.disconnect().await;
    let line = roost.wait_for(r#"client "lab-5" ("#);
    assert!(line.ends_with("disconnected: sent DISCONNECT"), "{line}");
    let log = roost.stop();
    for debug_name in [
        "BadUsernameOrPassword",
        "NotAuthorized",
        "ConnectReturnCode",
    ] {
        assert!(
            !log.iter().any(|l| l.contains(debug_name)),
            "{debug_name}: {log:#?}"
        );
    }
}

/// `log.file` sends the lines to a file instead of standard error, and
/// `log.timestamps` sets the precision of their UTC RFC 3339 time stamps.
#[test]
fn log_file_and_rfc3339_time_stamps() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("roost.log");
    let mut command = roost();
    command
        .args(["-p", "0", "--db"])
        .arg(dir.path().join("r.db"))
        .env("ROOST__LOG__FILE", &file)
        .env("ROOST__LOG__TIMESTAMPS", "millis")
        .stderr(Stdio::piped());
    let child = command.spawn().unwrap();
    // Nothing to wait on but the file itself: read it until the line is in.
    let deadline = std::time::Instant::now() + LINE_WAIT;
    let line = loop {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains("roost listening on")) {
            break line.to_string();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no listening line in {text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    // [2026-12-07T22:48:10.123Z INFO  roost] roost listening on ...
    let stamp = &line[1..line.find(' ').unwrap()];
    let bytes = stamp.as_bytes();
    assert_eq!(stamp.len(), 24, "{line}");
    assert!(
        bytes[4] == b'-' && bytes[10] == b'T' && bytes[19] == b'.' && bytes[23] == b'Z',
        "{line}"
    );
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// SIGHUP applies `[limits]` and `[auth]`, and names each other key whose
/// change it cannot apply, instead of saying only "reloaded".
#[test]
fn sighup_warns_about_each_key_that_needs_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("roost.toml");
    let command = roost_with_config(dir.path(), "[listener]\nbind = \"127.0.0.1:0\"\n");
    let mut roost = Running::spawn(command);
    roost.listening();
    std::fs::write(
        &config,
        "[listener]\nbind = \"127.0.0.1:0\"\n[broker]\nworkers = 3\n\
         [store]\nsynchronous = \"full\"\n[limits]\nmax_keepalive = 100\n",
    )
    .unwrap();
    roost.signal("HUP");
    roost.wait_for("configuration reloaded");
    let log = roost.stop();
    let warned: Vec<&String> = log
        .iter()
        .filter(|l| l.contains("only a restart applies it"))
        .collect();
    assert_eq!(warned.len(), 2, "{log:#?}");
    assert!(warned[0].contains("broker.workers changed"), "{warned:?}");
    assert!(
        warned[1].contains("store.synchronous changed"),
        "{warned:?}"
    );
}

/// `roost passwd -D USER` deletes a user as `mosquitto_passwd -D` does;
/// its `--help` lists only its own options; a file in a directory that
/// does not exist is an error, and nothing is created.
#[test]
fn roost_passwd_deletes_and_its_help_is_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("passwd");
    for user in ["ann", "bob"] {
        add_user(&file, user, "pw");
    }
    let out = roost()
        .args(["passwd", "-D"])
        .arg(&file)
        .arg("ann")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        !text.contains("ann:") && text.contains("bob:$argon2id$"),
        "{text}"
    );
    let out = roost()
        .args(["passwd", "-D"])
        .arg(&file)
        .arg("ann")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains(r#"user "ann" is not in it"#));

    let help = roost().args(["passwd", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("-D, --delete"), "{help}");
    for other in [
        "--listen",
        "--db",
        "--config",
        "--reset-damaged-db",
        "--verbose",
    ] {
        assert!(!help.contains(other), "{other} in:\n{help}");
    }

    let nowhere = dir.path().join("no-dir").join("passwd");
    let mut add = roost()
        .arg("passwd")
        .arg(&nowhere)
        .arg("cy")
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    add.stdin.take().unwrap().write_all(b"pw\n").unwrap();
    let out = add.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
    assert!(!nowhere.parent().unwrap().exists());
}

/// On a terminal, `roost passwd` asks for the password twice, as
/// `mosquitto_passwd` does; two different answers change nothing.
#[test]
fn roost_passwd_confirms_the_password_on_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("passwd");
    let (out, status) = passwd_on_a_terminal(&file, "dee", &["secret", "secret"]);
    assert!(status.success(), "{out}");
    assert!(
        out.contains("password for dee:") && out.contains("again"),
        "{out}"
    );
    assert!(std::fs::read_to_string(&file)
        .unwrap()
        .starts_with("dee:$argon2id$"));
    let (out, status) = passwd_on_a_terminal(&file, "eve", &["one", "two"]);
    assert_eq!(status.code(), Some(1), "{out}");
    assert!(out.contains("differ"), "{out}");
    assert!(!std::fs::read_to_string(&file).unwrap().contains("eve:"));
}

/// Runs `roost passwd FILE USER` on a new pseudo-terminal, its controlling
/// terminal (rpassword reads /dev/tty), typing `answers` at its prompts;
/// returns what the terminal showed and the exit status.
fn passwd_on_a_terminal(
    file: &Path,
    user: &str,
    answers: &[&str],
) -> (String, std::process::ExitStatus) {
    use std::io::Read;
    use std::os::fd::{FromRawFd, OwnedFd};
    use std::os::unix::process::CommandExt;
    let (mut master, mut slave) = (0, 0);
    // SAFETY: openpty writes two new descriptors into the two integers.
    let opened = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(opened, 0, "openpty");
    // SAFETY: both descriptors were just opened and are owned here only.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    let mut command = roost();
    command
        .arg("passwd")
        .arg(file)
        .arg(user)
        .stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::from(slave.try_clone().unwrap()));
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY as _, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn().unwrap();
    // Only the child may hold the terminal's other end: once it exits, a
    // read returns what is left and then fails, rather than waiting.
    drop(command);
    drop(slave);
    let mut terminal = std::fs::File::from(master);
    let mut shown = String::new();
    let mut buf = [0u8; 256];
    for answer in answers {
        // Each answer once its prompt is shown (a prompt ends in ": ").
        let mut prompt = String::new();
        while !prompt.trim_end().ends_with(':') {
            let n = terminal.read(&mut buf).unwrap();
            assert!(n > 0, "the terminal closed: {shown}{prompt}");
            prompt.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        shown.push_str(&prompt);
        terminal
            .write_all(format!("{answer}\n").as_bytes())
            .unwrap();
    }
    let status = child.wait().unwrap();
    // What it printed after the last answer (an error, say), up to the
    // end of the terminal (EIO once no process holds its other end).
    while let Ok(n) = terminal.read(&mut buf) {
        if n == 0 {
            break;
        }
        shown.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    (shown, status)
}

/// roost tells systemd (`Type=notify`) where it is: READY=1 once it
/// listens, RELOADING=1 then READY=1 around a SIGHUP, STOPPING=1 on SIGTERM,
/// as datagrams on the socket `NOTIFY_SOCKET` names.
#[test]
fn it_notifies_systemd_when_ready_reloading_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(LINE_WAIT)).unwrap();
    let next = || {
        let mut buf = [0u8; 512];
        let n = socket.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let mut command = roost();
    command
        .args(["-p", "0", "--db"])
        .arg(dir.path().join("r.db"))
        .env("NOTIFY_SOCKET", &socket_path);
    let mut roost = Running::spawn(command);
    assert!(next().contains("READY=1"));
    roost.listening();
    roost.signal("HUP");
    let reloading = next();
    assert!(reloading.contains("RELOADING=1"), "{reloading}");
    assert!(next().contains("READY=1"));
    roost.stop();
    assert!(next().contains("STOPPING=1"));
}
