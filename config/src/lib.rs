//! Headroom configuration.

pub mod net;
