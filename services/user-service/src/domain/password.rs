//! Argon2id password hashing, run on the blocking pool so a burst of logins cannot stall the
//! async workers (one hash takes tens of milliseconds of CPU by design).

use std::sync::OnceLock;

use anyhow::Context as _;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tracing::Instrument as _;

/// OWASP's baseline for Argon2id: 19 MiB, 2 passes, 1 lane.
fn hasher() -> anyhow::Result<Argon2<'static>> {
    let params = Params::new(19 * 1024, 2, 1, None)
        .map_err(|error| anyhow::anyhow!("invalid Argon2 parameters: {error}"))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Hashes `password` into a PHC string (algorithm, parameters and salt included).
pub async fn hash(password: String) -> anyhow::Result<String> {
    let span = tracing::info_span!("password.hash");
    tokio::task::spawn_blocking(move || {
        span.in_scope(|| {
            let salt = SaltString::generate(&mut rand::rngs::OsRng);
            hasher()?
                .hash_password(password.as_bytes(), &salt)
                .map(|hash| hash.to_string())
                .map_err(|error| anyhow::anyhow!("hashing failed: {error}"))
        })
    })
    .await
    .context("the hashing task failed")?
}

/// Whether `password` matches `phc`. With `phc = None` (unknown account) it still spends the
/// same work on a dummy hash, so response time does not reveal which e-mails are registered.
pub async fn verify(password: String, phc: Option<String>) -> anyhow::Result<bool> {
    let span = tracing::info_span!("password.verify");
    tokio::task::spawn_blocking(move || {
        span.in_scope(|| {
            let known = phc.is_some();
            let phc = match phc {
                Some(phc) => phc,
                None => dummy_hash()?.to_owned(),
            };
            let parsed = PasswordHash::new(&phc)
                .map_err(|error| anyhow::anyhow!("stored hash is malformed: {error}"))?;
            let matches = hasher()?
                .verify_password(password.as_bytes(), &parsed)
                .is_ok();
            Ok(known && matches)
        })
    })
    .in_current_span()
    .await
    .context("the verification task failed")?
}

fn dummy_hash() -> anyhow::Result<&'static str> {
    static DUMMY: OnceLock<String> = OnceLock::new();
    if let Some(hash) = DUMMY.get() {
        return Ok(hash);
    }
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    let hash = hasher()?
        .hash_password(b"no account has this password", &salt)
        .map_err(|error| anyhow::anyhow!("hashing failed: {error}"))?
        .to_string();
    Ok(DUMMY.get_or_init(|| hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() -> anyhow::Result<()> {
        let phc = hash("correct horse battery".into()).await?;
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(verify("correct horse battery".into(), Some(phc.clone())).await?);
        assert!(!verify("wrong horse battery".into(), Some(phc)).await?);
        Ok(())
    }

    #[tokio::test]
    async fn an_unknown_account_never_verifies() -> anyhow::Result<()> {
        assert!(!verify("no account has this password".into(), None).await?);
        Ok(())
    }
}
