//! Headroom control plane.

pub mod procsched;
