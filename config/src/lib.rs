//! Headroom configuration.
