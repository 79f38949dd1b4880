//! Authentication shared by every service: access-token claims, Ed25519 signing keys published
//! as a JWKS, and a verifier that checks tokens against that JWKS.
//!
//! user-service signs short-lived access tokens ([`TokenIssuer`]); every other service (and
//! the gateway) verifies them itself with a [`TokenVerifier`] fed from user-service's
//! `/.well-known/jwks.json`, cached and refreshed when a token names a key it has not seen
//! (key rotation). Verification allows only EdDSA and checks `exp`, `iss` and `aud`, so a token
//! signed for another audience or with a downgraded algorithm is refused.

pub mod claims;
pub mod config;
pub mod extract;
pub mod keys;
pub mod verify;

pub use claims::{Claims, Role};
pub use config::{JwtConfig, VerifierConfig};
pub use extract::{AdminUser, AuthUser};
/// The public key set `KeySource::Static` takes (re-exported so callers need no jsonwebtoken).
pub use jsonwebtoken::jwk::JwkSet;
pub use keys::{SigningKey, TokenIssuer};
pub use verify::{AuthError, KeySource, TokenVerifier};
