//! JWT verification and issuing with the algorithm pinned by configuration: HS256 with a
//! secret or RS256 with a public key. Tokens of any other algorithm (`none`, HS256 signed with
//! the RSA public key, ...) are rejected; `exp` and `sub` are required, `nbf` is honoured, a
//! `crit` header is refused (the hub understands no JWS extension, RFC 7515 §4.1.11), and a
//! token larger than [`MAX_TOKEN_BYTES`] is refused before any parsing.

use std::path::Path;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};

use super::Claims;

#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("loading key {path}: {message}")]
    Key { path: String, message: String },
    #[error("the HS256 secret must be at least 32 bytes")]
    WeakSecret,
    #[error("configure exactly one of --jwt-secret-file or --jwt-public-key-file")]
    NoKey,
    #[error("signing token: {0}")]
    Sign(String),
}

/// Tokens the hub issues are ~300 bytes and those of external issuers rarely pass 2 KiB; a
/// larger one is refused before it is decoded or its signature computed.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

pub struct Jwt {
    alg: Algorithm,
    decoding: DecodingKey,
    /// None in RS256 mode without a private key: login cannot issue tokens.
    encoding: Option<EncodingKey>,
    validation: Validation,
    issuer: Option<String>,
    audience: Option<String>,
}

fn read(path: &Path) -> Result<Vec<u8>, JwtError> {
    std::fs::read(path).map_err(|source| JwtError::Read {
        path: path.display().to_string(),
        source,
    })
}

fn key_err(path: &Path, e: impl std::fmt::Display) -> JwtError {
    JwtError::Key {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

impl Jwt {
    pub fn hs256(
        secret: &[u8],
        issuer: Option<String>,
        audience: Option<String>,
    ) -> Result<Self, JwtError> {
        if secret.len() < 32 {
            return Err(JwtError::WeakSecret);
        }
        Ok(Self::build(
            Algorithm::HS256,
            DecodingKey::from_secret(secret),
            Some(EncodingKey::from_secret(secret)),
            issuer,
            audience,
        ))
    }

    pub fn from_files(
        secret_file: Option<&Path>,
        public_key_file: Option<&Path>,
        private_key_file: Option<&Path>,
        issuer: Option<String>,
        audience: Option<String>,
    ) -> Result<Self, JwtError> {
        match (secret_file, public_key_file) {
            (Some(s), None) => {
                let raw = read(s)?;
                // Secrets mounted from files usually end with a newline that is not part of it.
                let trimmed = raw.trim_ascii_end();
                Self::hs256(trimmed, issuer, audience)
            }
            (None, Some(p)) => {
                let decoding = DecodingKey::from_rsa_pem(&read(p)?).map_err(|e| key_err(p, e))?;
                let encoding = match private_key_file {
                    Some(k) => {
                        Some(EncodingKey::from_rsa_pem(&read(k)?).map_err(|e| key_err(k, e))?)
                    }
                    None => None,
                };
                Ok(Self::build(
                    Algorithm::RS256,
                    decoding,
                    encoding,
                    issuer,
                    audience,
                ))
            }
            _ => Err(JwtError::NoKey),
        }
    }

    fn build(
        alg: Algorithm,
        decoding: DecodingKey,
        encoding: Option<EncodingKey>,
        issuer: Option<String>,
        audience: Option<String>,
    ) -> Self {
        let mut validation = Validation::new(alg);
        validation.algorithms = vec![alg];
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        // Small leeway for clock skew between issuer and hub; tests rely on it being short.
        validation.leeway = 5;
        match &issuer {
            Some(i) => validation.set_issuer(&[i]),
            None => validation.iss = None,
        }
        match &audience {
            Some(a) => validation.set_audience(&[a]),
            None => validation.validate_aud = false,
        }
        Self {
            alg,
            decoding,
            encoding,
            validation,
            issuer,
            audience,
        }
    }

    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    pub fn can_issue(&self) -> bool {
        self.encoding.is_some()
    }

    /// The claims of a valid token. The same for REST and socket.io: whitespace around the
    /// token is not part of it. The error text is safe to show to clients.
    pub fn verify(&self, token: &str) -> Result<Claims, String> {
        let token = token.trim_ascii();
        if token.len() > MAX_TOKEN_BYTES {
            return Err(format!("token larger than {MAX_TOKEN_BYTES} bytes"));
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| "invalid token".to_owned())?;
        if header.crit.is_some() {
            return Err("token has critical header extensions the hub does not support".into());
        }
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|d| d.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => "token expired".to_owned(),
                jsonwebtoken::errors::ErrorKind::ImmatureSignature => {
                    "token not valid yet (nbf)".to_owned()
                }
                jsonwebtoken::errors::ErrorKind::InvalidAlgorithm => {
                    "token algorithm not accepted".to_owned()
                }
                jsonwebtoken::errors::ErrorKind::InvalidSignature => {
                    "invalid token signature".to_owned()
                }
                jsonwebtoken::errors::ErrorKind::MissingRequiredClaim(c) => {
                    format!("token lacks the {c} claim")
                }
                jsonwebtoken::errors::ErrorKind::InvalidIssuer => {
                    "token issuer not accepted".to_owned()
                }
                jsonwebtoken::errors::ErrorKind::InvalidAudience => {
                    "token audience not accepted".to_owned()
                }
                _ => "invalid token".to_owned(),
            })
    }

    /// Sign a token for `sub` valid for `ttl_secs`; `None` when this hub cannot issue tokens.
    pub fn issue(
        &self,
        sub: &str,
        tenants: Vec<String>,
        role: super::Role,
        ttl_secs: u64,
    ) -> Result<(String, u64), JwtError> {
        let key = self
            .encoding
            .as_ref()
            .ok_or_else(|| JwtError::Sign("no signing key configured".into()))?;
        let now = jsonwebtoken::get_current_timestamp();
        let claims = Claims {
            sub: sub.to_owned(),
            tenants,
            role,
            exp: now + ttl_secs,
            iat: Some(now),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
        };
        let token = jsonwebtoken::encode(&Header::new(self.alg), &claims, key)
            .map_err(|e| JwtError::Sign(e.to_string()))?;
        Ok((token, claims.exp))
    }
}

#[cfg(test)]
mod tests {
    use super::super::Role;
    use super::*;
    use base64::Engine;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn b64(v: &serde_json::Value) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    }

    #[test]
    fn issue_and_verify_hs256() {
        let j = Jwt::hs256(SECRET, Some("hub".into()), Some("ui".into())).unwrap();
        let (t, _) = j.issue("ana", vec!["a".into()], Role::User, 60).unwrap();
        let c = j.verify(&t).unwrap();
        assert_eq!(c.sub, "ana");
        assert_eq!(c.tenants, vec!["a".to_string()]);
        // Wrong issuer/audience configuration rejects the same token.
        let other = Jwt::hs256(SECRET, Some("other".into()), Some("ui".into())).unwrap();
        assert!(other.verify(&t).is_err());
        let other_aud = Jwt::hs256(SECRET, Some("hub".into()), Some("x".into())).unwrap();
        assert!(other_aud.verify(&t).is_err());
    }

    #[test]
    fn rejects_weak_secret() {
        assert!(matches!(
            Jwt::hs256(b"short", None, None),
            Err(JwtError::WeakSecret)
        ));
    }

    #[test]
    fn rejects_expired_wrong_signature_missing_exp_and_alg_none() {
        let j = Jwt::hs256(SECRET, None, None).unwrap();
        let now = jsonwebtoken::get_current_timestamp();
        let expired = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &serde_json::json!({"sub": "a", "role": "admin", "exp": now - 60}),
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        assert_eq!(j.verify(&expired).unwrap_err(), "token expired");

        let wrong = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &serde_json::json!({"sub": "a", "role": "admin", "exp": now + 60}),
            &EncodingKey::from_secret(b"another-secret-another-secret-xx"),
        )
        .unwrap();
        assert_eq!(j.verify(&wrong).unwrap_err(), "invalid token signature");

        let no_exp = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &serde_json::json!({"sub": "a", "role": "admin"}),
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        assert!(j.verify(&no_exp).is_err());

        let none = format!(
            "{}.{}.",
            b64(&serde_json::json!({"alg": "none", "typ": "JWT"})),
            b64(&serde_json::json!({"sub": "a", "role": "admin", "exp": now + 60}))
        );
        assert!(j.verify(&none).is_err());

        let hs512 = jsonwebtoken::encode(
            &Header::new(Algorithm::HS512),
            &serde_json::json!({"sub": "a", "role": "admin", "exp": now + 60}),
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        assert_eq!(
            j.verify(&hs512).unwrap_err(),
            "token algorithm not accepted"
        );
    }

    #[test]
    fn nbf_crit_size_and_whitespace() {
        let j = Jwt::hs256(SECRET, None, None).unwrap();
        let now = jsonwebtoken::get_current_timestamp();
        let key = EncodingKey::from_secret(SECRET);
        let claims = serde_json::json!({"sub": "a", "role": "admin", "exp": now + 600});
        let sign = |h: &Header, c: &serde_json::Value| jsonwebtoken::encode(h, c, &key).unwrap();

        let mut later = claims.clone();
        later["nbf"] = (now + 300).into();
        assert_eq!(
            j.verify(&sign(&Header::new(Algorithm::HS256), &later))
                .unwrap_err(),
            "token not valid yet (nbf)"
        );
        let mut earlier = claims.clone();
        earlier["nbf"] = (now - 1).into();
        assert!(
            j.verify(&sign(&Header::new(Algorithm::HS256), &earlier))
                .is_ok()
        );

        let mut crit = Header::new(Algorithm::HS256);
        crit.crit = Some(vec!["exp-ext".into()]);
        assert!(
            j.verify(&sign(&crit, &claims))
                .unwrap_err()
                .contains("critical")
        );

        let plain = sign(&Header::new(Algorithm::HS256), &claims);
        assert!(j.verify(&format!(" \t{plain} \n")).is_ok());

        let mut big = claims.clone();
        big["pad"] = "x".repeat(MAX_TOKEN_BYTES).into();
        assert!(
            j.verify(&sign(&Header::new(Algorithm::HS256), &big))
                .unwrap_err()
                .contains("larger than")
        );
    }
}
