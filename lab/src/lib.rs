//! The namespace lab: servers built and deployed like real ones, a switch,
//! clients, traffic helpers and the one server configuration, shared by the
//! system tests, the examples, the benchmarks and the demo
//! (`headroom-lab`). Nothing of the daemon depends on it.

mod arp;
mod config;
mod forward;
mod ns;
mod topology;
pub mod traffic;

pub use arp::{arp_probe, mac_of};
pub use config::{gold_bronze_policy, ServerConfig};
pub use forward::{forward_tcp, Forward};
pub use ns::{run, run_in_ns, sysctl};
pub use topology::{
    client_ip, server_ip, Client, Lab, LabBuilder, LabOptions, Server, INNER, NIC, PREFIX,
};

/// Errors building or driving a lab.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// A command could not be started.
    #[error("running {cmd}: {source}")]
    Spawn {
        /// The command line.
        cmd: String,
        /// Why.
        source: std::io::Error,
    },
    /// A command exited with an error.
    #[error("{cmd} failed ({status}): {stderr}")]
    Failed {
        /// The command line.
        cmd: String,
        /// Exit status.
        status: String,
        /// Its standard error.
        stderr: String,
    },
}
