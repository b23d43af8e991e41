//! The web console: headroomd serves the pool on one page, history charts,
//! policy editing and events, to people with a login, on a thread of its
//! own (the async runtime lives only there). Everything it shows comes from
//! a [`Backend`]: the daemon's control requests, the same ones
//! `headroomctl` sends. The pages use the JSON API under `/api/` that
//! scripts use too (docs/console.md).
//!
//! Access: a users file of argon2 hashes with a role each (viewer, admin);
//! sessions in an HttpOnly, SameSite=Strict cookie that expire; a CSRF
//! token per session on every state-changing request; failed logins
//! counted and limited per client address; TLS when the node file names a
//! certificate.

/// The request's session (`$app`, `$headers`), or a return with the
/// "log in first" refusal: JSON for the API (`$api` true), the login page's
/// redirect otherwise.
macro_rules! viewer {
    ($app:expr, $headers:expr, $api:expr) => {
        match $crate::server::session_of(&$app, &$headers) {
            Some((_, s)) => s,
            None => return $crate::server::Refusal::Unauthenticated.respond($api),
        }
    };
}

pub mod api;
pub mod backend;
pub mod charts;
pub mod pages;
pub mod server;
pub mod session;
pub mod users;

pub use backend::{Backend, BackendError};
pub use server::{Console, ConsoleError};

#[cfg(test)]
mod tests;
