//! Headroom configuration.
pub mod vip;
