//! Headroom control plane.
