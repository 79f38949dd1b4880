//! The OWASP API Security Top 10 (2023) against a running platform, through the gateway: one
//! module per item that applies to this API (docs/SECURITY.md maps each item to its module),
//! then the log scan (no card number, CVC, password or token in any process's log).
//!
//! Every module makes its own customers and products, so they share one platform; the log
//! scan runs last, over everything the modules and its own checkout wrote.

mod api10_third_parties;
mod api1_object_level;
mod api2_authentication;
mod api3_property_level;
mod api4_resource_consumption;
mod api5_function_level;
mod api6_business_flows;
mod api7_ssrf;
mod api8_misconfiguration;
mod api9_inventory;
pub mod fakes;
mod logs;

use std::future::Future;
use std::pin::Pin;

use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::api::{Api, GOOD_CARD, Reply, User};
use crate::platform::Platform;

pub use fakes::Fakes;

/// The origin the OWASP platform's gateway allows for CORS (any other must be refused).
pub const ALLOWED_ORIGIN: &str = "https://shop.owasp.test";
/// The gateway's header read timeout on the OWASP platform, in milliseconds.
pub const HEADER_READ_TIMEOUT_MS: u64 = 1_500;
/// payment-service's decline throttle on the OWASP platform: declines per account.
pub const MAX_DECLINES: u32 = 3;
/// order-service's limit of unpaid orders per customer on the OWASP platform (the default).
pub const MAX_OPEN_ORDERS: usize = 5;

/// What every module gets.
pub struct Owasp<'a> {
    pub platform: &'a Platform,
    pub api: Api,
    pub admin: String,
    pub fakes: &'a Fakes,
}

/// A customer with everything a test may need to replay: password and both tokens.
#[derive(Debug, Clone)]
pub struct Account {
    pub user: User,
    pub password: String,
    pub phone: String,
    pub refresh: String,
}

/// Whether an answer is a problem document (RFC 9457).
pub fn is_problem(reply: &Reply) -> bool {
    reply
        .headers
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/problem+json"))
        && reply.body["status"].as_u64() == Some(u64::from(reply.status.as_u16()))
}

/// `reply` has `status` and is a problem document.
pub fn expect_problem(reply: &Reply, status: StatusCode, what: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        reply.status == status && is_problem(reply),
        "{what}: expected a {status} problem document, got {reply:?} ({:?})",
        reply.headers.get(reqwest::header::CONTENT_TYPE)
    );
    Ok(())
}

fn text(value: &Value) -> anyhow::Result<String> {
    value
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("expected a string, got {value}"))
}

impl Owasp<'_> {
    /// Registers and signs in a new customer with a password and phone of their own.
    pub async fn account(&self) -> anyhow::Result<Account> {
        let tag = Uuid::new_v4().simple().to_string();
        let email = format!("owasp-{tag}@test.local");
        let password = format!("pw-{tag}");
        // A distinct phone per account, so the log scan can look for it.
        let digits: String = tag
            .chars()
            .filter(char::is_ascii_digit)
            .chain(std::iter::repeat('7'))
            .take(8)
            .collect();
        let phone = format!("+1555{digits}");
        let reply = self
            .api
            .send(
                self.api
                    .client
                    .post(self.api.url("/api/users/register"))
                    .json(&json!({
                        "email": email, "password": password, "name": "OWASP Tester",
                        "phone": phone,
                    })),
            )
            .await?;
        anyhow::ensure!(reply.status == StatusCode::CREATED, "register: {reply:?}");
        let id: Uuid = text(&reply.body["id"])?.parse()?;
        let reply = self.api.login(&email, &password).await?;
        anyhow::ensure!(reply.status == StatusCode::OK, "login: {reply:?}");
        Ok(Account {
            user: User {
                id,
                email,
                token: text(&reply.body["access_token"])?,
            },
            password,
            phone,
            refresh: text(&reply.body["refresh_token"])?,
        })
    }

    /// A product with `stock` units at 12.50 EUR.
    pub async fn product(&self, stock: i64) -> anyhow::Result<Uuid> {
        Ok(self.api.product(&self.admin, stock, 1_250).await?.0)
    }

    /// An order of one unit of `product`, placed and awaiting payment.
    pub async fn awaiting_order(&self, user: &User, product: Uuid) -> anyhow::Result<Uuid> {
        let order = self.api.placed(user, &[(product, 1)]).await?;
        self.api
            .wait_for_status(user, order, "AWAITING_PAYMENT")
            .await?;
        Ok(order)
    }

    /// A paid order of one unit of `product`; returns the order and payment ids.
    pub async fn paid_order(&self, user: &User, product: Uuid) -> anyhow::Result<(Uuid, Uuid)> {
        let order = self.awaiting_order(user, product).await?;
        let reply = self
            .api
            .pay(user, order, GOOD_CARD, &Uuid::new_v4().to_string(), None)
            .await?;
        anyhow::ensure!(
            reply.status == StatusCode::CREATED && reply.body["status"] == "succeeded",
            "pay: {reply:?}"
        );
        let payment: Uuid = text(&reply.body["id"])?.parse()?;
        self.api.wait_for_status(user, order, "PAID").await?;
        Ok((order, payment))
    }

    /// `GET path` with `token` (none: anonymous).
    pub async fn get(&self, path: &str, token: Option<&str>) -> anyhow::Result<Reply> {
        let mut request = self.api.client.get(self.api.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        self.api.send(request).await
    }

    /// `method path` with a JSON body and `token`.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: &Value,
    ) -> anyhow::Result<Reply> {
        let mut request = self
            .api
            .client
            .request(method, self.api.url(path))
            .json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        self.api.send(request).await
    }
}

type Check<'a> = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send + 'a>>;

/// Runs every item's module, one after another, then the log scan; reports every failure,
/// not only the first. The modules are independent (own customers and products) and could
/// run concurrently, but on a two-core machine shared with the rest of the suite all ten at
/// once pushed request times past the gateway's health-check and upstream timeouts; one at a
/// time costs about two minutes and keeps the verdicts about security, not load.
pub async fn run_all(ctx: &Owasp<'_>) -> anyhow::Result<()> {
    let checks: Vec<(&str, Check<'_>)> = vec![
        (
            "API1 object-level authorization",
            Box::pin(api1_object_level::run(ctx)),
        ),
        (
            "API2 broken authentication",
            Box::pin(api2_authentication::run(ctx)),
        ),
        (
            "API3 property-level authorization",
            Box::pin(api3_property_level::run(ctx)),
        ),
        (
            "API4 unrestricted resource consumption",
            Box::pin(api4_resource_consumption::run(ctx)),
        ),
        (
            "API5 function-level authorization",
            Box::pin(api5_function_level::run(ctx)),
        ),
        (
            "API6 sensitive business flows",
            Box::pin(api6_business_flows::run(ctx)),
        ),
        (
            "API7 server-side request forgery",
            Box::pin(api7_ssrf::run(ctx)),
        ),
        (
            "API8 security misconfiguration",
            Box::pin(api8_misconfiguration::run(ctx)),
        ),
        (
            "API9 improper inventory management",
            Box::pin(api9_inventory::run(ctx)),
        ),
        (
            "API10 unsafe consumption of APIs",
            Box::pin(api10_third_parties::run(ctx)),
        ),
    ];
    let mut failures: Vec<String> = Vec::new();
    for (name, check) in checks {
        match check.await {
            Ok(()) => eprintln!("owasp ✔ {name}"),
            Err(error) => failures.push(format!("{name}: {error:#}")),
        }
    }
    // Alone, because it overloads user-service on purpose.
    match api4_resource_consumption::login_burst(ctx).await {
        Ok(()) => eprintln!("owasp ✔ API4 login burst"),
        Err(error) => failures.push(format!("API4 login burst: {error:#}")),
    }
    // Last: it scans what every module above made the services log.
    match logs::run(ctx).await {
        Ok(()) => eprintln!("owasp ✔ no secret or personal data in logs"),
        Err(error) => failures.push(format!("log scan: {error:#}")),
    }
    anyhow::ensure!(
        failures.is_empty(),
        "{} OWASP check(s) failed:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    Ok(())
}
