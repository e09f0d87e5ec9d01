//! The actors of one client: the [`connection`] (its socket: framing,
//! keep-alive, CONNECT rules; every close for a violation decided in
//! [`close`]) and the [`session`] (its state:
//! subscriptions, in-flight window, queue; outlives the connection when
//! persistent), and the [`registry`] that maps a client id to its session
//! and decides takeover. The decisions themselves are pure and live outside
//! the actors: CONNECT acceptance in `session::connect`, SUBSCRIBE
//! acceptance and the delivery rules in `session::SessionState`.

pub mod close;
pub mod connection;
pub mod messages;
pub mod registry;
pub mod session;
pub mod verifier;
