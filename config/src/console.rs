//! `[console]`: the web console (served by headroomd on a thread of its own;
//! off unless `listen` is set). See the `headroom-console` crate.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use serde::Deserialize;

/// `[console]`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleConfig {
    /// Address the console listens on, e.g. "127.0.0.1:7948"; none = off.
    pub listen: Option<SocketAddr>,
    /// The users file: one `[[user]]` per person with `name`, `role`
    /// ("viewer" or "admin") and an argon2 `password` hash
    /// (`headroomctl console-user NAME --role admin` writes one).
    pub users: PathBuf,
    /// TLS certificate chain (PEM); with `tls_key`, the console speaks HTTPS only.
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// How long a login lasts.
    #[serde(with = "humantime_serde")]
    pub session: Duration,
    /// Failed logins allowed per client address per minute; more are refused
    /// with HTTP 429 until the minute has passed.
    pub login_failures_per_minute: u32,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig {
            listen: None,
            users: PathBuf::from("/etc/headroom/console-users.toml"),
            tls_cert: None,
            tls_key: None,
            session: Duration::from_secs(8 * 3600),
            login_failures_per_minute: 5,
        }
    }
}

impl ConsoleConfig {
    /// Checks the section: (field, message) of the first problem.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) => return Err(("tls_key", "tls_cert needs tls_key".into())),
            (None, Some(_)) => return Err(("tls_cert", "tls_key needs tls_cert".into())),
            _ => {}
        }
        if self.listen.is_some() && self.users.as_os_str().is_empty() {
            return Err(("users", "must name the users file".into()));
        }
        if !(Duration::from_secs(60)..=Duration::from_secs(30 * 86_400)).contains(&self.session) {
            return Err(("session", "must be 1min..=30days".into()));
        }
        if !(1..=1000).contains(&self.login_failures_per_minute) {
            return Err(("login_failures_per_minute", "must be 1..=1000".into()));
        }
        Ok(())
    }

    /// Whether the console speaks HTTPS.
    pub fn tls(&self) -> bool {
        self.tls_cert.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_validates() {
        let c: ConsoleConfig = toml::from_str(
            "listen = \"127.0.0.1:7948\"\nusers = \"/tmp/u.toml\"\nsession = \"2h\"",
        )
        .unwrap();
        assert_eq!(c.session, Duration::from_secs(7200));
        assert!(c.validate().is_ok());
        let half_tls = ConsoleConfig {
            tls_cert: Some("/c.pem".into()),
            ..c.clone()
        };
        assert_eq!(half_tls.validate().unwrap_err().0, "tls_key");
        let short = ConsoleConfig {
            session: Duration::from_secs(5),
            ..c
        };
        assert_eq!(short.validate().unwrap_err().0, "session");
        assert!(toml::from_str::<ConsoleConfig>("port = 1").is_err());
    }
}
