pub mod acl;
pub mod auth;
pub mod broker;
pub mod config;
pub mod protocol;
pub mod routing;
pub mod session;

pub use broker::{start, BrokerHandle};
pub use config::Config;
pub mod store;
