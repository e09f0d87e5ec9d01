//! The handle every actor uses to publish and subscribe: it applies the
//! sharding rule of `routing::shard` to pick the `TopicShard`s, and sends
//! retained publishes to the `RetainedStore`. Cheap to clone.
//!
//! Publishes made under a [`RoutesHeldBack`] (a connection's run of
//! PUBLISHes) go to their shard together, as one [`RouteMany`]: one
//! envelope and one mailbox hand-off per shard instead of one per message,
//! and when the shard runs on another worker, one wake-up of its thread.

use super::delivery_inbox::InboxHandle;
use super::messages::{AddSubscription, RemoveSubscription, Retain, Route, RouteMany, SessionId};
use super::retained::RetainedStore;
use super::topic_shard::TopicShard;
use crate::broker::durable::{Acknowledgement, Completion};
use crate::broker::held_back::{self, HeldBack};
use crate::broker::net::backlog::BacklogToken;
use crate::message::Message;
use crate::protocol::TopicFilter;
use crate::routing::{FilterShards, Grant, ShardRule};
use actix::Addr;
use std::cell::RefCell;
use std::sync::Arc;

#[derive(Clone)]
pub struct Router {
    rule: ShardRule,
    shards: Arc<[Addr<TopicShard>]>,
    retained: Addr<RetainedStore>,
}

impl Router {
    pub fn new(shards: Vec<Addr<TopicShard>>, retained: Addr<RetainedStore>) -> Router {
        Router {
            rule: ShardRule::new(shards.len()),
            shards: shards.into(),
            retained,
        }
    }

    pub fn retained(&self) -> &Addr<RetainedStore> {
        &self.retained
    }

    /// Routes a message published by a client (or a will). A retained
    /// message also updates the retained store; subscribers get RETAIN=0.
    /// `ack` is the publisher's acknowledgement: it runs once the retained
    /// change and every copy for a durable subscriber are committed.
    pub fn publish(
        &self,
        message: Message,
        backlog: Option<BacklogToken>,
        ack: Option<Acknowledgement>,
    ) {
        self.publish_from(None, message, backlog, ack)
    }

    /// [`Router::publish`] for a message a client published, from its
    /// session `origin` (for No Local).
    pub fn publish_from(
        &self,
        origin: Option<SessionId>,
        message: Message,
        backlog: Option<BacklogToken>,
        ack: Option<Acknowledgement>,
    ) {
        if message.retain {
            self.retained.do_send(Retain {
                message: message.clone(),
                ack: ack.clone(),
                backlog: backlog.as_ref().map(BacklogToken::another),
            });
        }
        let shard = self.rule.shard_for_topic(message.topic.as_str());
        let mut route = Some(Route {
            message,
            origin,
            backlog,
            ack,
        });
        let held = held_back::hold(&HELD_ROUTES, |held| {
            let route = route.take().expect("taken once");
            // Routes for one shard in a row go together; a route for
            // another shard sends what is held first, so each shard still
            // gets this publisher's messages in order.
            let full = held.pop_if(|h| h.index != shard || h.routes.len() >= MAX_HELD_ROUTES);
            match held.last_mut() {
                Some(h) => h.routes.push(route),
                None => held.push(HeldRoutes {
                    index: shard,
                    shard: self.shards[shard].clone(),
                    routes: vec![route],
                }),
            }
            full
        });
        match (held, route) {
            (Some(Some(full)), _) => full.send(),
            (None, Some(route)) => self.shards[shard].do_send(route),
            _ => {}
        }
    }

    fn for_shards(&self, filter: &TopicFilter, mut f: impl FnMut(&Addr<TopicShard>)) {
        match self.rule.shards_for_filter(filter) {
            FilterShards::One(i) => f(&self.shards[i]),
            FilterShards::All => self.shards.iter().for_each(f),
        }
    }

    /// Adds a subscription to the shards that hold it. `indexed`, if
    /// given, is held until every one of them has it.
    pub fn subscribe(
        &self,
        session_id: SessionId,
        session: &InboxHandle,
        filter: &TopicFilter,
        grant: Grant,
        durable: bool,
        indexed: Option<&Completion>,
    ) {
        self.for_shards(filter, |shard| {
            shard.do_send(AddSubscription {
                session_id,
                session: session.clone(),
                filter: filter.clone(),
                grant,
                durable,
                indexed: indexed.cloned(),
            })
        });
    }

    pub fn unsubscribe(&self, session_id: SessionId, filter: &TopicFilter) {
        self.for_shards(filter, |shard| {
            shard.do_send(RemoveSubscription {
                session_id,
                filter: filter.clone(),
            })
        });
    }
}

/// Most routes held for one shard: the shard handles a `RouteMany` as one
/// event, and its sessions wait for the whole of it.
const MAX_HELD_ROUTES: usize = 64;

/// Routes held for one shard, in the order they were made.
pub struct HeldRoutes {
    index: usize,
    shard: Addr<TopicShard>,
    routes: Vec<Route>,
}

impl HeldRoutes {
    /// Sends the routes: alone as a `Route`, several as one `RouteMany`.
    fn send(mut self) {
        match self.routes.len() {
            0 => {}
            1 => self.shard.do_send(self.routes.pop().expect("one route")),
            _ => self.shard.do_send(RouteMany {
                routes: self.routes,
            }),
        }
    }
}

thread_local! {
    /// The routes held by this thread's [`RoutesHeldBack`] (at most one
    /// shard's at a time), if one lives.
    static HELD_ROUTES: RefCell<Option<Vec<HeldRoutes>>> = const { RefCell::new(None) };
}

/// While one lives, [`Router::publish`] on this thread holds each route
/// back and sends the routes for one shard together: when a route for
/// another shard comes, when `MAX_HELD_ROUTES` are held, and when it ends
/// (also in a panic: the routes read before it are still routed). For a
/// connection's run of PUBLISHes (see `connection::runs`).
pub struct RoutesHeldBack {
    _scope: HeldBack<HeldRoutes>,
}

impl RoutesHeldBack {
    #[allow(clippy::new_without_default)] // made for a scope, not a value
    pub fn new() -> RoutesHeldBack {
        RoutesHeldBack {
            _scope: HeldBack::new(&HELD_ROUTES, HeldRoutes::send),
        }
    }
}
