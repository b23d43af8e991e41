//! Headroom control plane.

pub mod health;
pub mod procsched;
