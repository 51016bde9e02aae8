//! Authentication (users file + argon2, JWT) and authorization (admin: every tenant; user: only
//! the tenants in its token).

pub mod jwt;
pub mod password;
pub mod throttle;
pub mod users;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    User,
}

/// JWT claims (docs/design.md §3): `sub`, `tenants`, `role`, `exp` required.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    #[serde(default)]
    pub tenants: Vec<String>,
    pub role: Role,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
}

impl Claims {
    /// May this caller see sessions of `tenant`?
    pub fn may_access(&self, tenant: &str) -> bool {
        self.role == Role::Admin || self.tenants.iter().any(|t| t == tenant)
    }
}

impl crate::app::Hub {
    /// The claims of a valid, unrevoked token: what REST and socket.io both accept.
    pub fn authenticate(&self, token: &str) -> Result<Claims, crate::error::ApiError> {
        let claims = self
            .jwt
            .verify(token)
            .map_err(crate::error::ApiError::unauthenticated)?;
        // Revoked by the users file since it was issued (`tokensNotBefore`).
        if self
            .users
            .as_ref()
            .is_some_and(|u| u.current().revoked(&claims.sub, claims.iat))
        {
            return Err(crate::error::ApiError::unauthenticated("token revoked"));
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorization() {
        let user = Claims {
            sub: "u".into(),
            tenants: vec!["a".into()],
            role: Role::User,
            exp: 0,
            iat: None,
            iss: None,
            aud: None,
        };
        assert!(user.may_access("a"));
        assert!(!user.may_access("b"));
        assert!(!user.may_access(""));
        let admin = Claims {
            role: Role::Admin,
            tenants: vec![],
            ..user
        };
        assert!(admin.may_access("b"));
    }
}
