//! Access control lists in Mosquitto's `acl_file` format, so a file written
//! for Mosquitto works unchanged:
//!
//! ```text
//! # rules before any `user` line: clients without a user name
//! topic read public/#
//!
//! user alice
//! topic readwrite sensors/#
//! topic deny sensors/secret
//!
//! # for every client: %c is its client id, %u its user name
//! pattern write devices/%c/status
//! ```
//!
//! `topic [read|write|readwrite|deny] FILTER` (access defaults to
//! readwrite) and `pattern [...] FILTER` lines; `#` starts a comment. With
//! an ACL file set, a client may do only what a rule grants it: a `deny`
//! rule that matches wins over any grant, and no matching rule means no.
//!
//! - PUBLISH needs write access to the topic; a refused one is dropped and
//!   counted (MQTT 3.1.1 has no way to tell the client).
//! - SUBSCRIBE needs a read rule whose filter covers the whole subscription
//!   filter (`sensors/#` covers `sensors/+/t`, not `#`); a refused filter
//!   gets SUBACK 0x80, as in Mosquitto.
//! - Every message delivered, retained ones included, needs read access to
//!   its topic at that moment, so a durable subscription that the ACL no
//!   longer allows stops receiving.
//! - A will needs write access to its topic: CONNECT is refused with 0x05
//!   otherwise, as in Mosquitto 2.
//!
//! A client id or user name containing `/`, `+`, `#` or `%` never matches
//! a `pattern` that substitutes it: it could otherwise reach other
//! clients' topics (`%c` = `a/#`).

use crate::protocol::filter_covers;
use std::collections::HashMap;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum AclError {
    #[error("ACL file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("ACL file {path}, line {line}: {reason}")]
    Syntax {
        path: String,
        line: usize,
        reason: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Read,
    Write,
    ReadWrite,
    Deny,
}

impl Access {
    fn grants(self, want: Want) -> bool {
        matches!(
            (self, want),
            (Access::ReadWrite, _) | (Access::Read, Want::Read) | (Access::Write, Want::Write)
        )
    }
}

/// What a client wants to do with a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// Receive messages of the topic (subscribe, delivery).
    Read,
    /// Publish to the topic (PUBLISH, will).
    Write,
}

#[derive(Debug, Clone)]
struct Rule {
    access: Access,
    filter: String,
}

#[derive(Debug, Default)]
pub struct AclFile {
    /// `topic` lines before the first `user` line.
    anonymous: Vec<Rule>,
    users: HashMap<String, Vec<Rule>>,
    patterns: Vec<Rule>,
}

impl AclFile {
    pub fn load(path: &Path) -> Result<AclFile, AclError> {
        let text = std::fs::read_to_string(path).map_err(|source| AclError::Io {
            path: path.display().to_string(),
            source,
        })?;
        AclFile::parse(&text).map_err(|(line, reason)| AclError::Syntax {
            path: path.display().to_string(),
            line,
            reason,
        })
    }

    /// Parses the text of an ACL file; an error is (line number, reason).
    pub fn parse(text: &str) -> Result<AclFile, (usize, String)> {
        let mut acl = AclFile::default();
        let mut user: Option<String> = None;
        for (n, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (keyword, rest) = line
                .split_once(char::is_whitespace)
                .map(|(k, r)| (k, r.trim()))
                .unwrap_or((line, ""));
            match keyword {
                "user" => {
                    if rest.is_empty() {
                        return Err((n + 1, "`user` needs a user name".into()));
                    }
                    acl.users.entry(rest.to_string()).or_default();
                    user = Some(rest.to_string());
                }
                "topic" | "pattern" => {
                    let rule = rule(rest).map_err(|reason| (n + 1, reason))?;
                    match (keyword, &user) {
                        ("pattern", _) => acl.patterns.push(rule),
                        (_, Some(u)) => acl.users.entry(u.clone()).or_default().push(rule),
                        (_, None) => acl.anonymous.push(rule),
                    }
                }
                other => {
                    return Err((
                        n + 1,
                        format!("unknown keyword {other:?} (expected user, topic or pattern)"),
                    ))
                }
            }
        }
        Ok(acl)
    }

    /// Rules that apply to this client, patterns filled in.
    fn rules<'a>(
        &'a self,
        user: Option<&'a str>,
        client_id: &'a str,
    ) -> impl Iterator<Item = (Access, std::borrow::Cow<'a, str>)> + 'a {
        let own = match user {
            Some(u) => self.users.get(u).map(Vec::as_slice).unwrap_or(&[]),
            None => &self.anonymous[..],
        };
        let safe = |s: &str| !s.contains(['/', '+', '#', '%']);
        own.iter()
            .map(|r| (r.access, std::borrow::Cow::Borrowed(r.filter.as_str())))
            .chain(self.patterns.iter().filter_map(move |r| {
                let mut filter = r.filter.clone();
                if filter.contains("%c") {
                    if !safe(client_id) {
                        return None;
                    }
                    filter = filter.replace("%c", client_id);
                }
                if filter.contains("%u") {
                    let u = user.filter(|u| safe(u))?;
                    filter = filter.replace("%u", u);
                }
                Some((r.access, std::borrow::Cow::Owned(filter)))
            }))
    }

    /// Whether the client may read or write the topic `topic` (no wildcards).
    /// The named users the file has rules for.
    pub fn users(&self) -> usize {
        self.users.len()
    }

    pub fn allows(&self, user: Option<&str>, client_id: &str, topic: &str, want: Want) -> bool {
        let mut granted = false;
        for (access, filter) in self.rules(user, client_id) {
            if filter_covers(&filter, topic) {
                if access == Access::Deny {
                    return false;
                }
                granted |= access.grants(want);
            }
        }
        granted
    }

    /// Whether the client may subscribe to `filter`: a read rule covers all
    /// of it and no deny rule covers all of it. (A deny rule covering only
    /// part of it, like `sensors/secret` under `sensors/#`, is applied to
    /// each message delivered.)
    pub fn allows_subscribe(&self, user: Option<&str>, client_id: &str, filter: &str) -> bool {
        let mut granted = false;
        for (access, rule) in self.rules(user, client_id) {
            match access {
                Access::Deny if filter_covers(&rule, filter) => return false,
                Access::Read | Access::ReadWrite if filter_covers(&rule, filter) => granted = true,
                _ => {}
            }
        }
        granted
    }
}

fn rule(rest: &str) -> Result<Rule, String> {
    let (access, filter) = match rest.split_once(char::is_whitespace) {
        Some(("read", f)) => (Access::Read, f.trim()),
        Some(("write", f)) => (Access::Write, f.trim()),
        Some(("readwrite", f)) => (Access::ReadWrite, f.trim()),
        Some(("deny", f)) => (Access::Deny, f.trim()),
        _ if matches!(rest, "read" | "write" | "readwrite" | "deny") => {
            return Err(format!("`{rest}` needs a topic filter after it"))
        }
        _ => (Access::ReadWrite, rest),
    };
    if filter.is_empty() {
        return Err("a rule needs a topic filter".into());
    }
    Ok(Rule {
        access,
        filter: filter.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "\
# anonymous clients
topic read public/#

user alice
topic readwrite sensors/#
topic deny sensors/secret
topic write cmd/+

user bob
topic sensors/bob/#

pattern write devices/%c/status
pattern read users/%u/inbox
";

    fn acl() -> AclFile {
        AclFile::parse(FILE).unwrap()
    }

    #[test]
    fn anonymous_rules_come_before_the_first_user() {
        let a = acl();
        assert!(a.allows(None, "c", "public/news", Want::Read));
        assert!(!a.allows(None, "c", "public/news", Want::Write));
        assert!(!a.allows(None, "c", "sensors/x", Want::Read));
        assert!(!a.allows(Some("alice"), "c", "public/news", Want::Read));
    }

    #[test]
    fn deny_wins_over_a_grant_and_no_rule_means_no() {
        let a = acl();
        assert!(a.allows(Some("alice"), "c", "sensors/t", Want::Write));
        assert!(!a.allows(Some("alice"), "c", "sensors/secret", Want::Read));
        assert!(a.allows(Some("alice"), "c", "cmd/x", Want::Write));
        assert!(!a.allows(Some("alice"), "c", "cmd/x", Want::Read));
        assert!(!a.allows(Some("mallory"), "c", "sensors/t", Want::Read));
        // Access defaults to readwrite.
        assert!(a.allows(Some("bob"), "c", "sensors/bob/t", Want::Write));
    }

    #[test]
    fn patterns_substitute_client_id_and_user_name() {
        let a = acl();
        assert!(a.allows(Some("bob"), "dev-1", "devices/dev-1/status", Want::Write));
        assert!(a.allows(None, "dev-1", "devices/dev-1/status", Want::Write));
        assert!(!a.allows(None, "dev-1", "devices/dev-2/status", Want::Write));
        assert!(a.allows(Some("bob"), "x", "users/bob/inbox", Want::Read));
        assert!(!a.allows(None, "x", "users/bob/inbox", Want::Read));
    }

    #[test]
    fn patterns_never_apply_to_ids_with_separators_or_wildcards() {
        let a = acl();
        assert!(!a.allows(None, "a/b", "devices/a/b/status", Want::Write));
        assert!(!a.allows(None, "+", "devices/x/status", Want::Write));
        assert!(!a.allows(Some("#"), "x", "users/anything/inbox", Want::Read));
    }

    #[test]
    fn subscribe_needs_a_read_rule_covering_the_whole_filter() {
        let a = acl();
        assert!(a.allows_subscribe(Some("alice"), "c", "sensors/#"));
        assert!(a.allows_subscribe(Some("alice"), "c", "sensors/+/t"));
        assert!(!a.allows_subscribe(Some("alice"), "c", "#"));
        assert!(!a.allows_subscribe(Some("alice"), "c", "+/t"));
        assert!(!a.allows_subscribe(Some("alice"), "c", "sensors/secret"));
        assert!(
            !a.allows_subscribe(Some("alice"), "c", "cmd/+"),
            "write only"
        );
        assert!(a.allows_subscribe(None, "c", "public/+"));
    }

    #[test]
    fn covers_is_containment() {
        assert!(filter_covers("a/#", "a"));
        assert!(filter_covers("a/#", "a/b/#"));
        assert!(filter_covers("a/+", "a/+"));
        assert!(!filter_covers("a/+", "a/#"));
        assert!(!filter_covers("a/b", "a/+"));
        assert!(filter_covers("+/+", "x/y"));
        assert!(!filter_covers("#", "$SYS/x"));
        assert!(filter_covers("$SYS/#", "$SYS/broker/+"));
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let err = AclFile::parse("user a\ntopic read\nbogus x").unwrap_err();
        assert_eq!(err.0, 2);
        let err = AclFile::parse("user a\nbogus x").unwrap_err();
        assert_eq!(err.0, 2);
    }
}
