//! Argon2id password hashing on a small pool of dedicated threads.
//!
//! One hash costs 12 MiB of memory and tens of milliseconds of CPU by design. Running them on
//! tokio's blocking pool let a burst of logins spawn dozens of threads, each leaving its buffer
//! in the allocator (measured: 850 MB RSS during 8 concurrent logins). Here a fixed number of
//! workers (one per core) each own one reusable memory buffer, so memory stays at
//! `workers x 12 MiB` whatever the load, and a bounded queue in front answers "busy" instead of
//! piling work up. A hash made with older parameters still verifies, and a successful
//! verification hands back a new hash with the current ones so the caller can upgrade it.

use std::sync::Arc;

use anyhow::Context as _;
use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use tokio::sync::{mpsc, oneshot};

/// Argon2id with 12 MiB, 3 passes, 1 lane: one of the configurations OWASP's password
/// storage cheat sheet lists as equally strong (m=19 MiB, t=2 is another). It does about the
/// same work per hash as the 19 MiB one but holds a third less memory per worker, which keeps
/// the service under 50 MB RSS with two workers busy (docs/BENCHMARKS.md).
fn params() -> anyhow::Result<Params> {
    Params::new(12 * 1024, 3, 1, Some(OUTPUT_LEN))
        .map_err(|error| anyhow::anyhow!("invalid Argon2 parameters: {error}"))
}

/// Length of the hash output in bytes.
const OUTPUT_LEN: usize = 32;

/// The outcome of checking a password against a stored hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    /// Whether the password matches (always `false` for an unknown account).
    pub matches: bool,
    /// For a match against a hash made with other parameters (or algorithm): the password
    /// hashed again with the current ones, to be stored in its place.
    pub upgraded_hash: Option<String>,
}

/// Why the pool could not answer.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// Every worker is busy and the queue is full: shed load rather than queue without bound.
    #[error("password hashing is saturated")]
    Busy,
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

enum Job {
    Hash {
        password: String,
        reply: oneshot::Sender<anyhow::Result<String>>,
        span: tracing::Span,
    },
    Verify {
        password: String,
        phc: String,
        reply: oneshot::Sender<anyhow::Result<Verification>>,
        span: tracing::Span,
    },
}

/// Handle to the hashing workers; cheap to clone.
#[derive(Clone)]
pub struct PasswordHasher {
    jobs: mpsc::Sender<Job>,
    /// A hash of a password nobody has, verified for unknown accounts so that the response
    /// time does not reveal which e-mails are registered.
    dummy: Arc<String>,
}

impl std::fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordHasher").finish_non_exhaustive()
    }
}

impl PasswordHasher {
    /// Starts `workers` threads (at least one) behind a queue of `queue` jobs.
    pub async fn start(workers: usize, queue: usize) -> anyhow::Result<Self> {
        let params = params()?;
        let (jobs, receiver) = mpsc::channel(queue.max(1));
        let receiver = Arc::new(std::sync::Mutex::new(receiver));
        for index in 0..workers.max(1) {
            let receiver = receiver.clone();
            let params = params.clone();
            std::thread::Builder::new()
                .name(format!("argon2-{index}"))
                .spawn(move || work(&receiver, &params))
                .context("starting a hashing thread")?;
        }
        let mut hasher = Self {
            jobs,
            dummy: Arc::new(String::new()),
        };
        let dummy = hasher
            .hash("no account has this password".into())
            .await
            .map_err(|error| anyhow::anyhow!("computing the dummy hash: {error}"))?;
        hasher.dummy = Arc::new(dummy);
        Ok(hasher)
    }

    /// Hashes `password` into a PHC string (algorithm, parameters and salt included).
    pub async fn hash(&self, password: String) -> Result<String, PasswordError> {
        let (reply, answer) = oneshot::channel();
        let span = tracing::info_span!("password.hash");
        self.submit(Job::Hash {
            password,
            reply,
            span,
        })
        .await?;
        Ok(answer.await.context("the hashing worker stopped")??)
    }

    /// [`Self::verify_and_upgrade`]'s answer alone (the tests' shorthand).
    #[cfg(test)]
    pub async fn verify(
        &self,
        password: String,
        phc: Option<String>,
    ) -> Result<bool, PasswordError> {
        Ok(self.verify_and_upgrade(password, phc).await?.matches)
    }

    /// Whether `password` matches `phc`, and on a match against an outdated hash also the new
    /// hash. With `phc = None` (unknown account) it does the same work against a dummy hash
    /// and answers no match.
    pub async fn verify_and_upgrade(
        &self,
        password: String,
        phc: Option<String>,
    ) -> Result<Verification, PasswordError> {
        let known = phc.is_some();
        let phc = phc.unwrap_or_else(|| self.dummy.as_str().to_owned());
        let (reply, answer) = oneshot::channel();
        let span = tracing::info_span!("password.verify");
        self.submit(Job::Verify {
            password,
            phc,
            reply,
            span,
        })
        .await?;
        let verification = answer.await.context("the hashing worker stopped")??;
        Ok(if known {
            verification
        } else {
            Verification {
                matches: false,
                upgraded_hash: None,
            }
        })
    }

    async fn submit(&self, job: Job) -> Result<(), PasswordError> {
        self.jobs.try_send(job).map_err(|error| match error {
            mpsc::error::TrySendError::Full(_) => PasswordError::Busy,
            mpsc::error::TrySendError::Closed(_) => {
                PasswordError::Failed(anyhow::anyhow!("the hashing workers stopped"))
            }
        })
    }
}

/// A worker: takes jobs until every sender is gone, reusing one memory buffer throughout.
fn work(receiver: &std::sync::Mutex<mpsc::Receiver<Job>>, params: &Params) {
    let mut memory = vec![Block::default(); params.block_count()];
    loop {
        let job = match receiver.lock() {
            Ok(mut receiver) => receiver.blocking_recv(),
            Err(_) => return,
        };
        match job {
            None => return,
            Some(Job::Hash {
                password,
                reply,
                span,
            }) => {
                let result = span.in_scope(|| hash_with(&password, params, &mut memory));
                let _ = reply.send(result);
            }
            Some(Job::Verify {
                password,
                phc,
                reply,
                span,
            }) => {
                let result = span.in_scope(|| {
                    let (matches, outdated) = verify_with(&password, &phc, params, &mut memory)?;
                    let upgraded_hash = if matches && outdated {
                        Some(hash_with(&password, params, &mut memory)?)
                    } else {
                        None
                    };
                    Ok(Verification {
                        matches,
                        upgraded_hash,
                    })
                });
                let _ = reply.send(result);
            }
        }
    }
}

fn hash_with(password: &str, params: &Params, memory: &mut [Block]) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    let mut salt_bytes = [0u8; 64];
    let salt_bytes = salt
        .decode_b64(&mut salt_bytes)
        .map_err(|error| anyhow::anyhow!("decoding the salt: {error}"))?;
    let output = compute(
        password,
        salt_bytes,
        Algorithm::Argon2id,
        Version::V0x13,
        params,
        memory,
        OUTPUT_LEN,
    )?;
    let hash = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(params)
            .map_err(|error| anyhow::anyhow!("encoding parameters: {error}"))?,
        salt: Some(salt.as_salt()),
        hash: Some(output),
    };
    Ok(hash.to_string())
}

/// Whether `password` matches `phc`, and whether `phc` was made with other settings than the
/// pool's (so it should be replaced).
fn verify_with(
    password: &str,
    phc: &str,
    pool_params: &Params,
    memory: &mut [Block],
) -> anyhow::Result<(bool, bool)> {
    let parsed = PasswordHash::new(phc)
        .map_err(|error| anyhow::anyhow!("stored hash is malformed: {error}"))?;
    let algorithm = Algorithm::try_from(parsed.algorithm)
        .map_err(|error| anyhow::anyhow!("stored hash algorithm: {error}"))?;
    let version = match parsed.version {
        Some(version) => Version::try_from(version)
            .map_err(|error| anyhow::anyhow!("stored hash version: {error}"))?,
        None => Version::V0x13,
    };
    let params = Params::try_from(&parsed)
        .map_err(|error| anyhow::anyhow!("stored hash parameters: {error}"))?;
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        anyhow::bail!("stored hash lacks salt or output");
    };
    let mut salt_bytes = [0u8; 64];
    let salt_bytes = salt
        .decode_b64(&mut salt_bytes)
        .map_err(|error| anyhow::anyhow!("decoding the salt: {error}"))?;
    // Hashes made with other parameters (older settings) get a buffer of their own.
    let mut own;
    let memory = if params.block_count() == pool_params.block_count() {
        memory
    } else {
        own = vec![Block::default(); params.block_count()];
        own.as_mut_slice()
    };
    let actual = compute(
        password,
        salt_bytes,
        algorithm,
        version,
        &params,
        memory,
        expected.len(),
    )?;
    let outdated = algorithm != Algorithm::Argon2id
        || version != Version::V0x13
        || params.m_cost() != pool_params.m_cost()
        || params.t_cost() != pool_params.t_cost()
        || params.p_cost() != pool_params.p_cost()
        || expected.len() != OUTPUT_LEN;
    // `Output` compares in constant time.
    Ok((actual == expected, outdated))
}

fn compute(
    password: &str,
    salt: &[u8],
    algorithm: Algorithm,
    version: Version,
    params: &Params,
    memory: &mut [Block],
    output_len: usize,
) -> anyhow::Result<Output> {
    let argon2 = Argon2::new(algorithm, version, params.clone());
    let mut out = vec![0u8; output_len];
    argon2
        .hash_password_into_with_memory(password.as_bytes(), salt, &mut out, memory)
        .map_err(|error| anyhow::anyhow!("hashing failed: {error}"))?;
    Output::new(&out).map_err(|error| anyhow::anyhow!("hash output: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::PasswordVerifier as _;

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() -> anyhow::Result<()> {
        let hasher = PasswordHasher::start(2, 8).await?;
        let phc = hasher.hash("correct horse battery".into()).await?;
        assert!(phc.starts_with("$argon2id$v=19$m=12288,t=3,p=1$"), "{phc}");
        assert!(
            hasher
                .verify("correct horse battery".into(), Some(phc.clone()))
                .await?
        );
        assert!(
            !hasher
                .verify("wrong horse battery".into(), Some(phc))
                .await?
        );
        Ok(())
    }

    #[tokio::test]
    async fn hashes_interoperate_with_the_reference_implementation() -> anyhow::Result<()> {
        let hasher = PasswordHasher::start(1, 8).await?;
        let ours = hasher.hash("correct horse battery".into()).await?;
        let parsed = PasswordHash::new(&ours).map_err(|e| anyhow::anyhow!("{e}"))?;
        assert!(
            Argon2::default()
                .verify_password(b"correct horse battery", &parsed)
                .is_ok()
        );

        // A hash made elsewhere with other parameters still verifies.
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        let other = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(8 * 1024, 1, 1, None).map_err(|e| anyhow::anyhow!("{e}"))?,
        );
        let theirs = argon2::PasswordHasher::hash_password(&other, b"old password 1", &salt)
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .to_string();
        assert!(hasher.verify("old password 1".into(), Some(theirs)).await?);
        Ok(())
    }

    #[tokio::test]
    async fn a_match_against_older_parameters_comes_with_an_upgraded_hash() -> anyhow::Result<()> {
        let hasher = PasswordHasher::start(1, 8).await?;
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        let old_settings = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(19 * 1024, 2, 1, Some(32)).map_err(|e| anyhow::anyhow!("{e}"))?,
        );
        let old = argon2::PasswordHasher::hash_password(&old_settings, b"old password 1", &salt)
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .to_string();

        let wrong = hasher
            .verify_and_upgrade("old password 2".into(), Some(old.clone()))
            .await?;
        assert_eq!(
            wrong,
            Verification {
                matches: false,
                upgraded_hash: None
            },
            "a wrong password upgrades nothing"
        );

        let right = hasher
            .verify_and_upgrade("old password 1".into(), Some(old))
            .await?;
        assert!(right.matches);
        let Some(upgraded) = right.upgraded_hash else {
            anyhow::bail!("no upgraded hash for an outdated one");
        };
        assert!(
            upgraded.starts_with("$argon2id$v=19$m=12288,t=3,p=1$"),
            "{upgraded}"
        );
        let again = hasher
            .verify_and_upgrade("old password 1".into(), Some(upgraded))
            .await?;
        assert_eq!(
            again,
            Verification {
                matches: true,
                upgraded_hash: None
            },
            "a current hash is not upgraded again"
        );
        Ok(())
    }

    #[tokio::test]
    async fn an_unknown_account_never_verifies() -> anyhow::Result<()> {
        let hasher = PasswordHasher::start(1, 8).await?;
        assert!(
            !hasher
                .verify("no account has this password".into(), None)
                .await?
        );
        Ok(())
    }

    #[tokio::test]
    async fn a_full_queue_answers_busy_instead_of_waiting() -> anyhow::Result<()> {
        let hasher = PasswordHasher::start(1, 1).await?;
        let attempts =
            futures::future::join_all((0..8).map(|_| hasher.hash("correct horse battery".into())))
                .await;
        assert!(
            attempts
                .iter()
                .any(|r| matches!(r, Err(PasswordError::Busy)))
        );
        assert!(attempts.iter().any(Result::is_ok));
        Ok(())
    }
}
