//! Headroom control plane.

pub mod allocator;
pub mod health;
pub mod procsched;
