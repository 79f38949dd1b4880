//! Access tokens as user-service signs them, for a service under test that verifies them with
//! the matching key set (`KeySource::Static`) instead of fetching user-service's JWKS.

use std::sync::OnceLock;
use std::time::Duration;

use auth::{JwkSet, JwtConfig, KeySource, Role, SigningKey, TokenIssuer, VerifierConfig};
use uuid::Uuid;

/// A signing key and the tokens it issues (15 minutes, the platform's issuer and audience).
pub struct TestIssuer {
    issuer: TokenIssuer,
    jwks: JwkSet,
}

impl TestIssuer {
    /// A key only this issuer knows.
    pub fn new() -> anyhow::Result<Self> {
        Self::with_key(SigningKey::generate()?)
    }

    /// The same key for every call in this test process, so that every app (and replica) a
    /// test binary starts accepts the tokens issued for the others.
    pub fn shared() -> anyhow::Result<Self> {
        static PEM: OnceLock<Result<String, String>> = OnceLock::new();
        let pem = PEM.get_or_init(|| {
            SigningKey::generate()
                .and_then(|key| key.to_pem())
                .map_err(|error| format!("{error:#}"))
        });
        match pem {
            Ok(pem) => Self::with_key(SigningKey::from_pem(pem)?),
            Err(error) => anyhow::bail!("generating the shared key: {error}"),
        }
    }

    fn with_key(key: SigningKey) -> anyhow::Result<Self> {
        let jwks = key.jwks()?;
        Ok(Self {
            issuer: TokenIssuer::new(
                key,
                auth::config::DEFAULT_ISSUER,
                auth::config::DEFAULT_AUDIENCE,
                Duration::from_secs(900),
            ),
            jwks,
        })
    }

    /// The public key set that verifies this issuer's tokens.
    pub fn jwks(&self) -> &JwkSet {
        &self.jwks
    }

    /// [`TestIssuer::jwks`] as a verifier's key source.
    pub fn keys(&self) -> KeySource {
        KeySource::Static(self.jwks.clone())
    }

    /// A token for `user`.
    pub fn token(&self, user: Uuid, role: Role, email: &str) -> anyhow::Result<String> {
        self.issuer.issue(user, role, email)
    }

    /// A token for a new user in `role`.
    pub fn token_for(&self, role: Role) -> anyhow::Result<String> {
        self.token(Uuid::now_v7(), role, "someone@example.com")
    }
}

/// The token settings of a service started with [`TestIssuer::keys`] (`build_with_keys`):
/// the platform's issuer and audience, and a JWKS URL nothing listens on, since the static key
/// set means it is never fetched.
pub fn static_keys_verifier() -> VerifierConfig {
    VerifierConfig {
        jwks_url: "http://127.0.0.1:9/unused".into(),
        jwt: JwtConfig::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tokens_verify_against_the_issuers_key_set_only() -> anyhow::Result<()> {
        let issuer = TestIssuer::new()?;
        let token = issuer.token_for(Role::Admin)?;
        let verifier = auth::TokenVerifier::new(
            issuer.keys(),
            auth::config::DEFAULT_ISSUER,
            auth::config::DEFAULT_AUDIENCE,
        );
        assert_eq!(verifier.verify(&token).await?.role, Role::Admin);
        let stranger = TestIssuer::new()?.token_for(Role::Admin)?;
        assert!(verifier.verify(&stranger).await.is_err());
        let shared = TestIssuer::shared()?.token_for(Role::Customer)?;
        let again = auth::TokenVerifier::new(
            TestIssuer::shared()?.keys(),
            auth::config::DEFAULT_ISSUER,
            auth::config::DEFAULT_AUDIENCE,
        );
        assert_eq!(again.verify(&shared).await?.role, Role::Customer);
        Ok(())
    }
}
