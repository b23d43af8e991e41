//! Headroom dataplane: the XDP steering program, AF_XDP workers and the
//! per-packet logic they run.

pub mod arp;
pub mod classifier;
pub mod clock;
pub mod director;
pub mod frame;
pub mod pacer;
pub mod packet;
pub mod pipeline;
pub mod response;
pub mod worker;
pub mod xdp;
