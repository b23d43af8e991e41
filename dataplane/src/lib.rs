pub mod pacer;
pub mod xdp;
