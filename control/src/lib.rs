//! Headroom control plane.

pub mod allocator;
pub mod exchange;
pub mod goal;
pub mod health;
pub mod policy;
pub mod procsched;
pub mod sim;
pub mod triggers;
