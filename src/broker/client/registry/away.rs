//! While a persistent session's client is away: how long the session is
//! kept (its expiry), and a will waiting for its delay (MQTT 5.0).

use super::{Entry, Held, SessionRegistry};
use crate::broker::client::messages::{DelayWill, SetExpiry};
use crate::broker::ops::metrics::Metrics;
use crate::store::Op;
use actix::prelude::*;
use bytestring::ByteString;
use std::cmp::Reverse;
use std::time::{Duration, Instant};

impl SessionRegistry {
    /// Sets how long `client_id`'s session is kept asleep.
    pub(super) fn set_expiry(&mut self, client_id: &ByteString, expiry: Option<Duration>) {
        if let Some(entry) = self.sessions.get_mut(client_id) {
            entry.expiry = expiry;
        }
    }

    /// Publishes the delayed will of `client_id`, if one waits: its delay
    /// passed, or its session ended.
    pub(super) fn publish_delayed_will(&mut self, client_id: &ByteString) {
        if let Some((_, will)) = self.delayed_wills.remove(client_id) {
            log::info!("client {client_id:?}: delayed will published");
            Metrics::inc(&self.deps.metrics.wills_published);
            self.deps.router.publish(will, None, None);
        }
    }

    /// Removes the sleeping sessions whose time is up, and publishes the
    /// delayed wills whose delay passed.
    pub(super) fn expire(&mut self) {
        let now = Instant::now();
        let due: Vec<ByteString> = (self.delayed_wills.iter())
            .filter(|(_, (at, _))| *at <= now)
            .map(|(client_id, _)| client_id.clone())
            .collect();
        for client_id in due {
            self.publish_delayed_will(&client_id);
        }
        while let Some(Reverse((at, session_id, _))) = self.expiries.peek() {
            if *at > now {
                break;
            }
            let (at, session_id) = (*at, *session_id);
            let Some(Reverse((_, _, client_id))) = self.expiries.pop() else {
                break;
            };
            let still = self.sessions.get(&client_id).is_some_and(|e| {
                e.session_id == session_id
                    && matches!(&e.held, Held::Asleep(d) if d.expires_at == Some(at))
            });
            if !still {
                continue;
            }
            if let Some(Entry {
                held: Held::Asleep(dormant),
                ..
            }) = self.remove(&client_id)
            {
                log::info!("client {client_id:?}: persistent session expired");
                Metrics::inc(&self.deps.metrics.sessions_expired);
                // The session ends before the will's delay: published now.
                self.publish_delayed_will(&client_id);
                self.remove_asleep(&client_id, session_id, *dormant);
            }
        }
    }
}

impl Handler<SetExpiry> for SessionRegistry {
    type Result = ();

    fn handle(&mut self, msg: SetExpiry, _: &mut Context<Self>) {
        let secs =
            (msg.expiry).map_or(u32::MAX, |e| u32::try_from(e.as_secs()).unwrap_or(u32::MAX));
        self.deps.store.write(
            Op::SessionExpiry {
                client_id: msg.client_id.clone(),
                secs,
            },
            None,
        );
        self.set_expiry(&msg.client_id, msg.expiry);
    }
}

impl Handler<DelayWill> for SessionRegistry {
    type Result = ();

    fn handle(&mut self, msg: DelayWill, _: &mut Context<Self>) {
        let at = Instant::now() + msg.delay;
        self.delayed_wills.insert(msg.client_id, (at, msg.will));
    }
}
