//! # Acknowledged only after commit
//!
//! The promise: roost sends PUBACK or PUBREC for a QoS 1/2 PUBLISH only
//! once every copy of it stored for a persistent session, and any retained
//! change it makes, is committed to SQLite; SUBACK and UNSUBACK of a
//! persistent session only once the subscriptions are committed; a PUBLISH
//! or PUBREL of a persistent session's QoS 2 handshake only once its step
//! is committed. If a commit fails, nothing that waited for it is sent, and
//! the store commits it again until it succeeds: what waits for it waits
//! longer, and nothing is sent before it is stored. So kill -9 at any
//! moment loses nothing that roost acknowledged.
//!
//! How it is kept, in this folder (the SQL layer below it only holds each
//! write's completion opaquely, in `store::Batch`, and drops them in the
//! order the writes arrived once their transaction has committed):
//! - [`completion`]: a reference-counted callback that runs when the last
//!   holder lets go, and [`InOrder`], which releases a client's
//!   acknowledgements in the order of its packets [MQTT-4.6.0-2]
//!   [MQTT-4.6.0-3];
//! - [`reply`]: the packet a completion sends ([`Reply`]), and what a
//!   session holds back behind a commit ([`HeldForCommit`]);
//! - [`group`]: writes from several actors that commit in one transaction
//!   (an inbound QoS 2 id and its copies: [`WriteGroup`]), and a
//!   publisher's [`Acknowledgement`] on its way through routing;
//! - [`store`]: the Store actor, which commits writes in groups (many
//!   messages per transaction) and, after each commit, releases its
//!   completions in arrival order; a failed commit is kept and tried again
//!   until it succeeds, and every later one waits behind it. It also owns
//!   the queues of persistent sessions, which sessions read a page at a
//!   time ([`PageIn`]).
//!
//! The pure state machine says which packet waits for which change
//! (`session::Action::Sent` and `Inbound` with `then`); the actors hand
//! both to this module.

pub mod completion;
pub mod group;
pub mod reply;
pub mod store;

pub use completion::{Completion, InOrder};
pub use group::{Acknowledgement, GroupLinks, WriteGroup};
pub use reply::{HeldForCommit, Reply};
pub use store::{
    Flush, LoadRetained, MoreQueued, Page, PageIn, QueueSettings, Store, StoreHandle, WriteInbox,
};
