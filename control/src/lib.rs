//! Headroom control plane.
pub mod health;
