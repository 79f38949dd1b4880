//! Ed25519 signing keys and the issuer of access tokens.

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::claims::{Claims, Role};

/// A private Ed25519 key with its key id (a hash of the public key, so every replica loading
/// the same key publishes the same `kid`).
#[derive(Clone)]
pub struct SigningKey {
    key: ed25519_dalek::SigningKey,
    kid: String,
    encoding: EncodingKey,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A fresh random key.
    pub fn generate() -> anyhow::Result<Self> {
        Self::from_dalek(ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng))
    }

    /// Reads a PKCS#8 PEM private key.
    pub fn from_pem(pem: &str) -> anyhow::Result<Self> {
        let key = ed25519_dalek::SigningKey::from_pkcs8_pem(pem)
            .map_err(|error| anyhow::anyhow!("not an Ed25519 PKCS#8 PEM private key: {error}"))?;
        Self::from_dalek(key)
    }

    /// Loads the key at `path`; when `create` is set and there is none, generates one and
    /// writes it there (mode 0600). Creation is exclusive, so replicas starting together end up
    /// with the one key that won the race.
    pub fn load_or_create(path: &Path, create: bool) -> anyhow::Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(pem) => {
                Self::from_pem(&pem).with_context(|| format!("reading key {}", path.display()))
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound && create => {
                let key = Self::generate()?;
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)
                        .with_context(|| format!("creating {}", parent.display()))?;
                }
                match write_new_private_file(path, key.to_pem()?.as_bytes()) {
                    Ok(()) => Ok(key),
                    Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
                        Self::load_or_create(path, false)
                    }
                    Err(error) => {
                        Err(error).with_context(|| format!("writing key {}", path.display()))
                    }
                }
            }
            Err(error) => Err(error).with_context(|| format!("reading key {}", path.display())),
        }
    }

    fn from_dalek(key: ed25519_dalek::SigningKey) -> anyhow::Result<Self> {
        let der = key
            .to_pkcs8_der()
            .map_err(|error| anyhow::anyhow!("cannot encode the key: {error}"))?;
        let digest = Sha256::digest(key.verifying_key().as_bytes());
        let kid = URL_SAFE_NO_PAD.encode(&digest[..12]);
        Ok(Self {
            encoding: EncodingKey::from_ed_der(der.as_bytes()),
            key,
            kid,
        })
    }

    /// The PKCS#8 PEM encoding of the private key.
    pub fn to_pem(&self) -> anyhow::Result<String> {
        let pem = self
            .key
            .to_pkcs8_pem(Default::default())
            .map_err(|error| anyhow::anyhow!("cannot encode the key: {error}"))?;
        Ok(pem.to_string())
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public half as a JWK.
    pub fn public_jwk(&self) -> anyhow::Result<Jwk> {
        let x = URL_SAFE_NO_PAD.encode(self.key.verifying_key().as_bytes());
        let jwk = serde_json::json!({
            "kty": "OKP", "crv": "Ed25519", "x": x,
            "kid": self.kid, "alg": "EdDSA", "use": "sig",
        });
        serde_json::from_value(jwk).context("building the JWK")
    }

    /// A JWKS holding this key's public half.
    pub fn jwks(&self) -> anyhow::Result<JwkSet> {
        Ok(JwkSet {
            keys: vec![self.public_jwk()?],
        })
    }
}

#[cfg(unix)]
fn write_new_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

#[cfg(not(unix))]
fn write_new_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    file.write_all(contents)
}

/// Signs access tokens.
#[derive(Debug, Clone)]
pub struct TokenIssuer {
    key: SigningKey,
    issuer: String,
    audience: String,
    ttl: Duration,
}

impl TokenIssuer {
    pub fn new(key: SigningKey, issuer: &str, audience: &str, ttl: Duration) -> Self {
        Self {
            key,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            ttl,
        }
    }

    pub fn key(&self) -> &SigningKey {
        &self.key
    }

    /// Lifetime of the tokens it issues, in seconds.
    pub fn ttl_secs(&self) -> u64 {
        self.ttl.as_secs()
    }

    /// A signed access token for the user.
    pub fn issue(&self, user_id: Uuid, role: Role, email: &str) -> anyhow::Result<String> {
        let now = Utc::now().timestamp();
        let claims = Claims {
            sub: user_id,
            role,
            email: email.to_owned(),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            exp: now + i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX / 2),
            iat: now,
            jti: Uuid::new_v4(),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.key.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.key.encoding).context("signing the token")
    }
}
