//! Authentication: a password file in Mosquitto's format, so a file written
//! by `mosquitto_passwd` works unchanged, plus argon2id entries written by
//! `roost passwd`.
//!
//! One `user:hash` per line; `#` starts a comment. Hashes:
//! - `$6$salt$hash`: SHA-512 of password then salt (mosquitto_passwd -H sha512);
//! - `$7$iterations$salt$hash`: PBKDF2-HMAC-SHA512 (mosquitto_passwd's default);
//! - `$argon2id$...`: a PHC string (roost passwd).
//!
//! Salts and hashes of `$6$`/`$7$` are standard base64.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;
use sha2::{Digest, Sha512};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("password file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("password file {path}, line {line}: {reason}")]
    Invalid {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("user name {user:?}: user names must be non-empty, without ':' and without control characters such as a newline")]
    BadUser { user: String },
    #[error("password file {path}: user {user:?} is not in it")]
    NoSuchUser { path: PathBuf, user: String },
    #[error("password file {path}: its directory {dir} does not exist (create it first)")]
    NoDirectory { path: PathBuf, dir: PathBuf },
    #[error("hashing the password: {0}")]
    Hashing(String),
}

#[derive(Debug, Clone)]
enum Hash {
    Sha512 {
        salt: Vec<u8>,
        hash: Vec<u8>,
    },
    Pbkdf2 {
        iterations: u32,
        salt: Vec<u8>,
        hash: Vec<u8>,
    },
    Argon2(String),
}

/// The users of a password file.
#[derive(Debug, Clone, Default)]
pub struct PasswordFile {
    users: HashMap<String, Hash>,
    /// Checked for a user name the file does not have: a hash of the same
    /// kind and cost as the file's first entry, of no password anyone
    /// knows. An unknown user then takes as long as a wrong password, so
    /// the time of a refusal does not tell which user names exist.
    dummy: Option<Hash>,
}

/// A hash of the same kind and cost as `like`, of a random password.
fn dummy_like(like: &Hash) -> Hash {
    let mut random = [0u8; 32];
    use argon2::password_hash::rand_core::RngCore;
    argon2::password_hash::rand_core::OsRng.fill_bytes(&mut random);
    match like {
        Hash::Sha512 { .. } => Hash::Sha512 {
            salt: random[..16].to_vec(),
            hash: vec![0; SHA512_LEN],
        },
        Hash::Pbkdf2 { iterations, .. } => Hash::Pbkdf2 {
            iterations: *iterations,
            salt: random[..16].to_vec(),
            hash: vec![0; SHA512_LEN],
        },
        Hash::Argon2(phc) => {
            let made = PasswordHash::new(phc).ok().and_then(|h| {
                let params = argon2::Params::try_from(&h).ok()?;
                let algorithm = argon2::Algorithm::try_from(h.algorithm).ok()?;
                let version = h.version.and_then(|v| argon2::Version::try_from(v).ok())?;
                let salt = SaltString::encode_b64(&random[..16]).ok()?;
                argon2::Argon2::new(algorithm, version, params)
                    .hash_password(&random[16..], &salt)
                    .ok()
                    .map(|h| h.to_string())
            });
            Hash::Argon2(made.unwrap_or_else(|| phc.clone()))
        }
    }
}

fn b64(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(s).ok()
}

/// The length of a SHA-512 digest, and of the PBKDF2-HMAC-SHA512 output
/// `mosquitto_passwd` writes: a hash of any other length is not one of its.
const SHA512_LEN: usize = 64;

fn parse_hash(h: &str) -> Result<Hash, String> {
    if h.starts_with("$argon2") {
        PasswordHash::new(h).map_err(|e| format!("invalid argon2 hash: {e}"))?;
        return Ok(Hash::Argon2(h.to_string()));
    }
    // A hash that is empty or short would be compared with an output cut to
    // its length: an empty one would accept every password.
    let salt_and_hash = |salt: &str, hash: &str| -> Result<(Vec<u8>, Vec<u8>), String> {
        let salt = b64(salt).ok_or("salt is not base64")?;
        let hash = b64(hash).ok_or("hash is not base64")?;
        if salt.is_empty() {
            return Err("empty salt".into());
        }
        if hash.len() != SHA512_LEN {
            return Err(format!("hash of {} bytes, not {SHA512_LEN}", hash.len()));
        }
        Ok((salt, hash))
    };
    let parts: Vec<&str> = h.split('$').collect();
    match parts.as_slice() {
        ["", "6", salt, hash] => {
            let (salt, hash) = salt_and_hash(salt, hash)?;
            Ok(Hash::Sha512 { salt, hash })
        }
        ["", "7", iterations, salt, hash] => {
            let iterations = iterations
                .parse()
                .ok()
                .filter(|n| *n > 0)
                .ok_or("iterations is not a positive number")?;
            let (salt, hash) = salt_and_hash(salt, hash)?;
            Ok(Hash::Pbkdf2 {
                iterations,
                salt,
                hash,
            })
        }
        _ => Err("unknown hash format (expected $6$, $7$ or $argon2id$)".to_string()),
    }
}

/// Whether a user name can be written as a line of the file.
fn valid_user(user: &str) -> bool {
    !user.is_empty() && !user.contains(':') && !user.chars().any(char::is_control)
}

/// Compares without stopping at the first difference.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl PasswordFile {
    pub fn load(path: &Path) -> Result<PasswordFile, AuthError> {
        let text = std::fs::read_to_string(path).map_err(|source| AuthError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let file = Self::parse(&text, path)?;
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path) {
            let mode = meta.permissions().mode();
            if mode & 0o077 != 0 {
                log::warn!(
                    "password file {} can be read by group or others (mode {:o}): make it private with chmod 600",
                    path.display(),
                    mode & 0o777
                );
            }
        }
        Ok(file)
    }

    /// The users of `text`, the contents of the file at `path`; a line that
    /// cannot be read is an error naming its number (from 1).
    fn parse(text: &str, path: &Path) -> Result<PasswordFile, AuthError> {
        let mut users = HashMap::new();
        let mut dummy = None;
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let invalid = |reason: String| AuthError::Invalid {
                path: path.to_path_buf(),
                line: i + 1,
                reason,
            };
            let (user, hash) = line
                .split_once(':')
                .ok_or_else(|| invalid("expected user:hash".into()))?;
            let hash = parse_hash(hash).map_err(invalid)?;
            if dummy.is_none() {
                dummy = Some(dummy_like(&hash));
            }
            users.insert(user.to_string(), hash);
        }
        Ok(PasswordFile { users, dummy })
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether the file has a line for `user` (for log lines, which may say
    /// which of user name and password was wrong; a client is never told).
    pub fn has_user(&self, user: &str) -> bool {
        self.users.contains_key(user)
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Whether `user` exists and `password` is theirs. Slow on purpose for
    /// PBKDF2 and argon2: call it off the actor threads.
    pub fn verify(&self, user: &str, password: &[u8]) -> bool {
        match self.users.get(user) {
            Some(hash) => check(hash, password),
            None => {
                // As long as a wrong password (see `dummy`), and false.
                if let Some(dummy) = &self.dummy {
                    let _ = check(dummy, password);
                }
                false
            }
        }
    }
}

/// Whether `password` hashes to `hash`.
fn check(hash: &Hash, password: &[u8]) -> bool {
    match hash {
        Hash::Sha512 { salt, hash } => {
            let mut d = Sha512::new();
            d.update(password);
            d.update(salt);
            same(&d.finalize(), hash)
        }
        Hash::Pbkdf2 {
            iterations,
            salt,
            hash,
        } => {
            let mut out = vec![0u8; hash.len()];
            pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, *iterations, &mut out);
            same(&out, hash)
        }
        // The parameters are the hash's own (PasswordHash carries them).
        Hash::Argon2(phc) => PasswordHash::new(phc)
            .map(|h| {
                argon2::Argon2::default()
                    .verify_password(password, &h)
                    .is_ok()
            })
            .unwrap_or(false),
    }
}

/// `roost passwd FILE USER`: adds or changes `user` with an argon2id hash,
/// keeping every other line of the file (created with mode 0600 if
/// missing; its directory must exist). A file with a line that cannot be
/// read is left as it is, and the error names the line.
pub fn set_password(path: &Path, user: &str, password: &[u8]) -> Result<(), AuthError> {
    if !valid_user(user) {
        return Err(AuthError::BadUser { user: user.into() });
    }
    let existing = read_valid(path, true)?;
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    let hash = argon2::Argon2::default()
        .hash_password(password, &salt)
        .map_err(|e| AuthError::Hashing(e.to_string()))?
        .to_string();
    let mut lines: Vec<String> = Vec::new();
    let mut replaced = false;
    for line in existing.lines() {
        if user_of(line) == Some(user) {
            lines.push(format!("{user}:{hash}"));
            replaced = true;
        } else {
            lines.push(line.to_string());
        }
    }
    if !replaced {
        lines.push(format!("{user}:{hash}"));
    }
    write_replacing(path, (lines.join("\n") + "\n").as_bytes())
}

/// `roost passwd -D FILE USER`: removes `user`'s line, keeping every other
/// line. The file must exist, be valid and have the user.
pub fn delete_user(path: &Path, user: &str) -> Result<(), AuthError> {
    let existing = read_valid(path, false)?;
    let kept: Vec<&str> = existing
        .lines()
        .filter(|line| user_of(line) != Some(user))
        .collect();
    if kept.len() == existing.lines().count() {
        return Err(AuthError::NoSuchUser {
            path: path.to_path_buf(),
            user: user.into(),
        });
    }
    let mut text = kept.join("\n");
    if !text.is_empty() {
        text.push('\n');
    }
    write_replacing(path, text.as_bytes())
}

/// The user name of a line of the file, if it is a user's line.
fn user_of(line: &str) -> Option<&str> {
    let line = line.trim();
    if line.starts_with('#') {
        return None;
    }
    line.split_once(':').map(|(u, _)| u)
}

/// The text of the password file at `path`, checked line by line before
/// anything changes it. Missing: empty if `may_be_missing`, else an error.
fn read_valid(path: &Path, may_be_missing: bool) -> Result<String, AuthError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && may_be_missing => String::new(),
        Err(source) => {
            return Err(AuthError::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    PasswordFile::parse(&text, path)?;
    Ok(text)
}

/// Replaces `path` with `contents` through a new file beside it: created
/// exclusively (never one an attacker placed there), given the original's
/// mode and owner (0600 for a new file), synced, then renamed over it.
fn write_replacing(path: &Path, contents: &[u8]) -> Result<(), AuthError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.is_dir() {
            return Err(AuthError::NoDirectory {
                path: path.to_path_buf(),
                dir: dir.to_path_buf(),
            });
        }
    }
    write_through_new_file(path, contents).map_err(|source| AuthError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn write_through_new_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
    let original = match std::fs::metadata(path) {
        Ok(meta) => Some(meta),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    let mut n = 0u32;
    let (tmp, mut file) = loop {
        let tmp = PathBuf::from(format!("{}.tmp-{}-{n}", path.display(), std::process::id()));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
        {
            Ok(file) => break (tmp, file),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 100 => n += 1,
            Err(e) => return Err(e),
        }
    };
    let written = (|| {
        file.write_all(contents)?;
        if let Some(meta) = &original {
            file.set_permissions(std::fs::Permissions::from_mode(meta.mode() & 0o7777))?;
            std::os::unix::fs::fchown(&file, Some(meta.uid()), Some(meta.gid()))?;
        }
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Written by `mosquitto_passwd` 2.0.11 (`-b -c` for alice, `-H sha512` for carol).
    const MOSQUITTO_FILE: &str = "\
alice:$7$101$dgNmAaJOVwHvByD0$GQniOLQWmSEyXP3//VAt93HkRUdohqBrxhuC0Ypb5TWXx5X0SZXvmaGXDySIEGWMnyJOD8WcmUhmZ7+91RFaiw==
carol:$6$FwlqCh48Beafqxjd$DKVRlttI9TU5l86s28ssvmm3blbIJeCp9cih0kcPdAI/UBiCigQGiFfZAfSYDBUn65H4hlhBSh8w7yckOiHnzg==
";

    fn file(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("passwd");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn mosquitto_passwd_hashes_verify() {
        let (_dir, path) = file(MOSQUITTO_FILE);
        let f = PasswordFile::load(&path).unwrap();
        assert!(f.verify("alice", b"s3cret"));
        assert!(!f.verify("alice", b"s3cret!"));
        assert!(f.verify("carol", b"letmein"));
        assert!(!f.verify("carol", b"s3cret"));
        assert!(!f.verify("nobody", b"s3cret"));
    }

    #[test]
    fn set_password_adds_argon2id_and_keeps_other_lines() {
        let (_dir, path) = file(MOSQUITTO_FILE);
        set_password(&path, "dave", b"pa55").unwrap();
        set_password(&path, "alice", b"new").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("dave:$argon2id$"));
        let f = PasswordFile::load(&path).unwrap();
        assert!(f.verify("dave", b"pa55"));
        assert!(f.verify("alice", b"new"));
        assert!(!f.verify("alice", b"s3cret"));
        assert!(f.verify("carol", b"letmein"));
    }

    /// A `$7$` or `$6$` line whose hash is empty or short would compare an
    /// output cut to its length and accept any password: such a file is
    /// refused when it loads, naming the line.
    #[test]
    fn an_empty_or_short_hash_is_refused_naming_the_line() {
        for line in [
            "eve:$7$101$c2FsdHNhbHQ=$",
            "eve:$6$c2FsdHNhbHQ=$",
            "eve:$7$101$c2FsdHNhbHQ=$AAAA",
            "eve:$7$0$c2FsdHNhbHQ=$GQniOLQWmSEyXP3//VAt93HkRUdohqBrxhuC0Ypb5TWXx5X0SZXvmaGXDySIEGWMnyJOD8WcmUhmZ7+91RFaiw==",
            "eve:$7$101$$GQniOLQWmSEyXP3//VAt93HkRUdohqBrxhuC0Ypb5TWXx5X0SZXvmaGXDySIEGWMnyJOD8WcmUhmZ7+91RFaiw==",
        ] {
            let (_dir, path) = file(&format!("{MOSQUITTO_FILE}{line}\n"));
            let err = PasswordFile::load(&path).unwrap_err().to_string();
            assert!(err.contains("line 3"), "{line}: {err}");
        }
    }

    /// `roost passwd` refuses user names that would break the file's lines,
    /// and keeps the file's mode.
    #[test]
    fn set_password_refuses_bad_user_names_and_keeps_the_mode() {
        use std::os::unix::fs::PermissionsExt;
        let (_dir, path) = file(MOSQUITTO_FILE);
        for user in ["", "a:b", "line\nbreak", "bell\u{7}"] {
            assert!(set_password(&path, user, b"pw").is_err(), "{user:?}");
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        set_password(&path, "dave", b"pa55").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
        let dir = path.parent().unwrap();
        let leftovers: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
    }

    /// `roost passwd` checks the file before it changes it: a file with a
    /// bad line is left as it is, and the error names that line's number
    /// (comments and blank lines counted), never "line 0".
    #[test]
    fn a_change_to_an_invalid_file_names_the_line_and_changes_nothing() {
        let text = format!("# users\n\n{MOSQUITTO_FILE}bob-without-hash\n");
        let (_dir, path) = file(&text);
        let err = set_password(&path, "dave", b"pw").unwrap_err().to_string();
        assert!(err.contains("line 5"), "{err}");
        let err = delete_user(&path, "alice").unwrap_err().to_string();
        assert!(err.contains("line 5"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
        let err = set_password(&path, "a:b", b"pw").unwrap_err().to_string();
        assert!(!err.contains("line 0") && err.contains("\"a:b\""), "{err}");
    }

    /// `-D USER`, as mosquitto_passwd: the user's line goes, the others and
    /// the comments stay; a user not in the file is an error.
    #[test]
    fn delete_user_removes_only_that_line() {
        let (_dir, path) = file(&format!("# users\n{MOSQUITTO_FILE}"));
        delete_user(&path, "alice").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# users\ncarol:$6$"), "{text}");
        let f = PasswordFile::load(&path).unwrap();
        assert!(!f.has_user("alice") && f.verify("carol", b"letmein"));
        let err = delete_user(&path, "alice").unwrap_err().to_string();
        assert!(err.contains("\"alice\" is not in it"), "{err}");
        let missing = path.with_file_name("missing");
        assert!(delete_user(&missing, "carol").is_err());
        assert!(!missing.exists());
    }

    /// A password file in a directory that does not exist is an error, not
    /// a directory made silently (a typo would otherwise go unnoticed).
    #[test]
    fn a_missing_directory_is_not_created() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("no-such-dir").join("passwd");
        let err = set_password(&path, "dave", b"pw").unwrap_err().to_string();
        assert!(err.contains("does not exist"), "{err}");
        assert!(!path.parent().unwrap().exists());
    }

    #[test]
    fn invalid_lines_name_the_line() {
        let (_dir, path) = file("alice:$7$101$dgNm\n# comment\nbob\n");
        let err = PasswordFile::load(&path).unwrap_err().to_string();
        assert!(err.contains("line 1"), "{err}");
    }

    /// An unknown user is checked against a hash of the same kind and
    /// cost as the file's first entry: it takes about as long as a wrong
    /// password, and is refused.
    #[test]
    fn an_unknown_user_costs_as_much_as_a_wrong_password() {
        let (_dir, path) = file(
            "alice:$7$60000$c2FsdHNhbHQ=$GQniOLQWmSEyXP3//VAt93HkRUdohqBrxhuC0Ypb5TWXx5X0SZXvmaGXDySIEGWMnyJOD8WcmUhmZ7+91RFaiw==\n",
        );
        let f = PasswordFile::load(&path).unwrap();
        let time = |user: &str| {
            let started = std::time::Instant::now();
            assert!(!f.verify(user, b"wrong"));
            started.elapsed()
        };
        // Best of three each, against noise.
        let wrong = (0..3).map(|_| time("alice")).min().unwrap();
        let unknown = (0..3).map(|_| time("mallory")).min().unwrap();
        assert!(
            unknown * 2 > wrong && unknown < wrong * 2,
            "wrong password {wrong:?}, unknown user {unknown:?}"
        );
        assert!(matches!(
            f.dummy,
            Some(Hash::Pbkdf2 {
                iterations: 60000,
                ..
            })
        ));
    }

    /// For a file of argon2id entries, the dummy is argon2id with the same
    /// parameters (memory, rounds, lanes).
    #[test]
    fn the_dummy_of_an_argon2id_file_has_the_same_parameters() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("passwd");
        set_password(&path, "dave", b"pa55").unwrap();
        let f = PasswordFile::load(&path).unwrap();
        let params = |phc: &str| {
            let h = PasswordHash::new(phc).unwrap();
            (
                h.algorithm.to_string(),
                argon2::Params::try_from(&h).unwrap(),
            )
        };
        let (Some(Hash::Argon2(dummy)), Some(Hash::Argon2(real))) = (&f.dummy, f.users.get("dave"))
        else {
            panic!("{:?}", f.dummy)
        };
        assert_ne!(dummy, real);
        assert_eq!(params(dummy), params(real));
        assert!(!f.verify("nobody", b"pa55"));
    }
}
