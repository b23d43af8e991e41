//! Headroom configuration: the TOML schema, parsing and validation.
//!
//! One file configures a server: its identity, the interfaces it sits
//! between, the worker threads, jobs with their flow rules, and (as later
//! parts land) pipes, peers, VIPs and CPU policies. `config/headroom.toml`
//! documents every key. Errors name the file, the line and the field.

mod error;
mod locate;
mod schema;

pub use error::ConfigError;
pub use schema::*;

pub mod net;
pub mod process;
pub mod vip;

#[cfg(test)]
mod tests;
