//! Headroom control plane.
pub mod allocator;
