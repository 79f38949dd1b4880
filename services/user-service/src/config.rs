//! Typed configuration, read once from the environment and validated at start.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use auth::JwtConfig;
use messaging::KafkaConfig;
use secrecy::{ExposeSecret as _, SecretString};
use settings::Env;
use web::ServerConfig;

/// The admin password used by the local profile; any other profile refuses to start with it.
pub const DEFAULT_ADMIN_PASSWORD: &str = "admin-dev-password";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// A developer machine: generated keys and the default admin password are allowed.
    Local,
    /// Anything else: every secret must be provided.
    Production,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub profile: Profile,
    /// `HOST`, `PORT` (8081), `REQUEST_TIMEOUT_SECS` (10), `ZIPKIN_ENDPOINT`.
    pub server: ServerConfig,
    pub database_url: SecretString,
    pub kafka: KafkaConfig,
    /// Prepended to every topic name (isolates test runs sharing a broker).
    pub topic_prefix: String,
    pub jwt_private_key_path: PathBuf,
    /// The `iss` and `aud` of the tokens this service signs.
    pub jwt: JwtConfig,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    pub admin_email: Option<String>,
    pub admin_password: SecretString,
    /// Failed logins per e-mail before it is locked.
    pub login_max_failures: i32,
    /// First lock duration; it doubles with every further failure, up to an hour.
    pub login_lockout: Duration,
    /// Whether this process runs the outbox relay (tests switch it off to play crashes).
    pub run_outbox_relay: bool,
    /// Threads hashing passwords, each holding one 12 MiB Argon2 buffer.
    pub password_workers: usize,
    /// OpenID Connect providers people may sign in with ("Sign in with Google").
    pub oidc_providers: Vec<OidcProviderConfig>,
}

/// One OpenID Connect provider, as the relying party knows it.
#[derive(Debug, Clone)]
pub struct OidcProviderConfig {
    /// The name in the paths (`/api/users/oidc/{name}/...`) and in linked identities.
    pub name: String,
    /// Issuer URL; discovery is read from `<issuer>/.well-known/openid-configuration` and the
    /// ID tokens' `iss` must be it.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: SecretString,
    /// Where the provider sends the browser back: the gateway's
    /// `/api/users/oidc/{name}/callback`, registered with the provider.
    pub redirect_uri: String,
}

/// Google's issuer, the default outside the local profile.
pub const GOOGLE_ISSUER: &str = "https://accounts.google.com";
/// The local stand-in's issuer (`cargo xtask up` runs it on 8092, `OIDC_PORT`).
pub const LOCAL_GOOGLE_ISSUER: &str = "http://127.0.0.1:8092/google";

/// Reads the providers named in `OIDC_PROVIDERS` (default `google`) from `OIDC_<NAME>_*`.
/// Locally every value has a default that points at the stand-in; elsewhere a provider without
/// a client id is switched off, and one with a client id must have a secret.
fn oidc_providers(env: &Env, profile: Profile) -> anyhow::Result<Vec<OidcProviderConfig>> {
    let var = |name: &str| env.get(name);
    let names = env.string_or("OIDC_PROVIDERS", "google");
    let mut providers = Vec::new();
    for name in names.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        if !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            bail!("OIDC_PROVIDERS: {name:?} must be lower-case letters, digits and '-'");
        }
        let key = |suffix: &str| {
            format!(
                "OIDC_{}_{suffix}",
                name.to_ascii_uppercase().replace('-', "_")
            )
        };
        let local = profile == Profile::Local;
        let client_id = match var(&key("CLIENT_ID")) {
            Some(id) => id,
            None if local => "ferroshop-local".into(),
            None => continue,
        };
        let secret = match (var(&key("CLIENT_SECRET")), var(&key("CLIENT_SECRET_FILE"))) {
            (Some(secret), _) => secret,
            (None, Some(path)) => std::fs::read_to_string(&path)
                .with_context(|| format!("reading {} ({path})", key("CLIENT_SECRET_FILE")))?
                .trim()
                .to_owned(),
            (None, None) if local => "local-stand-in-secret".into(),
            (None, None) => bail!(
                "{} is set but neither {} nor {}",
                key("CLIENT_ID"),
                key("CLIENT_SECRET"),
                key("CLIENT_SECRET_FILE")
            ),
        };
        let issuer = match var(&key("ISSUER")) {
            Some(issuer) => issuer,
            None if name == "google" && local => LOCAL_GOOGLE_ISSUER.into(),
            None if name == "google" => GOOGLE_ISSUER.into(),
            None => bail!("{} must be set", key("ISSUER")),
        };
        let redirect_uri = match var(&key("REDIRECT_URI")) {
            Some(uri) => uri,
            None if local => format!("http://127.0.0.1:8080/api/users/oidc/{name}/callback"),
            None => bail!("{} must be set", key("REDIRECT_URI")),
        };
        for (what, url) in [("ISSUER", &issuer), ("REDIRECT_URI", &redirect_uri)] {
            let https = url.starts_with("https://");
            if !(https || (local && url.starts_with("http://"))) {
                bail!(
                    "{} must be an https:// URL (http:// only locally)",
                    key(what)
                );
            }
        }
        providers.push(OidcProviderConfig {
            name: name.to_owned(),
            issuer: issuer.trim_end_matches('/').to_owned(),
            client_id,
            client_secret: SecretString::from(secret),
            redirect_uri,
        });
    }
    Ok(providers)
}

impl Config {
    /// Reads conventional variables (see README).
    #[allow(
        clippy::disallowed_methods,
        reason = "the one place this service reads its environment"
    )]
    pub fn from_env() -> anyhow::Result<Self> {
        Self::read(&Env::process())
    }

    /// The configuration `env` describes, validated.
    pub fn read(env: &Env) -> anyhow::Result<Self> {
        let profile = match env.get("APP_PROFILE").as_deref() {
            None | Some("local") => Profile::Local,
            Some("production") => Profile::Production,
            Some(other) => bail!("APP_PROFILE must be local or production, not {other:?}"),
        };
        let config = Self {
            profile,
            server: ServerConfig::from_env(env, 8081, 10)?,
            database_url: env
                .secret_or("DATABASE_URL", "postgres://shop:shop@127.0.0.1:5432/users"),
            kafka: KafkaConfig::from_env(env)?,
            topic_prefix: env.string_or("KAFKA_TOPIC_PREFIX", ""),
            jwt_private_key_path: PathBuf::from(
                env.string_or("JWT_PRIVATE_KEY_PATH", ".local/secrets/jwt-ed25519.pem"),
            ),
            jwt: JwtConfig::from_env(env),
            access_token_ttl: env.seconds("ACCESS_TOKEN_TTL_SECS", 900)?,
            refresh_token_ttl: env.seconds("REFRESH_TOKEN_TTL_SECS", 30 * 24 * 3600)?,
            admin_email: match env.get("ADMIN_EMAIL") {
                Some(email) => Some(email),
                None if profile == Profile::Local => Some("admin@example.com".into()),
                None => None,
            },
            admin_password: env.secret_or("ADMIN_PASSWORD", DEFAULT_ADMIN_PASSWORD),
            login_max_failures: env.number("LOGIN_MAX_FAILURES", 5)?,
            login_lockout: env.seconds("LOGIN_LOCKOUT_SECS", 30)?,
            run_outbox_relay: true,
            password_workers: env.number(
                "PASSWORD_HASH_WORKERS",
                std::thread::available_parallelism()
                    .map(usize::from)
                    .unwrap_or(2),
            )?,
            oidc_providers: oidc_providers(env, profile)?,
        };
        config.validate()?;
        Ok(config)
    }

    /// Refuses configurations that are unsafe outside a developer machine.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.profile == Profile::Production
            && self.admin_email.is_some()
            && self.admin_password.expose_secret() == DEFAULT_ADMIN_PASSWORD
        {
            bail!("ADMIN_PASSWORD is the local default; set a real one outside APP_PROFILE=local");
        }
        if self.login_max_failures < 1 {
            bail!("LOGIN_MAX_FAILURES must be at least 1");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn providers(
        vars: &[(&str, &str)],
        profile: Profile,
    ) -> anyhow::Result<Vec<OidcProviderConfig>> {
        oidc_providers(&Env::from_pairs(vars.iter().copied()), profile)
    }

    #[test]
    fn defaults_are_the_local_stack_and_refusals_name_the_variable() -> anyhow::Result<()> {
        let config = Config::read(&Env::from_pairs([]))?;
        assert_eq!(config.server.port, 8081);
        assert_eq!(config.profile, Profile::Local);
        assert_eq!(config.access_token_ttl, Duration::from_secs(900));
        assert_eq!(config.admin_email.as_deref(), Some("admin@example.com"));
        let refusal = |pairs: &[(&'static str, &'static str)]| {
            Config::read(&Env::from_pairs(pairs.iter().copied()))
                .err()
                .map(|e| format!("{e:#}"))
                .unwrap_or_default()
        };
        assert!(refusal(&[("LOGIN_MAX_FAILURES", "five")]).starts_with("LOGIN_MAX_FAILURES"));
        assert!(refusal(&[("APP_PROFILE", "staging")]).starts_with("APP_PROFILE"));
        // Outside the local profile the default admin password refuses to start.
        let production = refusal(&[
            ("APP_PROFILE", "production"),
            ("ADMIN_EMAIL", "admin@shop.example"),
        ]);
        assert!(production.starts_with("ADMIN_PASSWORD"), "{production}");
        Ok(())
    }

    #[test]
    fn locally_google_points_at_the_stand_in_by_default() -> anyhow::Result<()> {
        let google = providers(&[], Profile::Local)?;
        assert_eq!(google.len(), 1);
        assert_eq!(google[0].issuer, LOCAL_GOOGLE_ISSUER);
        assert_eq!(
            google[0].redirect_uri,
            "http://127.0.0.1:8080/api/users/oidc/google/callback"
        );
        Ok(())
    }

    #[test]
    fn outside_the_local_profile_google_is_the_real_issuer_and_needs_its_secret()
    -> anyhow::Result<()> {
        assert!(providers(&[], Profile::Production)?.is_empty());
        let vars = [
            ("OIDC_GOOGLE_CLIENT_ID", "id"),
            ("OIDC_GOOGLE_CLIENT_SECRET", "s3cret"),
            (
                "OIDC_GOOGLE_REDIRECT_URI",
                "https://shop.example/api/users/oidc/google/callback",
            ),
        ];
        let google = providers(&vars, Profile::Production)?;
        assert_eq!(google[0].issuer, GOOGLE_ISSUER);
        assert_eq!(google[0].client_secret.expose_secret(), "s3cret");
        assert!(providers(&vars[..1], Profile::Production).is_err());
        let plain_http = [
            vars[0],
            vars[1],
            ("OIDC_GOOGLE_REDIRECT_URI", "http://shop.example/cb"),
        ];
        assert!(providers(&plain_http, Profile::Production).is_err());
        Ok(())
    }

    #[test]
    fn the_secret_can_come_from_a_file() -> anyhow::Result<()> {
        let path = std::env::temp_dir().join(format!("oidc-secret-{}", std::process::id()));
        std::fs::write(&path, "from-file\n")?;
        let path_text = path.display().to_string();
        let google = providers(
            &[("OIDC_GOOGLE_CLIENT_SECRET_FILE", path_text.as_str())],
            Profile::Local,
        );
        std::fs::remove_file(&path)?;
        assert_eq!(google?[0].client_secret.expose_secret(), "from-file");
        Ok(())
    }
}
