//! SessionRegistry: client id → Session. Decides, for each CONNECT, whether
//! the client resumes its persistent session or starts a fresh one, and
//! whether CONNACK says "session present".

use super::messages::*;
use super::metrics::Metrics;
use super::router::Router;
use super::session::Session;
use crate::session::SessionLimits;
use actix::prelude::*;
use ahash::AHashMap;
use bytestring::ByteString;
use std::sync::Arc;

struct Entry {
    session_id: SessionId,
    session: Addr<Session>,
    clean: bool,
    generation: u64,
}

pub struct SessionRegistry {
    sessions: AHashMap<ByteString, Entry>,
    next_session_id: SessionId,
    limits: SessionLimits,
    router: Router,
    metrics: Arc<Metrics>,
}

impl SessionRegistry {
    pub fn new(limits: SessionLimits, router: Router, metrics: Arc<Metrics>) -> SessionRegistry {
        SessionRegistry { sessions: AHashMap::new(), next_session_id: 1, limits, router, metrics }
    }
}

impl Actor for SessionRegistry {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(1024);
    }
}

impl Supervised for SessionRegistry {}

impl Handler<Register> for SessionRegistry {
    type Result = Result<Registered, RegistryError>;

    fn handle(&mut self, msg: Register, ctx: &mut Context<Self>) -> Self::Result {
        let mut generation = 1;
        if let Some(entry) = self.sessions.get_mut(&msg.client_id) {
            entry.generation += 1;
            generation = entry.generation;
            if !entry.clean && !msg.clean_session {
                // Resume the persistent session [MQTT-3.1.2-4]; session present [MQTT-3.2.2-2].
                return Ok(Registered { session: entry.session.clone(), session_present: true, generation });
            }
            // Clean session 1 discards any previous session [MQTT-3.1.2-6], and a
            // clean session ends with its connection anyway.
            entry.session.do_send(Discard);
        }
        let session_id = self.next_session_id;
        self.next_session_id += 1;
        let (client_id, clean, limits) = (msg.client_id.clone(), msg.clean_session, self.limits);
        let (router, registry, metrics) = (self.router.clone(), ctx.address(), self.metrics.clone());
        let session = Session::start_in_arbiter(&msg.arbiter, move |_| {
            Session::new(session_id, client_id, clean, limits, router, registry, metrics)
        });
        self.sessions.insert(
            msg.client_id,
            Entry { session_id, session: session.clone(), clean: msg.clean_session, generation },
        );
        // A new session, or a clean one: session present is 0 [MQTT-3.2.2-1] [MQTT-3.2.2-3].
        Ok(Registered { session, session_present: false, generation })
    }
}

impl Handler<SessionEnded> for SessionRegistry {
    type Result = ();

    fn handle(&mut self, msg: SessionEnded, _: &mut Context<Self>) {
        if self.sessions.get(&msg.client_id).is_some_and(|e| e.session_id == msg.session_id) {
            self.sessions.remove(&msg.client_id);
        }
    }
}
