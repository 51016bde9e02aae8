//! Only the hub may call the message API. The hub presents a projected ServiceAccount token
//! with a dedicated audience (`WA_MESSAGES_AUDIENCE`); the agent asks the API server whether
//! it is valid for that audience (a TokenReview: signature, expiry, the pod it is bound to
//! still existing) and whether it is the hub's ServiceAccount (`WA_MESSAGES_CALLER`). A token of
//! any other ServiceAccount — a tenant's pod — or for another audience is refused.
//! Positive answers are remembered briefly, so a busy hub costs the API server one review per
//! token per [`CACHE_FOR`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use axum::http::{HeaderMap, header};
use futures::future::BoxFuture;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use kube::Api;
use kube::api::PostParams;
use tokio::time::Instant;

use super::ids;

/// How long an accepted token is trusted without asking again (projected tokens live at least
/// 10 minutes; a deleted hub pod's token is refused after at most this).
pub const CACHE_FOR: Duration = Duration::from_secs(30);

/// Tokens remembered at most (the hub's replicas each rotate theirs hourly).
const CACHE_MAX: usize = 64;

/// Why a caller is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// No token, or one the API server does not accept for the audience (401).
    Unauthenticated(String),
    /// A valid token of someone other than the hub (403).
    Forbidden(String),
    /// The API server could not be asked (503).
    Unavailable(String),
}

pub trait Auth: Send + Sync {
    fn check<'a>(&'a self, headers: &'a HeaderMap) -> BoxFuture<'a, Result<(), Refused>>;
}

/// The bearer token of a request, trimmed.
pub fn bearer(headers: &HeaderMap) -> Result<&str, Refused> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| Refused::Unauthenticated("a bearer token is required".into()))?;
    value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty() && t.len() <= 16 * 1024)
        .ok_or_else(|| Refused::Unauthenticated("Authorization must be `Bearer <token>`".into()))
}

/// The decision on a TokenReview's answer.
pub fn judge(review: &TokenReview, audience: &str, caller: &str) -> Result<(), Refused> {
    let status = review.status.clone().unwrap_or_default();
    if status.authenticated != Some(true) {
        return Err(Refused::Unauthenticated(
            "the token is not valid for the message API".into(),
        ));
    }
    // The API server returns the audiences the token was accepted for; an empty list is
    // the server's own audience, not ours.
    if !status
        .audiences
        .unwrap_or_default()
        .iter()
        .any(|a| a == audience)
    {
        return Err(Refused::Unauthenticated(
            "the token is not for the message API's audience".into(),
        ));
    }
    let username = status.user.and_then(|u| u.username).unwrap_or_default();
    if username != caller {
        return Err(Refused::Forbidden(format!(
            "{username} may not send messages through this session; only {caller} may"
        )));
    }
    Ok(())
}

pub struct TokenReviews {
    api: Api<TokenReview>,
    audience: String,
    /// `system:serviceaccount:<namespace>:<name>` of the hub.
    caller: String,
    accepted: Mutex<HashMap<String, Instant>>,
}

impl TokenReviews {
    pub fn new(client: kube::Client, audience: String, caller: String) -> Self {
        Self {
            api: Api::all(client),
            audience,
            caller,
            accepted: Mutex::new(HashMap::new()),
        }
    }

    fn remembered(&self, digest: &str) -> bool {
        let accepted = self.accepted.lock().unwrap_or_else(|p| p.into_inner());
        accepted.get(digest).is_some_and(|t| *t > Instant::now())
    }

    fn remember(&self, digest: String) {
        let mut accepted = self.accepted.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        accepted.retain(|_, t| *t > now);
        if accepted.len() >= CACHE_MAX {
            accepted.clear();
        }
        accepted.insert(digest, now + CACHE_FOR);
    }

    async fn review(&self, token: &str) -> Result<(), Refused> {
        // Only a digest of the token is kept in memory.
        let digest = ids::fingerprint(&[token.as_bytes()]);
        if self.remembered(&digest) {
            return Ok(());
        }
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_string()),
                audiences: Some(vec![self.audience.clone()]),
            },
            ..Default::default()
        };
        let answer = self
            .api
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "TokenReview of a message API caller failed");
                Refused::Unavailable("the caller's token could not be checked".into())
            })?;
        let verdict = judge(&answer, &self.audience, &self.caller);
        match &verdict {
            Ok(()) => self.remember(digest),
            Err(r) => tracing::info!(refused = ?r, "message API caller refused"),
        }
        verdict
    }
}

impl Auth for TokenReviews {
    fn check<'a>(&'a self, headers: &'a HeaderMap) -> BoxFuture<'a, Result<(), Refused>> {
        Box::pin(async move { self.review(bearer(headers)?).await })
    }
}

/// No hub named (`WA_MESSAGES_CALLER` unset): nobody may call.
pub struct NoCaller;

impl Auth for NoCaller {
    fn check<'a>(&'a self, _: &'a HeaderMap) -> BoxFuture<'a, Result<(), Refused>> {
        Box::pin(async {
            Err(Refused::Forbidden(
                "no caller is allowed: the agent was started without WA_MESSAGES_CALLER".into(),
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::authentication::v1::{TokenReviewStatus, UserInfo};

    const HUB: &str = "system:serviceaccount:wa-system:wa-hub";

    fn review(authenticated: bool, audiences: &[&str], user: &str) -> TokenReview {
        TokenReview {
            status: Some(TokenReviewStatus {
                authenticated: Some(authenticated),
                audiences: Some(audiences.iter().map(|a| a.to_string()).collect()),
                user: Some(UserInfo {
                    username: Some(user.into()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn only_the_hubs_token_for_the_audience_passes() {
        let aud = "wa-messages";
        assert_eq!(judge(&review(true, &[aud], HUB), aud, HUB), Ok(()));
        assert!(matches!(
            judge(&review(false, &[aud], HUB), aud, HUB),
            Err(Refused::Unauthenticated(_))
        ));
        assert!(matches!(
            judge(
                &review(true, &["https://kubernetes.default.svc"], HUB),
                aud,
                HUB
            ),
            Err(Refused::Unauthenticated(_))
        ));
        let tenant = "system:serviceaccount:acme:default";
        match judge(&review(true, &[aud], tenant), aud, HUB) {
            Err(Refused::Forbidden(m)) => assert!(m.contains(tenant), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_token_is_a_bearer_header() {
        let mut h = HeaderMap::new();
        assert!(bearer(&h).is_err());
        h.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert!(bearer(&h).is_err());
        h.insert(header::AUTHORIZATION, "Bearer  tok ".parse().unwrap());
        assert_eq!(bearer(&h), Ok("tok"));
    }
}
