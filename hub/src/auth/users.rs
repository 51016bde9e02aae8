//! The users file for the built-in login: `users: [{username, passwordHash, tenants, role}]`.

use std::collections::HashMap;
use std::path::Path;

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use serde::Deserialize;

use super::Role;

#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    #[error("reading users file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("parsing users file {path}: {message}")]
    Parse { path: String, message: String },
    #[error("users file: user {0:?} has an invalid passwordHash (expected a PHC argon2 string)")]
    BadHash(String),
    #[error("users file: duplicate username {0:?}")]
    Duplicate(String),
    #[error("hashing password: {0}")]
    Hash(String),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UserEntry {
    pub username: String,
    pub password_hash: String,
    #[serde(default)]
    pub tenants: Vec<String>,
    pub role: Role,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersFile {
    #[serde(default)]
    users: Vec<UserEntry>,
}

/// The loaded users, by username.
#[derive(Debug, Default)]
pub struct Users {
    by_name: HashMap<String, UserEntry>,
}

/// An argon2id hash verified against when the username is unknown, so that the response time
/// does not reveal which usernames exist.
fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password("no-such-user").unwrap_or_default())
}

impl Users {
    pub fn load(path: &Path) -> Result<Self, UsersError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| UsersError::Read {
            path: p.clone(),
            source,
        })?;
        Self::parse(&text).map_err(|e| match e {
            UsersError::Parse { message, .. } => UsersError::Parse { path: p, message },
            other => other,
        })
    }

    pub fn parse(text: &str) -> Result<Self, UsersError> {
        let file: UsersFile = serde_saphyr::from_str(text).map_err(|e| UsersError::Parse {
            path: String::new(),
            message: e.to_string(),
        })?;
        let mut by_name = HashMap::new();
        for u in file.users {
            PasswordHash::new(&u.password_hash)
                .map_err(|_| UsersError::BadHash(u.username.clone()))?;
            if by_name.contains_key(&u.username) {
                return Err(UsersError::Duplicate(u.username));
            }
            by_name.insert(u.username.clone(), u);
        }
        Ok(Self { by_name })
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// The user when `password` matches; argon2 runs even for unknown users.
    pub fn verify(&self, username: &str, password: &str) -> Option<&UserEntry> {
        let user = self.by_name.get(username);
        let hash: &str = match user {
            Some(u) => &u.password_hash,
            None => dummy_hash(),
        };
        let ok = PasswordHash::new(hash)
            .map(|h| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &h)
                    .is_ok()
            })
            .unwrap_or(false);
        if ok { user } else { None }
    }
}

/// An argon2id PHC hash of `password` with a random salt.
pub fn hash_password(password: &str) -> Result<String, UsersError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| UsersError::Hash(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_then_verify() {
        let h = hash_password("s3cret").unwrap();
        let yaml = format!(
            "users:\n  - username: ana\n    passwordHash: '{h}'\n    tenants: [acme]\n    role: user\n"
        );
        let users = Users::parse(&yaml).unwrap();
        let u = users.verify("ana", "s3cret").unwrap();
        assert_eq!(u.tenants, vec!["acme".to_string()]);
        assert_eq!(u.role, Role::User);
        assert!(users.verify("ana", "wrong").is_none());
        assert!(users.verify("nobody", "s3cret").is_none());
    }

    #[test]
    fn dummy_hash_parses() {
        assert!(PasswordHash::new(dummy_hash()).is_ok());
    }

    #[test]
    fn rejects_bad_files() {
        assert!(matches!(
            Users::parse("users:\n  - username: a\n    passwordHash: plain\n    role: user\n"),
            Err(UsersError::BadHash(_))
        ));
        assert!(matches!(
            Users::parse("users: [{username: a, role: king, passwordHash: x}]"),
            Err(UsersError::Parse { .. })
        ));
        let h = hash_password("x").unwrap();
        let dup = format!(
            "users:\n  - {{username: a, passwordHash: '{h}', role: admin}}\n  - {{username: a, passwordHash: '{h}', role: admin}}\n"
        );
        assert!(matches!(Users::parse(&dup), Err(UsersError::Duplicate(_))));
    }
}
