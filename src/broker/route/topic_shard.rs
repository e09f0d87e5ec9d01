//! TopicShard: one partition of the subscription index (see
//! `routing::shard` for which subscriptions live where). Routes each
//! published message to the matching sessions, once per session at the
//! highest QoS its matching subscriptions granted [MQTT-3.3.5-1].
//!
//! Restart: the trie is rebuilt from `sessions`, the plain per-session list
//! of filters kept beside it (fields survive an actix restart; the trie is
//! the structure a failure could have left half-changed).

use super::delivery_inbox::{drop_delivery, Delivery, DrainsHeldBack, InboxHandle};
use super::messages::{AddSubscription, RemoveSubscription, Route, RouteMany, SessionId};
use crate::broker::durable::{StoreHandle, WriteGroup};
use crate::broker::net::outbound::WakesHeldBack;
use crate::broker::ops::restart::{guard, ActorKind, Rebuild, RestartTracker};
use crate::protocol::{QoS, TopicFilter};
use crate::routing::{Grant, SubscriptionTrie};
use crate::store::Op;
use actix::prelude::*;
use ahash::AHashMap;
use smallvec::SmallVec;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

struct Subscriber {
    session: InboxHandle,
    durable: bool,
    /// Its filters in this shard (most sessions have one: kept inline).
    filters: SmallVec<[(TopicFilter, Grant); 1]>,
}

pub struct TopicShard {
    index: usize,
    trie: SubscriptionTrie<SessionId>,
    /// Each subscribed session with its filters in this shard: the source
    /// the trie is rebuilt from.
    sessions: AHashMap<SessionId, Subscriber>,
    /// Reused for every route, so routing allocates nothing per message.
    matches: Vec<(SessionId, Grant)>,
    restarts: Arc<RestartTracker>,
    /// Where the durable copies of one publish go, as one group.
    store: StoreHandle,
    /// Numbers the messages routed to persistent sessions (their ids in
    /// the store's log); shared by every shard.
    message_ids: Arc<AtomicU64>,
    /// Subscribed sessions that are durable: while there are none, routing
    /// does not look for durable copies.
    durable_sessions: usize,
    /// `session.queue_qos0`: QoS 0 copies for persistent sessions are
    /// stored too (for clients that are away).
    queue_qos0: bool,
}

impl TopicShard {
    pub fn new(
        index: usize,
        restarts: Arc<RestartTracker>,
        store: StoreHandle,
        message_ids: Arc<AtomicU64>,
        queue_qos0: bool,
    ) -> TopicShard {
        TopicShard {
            index,
            trie: SubscriptionTrie::new(),
            sessions: AHashMap::new(),
            matches: Vec::new(),
            restarts,
            store,
            message_ids,
            durable_sessions: 0,
            queue_qos0,
        }
    }

    /// Records a subscription in the list the trie is rebuilt from; plain
    /// map operations, done outside the guarded part.
    fn record_add(&mut self, msg: &AddSubscription) {
        let durable = &mut self.durable_sessions;
        let entry = self.sessions.entry(msg.session_id).or_insert_with(|| {
            *durable += usize::from(msg.durable);
            Subscriber {
                session: msg.session.clone(),
                durable: msg.durable,
                filters: SmallVec::new(),
            }
        });
        match entry.filters.iter_mut().find(|(f, _)| *f == msg.filter) {
            Some(existing) => existing.1 = msg.grant,
            None => entry.filters.push((msg.filter.clone(), msg.grant)),
        }
    }

    fn record_remove(&mut self, msg: &RemoveSubscription) {
        if let Some(entry) = self.sessions.get_mut(&msg.session_id) {
            entry.filters.retain(|(f, _)| *f != msg.filter);
            if entry.filters.is_empty() {
                if let Some(gone) = self.sessions.remove(&msg.session_id) {
                    self.durable_sessions -= usize::from(gone.durable);
                }
            }
        }
    }

    fn route(
        &mut self,
        Route {
            message,
            origin,
            backlog,
            mut ack,
        }: Route,
    ) {
        let matches = &mut self.matches;
        matches.clear();
        self.trie
            .for_each_match(&message.topic, |id, grant| matches.push((id, grant)));
        if origin.is_some() {
            // No Local: not back to the session that published it
            // [MQTT-3.8.3-3] (another of its subscriptions may still match).
            matches.retain(|(id, grant)| !(grant.no_local() && Some(*id) == origin));
        }
        if matches.len() > 1 {
            // One copy per session at the highest granted QoS: sort by
            // session, highest QoS first, keep the first of each session,
            // which keeps RETAIN if any of its subscriptions asks to.
            matches.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.qos().cmp(&a.1.qos())));
            matches.dedup_by(|later, kept| {
                let same = later.0 == kept.0;
                if same {
                    kept.1 = kept.1.merged(later.1);
                }
                same
            });
        }
        // Durable copies first: the message enters the store's log once,
        // with a reference for each, before any copy can be queued.
        let (published, queue_qos0) = (message.qos, self.queue_qos0);
        let stored = |s: &Subscriber, qos: QoS| {
            s.durable && (queue_qos0 || qos.min(published) != QoS::AtMostOnce)
        };
        let copies = match self.durable_sessions {
            0 => 0,
            _ => matches
                .iter()
                .filter(|(id, g)| self.sessions.get(id).is_some_and(|s| stored(s, g.qos())))
                .count() as u32,
        };
        let log_id = (copies > 0).then(|| {
            let id = self.message_ids.fetch_add(1, Ordering::Relaxed);
            // Several durable copies: the sessions add their writes to one
            // group, which reaches the store as one message instead of one
            // per copy (see `WriteGroup`).
            if let Some(ack) = ack.as_mut().filter(|a| copies >= 2 && a.group.is_none()) {
                ack.group = Some(WriteGroup::new(self.store.clone()));
            }
            let append = Op::Append {
                id,
                message: message.clone(),
                copies,
            };
            match &ack {
                Some(ack) => {
                    ack.write(&self.store, append, None);
                }
                None => self.store.write(append, None),
            }
            id
        });
        // The last copy takes the message itself: one share of its buffers
        // fewer (an atomic count each), which is every copy in a fan-in.
        let last = matches.len().saturating_sub(1);
        let mut message = Some(message);
        for (i, &(id, grant)) in matches.iter().enumerate() {
            let copy = match i == last {
                true => message.take(),
                false => message.clone(),
            };
            if let (Some(s), Some(mut message)) = (self.sessions.get(&id), copy) {
                let qos = grant.qos();
                // Forwarding clears RETAIN (3.1.1's [MQTT-3.3.1-9], 5.0's
                // [MQTT-3.3.1-12]) unless the subscription keeps it
                // [MQTT-3.3.1-13].
                message.retain &= grant.retain_as_published();
                let durable_copy = log_id.is_some() && stored(s, qos);
                let delivery = Delivery {
                    message,
                    qos,
                    ack: if durable_copy { ack.clone() } else { None },
                    log_id: if durable_copy { log_id } else { None },
                };
                if let Err(refused) = s.session.push(delivery) {
                    drop_delivery(&self.store, refused);
                }
            }
        }
        // Routed: the publisher may send one more, and is acknowledged now
        // unless a durable copy holds the acknowledgement.
        drop(backlog);
        drop(ack);
    }
}

impl Actor for TopicShard {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Routing work arrives as a burst of do_send; a larger mailbox only
        // matters for `send`, which no one uses on the hot path.
        ctx.set_mailbox_capacity(1024);
        log::debug!("topic shard {} started", self.index);
    }
}

impl Supervised for TopicShard {
    fn restarting(&mut self, _: &mut Context<Self>) {
        self.restarts.record(ActorKind::TopicShard);
        self.rebuild();
    }
}

impl Handler<Rebuild> for TopicShard {
    type Result = ();

    fn handle(&mut self, _: Rebuild, _: &mut Context<Self>) {
        self.rebuild();
    }
}

impl TopicShard {
    /// Rebuilds the trie from the per-session list of filters.
    fn rebuild(&mut self) {
        let started = std::time::Instant::now();
        self.trie = SubscriptionTrie::new();
        for (id, s) in &self.sessions {
            for (filter, grant) in &s.filters {
                self.trie.insert(filter, *id, *grant);
            }
        }
        log::warn!(
            "topic shard {} restarted: index rebuilt with {} subscriptions of {} sessions in {} ms",
            self.index,
            self.trie.len(),
            self.sessions.len(),
            started.elapsed().as_millis()
        );
    }
}

impl Handler<AddSubscription> for TopicShard {
    type Result = ();

    fn handle(&mut self, msg: AddSubscription, ctx: &mut Context<Self>) {
        // The list first: if the trie update fails, the rebuild still has it.
        self.record_add(&msg);
        let index = self.index;
        let trie = &mut self.trie;
        if guard::<AddSubscription, _>(ActorKind::TopicShard, &index, || {
            trie.insert(&msg.filter, msg.session_id, msg.grant)
        })
        .is_err()
        {
            ctx.stop();
        }
    }
}

impl Handler<RemoveSubscription> for TopicShard {
    type Result = ();

    fn handle(&mut self, msg: RemoveSubscription, ctx: &mut Context<Self>) {
        self.record_remove(&msg);
        let index = self.index;
        let trie = &mut self.trie;
        if guard::<RemoveSubscription, _>(ActorKind::TopicShard, &index, || {
            trie.remove(&msg.filter, msg.session_id)
        })
        .is_err()
        {
            ctx.stop();
        }
    }
}

impl Handler<Route> for TopicShard {
    type Result = ();

    fn handle(&mut self, msg: Route, ctx: &mut Context<Self>) {
        let index = self.index;
        if guard::<Route, _>(ActorKind::TopicShard, &index, || self.route(msg)).is_err() {
            ctx.stop();
        }
    }
}

impl Handler<RouteMany> for TopicShard {
    type Result = ();

    /// Each session is woken once, at the end, with all its deliveries
    /// waiting; the publishers' PUBACKs that routing completes are written
    /// at once, and each publisher's writer is woken once, at the end.
    fn handle(&mut self, msg: RouteMany, ctx: &mut Context<Self>) {
        let index = self.index;
        let _writers = WakesHeldBack::new();
        let _sessions = DrainsHeldBack::new();
        let routed = guard::<RouteMany, _>(ActorKind::TopicShard, &index, || {
            msg.routes.into_iter().for_each(|route| self.route(route))
        });
        if routed.is_err() {
            ctx.stop();
        }
    }
}
