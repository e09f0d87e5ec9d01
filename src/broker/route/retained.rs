//! RetainedStore: the last retained message of every topic, indexed by
//! topic levels so that a wildcard subscribe walks only matching branches.
//! Every change is written to the store; a QoS ≥ 1 publisher is
//! acknowledged once it is committed. Loaded from the store at start.
//!
//! Bounded by `limits.max_retained_messages` and `max_retained_bytes`: a
//! retained PUBLISH that would take the store beyond either is delivered
//! to subscribers as usual but not retained (the topic keeps what it had),
//! counted and logged. Clearing a topic always works; `$SYS` topics, the
//! broker's own, are not counted.

use super::messages::{LookupRetained, Retain, RetainedMatches};
use crate::broker::durable::{GroupLinks, LoadRetained, StoreHandle};
use crate::broker::live::Live;
use crate::broker::ops::log_limit::RETAINED_REFUSALS;
use crate::broker::ops::metrics::Metrics;
use crate::broker::ops::restart::{guard, ActorKind, Rebuild, RestartTracker};
use crate::message::{unix_now, Message};
use crate::routing::TopicTree;
use crate::store::Op;
use actix::prelude::*;
use std::sync::Arc;

pub struct RetainedStore {
    tree: TopicTree<Message>,
    /// Topics of `tree` that count against the bounds (not `$SYS`), and
    /// their bytes (topic and payload).
    counted: usize,
    bytes: usize,
    /// The bounds (`[limits]`, reloaded on SIGHUP).
    live: Live,
    store: StoreHandle,
    restarts: Arc<RestartTracker>,
    /// Where the count of retained topics is kept for `$SYS` and `/metrics`.
    metrics: Arc<Metrics>,
    /// Topics whose last change is in a QoS 2 publisher's `WriteGroup`
    /// still gathering: a later change of the topic follows it.
    links: GroupLinks<crate::protocol::TopicName>,
}

/// Whether a retained topic is the broker's own (`$SYS`): not written to
/// the store, not counted against the bounds.
fn is_sys(topic: &crate::protocol::TopicName) -> bool {
    topic.as_str().starts_with("$SYS/")
}

/// The index of `retained`, their count and their bytes (`$SYS` is never
/// stored).
fn tree_of(retained: Vec<Message>) -> (TopicTree<Message>, usize, usize) {
    let mut tree = TopicTree::new();
    let mut bytes = 0;
    for m in retained {
        let topic = m.topic.clone();
        bytes += m.size();
        tree.insert(&topic, m);
    }
    let count = tree.len();
    (tree, count, bytes)
}

impl RetainedStore {
    pub fn new(
        retained: Vec<Message>,
        store: StoreHandle,
        restarts: Arc<RestartTracker>,
        metrics: Arc<Metrics>,
        live: Live,
    ) -> RetainedStore {
        let (tree, counted, bytes) = tree_of(retained);
        let store = RetainedStore {
            tree,
            counted,
            bytes,
            live,
            links: GroupLinks::default(),
            store,
            restarts,
            metrics,
        };
        store.count();
        store
    }

    /// Whether a message of `size` bytes may replace one of `old` bytes (or,
    /// `None`, become a new retained topic) within the bounds.
    fn has_room(&self, old: Option<usize>, size: usize) -> bool {
        let live = self.live.load();
        let (max_count, max_bytes) = (
            live.limits.max_retained_messages,
            live.limits.max_retained_bytes,
        );
        let count_ok = old.is_some() || max_count == 0 || self.counted < max_count;
        let bytes_ok = max_bytes == 0 || self.bytes - old.unwrap_or(0) + size <= max_bytes;
        count_ok && bytes_ok
    }

    /// Updates the gauge of retained topics.
    fn count(&self) {
        self.metrics
            .retained_messages
            .store(self.tree.len() as u64, std::sync::atomic::Ordering::Relaxed);
    }

    /// `backlog`, the publisher's token, is dropped when this returns.
    fn retain(
        &mut self,
        Retain {
            message,
            ack,
            backlog: _backlog,
        }: Retain,
    ) {
        let topic = message.topic.clone();
        let sys = is_sys(&topic);
        let op = if message.payload.is_empty() {
            if let Some(old) = self.tree.remove(&message.topic).filter(|_| !sys) {
                self.counted -= 1;
                self.bytes -= old.size();
            }
            Op::ClearRetained {
                topic: message.topic,
            }
        } else {
            let old = self.tree.get(&topic).map(Message::size);
            if !sys && !self.has_room(old, message.size()) {
                Metrics::inc(&self.metrics.retained_refused);
                if RETAINED_REFUSALS.allow() {
                    log::warn!(
                        "retained message on {:?} not kept: limits.max_retained_messages or max_retained_bytes reached ({} messages, {} bytes); it was delivered",
                        topic.as_str(),
                        self.counted,
                        self.bytes
                    );
                }
                // The publisher's acknowledgement, if any, goes out now.
                return;
            }
            if !sys {
                self.counted += usize::from(old.is_none());
                self.bytes = self.bytes - old.unwrap_or(0) + message.size();
            }
            // Kept until replaced: apart from the publisher's read buffer.
            let message = message.detached();
            let op = Op::SetRetained {
                topic: message.topic.clone(),
                payload: message.payload.clone(),
                qos: message.qos,
                properties: message.properties.clone(),
            };
            self.tree.insert(&topic, message);
            op
        };
        if sys {
            // `$SYS` topics are the broker's own, refreshed every interval:
            // kept in memory only.
            return;
        }
        match ack {
            Some(ack) if ack.group.is_some() => {
                // Two QoS 2 changes of one topic may finish routing in
                // either order: the later change's group waits behind the
                // earlier one's, so the store keeps the later value.
                if let (Some(group), Some(earlier)) = (&ack.group, self.links.open(&topic)) {
                    group.after(earlier);
                }
                if let Some(link) = ack.write(&self.store, op, None) {
                    self.links.remember(topic, link);
                }
            }
            // Behind an earlier change of the topic still in a group.
            ack => {
                let completion = ack.map(|a| a.completion);
                self.links.write(&self.store, &topic, op, completion);
            }
        }
    }
}

impl Actor for RetainedStore {
    type Context = Context<Self>;

    fn started(&mut self, _: &mut Context<Self>) {
        log::debug!("{} retained messages loaded", self.tree.len());
    }
}

impl Supervised for RetainedStore {
    /// Reloads every retained message from SQLite (after the writes already
    /// sent have committed); messages arriving meanwhile wait.
    fn restarting(&mut self, ctx: &mut Context<Self>) {
        self.restarts.record(ActorKind::RetainedStore);
        self.reload(ctx);
    }
}

impl Handler<Rebuild> for RetainedStore {
    type Result = ();

    fn handle(&mut self, _: Rebuild, ctx: &mut Context<Self>) {
        self.reload(ctx);
    }
}

impl RetainedStore {
    fn reload(&mut self, ctx: &mut Context<Self>) {
        let started = std::time::Instant::now();
        ctx.wait(self.store.addr().send(LoadRetained).into_actor(self).map(
            move |loaded, act, _| match loaded {
                Ok(messages) => {
                    (act.tree, act.counted, act.bytes) = tree_of(messages);
                    act.count();
                    log::warn!(
                        "retained store restarted: {} messages reloaded in {} ms",
                        act.tree.len(),
                        started.elapsed().as_millis()
                    );
                }
                Err(e) => log::error!("retained store restarted but could not reload: {e}"),
            },
        ));
    }
}

impl Handler<Retain> for RetainedStore {
    type Result = ();

    /// A retained PUBLISH replaces the topic's message; a zero-length payload
    /// removes it [MQTT-3.3.1-10] [MQTT-3.3.1-11].
    fn handle(&mut self, msg: Retain, ctx: &mut Context<Self>) {
        if guard::<Retain, _>(ActorKind::RetainedStore, &"", || self.retain(msg)).is_err() {
            ctx.stop();
        }
        self.count();
    }
}

impl Handler<LookupRetained> for RetainedStore {
    type Result = RetainedMatches;

    fn handle(&mut self, msg: LookupRetained, ctx: &mut Context<Self>) -> RetainedMatches {
        let tree = &self.tree;
        let now = unix_now();
        let found = guard::<LookupRetained, _>(ActorKind::RetainedStore, &"", || {
            let mut found = RetainedMatches::default();
            tree.for_each_match(&msg.filter, |m| {
                // An expired retained message is not sent [MQTT-3.3.2-5];
                // it stays until replaced (its topic is not written for it).
                if m.expired(now) {
                    found.expired += 1;
                    return;
                }
                match found.messages.len() < msg.room {
                    true => found.messages.push(m.clone()),
                    false => found.skipped += 1,
                }
            });
            found
        });
        found.unwrap_or_else(|_| {
            ctx.stop();
            RetainedMatches::default()
        })
    }
}
