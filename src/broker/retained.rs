//! RetainedStore: the last retained message of every topic, indexed by
//! topic levels so that a wildcard subscribe walks only matching branches.

use super::messages::{DeliverRetained, LookupRetained, Retain, RetainedCount};
use crate::routing::TopicTree;
use crate::session::Message;
use actix::prelude::*;

#[derive(Default)]
pub struct RetainedStore {
    tree: TopicTree<Message>,
}

impl Actor for RetainedStore {
    type Context = Context<Self>;
}

impl Supervised for RetainedStore {}

impl Handler<Retain> for RetainedStore {
    type Result = ();

    /// A retained PUBLISH replaces the topic's message; a zero-length payload
    /// removes it [MQTT-3.3.1-10] [MQTT-3.3.1-11].
    fn handle(&mut self, Retain(message): Retain, _: &mut Context<Self>) {
        if message.payload.is_empty() {
            self.tree.remove(&message.topic);
        } else {
            let topic = message.topic.clone();
            self.tree.insert(&topic, message);
        }
    }
}

impl Handler<LookupRetained> for RetainedStore {
    type Result = ();

    fn handle(&mut self, msg: LookupRetained, _: &mut Context<Self>) {
        let mut messages = Vec::new();
        self.tree.for_each_match(&msg.filter, |m| messages.push(m.clone()));
        if !messages.is_empty() {
            msg.session.do_send(DeliverRetained { messages, qos: msg.qos });
        }
    }
}

impl Handler<RetainedCount> for RetainedStore {
    type Result = usize;

    fn handle(&mut self, _: RetainedCount, _: &mut Context<Self>) -> usize {
        self.tree.len()
    }
}
