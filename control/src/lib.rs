//! Headroom control plane.

pub mod allocator;
pub mod exchange;
pub mod health;
pub mod procsched;
pub mod sim;
