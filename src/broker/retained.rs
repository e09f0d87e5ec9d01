//! RetainedStore: the last retained message of every topic, indexed by
//! topic levels so that a wildcard subscribe walks only matching branches.
//! Every change is written to the store; a QoS ≥ 1 publisher is
//! acknowledged once it is committed. Loaded from the store at start.

use super::messages::{DeliverRetained, LookupRetained, Retain, RetainedCount};
use super::store::{Store, Write};
use crate::routing::TopicTree;
use crate::session::Message;
use crate::store::Op;
use actix::prelude::*;

pub struct RetainedStore {
    tree: TopicTree<Message>,
    store: Addr<Store>,
}

impl RetainedStore {
    pub fn new(retained: Vec<Message>, store: Addr<Store>) -> RetainedStore {
        let mut tree = TopicTree::new();
        for m in retained {
            let topic = m.topic.clone();
            tree.insert(&topic, m);
        }
        RetainedStore { tree, store }
    }
}

impl Actor for RetainedStore {
    type Context = Context<Self>;

    fn started(&mut self, _: &mut Context<Self>) {
        log::info!("{} retained messages loaded", self.tree.len());
    }
}

impl Supervised for RetainedStore {}

impl Handler<Retain> for RetainedStore {
    type Result = ();

    /// A retained PUBLISH replaces the topic's message; a zero-length payload
    /// removes it [MQTT-3.3.1-10] [MQTT-3.3.1-11].
    fn handle(&mut self, Retain { message, ack }: Retain, _: &mut Context<Self>) {
        let op = if message.payload.is_empty() {
            self.tree.remove(&message.topic);
            Op::ClearRetained { topic: message.topic }
        } else {
            let op = Op::SetRetained { topic: message.topic.clone(), payload: message.payload.clone(), qos: message.qos };
            let topic = message.topic.clone();
            self.tree.insert(&topic, message);
            op
        };
        self.store.do_send(Write { op, completion: ack });
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
