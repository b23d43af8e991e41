//! Headroom configuration: the TOML schema, parsing and validation.
//!
//! One file configures a server: its identity, the interfaces it sits
//! between, the worker threads, jobs with their flow rules, and (as later
//! parts land) pipes, peers, VIPs and CPU policies. `config/headroom.toml`
//! documents every key. Errors name the file, the line and the field.

mod changes;
mod deprecated;
mod error;
mod locate;
mod schema;
mod validate;

pub use changes::{ConfigChanges, JobChange};
pub use error::ConfigError;
pub use policy::{initial_policy, POLICY_SECTIONS};
pub use schema::*;

pub mod console;
pub mod cron;
pub mod deploy;
pub mod fuzz;
pub mod goal;
pub mod history;
pub mod machine;
pub mod net;
pub mod policy;
pub mod process;
pub mod triggers;
pub mod vip;

#[cfg(test)]
mod tests;
