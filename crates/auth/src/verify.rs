//! Checking access tokens against a JWKS.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use tokio::sync::Mutex;

use crate::claims::Claims;

/// Where the public keys come from.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// A fixed set, for the issuer itself (it knows its own keys).
    Static(JwkSet),
    /// The issuer's JWKS endpoint, fetched on demand and cached.
    Remote {
        url: String,
        client: reqwest::Client,
    },
}

/// How long a fetch of the issuer's JWKS may take; a request waiting on keys is answered 503
/// after it rather than hanging.
const JWKS_FETCH_TIMEOUT: Duration = Duration::from_secs(5);

impl KeySource {
    /// The issuer's JWKS at `url` (user-service's `/.well-known/jwks.json`), fetched on demand
    /// with a bounded wait.
    pub fn remote(url: &str) -> Result<Self, reqwest::Error> {
        Ok(Self::Remote {
            url: url.to_owned(),
            client: reqwest::Client::builder()
                .timeout(JWKS_FETCH_TIMEOUT)
                .pool_idle_timeout(web::CLIENT_POOL_IDLE_TIMEOUT)
                .build()?,
        })
    }
}

/// Why a token was refused.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no bearer token")]
    Missing,
    #[error("invalid token: {0}")]
    Invalid(String),
    #[error("token keys are unavailable: {0}")]
    KeysUnavailable(String),
}

/// The least time between two JWKS fetches triggered by unknown key ids, so a flood of tokens
/// with made-up `kid`s cannot turn into a flood of requests to user-service.
const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(5);
/// How long fetched keys are trusted before being fetched again.
const KEY_TTL: Duration = Duration::from_secs(600);

/// Verifies access tokens. Cheap to clone (one `Arc`); clones share the key cache.
///
/// Services hold it in their router state, which axum clones for every request: a verifier
/// cloned field by field (the validation's issuer, audience and claim sets, the key source,
/// the cache's handles) was 8% of product-service's CPU answering cached product pages
/// (`perf record --call-graph dwarf`).
#[derive(Debug, Clone)]
pub struct TokenVerifier {
    inner: Arc<Verifier>,
}

#[derive(Debug)]
struct Verifier {
    source: KeySource,
    validation: Validation,
    keys: moka::future::Cache<String, Arc<DecodingKey>>,
    last_fetch: Mutex<Option<Instant>>,
}

impl TokenVerifier {
    pub fn new(source: KeySource, issuer: &str, audience: &str) -> Self {
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.algorithms = vec![Algorithm::EdDSA];
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 5;
        Self {
            inner: Arc::new(Verifier {
                source,
                validation,
                keys: moka::future::Cache::builder()
                    .max_capacity(64)
                    .time_to_live(KEY_TTL)
                    .build(),
                last_fetch: Mutex::new(None),
            }),
        }
    }

    /// Verifies a compact JWS and returns its claims.
    pub async fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|error| AuthError::Invalid(error.to_string()))?;
        if header.alg != Algorithm::EdDSA {
            return Err(AuthError::Invalid(format!(
                "algorithm {:?} is not allowed",
                header.alg
            )));
        }
        let kid = header
            .kid
            .ok_or_else(|| AuthError::Invalid("the token names no key (kid)".into()))?;
        let key = self.key(&kid).await?;
        jsonwebtoken::decode::<Claims>(token, &key, &self.inner.validation)
            .map(|data| data.claims)
            .map_err(|error| AuthError::Invalid(error.to_string()))
    }

    async fn key(&self, kid: &str) -> Result<Arc<DecodingKey>, AuthError> {
        if let Some(key) = self.inner.keys.get(kid).await {
            return Ok(key);
        }
        self.refresh().await?;
        self.inner
            .keys
            .get(kid)
            .await
            .ok_or_else(|| AuthError::Invalid(format!("unknown signing key {kid:?}")))
    }

    /// Reloads every key from the source, at most once per [`MIN_REFRESH_INTERVAL`].
    async fn refresh(&self) -> Result<(), AuthError> {
        let mut last_fetch = self.inner.last_fetch.lock().await;
        if let Some(at) = *last_fetch
            && at.elapsed() < MIN_REFRESH_INTERVAL
            && matches!(self.inner.source, KeySource::Remote { .. })
        {
            return Ok(());
        }
        let set = match &self.inner.source {
            KeySource::Static(set) => set.clone(),
            KeySource::Remote { url, client } => fetch(client, url).await?,
        };
        *last_fetch = Some(Instant::now());
        for jwk in &set.keys {
            let Some(kid) = jwk.common.key_id.clone() else {
                continue;
            };
            match DecodingKey::from_jwk(jwk) {
                Ok(key) => self.inner.keys.insert(kid, Arc::new(key)).await,
                Err(error) => tracing::warn!(%kid, %error, "skipping an unusable JWK"),
            }
        }
        Ok(())
    }
}

async fn fetch(client: &reqwest::Client, url: &str) -> Result<JwkSet, AuthError> {
    let unavailable = |error: reqwest::Error| AuthError::KeysUnavailable(error.to_string());
    client
        .get(url)
        .timeout(Duration::from_secs(3))
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(unavailable)?
        .json::<JwkSet>()
        .await
        .map_err(unavailable)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Role, SigningKey, TokenIssuer};
    use uuid::Uuid;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn issuer(key: SigningKey, audience: &str, ttl: Duration) -> TokenIssuer {
        TokenIssuer::new(key, "ferroshop-users", audience, ttl)
    }

    #[tokio::test]
    async fn a_token_verifies_with_the_issuers_jwks() -> TestResult {
        let key = SigningKey::generate()?;
        let verifier = TokenVerifier::new(
            KeySource::Static(key.jwks()?),
            "ferroshop-users",
            "ferroshop",
        );
        let user = Uuid::new_v4();
        let token =
            issuer(key, "ferroshop", Duration::from_secs(60)).issue(user, Role::Admin, "a@b.c")?;
        let claims = verifier.verify(&token).await?;
        assert_eq!(claims.sub, user);
        assert_eq!(claims.role, Role::Admin);
        Ok(())
    }

    #[tokio::test]
    async fn wrong_audience_foreign_key_tampering_and_alg_none_are_refused() -> TestResult {
        let key = SigningKey::generate()?;
        let verifier = TokenVerifier::new(
            KeySource::Static(key.jwks()?),
            "ferroshop-users",
            "ferroshop",
        );
        let other_aud = issuer(key.clone(), "elsewhere", Duration::from_secs(60)).issue(
            Uuid::new_v4(),
            Role::Customer,
            "a@b.c",
        )?;
        assert!(verifier.verify(&other_aud).await.is_err());

        let foreign = issuer(
            SigningKey::generate()?,
            "ferroshop",
            Duration::from_secs(60),
        )
        .issue(Uuid::new_v4(), Role::Customer, "a@b.c")?;
        assert!(verifier.verify(&foreign).await.is_err());

        let good = issuer(key, "ferroshop", Duration::from_secs(60)).issue(
            Uuid::new_v4(),
            Role::Customer,
            "a@b.c",
        )?;
        let mut parts: Vec<&str> = good.split('.').collect();
        let forged_payload = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            br#"{"sub":"00000000-0000-0000-0000-000000000000","role":"admin"}"#,
        );
        parts[1] = &forged_payload;
        assert!(verifier.verify(&parts.join(".")).await.is_err());

        let none_header = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            br#"{"alg":"none","typ":"JWT"}"#,
        );
        let unsigned = format!(
            "{none_header}.{}.",
            good.split('.').nth(1).unwrap_or_default()
        );
        assert!(verifier.verify(&unsigned).await.is_err());
        Ok(())
    }

    #[tokio::test]
    async fn expired_tokens_are_refused() -> TestResult {
        let key = SigningKey::generate()?;
        let verifier = TokenVerifier::new(
            KeySource::Static(key.jwks()?),
            "ferroshop-users",
            "ferroshop",
        );
        // Issued with a zero lifetime: already past `exp` once the 5 s leeway is exceeded.
        let token = issuer(key, "ferroshop", Duration::ZERO).issue(
            Uuid::new_v4(),
            Role::Customer,
            "a@b.c",
        )?;
        let mut validation = verifier.inner.validation.clone();
        validation.leeway = 0;
        validation.reject_tokens_expiring_in_less_than = 1;
        let strict = TokenVerifier {
            inner: Arc::new(Verifier {
                source: verifier.inner.source.clone(),
                validation,
                keys: verifier.inner.keys.clone(),
                last_fetch: Mutex::new(None),
            }),
        };
        assert!(strict.verify(&token).await.is_err());
        Ok(())
    }

    #[test]
    fn a_key_survives_a_pem_round_trip_with_the_same_kid() -> TestResult {
        let key = SigningKey::generate()?;
        let again = SigningKey::from_pem(&key.to_pem()?)?;
        assert_eq!(key.kid(), again.kid());
        Ok(())
    }
}
