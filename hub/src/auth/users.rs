//! The users file for the built-in login:
//! `users: [{username, passwordHash, tenants, role, tokensNotBefore?}]`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
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
    #[error("users file: user {user:?}: {message}")]
    HashParams { user: String, message: String },
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
    /// Tokens of this user issued before this time (RFC 3339) are refused: how an admin
    /// revokes a user's tokens before they expire (docs/hub.md "Revoking tokens").
    #[serde(default)]
    pub tokens_not_before: Option<Time>,
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
fn dummy_hash() -> Arc<str> {
    static DUMMY: std::sync::OnceLock<Arc<str>> = std::sync::OnceLock::new();
    DUMMY
        .get_or_init(|| hash_password("no-such-user").unwrap_or_default().into())
        .clone()
}

impl Users {
    pub fn parse(text: &str) -> Result<Self, UsersError> {
        let file: UsersFile = serde_saphyr::from_str(text).map_err(|e| UsersError::Parse {
            path: String::new(),
            message: e.to_string(),
        })?;
        let mut by_name = HashMap::new();
        for u in file.users {
            let phc = PasswordHash::new(&u.password_hash)
                .map_err(|_| UsersError::BadHash(u.username.clone()))?;
            super::password::params_of(&phc).map_err(|message| UsersError::HashParams {
                user: u.username.clone(),
                message,
            })?;
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

    pub fn get(&self, username: &str) -> Option<&UserEntry> {
        self.by_name.get(username)
    }

    /// The hash to check a login of `username` against: the user's, or for an unknown user a
    /// dummy one (argon2 runs either way, so the answer time does not tell which names exist).
    pub fn hash_for(&self, username: &str) -> Arc<str> {
        match self.by_name.get(username) {
            Some(u) => u.password_hash.as_str().into(),
            None => dummy_hash(),
        }
    }

    /// Whether a token of `username` issued at `iat` was revoked by `tokensNotBefore` (a token
    /// without `iat` counts as issued before it).
    pub fn revoked(&self, username: &str, iat: Option<u64>) -> bool {
        let Some(not_before) = self
            .by_name
            .get(username)
            .and_then(|u| u.tokens_not_before.as_ref())
        else {
            return false;
        };
        iat.is_none_or(|iat| (iat as i64) < not_before.0.as_second())
    }
}

/// The users file as last read, re-read when it changes: the kubelet updates a mounted Secret
/// in place, so users added or revoked (`tokensNotBefore`) take effect without a restart.
pub struct UsersSource {
    path: PathBuf,
    current: RwLock<(Arc<Users>, Vec<u8>)>,
}

impl UsersSource {
    pub fn load(path: &Path) -> Result<Self, UsersError> {
        let raw = read(path)?;
        let users = parse_at(path, &raw)?;
        Ok(Self {
            path: path.to_owned(),
            current: RwLock::new((Arc::new(users), raw)),
        })
    }

    pub fn current(&self) -> Arc<Users> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .clone()
    }

    /// Read the file again: `Ok(true)` when it changed and now holds the users returned by
    /// [`current`](Self::current); on an error the users loaded before stay in force.
    pub fn reload(&self) -> Result<bool, UsersError> {
        let raw = read(&self.path)?;
        if self.current.read().unwrap_or_else(|p| p.into_inner()).1 == raw {
            return Ok(false);
        }
        let users = parse_at(&self.path, &raw)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = (Arc::new(users), raw);
        Ok(true)
    }
}

fn read(path: &Path) -> Result<Vec<u8>, UsersError> {
    std::fs::read(path).map_err(|source| UsersError::Read {
        path: path.display().to_string(),
        source,
    })
}

fn parse_at(path: &Path, raw: &[u8]) -> Result<Users, UsersError> {
    let text = std::str::from_utf8(raw).map_err(|_| UsersError::Parse {
        path: path.display().to_string(),
        message: "not UTF-8".into(),
    })?;
    Users::parse(text).map_err(|e| match e {
        UsersError::Parse { message, .. } => UsersError::Parse {
            path: path.display().to_string(),
            message,
        },
        other => other,
    })
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
        let u = users.get("ana").unwrap();
        assert_eq!(u.tenants, vec!["acme".to_string()]);
        assert_eq!(u.role, Role::User);
        assert_eq!(&*users.hash_for("ana"), h.as_str());
        assert_eq!(users.hash_for("nobody"), dummy_hash());
    }

    #[test]
    fn tokens_not_before_revokes_older_tokens() {
        let h = hash_password("s3cret").unwrap();
        let yaml = format!(
            "users:\n  - {{username: ana, passwordHash: '{h}', role: user, tokensNotBefore: '2026-12-01T10:00:00Z'}}\n  - {{username: bob, passwordHash: '{h}', role: user}}\n"
        );
        let users = Users::parse(&yaml).unwrap();
        let at = |s: &str| {
            s.parse::<k8s_openapi::jiff::Timestamp>()
                .unwrap()
                .as_second() as u64
        };
        assert!(users.revoked("ana", Some(at("2026-12-01T09:59:59Z"))));
        assert!(users.revoked("ana", None));
        assert!(!users.revoked("ana", Some(at("2026-12-01T10:00:00Z"))));
        assert!(!users.revoked("bob", None));
        assert!(!users.revoked("someone-else", None));
    }

    #[test]
    fn dummy_hash_parses() {
        assert!(PasswordHash::new(&dummy_hash()).is_ok());
    }

    #[test]
    fn the_source_reloads_a_changed_file_and_keeps_the_old_users_on_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.yaml");
        let h = hash_password("x").unwrap();
        let one = format!("users:\n  - {{username: ana, passwordHash: '{h}', role: user}}\n");
        std::fs::write(&path, &one).unwrap();
        let src = UsersSource::load(&path).unwrap();
        assert!(!src.reload().unwrap());
        std::fs::write(
            &path,
            format!("{one}  - {{username: bob, passwordHash: '{h}', role: admin}}\n"),
        )
        .unwrap();
        assert!(src.reload().unwrap());
        assert!(src.current().get("bob").is_some());
        std::fs::write(&path, "users: [{username: x}]").unwrap();
        assert!(src.reload().is_err());
        assert!(
            src.current().get("bob").is_some(),
            "the last good file stays"
        );
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
