pub mod director;
pub mod xdp;
