//! The handle every actor uses to publish and subscribe: it applies the
//! sharding rule of `routing::shard` to pick the `TopicShard`s, and sends
//! retained publishes to the `RetainedStore`. Cheap to clone.

use super::delivery_inbox::InboxHandle;
use super::messages::{AddSubscription, RemoveSubscription, Retain, Route, SessionId};
use super::retained::RetainedStore;
use super::topic_shard::TopicShard;
use crate::broker::durable::{Acknowledgement, Completion};
use crate::broker::net::backlog::BacklogToken;
use crate::message::Message;
use crate::protocol::{QoS, TopicFilter};
use crate::routing::{FilterShards, ShardRule};
use actix::Addr;
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
        if message.retain {
            self.retained.do_send(Retain {
                message: message.clone(),
                ack: ack.clone(),
                backlog: backlog.as_ref().map(BacklogToken::another),
            });
        }
        let shard = self.rule.shard_for_topic(message.topic.as_str());
        self.shards[shard].do_send(Route {
            message,
            backlog,
            ack,
        });
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
        qos: QoS,
        durable: bool,
        indexed: Option<&Completion>,
    ) {
        self.for_shards(filter, |shard| {
            shard.do_send(AddSubscription {
                session_id,
                session: session.clone(),
                filter: filter.clone(),
                qos,
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
