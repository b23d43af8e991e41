//! Headroom configuration.

pub mod process;
