//! Routing: from a published message to every session whose subscription
//! matches it, and the retained messages. The [`router`] applies the
//! sharding rule of `routing::shard` to pick one [`topic_shard`]; the shard
//! pushes a delivery into each matching session's [`delivery_inbox`]; the
//! [`retained`] store keeps the last retained message of every topic.

pub mod delivery_inbox;
pub mod messages;
pub mod retained;
pub mod router;
pub mod topic_shard;
