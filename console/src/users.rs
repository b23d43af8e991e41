//! The users file: who may log in, with what role. Passwords are stored as
//! argon2 PHC strings (`headroomctl console-user` writes an entry). The file
//! is re-read when it changes, so adding a user needs no restart.

use std::{
    path::{Path, PathBuf},
    time::SystemTime,
};

use argon2::{
    password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString},
    Argon2,
};
use serde::{Deserialize, Serialize};

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Sees every page and reads every API; changes nothing.
    Viewer,
    /// Also applies policies and rolls them back.
    Admin,
}

impl Role {
    /// "viewer" / "admin".
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Admin => "admin",
        }
    }
}

/// One `[[user]]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// Login name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// argon2 PHC string (`$argon2id$v=19$...`).
    pub password: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersFile {
    #[serde(default)]
    user: Vec<User>,
}

/// Errors reading the users file.
#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    /// The file could not be read.
    #[error("reading the console users file {path}: {source} (create it with `headroomctl console-user NAME --role admin >> {path}`)")]
    Read {
        /// Its path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid.
    #[error("console users file {path}: {message}")]
    Invalid {
        /// Its path.
        path: String,
        /// What is wrong.
        message: String,
    },
}

/// The parsed users of `src` (`path` is named in errors).
pub fn parse(src: &str, path: &Path) -> Result<Vec<User>, UsersError> {
    let invalid = |message: String| UsersError::Invalid {
        path: path.display().to_string(),
        message,
    };
    let file: UsersFile = toml::from_str(src).map_err(|e| invalid(e.to_string()))?;
    let mut seen = std::collections::HashSet::new();
    for u in &file.user {
        if u.name.is_empty() || u.name.len() > 64 || u.name.chars().any(|c| c.is_control()) {
            return Err(invalid(format!(
                "user name {:?}: 1-64 printable characters",
                u.name
            )));
        }
        if !seen.insert(u.name.as_str()) {
            return Err(invalid(format!("user {:?} is listed twice", u.name)));
        }
        PasswordHash::new(&u.password).map_err(|e| {
            invalid(format!(
                "user {:?}: password is not an argon2 hash ({e}); `headroomctl console-user` makes one",
                u.name
            ))
        })?;
    }
    Ok(file.user)
}

/// An argon2id hash of `password` with a fresh salt.
pub fn hash_password(password: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        // Only an over-long salt or output could fail; neither is chosen here.
        .unwrap_or_default()
}

/// A `[[user]]` entry for the users file.
pub fn entry(name: &str, role: Role, password: &str) -> String {
    let u = User {
        name: name.into(),
        role,
        password: hash_password(password),
    };
    #[derive(Serialize)]
    struct One<'a> {
        user: [&'a User; 1],
    }
    toml::to_string(&One { user: [&u] }).unwrap_or_default()
}

/// The users file, re-read when its modification time changes.
#[derive(Debug)]
pub struct Users {
    path: PathBuf,
    loaded: Option<SystemTime>,
    users: Vec<User>,
}

impl Users {
    /// Reads `path` (an error if it is missing or invalid: the console does not start).
    pub fn load(path: &Path) -> Result<Users, UsersError> {
        let mut u = Users {
            path: path.to_owned(),
            loaded: None,
            users: Vec::new(),
        };
        u.refresh()?;
        Ok(u)
    }

    /// Re-reads the file if it changed. On an error the previous users stay.
    pub fn refresh(&mut self) -> Result<(), UsersError> {
        let read = |source| UsersError::Read {
            path: self.path.display().to_string(),
            source,
        };
        let mtime = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .map_err(read)?;
        if self.loaded == Some(mtime) {
            return Ok(());
        }
        let src = std::fs::read_to_string(&self.path).map_err(read)?;
        self.users = parse(&src, &self.path)?;
        self.loaded = Some(mtime);
        Ok(())
    }

    /// How many users may log in.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether nobody may log in.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// The user's entry (for checking outside the lock).
    pub fn find(&self, name: &str) -> Option<User> {
        self.users.iter().find(|u| u.name == name).cloned()
    }
}

/// Whether `password` matches `user`'s hash (slow by design: call it off the
/// async runtime).
pub fn verify(user: &User, password: &str) -> bool {
    PasswordHash::new(&user.password)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A hash to verify against when the user does not exist, so a wrong name
/// takes as long as a wrong password.
pub fn decoy() -> &'static User {
    static DECOY: std::sync::OnceLock<User> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| User {
        name: String::new(),
        role: Role::Viewer,
        password: hash_password("decoy password nobody has"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_verify() {
        let src = format!(
            "{}{}",
            entry("ann", Role::Admin, "s3cret"),
            entry("vic", Role::Viewer, "look")
        );
        let users = parse(&src, Path::new("u.toml")).unwrap();
        assert_eq!(users.len(), 2);
        assert_eq!(users[0].role, Role::Admin);
        assert!(verify(&users[0], "s3cret"));
        assert!(!verify(&users[0], "look"));
        assert!(!verify(decoy(), "look"));
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        let p = Path::new("u.toml");
        let e = parse(
            "[[user]]\nname=\"a\"\nrole=\"admin\"\npassword=\"plain\"\n",
            p,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("not an argon2 hash"), "{e}");
        let e = parse("[[user]]\nname=\"a\"\nrole=\"root\"\npassword=\"x\"\n", p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("root"), "{e}");
        let twice = format!(
            "{}{}",
            entry("a", Role::Admin, "x"),
            entry("a", Role::Viewer, "y")
        );
        assert!(parse(&twice, p).unwrap_err().to_string().contains("twice"));
    }
}
