//! The settings SIGHUP reloads without dropping a connection: the
//! `[limits]` section, `auth.allow_anonymous`, and the password and ACL
//! files. Readers take a snapshot with `load()`; a reload swaps in a new
//! one whole. Everything else in the config is read once, at start.

use crate::acl::AclFile;
use crate::auth::PasswordFile;
use crate::config::{Config, LimitsConfig};
use std::net::SocketAddr;
use std::sync::Arc;

/// What SIGHUP reloads; read it through [`Live`].
pub struct Reloadable {
    pub limits: LimitsConfig,
    /// `[redirect]`: where new 5.0 clients are sent, if anywhere.
    pub redirect: Option<Redirect>,
    pub allow_anonymous: bool,
    pub auth: AuthFiles,
}

/// Server redirection (MQTT 5.0), from `[redirect]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    pub server_reference: Arc<str>,
    /// 0x9D (server moved) rather than 0x9C (use another server).
    pub permanent: bool,
}

/// The reloadable settings as they are now: `live.load()` for a snapshot.
pub type Live = Arc<arc_swap::ArcSwap<Reloadable>>;

impl Reloadable {
    /// Reads the files `config` names; an unreadable file is an error, and
    /// so is anonymous access left unset on a listener that is not on
    /// loopback (`listeners`: the addresses bound).
    pub fn load(config: &Config, listeners: &[SocketAddr]) -> Result<Reloadable, String> {
        let allow_anonymous = config.auth.allow_anonymous(listeners)?;
        let passwords = match config.auth.password_file() {
            Some(path) => {
                let file = PasswordFile::load(path).map_err(|e| e.to_string())?;
                Some(Arc::new(file))
            }
            None => None,
        };
        let acl = match config.auth.acl_file() {
            Some(path) => {
                let file = AclFile::load(path).map_err(|e| e.to_string())?;
                Some(Arc::new(file))
            }
            None => None,
        };
        let redirect = Some(&config.redirect)
            .filter(|r| !r.server_reference.is_empty())
            .map(|r| Redirect {
                server_reference: Arc::from(r.server_reference.as_str()),
                permanent: r.permanent,
            });
        Ok(Reloadable {
            limits: config.limits.clone(),
            redirect,
            allow_anonymous,
            auth: AuthFiles { passwords, acl },
        })
    }
}

impl Reloadable {
    /// Who may connect and do what, in words, for the start-up block and
    /// the reload line; `config` gives the files' paths.
    pub fn describe_auth(&self, config: &Config) -> String {
        let anonymous = if self.allow_anonymous {
            "anonymous clients allowed"
        } else {
            "anonymous clients refused"
        };
        let passwords = match (&self.auth.passwords, config.auth.password_file()) {
            (Some(file), Some(path)) => format!(
                "password file {} ({} user{})",
                absolute(path),
                file.len(),
                if file.len() == 1 { "" } else { "s" }
            ),
            _ if self.allow_anonymous => "no password file: any user name accepted".to_string(),
            _ => "no password file: only certificate identities accepted".to_string(),
        };
        let acl = match (&self.auth.acl, config.auth.acl_file()) {
            (Some(file), Some(path)) => format!(
                "ACL file {} (rules for {} named user{})",
                absolute(path),
                file.users(),
                if file.users() == 1 { "" } else { "s" }
            ),
            _ => "no ACL file: every client may publish and subscribe to anything".to_string(),
        };
        format!("{anonymous}; {passwords}; {acl}")
    }
}

/// `path` made absolute against the working directory, for log lines that
/// must not leave the reader guessing where a relative path points.
pub fn absolute(path: &std::path::Path) -> String {
    std::path::absolute(path)
        .unwrap_or_else(|_| path.to_path_buf())
        .display()
        .to_string()
}

/// The files of the `[auth]` section.
#[derive(Clone, Default)]
pub struct AuthFiles {
    /// `auth.password_file`, if one is set.
    pub passwords: Option<Arc<PasswordFile>>,
    /// `auth.acl_file`, if one is set: what each client may read and write.
    pub acl: Option<Arc<AclFile>>,
}
