//! Headroom: the daemon's runtime (the I/O around the agent) and its control
//! protocol.

pub mod cli;
pub mod console;
pub mod ctl;
pub mod daemon;
pub mod dataplane;
pub mod error_report;
pub mod fast_path;
pub mod history;
pub mod instance_lock;
pub mod logging;
pub mod metrics;
pub mod packet;
pub mod service;
pub mod vip_guard;

/// The status model (assembled by the agent).
pub use headroom_agent::status;
