//! Integration tests: one binary, one module per feature. Each test starts
//! a real broker on 127.0.0.1:0 (see `common`). Raw-byte tests build their
//! packets in `common::raw`, independently of `roost::protocol`; the flow
//! tests use the rumqttc client crate.

mod common;

mod abuse;
mod acl;
mod auth;
mod cli;
mod connect;
mod crash;
mod flows;
mod keepalive;
mod layout;
mod limits;
mod malformed;
mod metrics;
mod operator;
mod persistence;
mod publish;
mod retained;
mod sessions;
mod startup;
#[cfg(feature = "fault-injection")]
mod store_faults;
mod subscribe;
#[cfg(feature = "fault-injection")]
mod supervision;
mod sys;
mod tls;
mod v5;
mod v5_properties;
mod websocket;
mod will;
