//! Running and watching the broker: the supervision tree and the order it
//! starts in ([`tree`]), the restart policy and panic guard every actor
//! runs under ([`restart`]), the counters every actor bumps ([`metrics`]),
//! the limit on warnings clients can cause again and again ([`log_limit`]),
//! and the two ways an operator reads them: Prometheus ([`prometheus`]) and
//! `$SYS` topics ([`sys`]).

pub mod log_limit;
pub mod metrics;
pub mod prometheus;
pub mod restart;
pub mod sys;
pub mod tree;
