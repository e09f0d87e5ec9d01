//! A client's session as a pure state machine: subscriptions, the outbound
//! in-flight window with its packet ids, the offline queue, and the inbound
//! QoS 2 ids awaiting PUBREL. No actors, sockets or clocks here: the
//! `broker::client::session` actor feeds events in and sends the packets
//! that come out. A session is not a connection: it outlives its connection
//! when the client asked for a persistent session (clean session 0).
//!
//! Also pure, and beside it: whether a CONNECT is accepted, and what it
//! does to an existing session ([`connect`]).

mod action;
pub mod connect;
mod limits;
mod map;
mod packet_ids;
mod pager;
mod state;
mod subscriptions;

pub use action::{Action, DeliverOutcome, Inflight, MessageId, OutboundState, Paged, Queued};
pub use limits::SessionLimits;
pub use map::SharedSeedMap;
pub use pager::READ_AHEAD;
pub use state::SessionState;
pub use subscriptions::{Granted, SubscribeOutcome, SubscribeRefusal, Subscription, Subscriptions};
