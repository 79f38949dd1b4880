//! Real upstreams behind a gateway on port 0: user-service and product-service on fresh
//! databases and topics, plus two tiny generic HTTP upstreams (one that echoes what it got,
//! one that never answers) for what our services cannot be made to do on demand.

use std::collections::BTreeMap;
use std::time::Duration;

use auth::{KeySource, Role};
use axum::extract::Request;
use gateway::Application;
use gateway::config::{Config, Quota, RouteConfig, ServiceConfig};
use gateway::routes::{AuthPolicy, LimitClass};
use reqwest::StatusCode;
use serde_json::{Value, json};
use testkit::tokens::TestIssuer;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use uuid::Uuid;

pub type TestResult = anyhow::Result<()>;
pub use auth::config::{DEFAULT_AUDIENCE as AUDIENCE, DEFAULT_ISSUER as ISSUER};
pub use testkit::eventually;
pub use testkit::http::Reply;

pub const PASSWORD: &str = "correct horse battery";

/// Spans are exported like in production, so the gateway really injects its own trace context.
fn telemetry_guard() {
    testkit::spans::install("gateway", true);
}

/// A base URL nothing listens on (the port was free a moment ago).
pub fn dead_url() -> anyhow::Result<String> {
    Ok(format!("http://127.0.0.1:{}", testkit::free_port()?))
}

/// The default route table with every service on a dead port, limits off, fast health checks.
pub fn base_config() -> anyhow::Result<Config> {
    let mut config = Config {
        port: 0,
        zipkin_endpoint: None,
        ..Config::default()
    };
    for service in config.services.values_mut() {
        service.urls = vec![dead_url()?];
    }
    config.health.interval_ms = 100;
    config.health.timeout_ms = 1_000;
    config.health.unhealthy_after = 2;
    config.health.healthy_after = 1;
    let off = Quota {
        per_second: 0.0,
        burst: 0,
    };
    config.limits.per_ip = off;
    config.limits.per_user = off;
    config.limits.strict = off;
    Ok(config)
}

/// Points a configured service at these instances.
pub fn set_urls(config: &mut Config, service: &str, urls: Vec<String>) {
    if let Some(service) = config.services.get_mut(service) {
        service.urls = urls;
    }
}

/// Adds a service and one route to it.
pub fn add_route(config: &mut Config, service: &str, urls: Vec<String>, route: RouteConfig) {
    config.services.insert(
        service.to_owned(),
        ServiceConfig {
            urls,
            timeout_ms: 10_000,
        },
    );
    config.routes.push(route);
}

pub fn route(prefix: &str, service: &str, auth: AuthPolicy) -> RouteConfig {
    RouteConfig {
        prefix: prefix.into(),
        service: service.into(),
        auth,
        limit: LimitClass::Standard,
        timeout_ms: None,
    }
}

/// Access tokens signed with a key only this test knows, for gateways started with its
/// `keys`.
pub struct Issuer {
    issuer: TestIssuer,
    pub keys: KeySource,
}

impl Issuer {
    pub fn new() -> anyhow::Result<Self> {
        let issuer = TestIssuer::new()?;
        let keys = issuer.keys();
        Ok(Self { issuer, keys })
    }

    pub fn token(&self, role: Role) -> anyhow::Result<String> {
        self.issuer.token_for(role)
    }
}

pub struct TestGateway {
    pub address: String,
    pub client: reqwest::Client,
}

impl TestGateway {
    pub async fn start(config: Config, keys: KeySource) -> anyhow::Result<Self> {
        telemetry_guard();
        let app = Application::build_with_keys(config, keys).await?;
        let port = app.port();
        tokio::spawn(app.run_until_stopped(std::future::pending()));
        Ok(Self {
            address: format!("http://127.0.0.1:{port}"),
            // A client that waits forever would hide a hang; no answer in 15 s fails the test.
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(15))
                .build()?,
        })
    }

    /// Verifies tokens with the JWKS of a real user-service.
    pub async fn in_front_of_users(config: Config, users: &Users) -> anyhow::Result<Self> {
        let keys = KeySource::Remote {
            url: format!("{}/.well-known/jwks.json", users.address),
            client: reqwest::Client::new(),
        };
        Self::start(config, keys).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Reply> {
        Reply::read_any(request.send().await?).await
    }

    /// Sends the request `build` makes, again while the gateway answers 503 (no healthy
    /// instance: the documented "try again shortly"), for at most 30 s, as a client would. A
    /// real upstream's readiness can flicker while the whole suite loads the shared broker and
    /// database, and the gateway's test health checks (every 100 ms, out after two failures)
    /// see every flicker; tests about routing and authorisation retry through them.
    pub async fn send_while_unavailable(
        &self,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> anyhow::Result<Reply> {
        testkit::resend_while(
            Duration::from_secs(30),
            || self.send(build()),
            |reply: &Reply| reply.status == StatusCode::SERVICE_UNAVAILABLE,
        )
        .await
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Reply> {
        self.send(self.client.get(self.url(path))).await
    }

    pub async fn get_with_token(&self, path: &str, token: &str) -> anyhow::Result<Reply> {
        self.send(self.client.get(self.url(path)).bearer_auth(token))
            .await
    }

    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Reply> {
        self.send(self.client.post(self.url(path)).json(body)).await
    }

    /// A GET that waits out the gateway's "no healthy instance" (see
    /// [`Self::send_while_unavailable`]).
    pub async fn get_when_available(&self, path: &str) -> anyhow::Result<Reply> {
        self.send_while_unavailable(|| self.client.get(self.url(path)))
            .await
    }

    /// [`Self::get_when_available`] with a bearer token.
    pub async fn get_when_available_with_token(
        &self,
        path: &str,
        token: &str,
    ) -> anyhow::Result<Reply> {
        self.send_while_unavailable(|| self.client.get(self.url(path)).bearer_auth(token))
            .await
    }

    /// A POST that waits out the gateway's own "no healthy instance", and only that: the
    /// gateway answers it without forwarding the request, so resending cannot apply it twice
    /// (an upstream's 503 may come after it did its work, and is returned).
    pub async fn post_when_available(&self, path: &str, body: &Value) -> anyhow::Result<Reply> {
        testkit::resend_while(
            Duration::from_secs(30),
            || self.send(self.client.post(self.url(path)).json(body)),
            |reply: &Reply| {
                reply.status == StatusCode::SERVICE_UNAVAILABLE
                    && reply.body["detail"]
                        .as_str()
                        .is_some_and(|detail| detail.starts_with("no healthy instance"))
            },
        )
        .await
    }

    /// Registers a fresh customer through the gateway and logs in; returns the access token.
    pub async fn signed_in_customer(&self) -> anyhow::Result<(String, String)> {
        let email = format!("user-{}@example.com", Uuid::new_v4().simple());
        let registered = self
            .post_when_available(
                "/api/users/register",
                &json!({"email": email, "password": PASSWORD, "name": "Ada Lovelace"}),
            )
            .await?;
        anyhow::ensure!(
            registered.status == StatusCode::CREATED,
            "register: {} {:?}",
            registered.status,
            registered.body
        );
        let token = self.login(&email, PASSWORD).await?;
        Ok((email, token))
    }

    pub async fn login(&self, email: &str, password: &str) -> anyhow::Result<String> {
        let login = self
            .post_when_available(
                "/api/users/login",
                &json!({"email": email, "password": password}),
            )
            .await?;
        anyhow::ensure!(login.status == StatusCode::OK, "login: {:?}", login.body);
        login.body["access_token"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow::anyhow!("no access_token in {:?}", login.body))
    }

    /// The gateway's view of one service's instances: (url, healthy).
    pub async fn instances(&self, service: &str) -> anyhow::Result<Vec<(String, bool)>> {
        let ready = self.get("/health/ready").await?;
        let instances = ready.body["upstreams"][service]["instances"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        Ok(instances
            .iter()
            .map(|i| {
                (
                    i["url"].as_str().unwrap_or_default().to_owned(),
                    i["healthy"].as_bool().unwrap_or(false),
                )
            })
            .collect())
    }
}

/// A running user-service on a fresh database.
pub struct Users {
    pub address: String,
    /// The signing key user-service created; removed with the test.
    _signing_key: testkit::TempPath,
}

/// Starts user-service like its own tests do: a fresh database and topic prefix, port 0.
pub async fn spawn_users() -> anyhow::Result<Users> {
    telemetry_guard();
    // Tagged like user-service's own test databases, so either's clean-up drops stale ones.
    let database_url = testkit::postgres::fresh_database("users").await?;
    let signing_key = testkit::TempPath::new("gw-test-jwt.pem");
    let config = user_service::config::Config {
        profile: user_service::config::Profile::Local,
        server: web::ServerConfig::for_tests(Duration::from_secs(10)),
        database_url: database_url.into(),
        kafka: messaging::KafkaConfig::new(testkit::stack::kafka_brokers()),
        topic_prefix: format!("test-gw-{}.", Uuid::new_v4().simple()),
        jwt_private_key_path: signing_key.path().to_owned(),
        jwt: auth::JwtConfig {
            issuer: ISSUER.into(),
            audience: AUDIENCE.into(),
        },
        access_token_ttl: Duration::from_secs(900),
        refresh_token_ttl: Duration::from_secs(3600),
        admin_email: Some("admin@example.com".into()),
        admin_password: "admin-dev-password".to_owned().into(),
        login_max_failures: 5,
        login_lockout: Duration::from_secs(30),
        run_outbox_relay: true,
        password_workers: 2,
        oidc_providers: Vec::new(),
    };
    let app = user_service::Application::build(config).await?;
    let port = app.port();
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    Ok(Users {
        address: format!("http://127.0.0.1:{port}"),
        _signing_key: signing_key,
    })
}

/// A running product-service instance that can be stopped and started again on its port.
pub struct Products {
    pub address: String,
    pub port: u16,
    pub database: String,
    topic_prefix: String,
    jwks_url: String,
    stop: Option<(oneshot::Sender<()>, JoinHandle<anyhow::Result<()>>)>,
}

/// Starts product-service on a fresh catalog database, verifying tokens with `users`' JWKS.
pub async fn spawn_products(users: &Users) -> anyhow::Result<Products> {
    let uuid = Uuid::new_v4().simple().to_string();
    // Tagged like product-service's own test databases, so either's clean-up drops stale ones.
    let database = testkit::mongo::fresh_database("catalog").await?;
    let mut products = Products {
        address: String::new(),
        port: 0,
        database,
        topic_prefix: format!("test-gw-{uuid}."),
        jwks_url: format!("{}/.well-known/jwks.json", users.address),
        stop: None,
    };
    products.start().await?;
    Ok(products)
}

impl Products {
    /// Starts (again) on the same port and database.
    pub async fn start(&mut self) -> anyhow::Result<()> {
        telemetry_guard();
        let config = product_service::config::Config {
            server: web::ServerConfig {
                port: self.port,
                ..web::ServerConfig::for_tests(Duration::from_secs(10))
            },
            mongodb_url: testkit::stack::mongodb_url().into(),
            database: self.database.clone(),
            kafka: messaging::KafkaConfig::new(testkit::stack::kafka_brokers()),
            topic_prefix: self.topic_prefix.clone(),
            tokens: auth::VerifierConfig {
                jwks_url: self.jwks_url.clone(),
                jwt: auth::JwtConfig {
                    issuer: ISSUER.into(),
                    audience: AUDIENCE.into(),
                },
            },
            run_outbox_relay: true,
            run_inventory_consumer: false,
            inventory_consumers: 1,
            inventory_in_flight: 1,
            relay_poll_interval: Duration::from_millis(200),
            stock_snapshot_hold_back: Duration::ZERO,
            // No restock worker: the gateway's tests run no refund process.
            workflow_engine_url: None,
            workflow_namespace: None,
        };
        let app = product_service::Application::build(config).await?;
        self.port = app.port();
        self.address = format!("http://127.0.0.1:{}", self.port);
        let (stop, stopped) = oneshot::channel::<()>();
        let running = tokio::spawn(app.run_until_stopped(async move {
            let _ = stopped.await;
        }));
        self.stop = Some((stop, running));
        Ok(())
    }

    /// Stops the instance as SIGTERM would and waits until its port is closed.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        if let Some((stop, running)) = self.stop.take() {
            let _ = stop.send(());
            running.await??;
        }
        Ok(())
    }

    /// Creates a product directly on this instance (not through the gateway).
    pub async fn create_product(&self, admin_token: &str) -> anyhow::Result<Value> {
        let sku = format!("GW-{}", &Uuid::new_v4().simple().to_string()[..10]);
        let response = reqwest::Client::new()
            .post(format!("{}/api/products", self.address))
            .bearer_auth(admin_token)
            .json(&product_body(&sku))
            .send()
            .await?;
        let status = response.status();
        let body: Value = response.json().await?;
        anyhow::ensure!(status == StatusCode::CREATED, "create: {status} {body}");
        Ok(body)
    }
}

pub fn product_body(sku: &str) -> Value {
    json!({
        "sku": sku,
        "name": format!("Product {sku}"),
        "description": "A fine thing",
        "category": "kitchen",
        "tags": ["steel"],
        "price": {"amount": 1999, "currency": "EUR"},
        "specs": {},
        "images": [],
        "initial_stock": 10,
    })
}

/// A generic HTTP upstream that answers every request with what it received (method, path,
/// headers, body length), and passes health checks.
pub async fn spawn_echo() -> anyhow::Result<String> {
    let app = axum::Router::new()
        .route("/health/ready", axum::routing::get(|| async { "ok" }))
        .fallback(|request: Request| async move {
            let headers: BTreeMap<String, String> = request
                .headers()
                .iter()
                .map(|(name, value)| {
                    (
                        name.to_string(),
                        value.to_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect();
            let method = request.method().to_string();
            let path = request.uri().to_string();
            let body = axum::body::to_bytes(request.into_body(), usize::MAX).await;
            axum::Json(json!({
                "method": method,
                "path": path,
                "headers": headers,
                "body_len": body.map(|b| b.len()).ok(),
            }))
        });
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(address)
}

/// An upstream that passes health checks but never answers anything else: a hung service.
pub async fn spawn_silent() -> anyhow::Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve_health_only(stream));
        }
    });
    Ok(address)
}

async fn serve_health_only(mut stream: TcpStream) {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let Ok(read) = stream.read(&mut chunk).await else {
            return;
        };
        if read == 0 {
            return;
        }
        buffer.extend_from_slice(&chunk[..read]);
        while let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
            buffer.drain(..end + 4);
            if head.starts_with("GET /health/ready ") {
                let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                if stream.write_all(ok).await.is_err() {
                    return;
                }
            } else {
                // Hold the connection open and never answer.
                std::future::pending::<()>().await;
            }
        }
    }
}

/// Sends raw bytes (for requests reqwest would normalise, like dot segments) and returns the
/// status line.
pub async fn raw_request(address: &str, request: &[u8]) -> anyhow::Result<String> {
    let authority = address.trim_start_matches("http://");
    let mut stream = TcpStream::connect(authority).await?;
    stream.write_all(request).await?;
    let mut response = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(15), async {
        let mut chunk = [0u8; 4096];
        loop {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            response.extend_from_slice(&chunk[..n]);
            if response.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
        anyhow::Ok(())
    })
    .await;
    anyhow::ensure!(read.is_ok(), "no answer within 15 s");
    let text = String::from_utf8_lossy(&response).into_owned();
    Ok(text.lines().next().unwrap_or_default().to_owned())
}
