//! Headroom control plane.
pub mod exchange;
pub mod sim;
