//! The CONNECT of a connection: decided by the pure `session::connect`
//! (with the password, if any, checked off the actor's thread), then the
//! session found or created and attached, which writes CONNACK.

use super::{may_publish, rand_id, Connection, Ending, Identity, Phase};
use crate::broker::client::messages::Attach;
use crate::broker::client::registry::{Register, RegistryError};
use crate::broker::live::Reloadable;
use crate::broker::ops::log_limit::CONNECT_REFUSALS;
use crate::broker::ops::metrics::Metrics;
use crate::protocol::{
    ConnAck, Connect, ConnectReturnCode, Packet, Properties, PropertiesOf, ReasonCode,
};
use crate::session::connect::{
    self, AuthSettings, Credentials, RefusalKind, ServerLimits, Verdict,
};
use actix::prelude::*;
use bytestring::ByteString;
use std::sync::Arc;
use std::time::Duration;

impl Connection {
    /// Refuses CONNECT: CONNACK with `code` (3.1) or `reason` (5.0), then
    /// close.
    pub(super) fn refuse(
        &mut self,
        code: ConnectReturnCode,
        reason: ReasonCode,
        ctx: &mut Context<Self>,
    ) {
        self.refuse_with(code, reason, None, ctx)
    }

    /// [`Connection::refuse`] with CONNACK properties for a 5.0 client.
    fn refuse_with(
        &mut self,
        code: ConnectReturnCode,
        reason: ReasonCode,
        properties: Option<Box<Properties>>,
        ctx: &mut Context<Self>,
    ) {
        let connack = match self.outbound.version().is_v5() {
            true => ConnAck {
                session_present: false,
                reason,
                properties,
            },
            false => ConnAck::new(false, code),
        };
        self.outbound.send(Packet::ConnAck(connack));
        self.phase = Phase::Closed;
        ctx.stop();
    }

    /// The code of a refusing CONNACK as this client is sent it, in words.
    pub(super) fn describe_refusal(&self, code: ConnectReturnCode, reason: ReasonCode) -> String {
        match self.outbound.version().is_v5() {
            true => reason.describe(PropertiesOf::ConnAck),
            false => code.to_string(),
        }
    }

    /// The refusal line: the client, its user, the CONNACK sent and why,
    /// in words. A bad password says whether the user exists (the client
    /// is never told; the operator is).
    fn log_refusal(&self, refusal: &connect::Refusal, connect: &Connect, live: &Reloadable) {
        let user = connect.username.as_deref();
        let mut why = refusal.to_string();
        if let (connect::Refusal::BadCredentials, Some(user), Some(file)) =
            (refusal, user, &live.auth.passwords)
        {
            why = if connect.password.is_none() {
                format!("user {user:?} sent no password")
            } else if file.has_user(user) {
                format!("wrong password for user {user:?}")
            } else {
                format!("user {user:?} is not in the password file")
            };
        }
        let line = format!(
            "{}, {}: CONNECT refused with CONNACK {}: {why}",
            self.name(),
            describe_user(user),
            self.describe_refusal(refusal.code(), refusal.reason())
        );
        match refusal.kind() {
            RefusalKind::Identifier => log::info!("{line}"),
            _ => log::warn!("{line}"),
        }
    }

    /// Decides on CONNECT (see `session::connect`): refused with a return
    /// code, accepted, or accepted once a password is checked. `live` is the
    /// snapshot of the settings the decision is made on: the same one after
    /// a password check, so a reload meanwhile does not change the rules
    /// halfway through a CONNECT.
    pub(super) fn on_connect(
        &mut self,
        connect: Connect,
        credentials: Credentials,
        live: Arc<Reloadable>,
        ctx: &mut Context<Self>,
    ) {
        let auth = AuthSettings {
            allow_anonymous: live.allow_anonymous,
            password_file: live.auth.passwords.is_some(),
            store_failing: self
                .shared
                .metrics
                .store_failing
                .load(std::sync::atomic::Ordering::Relaxed),
        };
        if self.identity.is_none() && !connect.client_id.is_empty() {
            // Named by its client id in the log lines from here on.
            self.identity = Some(Box::new(Identity {
                client_id: connect.client_id.clone(),
                protocol: None,
                username: None,
                durable: false,
                session_id: None,
            }));
        }
        let connection_id = self.id;
        let server = ServerLimits {
            max_session_expiry: self.shared.max_session_expiry,
            // What a client may have unacknowledged is what reading from it
            // pauses at (`max_routing_backlog`).
            receive_maximum: u16::try_from(live.limits.max_routing_backlog.max(1))
                .unwrap_or(u16::MAX),
            maximum_packet_size: u32::try_from(live.limits.max_packet_size).unwrap_or(u32::MAX),
            topic_alias_maximum: live.limits.topic_alias_maximum,
            response_information_prefix: self.shared.response_information_prefix.clone(),
            redirect: (live.redirect.as_ref()).map(|r| (r.server_reference.clone(), r.permanent)),
        };
        let verdict = connect::accept(
            &connect,
            &credentials,
            &live.limits,
            &server,
            auth,
            // [MQTT-3.1.3-6]: the server assigns a unique id.
            || format!("roost-{:016x}", rand_id(connection_id)).into(),
            |user, client, topic| may_publish(&live, user, client, topic),
        );
        self.phase = Phase::Connecting;
        match verdict {
            Verdict::Accept(accepted) => self.register(accepted, connect, ctx),
            Verdict::Refuse(refusal) => {
                let counter = match refusal.kind() {
                    RefusalKind::Identifier => None,
                    RefusalKind::Limit => Some(&self.shared.metrics.limits_refused),
                    RefusalKind::Auth => Some(&self.shared.metrics.auth_failures),
                    RefusalKind::Acl => Some(&self.shared.metrics.acl_denied),
                    RefusalKind::Unavailable => Some(&self.shared.metrics.unavailable_refused),
                };
                if let Some(counter) = counter {
                    Metrics::inc(counter);
                }
                if CONNECT_REFUSALS.allow() {
                    self.log_refusal(&refusal, &connect, &live);
                }
                // A redirection names the server (section 4.11).
                let properties = match &refusal {
                    connect::Refusal::Redirected { reference, .. } => Some(Box::new(Properties {
                        server_reference: Some(ByteString::from(&**reference)),
                        ..Properties::default()
                    })),
                    _ => None,
                };
                self.refuse_with(refusal.code(), refusal.reason(), properties, ctx)
            }
            Verdict::VerifyPassword => {
                // PBKDF2 and argon2 are slow on purpose: checked off the actor
                // thread, in turn (see `verifier`). `wait` holds the client's
                // later packets back meanwhile; the connect timeout still
                // applies (the actor's own timer cannot fire during a wait).
                let Some(passwords) = live.auth.passwords.clone() else {
                    let code = ConnectReturnCode::NotAuthorized;
                    return self.refuse(code, code.into(), ctx);
                };
                let user = connect.username.as_deref().unwrap_or_default().to_string();
                let password = connect.password.as_deref().unwrap_or_default().to_vec();
                let verifier = self.shared.verifier.clone();
                let timeout = Duration::from_secs(live.limits.connect_timeout_secs);
                let check = tokio::time::timeout(timeout, async move {
                    verifier.verify(passwords, user, password).await
                });
                ctx.wait(check.into_actor(self).map(move |checked, act, ctx| match checked {
                    Ok(valid) => act.on_connect(connect, Credentials::Password { valid }, live, ctx),
                    Err(_) => {
                        if CONNECT_REFUSALS.allow() {
                            log::warn!(
                                "{}: its password could not be checked within {} s (limits.connect_timeout_secs; many checks waiting), closing",
                                act.name(),
                                timeout.as_secs()
                            );
                        }
                        act.close(Ending::Refused, ctx);
                    }
                }));
            }
        }
    }

    /// After an accepted CONNECT: find or create the session and attach to
    /// it (it writes CONNACK).
    fn register(
        &mut self,
        mut accepted: connect::Accepted,
        connect: Connect,
        ctx: &mut Context<Self>,
    ) {
        // Kept as long as the session, apart from the CONNECT's buffer.
        accepted.client_id = crate::protocol::detached(&accepted.client_id);
        accepted.username = accepted.username.as_ref().map(crate::protocol::detached);
        self.identity = Some(Box::new(Identity {
            client_id: accepted.client_id.clone(),
            protocol: Some(connect.version),
            username: accepted.username.clone(),
            durable: accepted.durable,
            session_id: None,
        }));
        self.will = connect.will.clone().map(Box::new);
        self.keep_alive_limit = accepted.keep_alive_limit;
        // The keep-alive granted: a 5.0 client may be told a lower one.
        let keep_alive = (accepted.connack.as_ref())
            .and_then(|p| p.server_keep_alive)
            .unwrap_or(connect.keep_alive);
        let will = self.will.as_deref().cloned();
        let connack = accepted.connack.take();
        let receive_maximum = connect.properties().receive_maximum;
        let session_expiry = connect.version.is_v5().then(|| {
            (accepted.expiry).map_or(u32::MAX, |e| u32::try_from(e.as_secs()).unwrap_or(u32::MAX))
        });
        let protocol = connect.version;
        let username = accepted.username;
        // For the line once connected: what Mosquitto shows, in words.
        let version = connect.version.number();
        let clean = match connect.version.is_v5() {
            true => "clean start",
            false => "clean session",
        };
        let expiry = match connect.properties().session_expiry_interval {
            Some(secs) if connect.version.is_v5() => format!(", session expiry {secs} s"),
            _ => String::new(),
        };
        let described = format!(
            "MQTT {version}, {clean} {}{expiry}, keep-alive {keep_alive} s, {}{}",
            u8::from(connect.clean_session),
            describe_user(username.as_deref()),
            if will.is_some() { ", with a will" } else { "" }
        );
        let register = Register {
            client_id: accepted.client_id,
            // Clean Start discards the old session. A 5.0 session of
            // expiry 0 ends with its connection: a clean one here (what it
            // would resume, with Clean Start 0, is not kept).
            clean_session: connect.clean_session || !accepted.durable,
            durable: accepted.durable,
            expiry: accepted.expiry,
            arbiter: actix::Arbiter::current(),
        };
        let registry = self.shared.registry.clone();
        let me = ctx.address().recipient();
        let (connection_id, outbound) = (self.id, self.outbound.clone());
        // `wait` holds back every other packet of this client until the
        // session has written CONNACK, so nothing overtakes it.
        let attach = async move {
            let registered = match registry.send(register).await {
                Ok(Ok(registered)) => registered,
                Ok(Err(e)) => return Err(Some(e)),
                Err(_) => return Err(None),
            };
            let attach = Attach {
                connection_id,
                keep_alive,
                protocol,
                will,
                connack,
                receive_maximum,
                session_expiry,
                connection: me,
                outbound,
                session_present: registered.session_present,
                generation: registered.generation,
                username,
            };
            match registered.session.send(attach).await {
                Ok(Ok(())) => Ok((
                    registered.session,
                    registered.session_id,
                    registered.session_present,
                )),
                _ => Err(None),
            }
        };
        ctx.wait(
            attach
                .into_actor(self)
                .map(move |session, act, ctx| match session {
                    Ok((session, session_id, present)) => {
                        if let Some(identity) = act.identity.as_mut() {
                            identity.session_id = Some(session_id);
                        }
                        let resumed = if present { ", session resumed" } else { "" };
                        log::info!("{} connected: {described}{resumed}", act.name());
                        Metrics::inc(&act.shared.metrics.clients_connected);
                        if let Some(protocol) = act.protocol() {
                            Metrics::inc(
                                &act.shared.metrics.clients_connected_by_protocol[protocol.index()],
                            );
                        }
                        act.phase = Phase::Connected { session };
                        // The connect timeout has nothing left to check.
                        if let Some(timer) = act.connect_timer.take() {
                            ctx.cancel_future(timer);
                        }
                        if let Some(limit) = act.keep_alive_limit {
                            act.schedule_keep_alive(limit, ctx);
                        }
                    }
                    Err(Some(e @ RegistryError::TooManyPersistentSessions { .. })) => {
                        Metrics::inc(&act.shared.metrics.unavailable_refused);
                        let code = ConnectReturnCode::ServerUnavailable;
                        let reason = ReasonCode::QUOTA_EXCEEDED;
                        if CONNECT_REFUSALS.allow() {
                            log::warn!(
                                "{}: CONNECT refused with CONNACK {}: {e}",
                                act.name(),
                                act.describe_refusal(code, reason)
                            );
                        }
                        act.refuse(code, reason, ctx);
                    }
                    Err(_) => {
                        log::info!("{}: session was taken over while connecting", act.name());
                        act.phase = Phase::Closed;
                        act.close(Ending::TakenOver, ctx);
                    }
                }),
        );
    }
}

/// `user "alice"`, or `no user name`.
pub(super) fn describe_user(user: Option<&str>) -> String {
    match user {
        Some(user) => format!("user {user:?}"),
        None => "no user name".to_string(),
    }
}
