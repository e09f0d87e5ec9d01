//! roost: an MQTT 3.1.1 broker on an actix actor system, with durable
//! sessions and retained messages in SQLite.
//!
//! # Layout
//!
//! The pure parts sit at the bottom and know nothing of actors, sockets or
//! SQL; `broker` puts them to work.
//!
//! - [`protocol`]: the MQTT codec, one file per packet (decode and encode
//!   side by side); topic names and filters validated once; every protocol
//!   error named after the spec statement it breaks.
//! - [`message`]: the application message the routing core carries.
//! - [`routing`]: the subscription trie, the retained index, and the
//!   sharding rule (which shard a topic or filter lives in).
//! - [`session`]: a client's session as a pure state machine (in-flight
//!   window, packet ids, queue, QoS 2 ids, subscriptions), and the pure
//!   decision on a CONNECT.
//! - [`store`]: the only place that speaks SQL: open, migrate, load, and
//!   one group commit's batch of writes, one file per table.
//! - [`config`], [`auth`] (the password file), [`acl`] (the ACL file).
//! - [`broker`]: the actors, in five rooms: `net` (sockets), `client`
//!   (connection, session, registry), `route` (router, topic shards,
//!   retained store), `durable` (the store actor and ack-after-commit),
//!   `ops` (supervision tree, restarts, metrics, `$SYS`).
//!
//! # The flow of a publish
//!
//! 1. `broker::client::connection` decodes a PUBLISH (`protocol::codec`).
//! 2. `broker::route::router` picks the one topic shard that owns the
//!    topic (`routing::shard`); a retained publish also goes to the
//!    retained store.
//! 3. The shard matches the topic against its trie and pushes one delivery
//!    into each matching session's inbox (`broker::route::delivery_inbox`).
//! 4. Each session hands its deliveries to its state machine
//!    (`session::SessionState`): sent, queued, or dropped and counted; rows
//!    of a persistent session go to the store.
//! 5. The store commits many writes in one transaction; only then are the
//!    acknowledgements that waited for them released
//!    (`broker::durable`).
//! 6. A writer task per socket writes the packets (`broker::net::outbound`).
//!
//! # Supervision
//!
//! The tree and its start order are in `broker::ops::tree`, each kind's
//! restart policy in `broker::ops::restart`.

pub mod acl;
pub mod auth;
pub mod broker;
pub mod config;
pub mod message;
pub mod protocol;
pub mod routing;
pub mod session;
pub mod store;

pub use broker::{start, BrokerHandle, Restored};
pub use config::Config;
