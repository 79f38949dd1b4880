//! Wiring: database, migrations, keys, admin seed, Kafka, outbox relay and the HTTP server.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use auth::{KeySource, SigningKey, TokenIssuer, TokenVerifier};
use contracts::topics::{self, Topic};
use messaging::kafka::Producer as FutureProducer;
use messaging::{OutboxRelay, TopicSpec};
use secrecy::ExposeSecret as _;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use uuid::Uuid;
use web::{Lifecycle, Readiness};

use crate::api::{self, AppState};
use crate::config::{Config, Profile};
use crate::domain::password::PasswordHasher;
use crate::provider::{IdentityProvider, ProviderHttp};
use crate::store::users::NewUser;

/// A built, not yet running, user-service.
pub struct Application {
    lifecycle: Lifecycle,
    pool: PgPool,
}

impl Application {
    /// Connects to everything, applies migrations, seeds the admin and binds the listener.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let config = Arc::new(config);
        let pool = PgPoolOptions::new()
            .max_connections(20)
            // Within the 2 s a client may wait: PostgreSQL away answers 503 in time.
            .acquire_timeout(Duration::from_millis(1_500))
            .connect(config.database_url.expose_secret())
            .await
            .context("cannot connect to PostgreSQL (DATABASE_URL)")?;
        // sqlx holds a PostgreSQL advisory lock while migrating, so replicas starting together
        // apply each migration once.
        sqlx::migrate!("./migrations")
            .run(&pool)
            .await
            .context("applying database migrations")?;

        let key = SigningKey::load_or_create(
            &config.jwt_private_key_path,
            config.profile == Profile::Local,
        )
        .context("loading the JWT signing key (JWT_PRIVATE_KEY_PATH)")?;
        let verifier = TokenVerifier::new(
            KeySource::Static(key.jwks()?),
            &config.jwt.issuer,
            &config.jwt.audience,
        );
        let issuer = TokenIssuer::new(
            key,
            &config.jwt.issuer,
            &config.jwt.audience,
            config.access_token_ttl,
        );

        let kafka = config.kafka.clone();
        let topics = Topic::with_prefix(config.topic_prefix.clone());
        kafka
            .ensure_topics(&[TopicSpec {
                name: topics.qualified(topics::USER_EVENTS),
                partitions: 3,
                compacted: false,
            }])
            .await
            .context("creating Kafka topics (KAFKA_BROKERS)")?;
        let producer: FutureProducer = kafka.producer()?;

        let passwords = PasswordHasher::start(config.password_workers, 256)
            .await
            .context("starting the password hashing workers")?;
        let providers = identity_providers(&config)?;
        let state = AppState {
            providers,
            pool: pool.clone(),
            passwords,
            issuer,
            verifier,
            topics: topics.clone(),
            config: config.clone(),
        };
        seed_admin(&state).await?;

        let router = web::documented_service_router::<api::ApiDoc>(
            "user-service",
            config.server.request_timeout,
            api::router(state),
            readiness(
                pool.clone(),
                producer.clone(),
                topics.qualified(contracts::topics::USER_EVENTS),
            ),
        )?;
        let mut lifecycle =
            Lifecycle::bind(&config.server.host, config.server.port, router).await?;
        if config.run_outbox_relay {
            let relay = OutboxRelay::new(pool.clone(), producer);
            lifecycle.relay("outbox relay", |stop| relay.run(stop));
        }
        let closing = pool.clone();
        lifecycle.close_at_end(async move { closing.close().await });
        Ok(Self { lifecycle, pool })
    }

    /// The port actually bound (useful with port 0).
    pub fn port(&self) -> u16 {
        self.lifecycle.port()
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Serves until `shutdown` resolves: in-flight requests finish, then the relay publishes
    /// the events they committed, then the pool closes.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        self.lifecycle.run_until_stopped(shutdown).await
    }
}

/// One client per configured OpenID Connect provider, sharing one HTTP client.
fn identity_providers(config: &Config) -> anyhow::Result<Arc<HashMap<String, IdentityProvider>>> {
    let client = ProviderHttp::new().context("building the HTTP client for sign-in providers")?;
    Ok(Arc::new(
        config
            .oidc_providers
            .iter()
            .map(|provider| {
                (
                    provider.name.clone(),
                    IdentityProvider::new(provider.clone(), client.clone()),
                )
            })
            .collect(),
    ))
}

fn readiness(pool: PgPool, producer: FutureProducer, kafka_topic: String) -> Readiness {
    Readiness::new().with_postgres(pool).with_check(
        "kafka",
        messaging::kafka::broker_check(producer, kafka_topic),
    )
}

/// Creates the configured admin account once (with its `user.registered.v1` event). An
/// existing account with that e-mail is left untouched, whatever its password.
async fn seed_admin(state: &AppState) -> anyhow::Result<()> {
    let Some(email) = state.config.admin_email.clone() else {
        return Ok(());
    };
    let mut conn = state.pool.acquire().await?;
    if crate::store::users::by_email(&mut conn, &email)
        .await?
        .is_some()
    {
        return Ok(());
    }
    drop(conn);
    let hash = state
        .passwords
        .hash(state.config.admin_password.expose_secret().to_owned())
        .await
        .map_err(|error| anyhow::anyhow!("hashing the admin password: {error}"))?;
    let mut tx = state.pool.begin().await?;
    let created = api::users::create_user(
        &mut tx,
        state,
        &NewUser {
            id: Uuid::now_v7(),
            email: &email,
            password_hash: Some(&hash),
            name: "Administrator",
            phone: None,
            locale: "en",
            role: auth::Role::Admin.as_str(),
        },
        contracts::user::SignInMethod::Password,
    )
    .await
    .map_err(|error| anyhow::anyhow!("seeding the admin: {error}"))?;
    tx.commit().await?;
    if created.is_some() {
        tracing::info!(%email, "seeded the admin account");
    }
    Ok(())
}
