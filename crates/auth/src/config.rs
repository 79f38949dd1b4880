//! The token settings user-service signs with and every verifier requires (`JWT_ISSUER`,
//! `JWT_AUDIENCE`), and where verifiers fetch the keys (`JWKS_URL`). Read the same way by every
//! service, so a deployment that renames its issuer changes one variable, not five parsers.

use settings::Env;

/// The `iss` of user-service's tokens unless `JWT_ISSUER` says otherwise.
pub const DEFAULT_ISSUER: &str = "ferroshop-users";
/// The `aud` of the platform's tokens unless `JWT_AUDIENCE` says otherwise.
pub const DEFAULT_AUDIENCE: &str = "ferroshop";
/// user-service's key set on the local stack.
pub const DEFAULT_JWKS_URL: &str = "http://127.0.0.1:8081/.well-known/jwks.json";

/// The claims a token is signed with and checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtConfig {
    /// `iss` (`JWT_ISSUER`).
    pub issuer: String,
    /// `aud` (`JWT_AUDIENCE`).
    pub audience: String,
}

impl JwtConfig {
    /// `JWT_ISSUER` and `JWT_AUDIENCE`.
    pub fn from_env(env: &Env) -> Self {
        Self {
            issuer: env.string_or("JWT_ISSUER", DEFAULT_ISSUER),
            audience: env.string_or("JWT_AUDIENCE", DEFAULT_AUDIENCE),
        }
    }
}

impl Default for JwtConfig {
    fn default() -> Self {
        Self {
            issuer: DEFAULT_ISSUER.into(),
            audience: DEFAULT_AUDIENCE.into(),
        }
    }
}

/// What a verifying service needs: user-service's key set and the claims to require.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifierConfig {
    /// user-service's JWKS (`JWKS_URL`).
    pub jwks_url: String,
    pub jwt: JwtConfig,
}

impl VerifierConfig {
    /// `JWKS_URL` (default: user-service on the local stack), `JWT_ISSUER` and `JWT_AUDIENCE`.
    pub fn from_env(env: &Env) -> Self {
        Self::with_default_jwks(env, DEFAULT_JWKS_URL.into())
    }

    /// As [`VerifierConfig::from_env`] with another default for `JWKS_URL`.
    pub fn with_default_jwks(env: &Env, default_jwks_url: String) -> Self {
        Self {
            jwks_url: env.get("JWKS_URL").unwrap_or(default_jwks_url),
            jwt: JwtConfig::from_env(env),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_user_service() {
        let verifier = VerifierConfig::from_env(&Env::from_pairs([]));
        assert_eq!(verifier.jwks_url, DEFAULT_JWKS_URL);
        assert_eq!(verifier.jwt, JwtConfig::default());
        assert_eq!(verifier.jwt.issuer, "ferroshop-users");
        assert_eq!(verifier.jwt.audience, "ferroshop");
    }

    #[test]
    fn the_environment_overrides_each_setting() {
        let env = Env::from_pairs([
            ("JWKS_URL", "http://users:8081/.well-known/jwks.json"),
            ("JWT_ISSUER", "shop-users"),
            ("JWT_AUDIENCE", "shop"),
        ]);
        let verifier = VerifierConfig::with_default_jwks(&env, "http://unused".into());
        assert_eq!(verifier.jwks_url, "http://users:8081/.well-known/jwks.json");
        assert_eq!(verifier.jwt.issuer, "shop-users");
        assert_eq!(verifier.jwt.audience, "shop");
        let unset = VerifierConfig::with_default_jwks(&Env::from_pairs([]), "http://u/j".into());
        assert_eq!(unset.jwks_url, "http://u/j");
    }
}
