//! Logins: sessions with a CSRF token each, their expiry, and the per-address
//! limit on failed logins. Sans-IO: time is a parameter, no clock inside.

use std::{collections::HashMap, net::IpAddr, time::Duration};

use headroom_clock::Timestamp;
use rand::RngCore;

use crate::users::Role;

/// Sessions held at most; the oldest is dropped to make room.
pub const MAX_SESSIONS: usize = 10_000;

/// A logged-in user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Login name.
    pub user: String,
    /// Role at login.
    pub role: Role,
    /// The token every state-changing request must carry (form field
    /// `csrf` or header `X-CSRF-Token`).
    pub csrf: String,
    /// When it was created.
    pub created: Timestamp,
    /// When it stops being valid.
    pub expires: Timestamp,
}

/// A random 128-bit token, hex.
fn token() -> String {
    let mut b = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Compares two tokens in time independent of where they differ.
pub fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The session table. Keys are the session cookie's value.
#[derive(Debug)]
pub struct Sessions {
    ttl: Duration,
    by_id: HashMap<String, Session>,
}

impl Sessions {
    /// Sessions that last `ttl`.
    pub fn new(ttl: Duration) -> Sessions {
        Sessions {
            ttl,
            by_id: HashMap::new(),
        }
    }

    /// Starts a session for `user`: (cookie value, session).
    pub fn create(&mut self, now: Timestamp, user: &str, role: Role) -> (String, Session) {
        self.expire(now);
        if self.by_id.len() >= MAX_SESSIONS {
            if let Some(oldest) = self
                .by_id
                .iter()
                .min_by_key(|(_, s)| s.created)
                .map(|(k, _)| k.clone())
            {
                self.by_id.remove(&oldest);
            }
        }
        let s = Session {
            user: user.into(),
            role,
            csrf: token(),
            created: now,
            expires: now + self.ttl,
        };
        let id = token();
        self.by_id.insert(id.clone(), s.clone());
        (id, s)
    }

    /// The live session of cookie `id`.
    pub fn get(&mut self, now: Timestamp, id: &str) -> Option<Session> {
        match self.by_id.get(id) {
            Some(s) if s.expires > now => Some(s.clone()),
            Some(_) => {
                self.by_id.remove(id);
                None
            }
            None => None,
        }
    }

    /// Ends the session of cookie `id`.
    pub fn remove(&mut self, id: &str) {
        self.by_id.remove(id);
    }

    /// Drops expired sessions.
    pub fn expire(&mut self, now: Timestamp) {
        self.by_id.retain(|_, s| s.expires > now);
    }

    /// Live sessions.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether none is live.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

/// Failed logins per client address over the last minute; at the limit, more
/// attempts are refused without checking the password.
#[derive(Debug)]
pub struct LoginLimiter {
    per_minute: u32,
    failures: HashMap<IpAddr, Vec<Timestamp>>,
}

/// The window failures are counted over.
pub const LOGIN_WINDOW: Duration = Duration::from_secs(60);

impl LoginLimiter {
    /// Allows `per_minute` failures per address.
    pub fn new(per_minute: u32) -> LoginLimiter {
        LoginLimiter {
            per_minute,
            failures: HashMap::new(),
        }
    }

    /// None if `addr` may try now, else how long until it may.
    pub fn check(&mut self, now: Timestamp, addr: IpAddr) -> Option<Duration> {
        let list = self.failures.get_mut(&addr)?;
        list.retain(|t| now.saturating_duration_since(*t) < LOGIN_WINDOW);
        if list.len() < self.per_minute as usize {
            return None;
        }
        let oldest = *list.iter().min()?;
        Some(LOGIN_WINDOW.saturating_sub(now.saturating_duration_since(oldest)))
    }

    /// Records a failed login from `addr`.
    pub fn failed(&mut self, now: Timestamp, addr: IpAddr) {
        // Bound the table: forget addresses whose failures are all old.
        if self.failures.len() > 10_000 {
            self.failures.retain(|_, l| {
                l.iter()
                    .any(|t| now.saturating_duration_since(*t) < LOGIN_WINDOW)
            });
        }
        let list = self.failures.entry(addr).or_default();
        list.push(now);
        if list.len() > self.per_minute as usize {
            list.remove(0);
        }
    }

    /// Forgets `addr`'s failures (after a successful login).
    pub fn succeeded(&mut self, addr: IpAddr) {
        self.failures.remove(&addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: u64) -> Timestamp {
        Timestamp::from_duration(Duration::from_secs(s))
    }

    #[test]
    fn sessions_expire() {
        let mut s = Sessions::new(Duration::from_secs(3600));
        let (id, sess) = s.create(t(10), "ann", Role::Admin);
        assert_eq!(s.get(t(20), &id).unwrap(), sess);
        assert!(s.get(t(20), "nope").is_none());
        assert!(s.get(t(10 + 3600), &id).is_none(), "expired");
        assert!(s.is_empty(), "an expired session is dropped when seen");
        let (a, _) = s.create(t(0), "a", Role::Viewer);
        let (b, sb) = s.create(t(0), "b", Role::Viewer);
        assert_ne!(a, b);
        s.remove(&a);
        assert!(s.get(t(1), &a).is_none());
        assert!(same_token(&sb.csrf, &s.get(t(1), &b).unwrap().csrf));
        assert!(!same_token(&sb.csrf, "x"));
    }

    #[test]
    fn failed_logins_are_limited_per_address_per_minute() {
        let mut l = LoginLimiter::new(3);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        for i in 0..3 {
            assert_eq!(l.check(t(100 + i), a), None);
            l.failed(t(100 + i), a);
        }
        assert_eq!(l.check(t(103), a), Some(Duration::from_secs(57)));
        assert_eq!(l.check(t(103), b), None, "other addresses are not held up");
        assert_eq!(
            l.check(t(160), a),
            None,
            "the first failure left the window"
        );
        l.succeeded(a);
        assert_eq!(l.check(t(161), a), None);
    }
}
