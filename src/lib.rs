pub mod protocol;
pub mod routing;
pub mod session;
