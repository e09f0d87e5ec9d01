//! TopicShard: one partition of the subscription index (see
//! `routing::shard` for which subscriptions live where). Routes each
//! published message to the matching sessions, once per session at the
//! highest QoS its matching subscriptions granted [MQTT-3.3.5-1].

use super::messages::{AddSubscription, Deliver, RemoveSubscription, Route, SessionId};
use super::session::Session;
use crate::protocol::QoS;
use crate::routing::SubscriptionTrie;
use actix::prelude::*;
use ahash::AHashMap;

pub struct TopicShard {
    index: usize,
    trie: SubscriptionTrie<SessionId>,
    /// Each subscribed session: its address, how many of its filters live
    /// here, and whether it is durable.
    sessions: AHashMap<SessionId, (Addr<Session>, usize, bool)>,
    /// Reused for every route, so routing allocates nothing per message.
    matches: Vec<(SessionId, QoS)>,
}

impl TopicShard {
    pub fn new(index: usize) -> TopicShard {
        TopicShard { index, trie: SubscriptionTrie::new(), sessions: AHashMap::new(), matches: Vec::new() }
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

impl Supervised for TopicShard {}

impl Handler<AddSubscription> for TopicShard {
    type Result = ();

    fn handle(&mut self, msg: AddSubscription, _: &mut Context<Self>) {
        if self.trie.insert(&msg.filter, msg.session_id, msg.qos) {
            self.sessions.entry(msg.session_id).or_insert_with(|| (msg.session, 0, msg.durable)).1 += 1;
        }
    }
}

impl Handler<RemoveSubscription> for TopicShard {
    type Result = ();

    fn handle(&mut self, msg: RemoveSubscription, _: &mut Context<Self>) {
        if self.trie.remove(&msg.filter, msg.session_id) {
            if let Some(entry) = self.sessions.get_mut(&msg.session_id) {
                entry.1 -= 1;
                if entry.1 == 0 {
                    self.sessions.remove(&msg.session_id);
                }
            }
        }
    }
}

impl Handler<Route> for TopicShard {
    type Result = ();

    fn handle(&mut self, Route { message, backlog, ack }: Route, _: &mut Context<Self>) {
        let matches = &mut self.matches;
        matches.clear();
        self.trie.for_each_match(&message.topic, |id, qos| matches.push((id, qos)));
        if matches.len() > 1 {
            // One copy per session at the highest granted QoS: sort by
            // session, highest QoS first, keep the first of each session.
            matches.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
            matches.dedup_by_key(|m| m.0);
        }
        for &(id, qos) in matches.iter() {
            if let Some((session, _, durable)) = self.sessions.get(&id) {
                let ack = if *durable && qos.min(message.qos) != QoS::AtMostOnce { ack.clone() } else { None };
                session.do_send(Deliver { message: message.clone(), qos, ack });
            }
        }
        // Routed: the publisher may send one more, and is acknowledged now
        // unless a durable copy holds the acknowledgement.
        drop(backlog);
        drop(ack);
    }
}
