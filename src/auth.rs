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
}

fn b64(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(s).ok()
}

fn parse_hash(h: &str) -> Result<Hash, String> {
    if h.starts_with("$argon2") {
        PasswordHash::new(h).map_err(|e| format!("invalid argon2 hash: {e}"))?;
        return Ok(Hash::Argon2(h.to_string()));
    }
    let parts: Vec<&str> = h.split('$').collect();
    match parts.as_slice() {
        ["", "6", salt, hash] => Ok(Hash::Sha512 {
            salt: b64(salt).ok_or("salt is not base64")?,
            hash: b64(hash).ok_or("hash is not base64")?,
        }),
        ["", "7", iterations, salt, hash] => Ok(Hash::Pbkdf2 {
            iterations: iterations
                .parse()
                .map_err(|_| "iterations is not a number")?,
            salt: b64(salt).ok_or("salt is not base64")?,
            hash: b64(hash).ok_or("hash is not base64")?,
        }),
        _ => Err("unknown hash format (expected $6$, $7$ or $argon2id$)".to_string()),
    }
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
        let mut users = HashMap::new();
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
            users.insert(user.to_string(), parse_hash(hash).map_err(invalid)?);
        }
        Ok(PasswordFile { users })
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Whether `user` exists and `password` is theirs. Slow on purpose for
    /// PBKDF2 and argon2: call it off the actor threads.
    pub fn verify(&self, user: &str, password: &[u8]) -> bool {
        match self.users.get(user) {
            None => false,
            Some(Hash::Sha512 { salt, hash }) => {
                let mut d = Sha512::new();
                d.update(password);
                d.update(salt);
                same(&d.finalize(), hash)
            }
            Some(Hash::Pbkdf2 {
                iterations,
                salt,
                hash,
            }) => {
                let mut out = vec![0u8; hash.len()];
                pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, *iterations, &mut out);
                same(&out, hash)
            }
            Some(Hash::Argon2(phc)) => PasswordHash::new(phc)
                .map(|h| {
                    argon2::Argon2::default()
                        .verify_password(password, &h)
                        .is_ok()
                })
                .unwrap_or(false),
        }
    }
}

/// `roost passwd FILE USER`: adds or changes `user` with an argon2id hash,
/// keeping every other line of the file (created with mode 0600 if missing).
pub fn set_password(path: &Path, user: &str, password: &[u8]) -> Result<(), AuthError> {
    let io = |source| AuthError::Io {
        path: path.to_path_buf(),
        source,
    };
    if user.is_empty() || user.contains(':') {
        return Err(AuthError::Invalid {
            path: path.to_path_buf(),
            line: 0,
            reason: "user names must be non-empty and without ':'".into(),
        });
    }
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    let hash = argon2::Argon2::default()
        .hash_password(password, &salt)
        .map_err(|e| AuthError::Invalid {
            path: path.to_path_buf(),
            line: 0,
            reason: e.to_string(),
        })?
        .to_string();
    let existing = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(io(e)),
    };
    let mut lines: Vec<String> = Vec::new();
    let mut replaced = false;
    for line in existing.lines() {
        if line.split_once(':').is_some_and(|(u, _)| u == user) {
            lines.push(format!("{user}:{hash}"));
            replaced = true;
        } else {
            lines.push(line.to_string());
        }
    }
    if !replaced {
        lines.push(format!("{user}:{hash}"));
    }
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    f.write_all((lines.join("\n") + "\n").as_bytes())
        .map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
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

    #[test]
    fn invalid_lines_name_the_line() {
        let (_dir, path) = file("alice:$7$101$dgNm\n# comment\nbob\n");
        let err = PasswordFile::load(&path).unwrap_err().to_string();
        assert!(err.contains("line 1"), "{err}");
    }
}
