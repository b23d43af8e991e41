pub mod director;
pub mod xdp;
pub mod arp;
