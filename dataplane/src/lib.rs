pub mod classifier;
pub mod packet;
pub mod xdp;
