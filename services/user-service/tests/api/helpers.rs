//! `spawn_app()` and the `TestApp` that speaks the API.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use user_service::Application;
use user_service::config::{Config, OidcProviderConfig, Profile};
use uuid::Uuid;

pub type TestResult = anyhow::Result<()>;
pub use messaging::testing::EventRecord as Record;
pub use testkit::eventually;
pub use testkit::http::{Reply, string};
pub use testkit::spans::flush as flush_spans;
pub use testkit::stack::{kafka_brokers as brokers, zipkin_url};

pub const PASSWORD: &str = "correct horse battery";

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub pool: PgPool,
    pub topic_prefix: String,
    /// The signing key the service created; removed with the test.
    _signing_key: testkit::TempPath,
}

/// A fresh database for this test (see `testkit::postgres`).
pub async fn fresh_database() -> anyhow::Result<String> {
    testkit::postgres::fresh_database("users").await
}

/// The configuration of a test's user-service, whose signing key goes to `key_path` (a
/// `testkit::TempPath` the test holds, so the key goes with the test).
pub fn test_config(database_url: &str, topic_prefix: &str, key_path: &std::path::Path) -> Config {
    Config {
        profile: Profile::Local,
        server: web::ServerConfig::for_tests(Duration::from_secs(10)),
        database_url: database_url.to_owned().into(),
        kafka: messaging::KafkaConfig::new(brokers()),
        topic_prefix: topic_prefix.to_owned(),
        jwt_private_key_path: key_path.to_owned(),
        jwt: auth::JwtConfig::default(),
        access_token_ttl: Duration::from_secs(900),
        refresh_token_ttl: Duration::from_secs(3600),
        admin_email: Some("admin@example.com".into()),
        admin_password: "admin-dev-password".to_owned().into(),
        login_max_failures: 5,
        login_lockout: Duration::from_secs(30),
        run_outbox_relay: true,
        password_workers: 2,
        oidc_providers: Vec::new(),
    }
}

/// A user-service whose `google` provider is the OIDC stand-in at `issuer`.
pub async fn spawn_app_with_google(issuer: &str) -> TestApp {
    spawn_app_with(|config| config.oidc_providers = vec![google(issuer)]).await
}

/// The `google` provider of the tests: the stand-in accepts any client id and secret; the
/// redirect URI is where the gateway would receive the callback.
pub fn google(issuer: &str) -> OidcProviderConfig {
    OidcProviderConfig {
        name: "google".into(),
        issuer: issuer.trim_end_matches('/').into(),
        client_id: "ferroshop-test".into(),
        client_secret: "test-secret".to_owned().into(),
        redirect_uri: "http://127.0.0.1:8080/api/users/oidc/google/callback".into(),
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
    testkit::spans::install("user-service", true);
    let database_url = fresh_database()
        .await
        .unwrap_or_else(|error| panic!("cannot create a test database: {error:#}"));
    let topic_prefix = format!("test-{}.", Uuid::new_v4().simple());
    let signing_key = testkit::TempPath::new("test-jwt.pem");
    let mut config = test_config(&database_url, &topic_prefix, signing_key.path());
    adjust(&mut config);
    let app = Application::build(config)
        .await
        .unwrap_or_else(|error| panic!("user-service failed to start: {error:#}"));
    let port = app.port();
    let pool = app.pool().clone();
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        client: reqwest::Client::new(),
        pool,
        topic_prefix,
        _signing_key: signing_key,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Reply> {
        testkit::http::send(request).await
    }

    pub async fn post(&self, path: &str, body: Value) -> anyhow::Result<Reply> {
        self.send(self.client.post(self.url(path)).json(&body))
            .await
    }

    pub async fn register(&self, email: &str) -> anyhow::Result<Reply> {
        self.post(
            "/api/users/register",
            json!({"email": email, "password": PASSWORD, "name": "Ada Lovelace"}),
        )
        .await
    }

    pub async fn login(&self, email: &str, password: &str) -> anyhow::Result<Reply> {
        self.post(
            "/api/users/login",
            json!({"email": email, "password": password}),
        )
        .await
    }

    /// Registers a fresh customer and logs in; returns (user id, access token, refresh token).
    pub async fn signed_in_user(&self) -> anyhow::Result<(String, String, String)> {
        let email = unique_email();
        let registered = self.register(&email).await?;
        anyhow::ensure!(
            registered.status == StatusCode::CREATED,
            "register: {:?}",
            registered.body
        );
        let login = self.login(&email, PASSWORD).await?;
        anyhow::ensure!(login.status == StatusCode::OK, "login: {:?}", login.body);
        Ok((
            string(&registered.body["id"])?,
            string(&login.body["access_token"])?,
            string(&login.body["refresh_token"])?,
        ))
    }

    pub async fn me(&self, token: &str) -> anyhow::Result<Reply> {
        self.send(
            self.client
                .get(self.url("/api/users/me"))
                .bearer_auth(token),
        )
        .await
    }

    pub async fn outbox_backlog(&self) -> anyhow::Result<i64> {
        Ok(sqlx::query_scalar("SELECT count(*) FROM outbox")
            .fetch_one(&self.pool)
            .await?)
    }

    /// Waits until the relay has published everything.
    pub async fn wait_for_empty_outbox(&self) -> TestResult {
        let pool = self.pool.clone();
        eventually(Duration::from_secs(20), move || {
            let pool = pool.clone();
            async move {
                let n: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
                    .fetch_one(&pool)
                    .await?;
                anyhow::ensure!(n == 0, "{n} events still in the outbox");
                Ok(())
            }
        })
        .await
    }

    pub fn topic(&self, logical: &str) -> String {
        format!("{}{logical}", self.topic_prefix)
    }
}

pub fn unique_email() -> String {
    format!("user-{}@example.com", Uuid::new_v4().simple())
}

/// Every event currently in `topic` (duplicates included).
pub async fn read_topic(topic: &str) -> anyhow::Result<Vec<Record>> {
    messaging::testing::read_events(&brokers(), topic).await
}
