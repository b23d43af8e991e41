//! Headroom performance tooling: packet generator (AF_XDP and XDP
//! live-frames engines), sink, raw AF_XDP forwarder baseline, lab topology
//! and the benchmark runner.

pub mod bench;
pub mod bpf;
pub mod cli;
pub mod hist;
pub mod netdev;
pub mod packet;
pub mod pktgen;
pub mod plot;
pub mod sched;
pub mod signal;
pub mod sink;
pub mod slowhttp;
pub mod topo;
pub mod xdpfwd;
pub mod xsk;
