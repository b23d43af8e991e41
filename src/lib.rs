//! Headroom: the daemon, its control protocol, and the namespace lab used by
//! the demo, the system tests and the benchmarks.

pub mod ctl;
pub mod daemon;
pub mod lab;
pub mod status;
