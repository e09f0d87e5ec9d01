//! Accepting a CONNECT, as a pure decision: the protocol's rules for the
//! client id, roost's `[limits]`, authentication and the will's ACL, in
//! that order, with the return code of each refusal. And the takeover
//! decision for a client id that already has a session.
//!
//! The connection calls [`accept`] with what it knows. A password is slow
//! to check on purpose, so the first call answers [`Verdict::VerifyPassword`]
//! when one must be checked; the connection checks it off its thread and
//! calls again with the result. Everything else is decided at once.

use crate::config::LimitsConfig;
use crate::protocol::{Connect, ConnectReturnCode, Properties, ProtocolVersion, ReasonCode};
use bytestring::ByteString;
use std::time::Duration;

/// The longest client id MQTT 3.1 allows (1 to 23 characters).
const V31_MAX_CLIENT_ID_CHARS: usize = 23;

/// What is known of the client's credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// CONNECT's user name and password, not checked yet.
    Unchecked,
    /// The password file's verdict on CONNECT's user name and password.
    Password { valid: bool },
    /// The listener takes the client certificate's common name as the user
    /// name (checked in the TLS handshake); `None`: the certificate has none.
    Certificate(Option<ByteString>),
}

/// The settings and state a CONNECT is checked against besides its limits.
#[derive(Debug, Clone, Copy)]
pub struct AuthSettings {
    pub allow_anonymous: bool,
    /// A password file is set.
    pub password_file: bool,
    /// The store's commits fail and are being tried again: no new
    /// persistent session can be kept.
    pub store_failing: bool,
}

/// A CONNECT accepted: who the client is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// CONNECT's client id, or the one assigned to an empty id.
    pub client_id: ByteString,
    /// The user name the ACL knows the client by.
    pub username: Option<ByteString>,
    /// 1.5 × the keep-alive [MQTT-3.1.2-24]; `None` when it is 0.
    pub keep_alive_limit: Option<Duration>,
    /// The session outlives the connection: 3.1.1's clean session 0, or a
    /// 5.0 Session Expiry Interval above 0 (section 3.1.2.11.2).
    pub durable: bool,
    /// How long a durable session is kept once its client has gone; `None`:
    /// for ever. `session.expiry_secs` for 3.1.1; the client's interval,
    /// within it, for 5.0 (0xFFFFFFFF is for ever).
    pub expiry: Option<Duration>,
    /// 5.0: the properties of the CONNACK that accepts it.
    pub connack: Option<Box<Properties>>,
}

/// What a 5.0 CONNACK tells the client of the server (section 3.2.2.3),
/// from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerLimits {
    /// Session Expiry Interval granted at most (`session.expiry_secs`; 0
    /// is no limit).
    pub max_session_expiry: u32,
    /// QoS 1/2 PUBLISHes the client may have unacknowledged.
    pub receive_maximum: u16,
    pub maximum_packet_size: u32,
    pub topic_alias_maximum: u16,
    /// What a client that asks for Response Information is told, before
    /// its client id; `None`: nothing.
    pub response_information_prefix: Option<std::sync::Arc<str>>,
    /// `[redirect]`: the server new 5.0 clients are sent to, and whether
    /// for good.
    pub redirect: Option<(std::sync::Arc<str>, bool)>,
}

/// What to do with a CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Accept(Accepted),
    /// Check CONNECT's user name and password against the password file,
    /// then decide again with [`Credentials::Password`].
    VerifyPassword,
    Refuse(Refusal),
}

/// Why a CONNECT was refused; its return code is [`Refusal::code`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("an empty client id needs clean session 1 [MQTT-3.1.3-8]")]
    EmptyClientIdNeedsCleanSession,
    #[error("MQTT 3.1 needs a client id of 1 to 23 characters")]
    V31ClientIdLength,
    #[error("client id longer than limits.max_client_id_length")]
    ClientIdTooLong,
    #[error("keep-alive above limits.max_keepalive")]
    KeepAliveTooLong,
    #[error("will topic beyond limits.max_topic_length or max_topic_levels")]
    WillTopicBeyondLimits,
    #[error("will larger than limits.max_will_bytes")]
    WillTooLarge,
    #[error("the client certificate has no common name to use as user name")]
    NoCommonName,
    #[error("CONNECT without user name (auth.allow_anonymous is false)")]
    AnonymousNotAllowed,
    #[error("no password file and auth.allow_anonymous is false")]
    NoPasswordFile,
    #[error("bad user name or password")]
    BadCredentials,
    #[error("the ACL does not allow the will topic")]
    WillNotAllowed,
    #[error("a persistent session cannot be kept now: the database's commits fail and are being tried again")]
    StoreFailing,
    #[error("enhanced authentication with method {0:?}, which roost does not offer")]
    BadAuthenticationMethod(String),
    #[error("clients are sent to {reference:?} ([redirect])")]
    Redirected {
        reference: std::sync::Arc<str>,
        permanent: bool,
    },
}

/// Which counter a refusal adds to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    /// The client id breaks the protocol's rules.
    Identifier,
    /// A limit of `[limits]`.
    Limit,
    /// Authentication.
    Auth,
    /// The ACL.
    Acl,
    /// The broker cannot take it now.
    Unavailable,
}

impl Refusal {
    /// The CONNACK return code. The limits have no better code than 0x02
    /// in MQTT 3.1.1 (Mosquitto 2 answers the same); a will the ACL refuses
    /// gets 0x05, as in Mosquitto 2.
    pub fn code(&self) -> ConnectReturnCode {
        use Refusal::*;
        match self {
            EmptyClientIdNeedsCleanSession
            | V31ClientIdLength
            | ClientIdTooLong
            | KeepAliveTooLong
            | WillTopicBeyondLimits
            | WillTooLarge => ConnectReturnCode::IdentifierRejected,
            BadCredentials => ConnectReturnCode::BadUsernameOrPassword,
            NoCommonName | AnonymousNotAllowed | NoPasswordFile | WillNotAllowed => {
                ConnectReturnCode::NotAuthorized
            }
            StoreFailing | Redirected { .. } => ConnectReturnCode::ServerUnavailable,
            BadAuthenticationMethod(_) => ConnectReturnCode::NotAuthorized,
        }
    }

    /// The CONNACK reason code of 5.0, which has words for more of them.
    pub fn reason(&self) -> ReasonCode {
        use Refusal::*;
        match self {
            EmptyClientIdNeedsCleanSession
            | V31ClientIdLength
            | ClientIdTooLong
            | KeepAliveTooLong => ReasonCode::CLIENT_IDENTIFIER_NOT_VALID,
            WillTopicBeyondLimits => ReasonCode::TOPIC_NAME_INVALID,
            WillTooLarge => ReasonCode::QUOTA_EXCEEDED,
            BadCredentials => ReasonCode::BAD_USER_NAME_OR_PASSWORD,
            NoCommonName | AnonymousNotAllowed | NoPasswordFile | WillNotAllowed => {
                ReasonCode::NOT_AUTHORIZED
            }
            StoreFailing => ReasonCode::SERVER_UNAVAILABLE,
            BadAuthenticationMethod(_) => ReasonCode::BAD_AUTHENTICATION_METHOD,
            Redirected {
                permanent: false, ..
            } => ReasonCode::USE_ANOTHER_SERVER,
            Redirected {
                permanent: true, ..
            } => ReasonCode::SERVER_MOVED,
        }
    }

    pub fn kind(&self) -> RefusalKind {
        use Refusal::*;
        match self {
            EmptyClientIdNeedsCleanSession | V31ClientIdLength => RefusalKind::Identifier,
            ClientIdTooLong | KeepAliveTooLong | WillTopicBeyondLimits | WillTooLarge => {
                RefusalKind::Limit
            }
            NoCommonName
            | AnonymousNotAllowed
            | NoPasswordFile
            | BadCredentials
            | BadAuthenticationMethod(_) => RefusalKind::Auth,
            WillNotAllowed => RefusalKind::Acl,
            StoreFailing | Redirected { .. } => RefusalKind::Unavailable,
        }
    }
}

/// Decides on `connect`. `assign_id` makes a client id for an empty one
/// [MQTT-3.1.3-6]; `will_allowed(user name, client id, topic)` is the ACL's
/// answer for the will topic.
pub fn accept(
    connect: &Connect,
    credentials: &Credentials,
    limits: &LimitsConfig,
    server: &ServerLimits,
    auth: AuthSettings,
    assign_id: impl FnOnce() -> ByteString,
    will_allowed: impl FnOnce(Option<&str>, &str, &str) -> bool,
) -> Verdict {
    let refuse = Verdict::Refuse;
    let v31 = connect.version == ProtocolVersion::V31;
    let v5 = connect.version.is_v5();
    // Server redirection (section 4.11): a 5.0 client is sent elsewhere
    // before anything else is looked at; 3.1.1 has no word for it.
    if let (true, Some((reference, permanent))) = (v5, &server.redirect) {
        return refuse(Refusal::Redirected {
            reference: reference.clone(),
            permanent: *permanent,
        });
    }
    // Enhanced authentication (section 4.12) is not offered: a method
    // gets 0x8C (bad authentication method).
    if let Some(method) = &connect.properties().authentication_method {
        return refuse(Refusal::BadAuthenticationMethod(method.to_string()));
    }
    let client_id = if connect.client_id.is_empty() {
        // An empty id needs clean session 1 in 3.1.1 [MQTT-3.1.3-8]; 5.0
        // assigns one whatever Clean Start says [MQTT-3.1.3-6]; MQTT 3.1
        // needs 1-23 characters.
        if !connect.clean_session && !v5 {
            return refuse(Refusal::EmptyClientIdNeedsCleanSession);
        }
        if v31 {
            return refuse(Refusal::V31ClientIdLength);
        }
        assign_id()
    } else {
        if v31 && connect.client_id.chars().count() > V31_MAX_CLIENT_ID_CHARS {
            return refuse(Refusal::V31ClientIdLength);
        }
        connect.client_id.clone()
    };
    if client_id.len() > limits.max_client_id_length {
        return refuse(Refusal::ClientIdTooLong);
    }
    // A 5.0 client is told the keep-alive it gets (Server Keep Alive,
    // [MQTT-3.2.2-21]); 3.1.1 has no way to say it.
    if connect.keep_alive > limits.max_keepalive && !v5 {
        return refuse(Refusal::KeepAliveTooLong);
    }
    let keep_alive = connect.keep_alive.min(limits.max_keepalive);
    if let Some(will) = &connect.will {
        if !limits.topic_allowed(will.topic.as_str()) {
            return refuse(Refusal::WillTopicBeyondLimits);
        }
        if will.topic.as_str().len() + will.payload.len() > limits.max_will_bytes {
            return refuse(Refusal::WillTooLarge);
        }
    }
    if !connect.clean_session && auth.store_failing {
        // A persistent session is durable state: with commits failing it
        // could not be kept. 0x03, "server unavailable" (section 3.2.2.3).
        return refuse(Refusal::StoreFailing);
    }
    let username = match (credentials, &connect.username) {
        (Credentials::Certificate(None), _) => return refuse(Refusal::NoCommonName),
        (Credentials::Certificate(Some(cn)), _) => Some(cn.clone()),
        (_, None) if !auth.allow_anonymous => return refuse(Refusal::AnonymousNotAllowed),
        (_, Some(_)) if !auth.password_file && !auth.allow_anonymous => {
            return refuse(Refusal::NoPasswordFile)
        }
        (Credentials::Unchecked, Some(_)) if auth.password_file => return Verdict::VerifyPassword,
        (Credentials::Password { valid: false }, Some(_)) => {
            return refuse(Refusal::BadCredentials)
        }
        (_, username) => username.clone(),
    };
    if let Some(will) = &connect.will {
        if !will_allowed(username.as_deref(), &client_id, will.topic.as_str()) {
            return refuse(Refusal::WillNotAllowed);
        }
    }
    let keep_alive_limit =
        (keep_alive > 0).then(|| Duration::from_millis(u64::from(keep_alive) * 1500));
    let (durable, connack) = match v5 {
        false => (!connect.clean_session, None),
        true => {
            let (durable, connack) = connack_properties(connect, &client_id, keep_alive, server);
            (durable, Some(connack))
        }
    };
    let asked = match v5 {
        false => u32::MAX,
        true => connect.properties().session_expiry_interval.unwrap_or(0),
    };
    Verdict::Accept(Accepted {
        client_id,
        username,
        keep_alive_limit,
        durable,
        connack,
        expiry: session_expiry(asked, server.max_session_expiry),
    })
}

/// How long a session is kept away from its client: `asked` seconds
/// (0xFFFFFFFF: for ever, section 3.1.2.11.2), at most `max` (0: no
/// maximum); `None` is for ever.
pub fn session_expiry(asked: u32, max: u32) -> Option<Duration> {
    let secs = match (asked, max) {
        (u32::MAX, 0) => return None,
        (asked, 0) => asked,
        (asked, max) => asked.min(max),
    };
    Some(Duration::from_secs(u64::from(secs)))
}

/// The CONNACK properties of an accepted 5.0 CONNECT, and whether its
/// session is durable. What the client assumed is left out where it holds
/// (a property's default), so a CONNACK says only what differs.
fn connack_properties(
    connect: &Connect,
    client_id: &ByteString,
    keep_alive: u16,
    server: &ServerLimits,
) -> (bool, Box<Properties>) {
    let asked = connect.properties();
    let mut p = Properties::default();
    // [MQTT-3.1.3-7] the id assigned to an empty one.
    if connect.client_id.is_empty() {
        p.assigned_client_identifier = Some(client_id.clone());
    }
    // [MQTT-3.2.2-21] the keep-alive granted, where it is not the one asked.
    if keep_alive != connect.keep_alive {
        p.server_keep_alive = Some(keep_alive);
    }
    // The interval granted, where the server's maximum lowers it (section
    // 3.2.2.3.2); absent, the client's own holds.
    let expiry = asked.session_expiry_interval.unwrap_or(0);
    if server.max_session_expiry > 0 && expiry > server.max_session_expiry {
        p.session_expiry_interval = Some(server.max_session_expiry);
    }
    p.receive_maximum = Some(server.receive_maximum);
    p.maximum_packet_size = Some(server.maximum_packet_size);
    if server.topic_alias_maximum > 0 {
        p.topic_alias_maximum = Some(server.topic_alias_maximum);
    }
    // Asked for (section 3.1.2.11.7): the prefix and the client id, a
    // topic root of its own for responses (section 4.10).
    if let (Some(1), Some(prefix)) = (
        asked.request_response_information,
        &server.response_information_prefix,
    ) {
        p.response_information = Some(format!("{prefix}{client_id}").into());
    }
    // The features' flags (defaults 1): what is not offered yet says so.
    p.shared_subscription_available = Some(0);
    (expiry > 0, Box::new(p))
}

/// A CONNECT for a client id that may already have a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Takeover {
    /// Resume the persistent session [MQTT-3.1.2-4]; session present is 1
    /// [MQTT-3.2.2-2].
    Resume,
    /// Discard the existing session and start a new one: clean session 1
    /// discards any previous session [MQTT-3.1.2-6], and a clean session
    /// ends with its connection anyway. Session present is 0.
    Replace,
    /// No session yet: start one; session present is 0 [MQTT-3.2.2-1]
    /// [MQTT-3.2.2-3].
    New,
}

/// What a CONNECT with `clean_session` does to the client id's existing
/// session, if any (`Some(durable)`).
pub fn takeover(existing_durable: Option<bool>, clean_session: bool) -> Takeover {
    match existing_durable {
        Some(true) if !clean_session => Takeover::Resume,
        Some(_) => Takeover::Replace,
        None => Takeover::New,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{LastWill, QoS, TopicName};

    fn limits() -> LimitsConfig {
        crate::config::Config::defaults().limits
    }

    const OPEN: AuthSettings = AuthSettings {
        allow_anonymous: true,
        password_file: false,
        store_failing: false,
    };

    fn connect(client_id: &str) -> Connect {
        Connect {
            version: ProtocolVersion::V311,
            clean_session: true,
            keep_alive: 60,
            client_id: client_id.into(),
            will: None,
            username: None,
            password: None,
            properties: None,
        }
    }

    const SERVER: ServerLimits = ServerLimits {
        max_session_expiry: 3600,
        receive_maximum: 1000,
        maximum_packet_size: 1 << 20,
        topic_alias_maximum: 10,
        response_information_prefix: None,
        redirect: None,
    };

    fn decide(c: &Connect, credentials: Credentials, auth: AuthSettings) -> Verdict {
        accept(
            c,
            &credentials,
            &limits(),
            &SERVER,
            auth,
            || "assigned".into(),
            |_, _, t| !t.starts_with("forbidden"),
        )
    }

    fn refusal(v: Verdict) -> (Refusal, ConnectReturnCode) {
        match v {
            Verdict::Refuse(r) => {
                let code = r.code();
                (r, code)
            }
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn a_plain_connect_is_accepted_with_one_and_a_half_times_its_keep_alive_mqtt_3_1_2_24() {
        let Verdict::Accept(a) = decide(&connect("c"), Credentials::Unchecked, OPEN) else {
            panic!()
        };
        assert_eq!(a.client_id, "c");
        assert_eq!(a.username, None);
        assert_eq!(a.keep_alive_limit, Some(Duration::from_secs(90)));
        let mut c = connect("c");
        c.keep_alive = 0;
        let Verdict::Accept(a) = decide(&c, Credentials::Unchecked, OPEN) else {
            panic!()
        };
        assert_eq!(a.keep_alive_limit, None, "keep-alive 0 turns it off");
    }

    /// [MQTT-3.1.3-6] [MQTT-3.1.3-8] The table of client id rules.
    #[test]
    fn client_id_rules_mqtt_3_1_3_6_and_3_1_3_8() {
        let Verdict::Accept(a) = decide(&connect(""), Credentials::Unchecked, OPEN) else {
            panic!()
        };
        assert_eq!(a.client_id, "assigned", "an empty id with clean session 1");
        let mut c = connect("");
        c.clean_session = false;
        assert_eq!(
            refusal(decide(&c, Credentials::Unchecked, OPEN)),
            (
                Refusal::EmptyClientIdNeedsCleanSession,
                ConnectReturnCode::IdentifierRejected
            )
        );
        let mut c = connect("");
        c.version = ProtocolVersion::V31;
        assert_eq!(
            refusal(decide(&c, Credentials::Unchecked, OPEN)).0,
            Refusal::V31ClientIdLength
        );
        let mut c = connect(&"x".repeat(24));
        c.version = ProtocolVersion::V31;
        assert_eq!(
            refusal(decide(&c, Credentials::Unchecked, OPEN)).0,
            Refusal::V31ClientIdLength
        );
        c.version = ProtocolVersion::V311;
        assert!(matches!(
            decide(&c, Credentials::Unchecked, OPEN),
            Verdict::Accept(_)
        ));
    }

    #[test]
    fn limits_refuse_with_identifier_rejected() {
        let mut l = limits();
        l.max_client_id_length = 4;
        l.max_keepalive = 100;
        l.max_topic_levels = 2;
        let run = |c: &Connect| {
            refusal(accept(
                c,
                &Credentials::Unchecked,
                &l,
                &SERVER,
                OPEN,
                || "assigned".into(),
                |_, _, _| true,
            ))
        };
        assert_eq!(
            run(&connect("12345")),
            (
                Refusal::ClientIdTooLong,
                ConnectReturnCode::IdentifierRejected
            )
        );
        let mut c = connect("c");
        c.keep_alive = 101;
        assert_eq!(run(&c).0, Refusal::KeepAliveTooLong);
        let mut c = connect("c");
        c.will = Some(will("a/b/c"));
        assert_eq!(run(&c).0, Refusal::WillTopicBeyondLimits);
        assert_eq!(Refusal::WillTopicBeyondLimits.kind(), RefusalKind::Limit);
        let mut l = limits();
        l.max_will_bytes = 8;
        let mut c = connect("c");
        c.will = Some(will("a/b"));
        let decide = |c: &Connect| {
            accept(
                c,
                &Credentials::Unchecked,
                &l,
                &SERVER,
                OPEN,
                || "x".into(),
                |_, _, _| true,
            )
        };
        assert!(matches!(decide(&c), Verdict::Accept(_)), "3 + 4 bytes");
        c.will = Some(will("a/bcd"));
        assert_eq!(
            refusal(decide(&c)),
            (Refusal::WillTooLarge, ConnectReturnCode::IdentifierRejected)
        );
    }

    fn will(topic: &str) -> LastWill {
        LastWill {
            topic: TopicName::new(topic.to_string()).unwrap(),
            payload: bytes::Bytes::from_static(b"gone"),
            qos: QoS::AtMostOnce,
            retain: false,
            properties: None,
        }
    }

    /// Each row: user name sent, credentials known, settings, and the verdict.
    #[test]
    fn authentication_table() {
        let closed = AuthSettings {
            allow_anonymous: false,
            password_file: true,
            store_failing: false,
        };
        let no_file = AuthSettings {
            allow_anonymous: false,
            password_file: false,
            store_failing: false,
        };
        let open_with_file = AuthSettings {
            allow_anonymous: true,
            password_file: true,
            store_failing: false,
        };
        let with_user = |user: &str| {
            let mut c = connect("c");
            c.username = Some(user.into());
            c.password = Some(bytes::Bytes::from_static(b"pw"));
            c
        };
        let anonymous = connect("c");
        let accepted_as = |v: Verdict| match v {
            Verdict::Accept(a) => a.username,
            other => panic!("{other:?}"),
        };
        // Anonymous.
        assert_eq!(
            refusal(decide(&anonymous, Credentials::Unchecked, closed)),
            (
                Refusal::AnonymousNotAllowed,
                ConnectReturnCode::NotAuthorized
            )
        );
        assert_eq!(
            accepted_as(decide(&anonymous, Credentials::Unchecked, open_with_file)),
            None
        );
        // A user name and no password file.
        assert_eq!(
            refusal(decide(&with_user("u"), Credentials::Unchecked, no_file)).0,
            Refusal::NoPasswordFile
        );
        assert_eq!(
            accepted_as(decide(&with_user("u"), Credentials::Unchecked, OPEN)),
            Some("u".into())
        );
        // A user name and a password file: checked, whatever allow_anonymous says.
        for auth in [closed, open_with_file] {
            assert_eq!(
                decide(&with_user("u"), Credentials::Unchecked, auth),
                Verdict::VerifyPassword
            );
            assert_eq!(
                refusal(decide(
                    &with_user("u"),
                    Credentials::Password { valid: false },
                    auth
                )),
                (
                    Refusal::BadCredentials,
                    ConnectReturnCode::BadUsernameOrPassword
                )
            );
            assert_eq!(
                accepted_as(decide(
                    &with_user("u"),
                    Credentials::Password { valid: true },
                    auth
                )),
                Some("u".into())
            );
        }
        // A client certificate: its common name is the user name, no password.
        assert_eq!(
            accepted_as(decide(
                &with_user("u"),
                Credentials::Certificate(Some("cn".into())),
                closed
            )),
            Some("cn".into())
        );
        assert_eq!(
            refusal(decide(&anonymous, Credentials::Certificate(None), OPEN)),
            (Refusal::NoCommonName, ConnectReturnCode::NotAuthorized)
        );
    }

    #[test]
    fn a_will_the_acl_refuses_gets_not_authorized() {
        let mut c = connect("c");
        c.will = Some(will("forbidden/t"));
        assert_eq!(
            refusal(decide(&c, Credentials::Unchecked, OPEN)),
            (Refusal::WillNotAllowed, ConnectReturnCode::NotAuthorized)
        );
        c.will = Some(will("allowed/t"));
        assert!(matches!(
            decide(&c, Credentials::Unchecked, OPEN),
            Verdict::Accept(_)
        ));
    }

    /// [MQTT-3.1.2-4] [MQTT-3.1.2-6] [MQTT-3.2.2-1] [MQTT-3.2.2-2]
    #[test]
    fn takeover_table_mqtt_3_1_2_4_and_3_1_2_6() {
        assert_eq!(takeover(None, false), Takeover::New);
        assert_eq!(takeover(None, true), Takeover::New);
        assert_eq!(takeover(Some(true), false), Takeover::Resume);
        assert_eq!(takeover(Some(true), true), Takeover::Replace);
        assert_eq!(takeover(Some(false), false), Takeover::Replace);
        assert_eq!(takeover(Some(false), true), Takeover::Replace);
    }

    /// While the store's commits fail, a persistent session is refused with
    /// 0x03, server unavailable (section 3.2.2.3); a clean one is not.
    #[test]
    fn persistent_sessions_are_refused_with_0x03_while_the_store_fails() {
        let failing = AuthSettings {
            store_failing: true,
            ..OPEN
        };
        let mut c = connect("p");
        c.clean_session = false;
        assert_eq!(
            refusal(decide(&c, Credentials::Unchecked, failing)),
            (Refusal::StoreFailing, ConnectReturnCode::ServerUnavailable)
        );
        assert!(matches!(
            decide(&connect("c"), Credentials::Unchecked, failing),
            Verdict::Accept(_)
        ));
    }

    fn v5(client_id: &str, clean_start: bool, expiry: Option<u32>, keep_alive: u16) -> Connect {
        let mut c = connect(client_id);
        c.version = ProtocolVersion::V5;
        c.clean_session = clean_start;
        c.keep_alive = keep_alive;
        c.properties = expiry.map(|e| {
            Box::new(Properties {
                session_expiry_interval: Some(e),
                ..Properties::default()
            })
        });
        c
    }

    fn accepted(c: &Connect) -> Accepted {
        let mut l = limits();
        l.max_keepalive = 300;
        match accept(
            c,
            &Credentials::Unchecked,
            &l,
            &SERVER,
            OPEN,
            || "assigned".into(),
            |_, _, _| true,
        ) {
            Verdict::Accept(a) => a,
            other => panic!("refused: {other:?}"),
        }
    }

    /// A 5.0 CONNACK says what the server decided: [MQTT-3.1.3-7] the
    /// Assigned Client Identifier of an empty id (with Clean Start 0 too,
    /// [MQTT-3.1.3-6]), [MQTT-3.2.2-21] the Server Keep Alive where the one
    /// asked is above `max_keepalive`, and the Session Expiry Interval where
    /// `expiry_secs` lowers it; a session is durable when its interval is
    /// above 0 (section 3.1.2.11.2).
    #[test]
    fn a_v5_connack_says_what_was_granted_mqtt_3_1_3_7_and_3_2_2_21() {
        // (connect, durable, assigned id, server keep alive, expiry told)
        let rows = [
            (v5("c", true, None, 60), false, None, None, None),
            (v5("c", false, Some(60), 60), true, None, None, None),
            (v5("c", true, Some(7200), 60), true, None, None, Some(3600)),
            (v5("", false, None, 60), false, Some("assigned"), None, None),
            (v5("c", true, None, 1000), false, None, Some(300), None),
            (v5("c", true, None, 0), false, None, None, None),
        ];
        for (c, durable, assigned, server_keep_alive, expiry) in rows {
            let a = accepted(&c);
            let p = a.connack.expect("a 5.0 CONNACK has properties");
            let row = format!("{:?} {:?}", c.client_id, c.properties);
            assert_eq!(a.durable, durable, "{row}");
            assert_eq!(p.assigned_client_identifier.as_deref(), assigned, "{row}");
            assert_eq!(p.server_keep_alive, server_keep_alive, "{row}");
            assert_eq!(p.session_expiry_interval, expiry, "{row}");
            assert_eq!(p.receive_maximum, Some(1000));
            assert_eq!(p.maximum_packet_size, Some(1 << 20));
            assert_eq!(p.topic_alias_maximum, Some(10));
            // Not offered yet, and said so (the defaults are 1).
            assert_eq!(p.subscription_identifier_available, None, "available");
            assert_eq!(p.shared_subscription_available, Some(0));
        }
        let a = accepted(&v5("c", true, None, 1000));
        assert_eq!(a.keep_alive_limit, Some(Duration::from_secs(450)));
        // 3.1.1 is refused what 5.0 is told.
        let mut c = connect("c");
        c.keep_alive = 1000;
        let mut l = limits();
        l.max_keepalive = 300;
        assert!(matches!(
            accept(
                &c,
                &Credentials::Unchecked,
                &l,
                &SERVER,
                OPEN,
                || "x".into(),
                |_, _, _| true
            ),
            Verdict::Refuse(Refusal::KeepAliveTooLong)
        ));
        assert!(accepted(&connect("c")).connack.is_none());
    }

    /// Section 4.11: with a redirection set, a 5.0 CONNECT is refused with
    /// 0x9C or 0x9D before anything else; a 3.1.1 one is decided as ever.
    #[test]
    fn a_redirection_refuses_v5_clients_only() {
        let server = ServerLimits {
            redirect: Some(("other:1883".into(), true)),
            ..SERVER
        };
        let decide = |c: &Connect| {
            accept(
                c,
                &Credentials::Unchecked,
                &limits(),
                &server,
                OPEN,
                || "x".into(),
                |_, _, _| true,
            )
        };
        match decide(&v5("c", true, None, 60)) {
            Verdict::Refuse(r) => assert_eq!(r.reason(), ReasonCode::SERVER_MOVED),
            other => panic!("{other:?}"),
        }
        assert!(matches!(decide(&connect("c")), Verdict::Accept(_)));
    }

    /// Section 3.1.2.11.2: a session is kept for the interval asked, at
    /// most `session.expiry_secs` (0: no maximum); 0xFFFFFFFF is for ever.
    #[test]
    fn a_session_is_kept_for_its_interval_within_the_maximum() {
        let s = |secs| Some(Duration::from_secs(secs));
        let rows = [
            (60, 0, s(60)),
            (60, 30, s(30)),
            (u32::MAX, 0, None),
            (u32::MAX, 3600, s(3600)),
            (10, 3600, s(10)),
        ];
        for (asked, max, kept) in rows {
            assert_eq!(session_expiry(asked, max), kept, "{asked} within {max}");
        }
    }
}
