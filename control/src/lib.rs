//! Headroom control plane.
pub mod exchange;
