//! The platform's invariants, checked over every order a benchmark run created, once the run
//! is over: the same promises the system tests hold (DESIGN "Invariants"), now under load.
//!
//! - every order leaves `PENDING` (waited for, with a deadline);
//! - stock is conserved per product: available + reserved + sold after the run equals the
//!   units before it, and `sold` grew by exactly the units of the run's `PAID` orders;
//! - per order, charges kept at the provider (succeeded and not refunded) = 1 if `PAID`,
//!   else 0; summed, succeeded charges = `PAID` orders + refunds;
//! - one receipt e-mail per `PAID` order: each customer (fresh per run) has as many `receipt`
//!   e-mails in their notification history as `PAID` orders, after the deadline;
//! - every order whose payment the client saw succeed is `PAID`, or `CANCELLED` with its
//!   charge refunded (the expiry raced the payment);
//! - when the SMTP server's inbox is given: as many distinct receipt mails arrived per customer
//!   as they have `PAID` orders. Copies of one mail (same `Message-ID`: a sender that died
//!   between the SMTP server's acceptance and recording it, notification-service's documented
//!   window) are counted and reported, not failed.
//!
//! A round that cannot read something (a service still restarting after `cargo xtask chaos`)
//! counts as "not settled yet" and is tried again until the deadline.
//!
//! A run's products must not be sold by anyone else meanwhile (true in `cargo xtask bench`).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use futures::StreamExt as _;
use http::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::time::Instant;

use crate::checkout::{Api, Customer, PAID};

/// Where the provider simulator is, and how long the platform may take to settle.
#[derive(Debug, Clone)]
pub struct AuditConfig {
    pub psp_url: String,
    pub psp_api_key: String,
    /// How long the audit waits for the checks to hold (orders leaving `PENDING`, payments
    /// settling, receipts arriving) before it reports what it sees.
    pub settle_timeout: Duration,
    /// Mailpit's HTTP API: count the receipt mails that actually arrived.
    pub mailpit_url: Option<String>,
}

/// One order the run created.
#[derive(Debug, Clone)]
pub struct OrderRecord {
    pub id: String,
    /// Index of the customer (in the run's customer list).
    pub customer: usize,
    pub product: String,
    pub quantity: i64,
    /// The payment call answered `succeeded` to the client.
    pub payment_succeeded: bool,
}

/// One product the run used, with its units before the run.
#[derive(Debug, Clone)]
pub struct ProductRecord {
    pub id: String,
    pub units_before: Units,
}

/// A product's stock as the API shows it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Units {
    pub available: i64,
    pub reserved: i64,
    pub sold: i64,
}

impl Units {
    pub fn total(self) -> i64 {
        self.available + self.reserved + self.sold
    }
}

/// What the audit found. `passed` is true only when every check held.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AuditReport {
    pub passed: bool,
    pub orders: u64,
    /// Final statuses of the run's orders.
    pub statuses: BTreeMap<String, u64>,
    /// Seconds from the end of the run until every check held (or the deadline passed).
    pub settle_secs: f64,
    pub products: u64,
    pub paid_units: i64,
    pub sold_units: i64,
    /// Charges kept at the provider over all orders, and `PAID` orders.
    pub charges_kept: u64,
    pub refunds: u64,
    pub receipts_expected: u64,
    pub receipts_found: u64,
    /// Orders whose payment the client saw succeed.
    #[serde(default)]
    pub payments_seen_succeeded: u64,
    /// Receipt mails in the SMTP server's inbox, when it was read.
    #[serde(default)]
    pub receipt_mails: Option<ReceiptMails>,
    /// Every check of the last round by name, with its number of violations (0 = held).
    #[serde(default)]
    pub checks: BTreeMap<String, u64>,
    /// Why the last round could not complete, if it could not.
    #[serde(default)]
    pub last_error: Option<String>,
    /// The first few violations, in words.
    pub violations: Vec<String>,
}

/// Receipt mails as the SMTP server received them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptMails {
    /// Every copy received.
    pub received: u64,
    /// Distinct mails (by `Message-ID`).
    pub distinct: u64,
    /// Copies beyond the first of a mail: notification-service's documented e-mail window.
    pub duplicates: u64,
}

/// The checks, by the names reports show.
pub const CHECK_NOT_PENDING: &str = "no order left PENDING";
pub const CHECK_SEEN_PAID: &str = "payment seen succeeded => PAID (or CANCELLED and refunded)";
pub const CHECK_STOCK: &str = "per product: start = available + reserved + sold";
pub const CHECK_SOLD: &str = "per product: sold = units of PAID orders";
pub const CHECK_CHARGES: &str = "per order: succeeded - refunded charges = 1 if PAID else 0";
pub const CHECK_RECEIPTS: &str = "one receipt per PAID order (notification history)";
pub const CHECK_RECEIPT_MAILS: &str = "one receipt mail per PAID order arrived (SMTP inbox)";

/// Violations found in one round, by check.
#[derive(Default)]
struct Findings {
    checks: BTreeMap<String, u64>,
    violations: Vec<String>,
}

impl Findings {
    fn checked(&mut self, check: &str) {
        self.checks.entry(check.to_owned()).or_default();
    }
    fn violated(&mut self, check: &str, what: String) {
        *self.checks.entry(check.to_owned()).or_default() += 1;
        self.violations.push(what);
    }
}

const SHOWN_VIOLATIONS: usize = 10;

/// The stock of product `id`, read from product-service.
pub(crate) async fn units(api: &Api, products_url: &str, id: &str) -> Result<Units> {
    let (status, body) = api
        .call(
            Method::GET,
            &format!("{products_url}/api/products/{id}"),
            None,
            None,
            None,
        )
        .await?;
    if status != StatusCode::OK {
        bail!("reading product {id}: {status} {body}");
    }
    Ok(Units {
        available: body["stock"]["available"].as_i64().unwrap_or_default(),
        reserved: body["stock"]["reserved"].as_i64().unwrap_or_default(),
        sold: body["stock"]["sold"]
            .as_i64()
            .or_else(|| body["sold"].as_i64())
            .unwrap_or_default(),
    })
}

/// Checks the invariants over `orders` (see the module documentation). The platform may still
/// be working through its queues when the run ends (orders paid but not yet `PAID`, receipts
/// not yet sent), so the checks are repeated until they hold or the settle deadline passes;
/// the report is the last round's.
pub(crate) async fn run(
    api: &Api,
    config: &AuditConfig,
    gateway_url: &str,
    products_url: &str,
    customers: &[Customer],
    products: &[ProductRecord],
    orders: &[OrderRecord],
) -> Result<AuditReport> {
    let started = Instant::now();
    let deadline = started + config.settle_timeout;
    let tokens: Vec<String> = customers.iter().map(|c| c.token.clone()).collect();
    let emails: Vec<String> = customers.iter().map(|c| c.email.clone()).collect();
    let shop = Shop {
        api,
        config,
        gateway_url,
        products_url,
        tokens: &tokens,
        emails: &emails,
    };
    let mut last: Option<AuditReport> = None;
    loop {
        let mut report = match shop.check(products, orders).await {
            Ok(report) => report,
            // Something could not be read this round; the previous round's findings stand,
            // with the reason, until a round completes.
            Err(e) => {
                let mut report = last.clone().unwrap_or_else(|| AuditReport {
                    orders: orders.len() as u64,
                    products: products.len() as u64,
                    ..AuditReport::default()
                });
                report.passed = false;
                report.last_error = Some(format!("{e:#}"));
                report
            }
        };
        report.settle_secs = started.elapsed().as_secs_f64();
        if report.passed || Instant::now() >= deadline {
            return Ok(report);
        }
        if report.last_error.is_none() {
            last = Some(report);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Where the audit reads from.
struct Shop<'a> {
    api: &'a Api,
    config: &'a AuditConfig,
    gateway_url: &'a str,
    products_url: &'a str,
    tokens: &'a [String],
    emails: &'a [String],
}

impl Shop<'_> {
    /// One round of every check.
    async fn check(
        &self,
        products: &[ProductRecord],
        orders: &[OrderRecord],
    ) -> Result<AuditReport> {
        let api = self.api;
        let mut report = AuditReport {
            orders: orders.len() as u64,
            products: products.len() as u64,
            ..AuditReport::default()
        };
        let mut findings = Findings::default();

        // 1. Final statuses.
        let statuses = statuses(api, self.gateway_url, self.tokens, orders).await?;
        for status in statuses.values() {
            *report.statuses.entry(status.clone()).or_default() += 1;
        }
        findings.checked(CHECK_NOT_PENDING);
        for (id, status) in &statuses {
            if status == "PENDING" {
                findings.violated(CHECK_NOT_PENDING, format!("order {id} is still PENDING"));
            }
        }

        // 2. Stock conservation and sold units per product.
        let mut paid_units: HashMap<&str, i64> = HashMap::new();
        for order in orders {
            if statuses.get(&order.id).map(String::as_str) == Some(PAID) {
                *paid_units.entry(order.product.as_str()).or_default() += order.quantity;
            }
        }
        findings.checked(CHECK_STOCK);
        findings.checked(CHECK_SOLD);
        for product in products {
            let after = units(api, self.products_url, &product.id).await?;
            let paid = paid_units
                .get(product.id.as_str())
                .copied()
                .unwrap_or_default();
            let sold = after.sold - product.units_before.sold;
            report.paid_units += paid;
            report.sold_units += sold;
            if after.total() != product.units_before.total() {
                findings.violated(
                    CHECK_STOCK,
                    format!(
                        "product {}: {} + {} + {} = {} units after the run, {} before",
                        product.id,
                        after.available,
                        after.reserved,
                        after.sold,
                        after.total(),
                        product.units_before.total()
                    ),
                );
            }
            if sold != paid {
                findings.violated(
                    CHECK_SOLD,
                    format!(
                        "product {}: sold grew by {sold}, PAID orders hold {paid} units",
                        product.id
                    ),
                );
            }
        }

        // 3. Charges kept at the provider, per order.
        let kept = charges_kept(api, self.config, orders).await?;
        findings.checked(CHECK_CHARGES);
        findings.checked(CHECK_SEEN_PAID);
        for order in orders {
            let (kept, refunds) = kept.get(&order.id).copied().unwrap_or_default();
            report.charges_kept += kept;
            report.refunds += refunds;
            let status = statuses.get(&order.id).map(String::as_str);
            let paid = status == Some(PAID);
            if order.payment_succeeded {
                report.payments_seen_succeeded += 1;
                let refunded_cancel = status == Some("CANCELLED") && kept == 0 && refunds > 0;
                if !paid && !refunded_cancel {
                    findings.violated(
                        CHECK_SEEN_PAID,
                        format!(
                            "order {}: the client saw its payment succeed, it is {} ({kept} charge(s) kept, {refunds} refunded)",
                            order.id,
                            status.unwrap_or("unknown")
                        ),
                    );
                }
            }
            if kept != u64::from(paid) {
                findings.violated(
                    CHECK_CHARGES,
                    format!(
                        "order {} is {} with {kept} charge(s) kept",
                        order.id,
                        statuses
                            .get(&order.id)
                            .map(String::as_str)
                            .unwrap_or("unknown")
                    ),
                );
            }
        }

        // 4. One receipt per PAID order, per customer.
        let mut expected: Vec<u64> = vec![0; self.tokens.len()];
        for order in orders {
            if statuses.get(&order.id).map(String::as_str) == Some(PAID)
                && let Some(count) = expected.get_mut(order.customer)
            {
                *count += 1;
            }
        }
        report.receipts_expected = expected.iter().sum();
        findings.checked(CHECK_RECEIPTS);
        for (customer, (token, want)) in self.tokens.iter().zip(&expected).enumerate() {
            let got = count_receipts(api, self.gateway_url, token).await?;
            report.receipts_found += got;
            if got != *want {
                findings.violated(
                    CHECK_RECEIPTS,
                    format!("customer {customer}: {got} receipt(s) for {want} PAID order(s)"),
                );
            }
        }

        // 5. The receipt mails that arrived.
        if let Some(mailpit) = &self.config.mailpit_url {
            findings.checked(CHECK_RECEIPT_MAILS);
            let mut mails = ReceiptMails::default();
            for (customer, (email, want)) in self.emails.iter().zip(&expected).enumerate() {
                let copies = receipt_mails(api, mailpit, email).await?;
                let received: u64 = copies.values().sum();
                let distinct = copies.len() as u64;
                mails.received += received;
                mails.distinct += distinct;
                mails.duplicates += received - distinct;
                if distinct != *want {
                    findings.violated(
                        CHECK_RECEIPT_MAILS,
                        format!(
                            "customer {customer}: {distinct} distinct receipt mail(s) arrived for {want} PAID order(s)"
                        ),
                    );
                }
            }
            report.receipt_mails = Some(mails);
        }

        let Findings {
            checks,
            mut violations,
        } = findings;
        report.passed = violations.is_empty();
        report.checks = checks;
        violations.truncate(SHOWN_VIOLATIONS);
        report.violations = violations;
        Ok(report)
    }
}

/// Each order's status now.
async fn statuses(
    api: &Api,
    gateway_url: &str,
    tokens: &[String],
    orders: &[OrderRecord],
) -> Result<HashMap<String, String>> {
    let reads = orders.iter().map(|order| async move {
        let token = tokens.get(order.customer).map(String::as_str);
        let url = format!("{gateway_url}/api/orders/{}", order.id);
        let (status, body) = api.call(Method::GET, &url, token, None, None).await?;
        let current = match status {
            StatusCode::OK => body["status"].as_str().unwrap_or_default().to_owned(),
            other => bail!("GET {url}: {other} {body}"),
        };
        anyhow::Ok((order.id.clone(), current))
    });
    // Sixteen at a time: quick, without turning the audit into a load test of its own.
    let answers: Vec<Result<(String, String)>> = futures::stream::iter(reads)
        .buffer_unordered(16)
        .collect()
        .await;
    answers.into_iter().collect()
}

/// Per order: charges succeeded and not refunded at the provider, and refunds.
async fn charges_kept(
    api: &Api,
    config: &AuditConfig,
    orders: &[OrderRecord],
) -> Result<HashMap<String, (u64, u64)>> {
    let lookups = orders.iter().map(|order| async move {
        let url = format!("{}/v1/charges?reference={}", config.psp_url, order.id);
        let (status, body) = api
            .call_with_bearer(Method::GET, &url, &config.psp_api_key)
            .await?;
        if status != StatusCode::OK {
            bail!("GET {url}: {status} {body}");
        }
        let charges: Vec<Value> = match &body {
            Value::Array(items) => items.clone(),
            body => body["data"].as_array().cloned().unwrap_or_default(),
        };
        let refunded = |charge: &Value| {
            charge["refunded"].as_bool().unwrap_or(false)
                || charge["amount_refunded"].as_i64().unwrap_or(0) > 0
        };
        let succeeded: Vec<&Value> = charges
            .iter()
            .filter(|charge| charge["status"] == "succeeded")
            .collect();
        let refunds = succeeded.iter().filter(|charge| refunded(charge)).count() as u64;
        anyhow::Ok((
            order.id.clone(),
            (succeeded.len() as u64 - refunds, refunds),
        ))
    });
    let answers: Vec<Result<(String, (u64, u64))>> = futures::stream::iter(lookups)
        .buffer_unordered(16)
        .collect()
        .await;
    answers.into_iter().collect()
}

/// Receipt e-mails in the customer's notification history.
async fn count_receipts(api: &Api, gateway_url: &str, token: &str) -> Result<u64> {
    let mut count = 0;
    let mut before: Option<i64> = None;
    loop {
        let page = match before {
            Some(before) => format!("&before={before}"),
            None => String::new(),
        };
        let url = format!("{gateway_url}/api/notifications?limit=100{page}");
        let (status, body) = api.call(Method::GET, &url, Some(token), None, None).await?;
        if status != StatusCode::OK {
            bail!("GET {url}: {status} {body}");
        }
        let items = body["items"]
            .as_array()
            .context("notifications without items")?;
        count += items
            .iter()
            .filter(|n| n["template"] == "receipt" && n["channel"] == "email")
            .count() as u64;
        match body["next_before"].as_i64() {
            Some(next) if !items.is_empty() => before = Some(next),
            _ => return Ok(count),
        }
    }
}

/// Receipt mails the SMTP server (Mailpit's API) received for `email`: copies per
/// `Message-ID`.
async fn receipt_mails(api: &Api, mailpit_url: &str, email: &str) -> Result<HashMap<String, u64>> {
    let query: String = format!("to:\"{email}\"")
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect();
    let mut copies: HashMap<String, u64> = HashMap::new();
    let mut start = 0usize;
    loop {
        let url = format!("{mailpit_url}/api/v1/search?query={query}&limit=500&start={start}");
        let (status, body) = api.call(Method::GET, &url, None, None, None).await?;
        if status != StatusCode::OK {
            bail!("GET {url}: {status} {body}");
        }
        let messages = body["messages"]
            .as_array()
            .context("a Mailpit search answer without messages")?;
        for message in messages {
            let subject = message["Subject"].as_str().unwrap_or_default();
            if subject.starts_with("Receipt for your order") {
                let id = message["MessageID"]
                    .as_str()
                    .or_else(|| message["ID"].as_str())
                    .unwrap_or_default()
                    .to_owned();
                *copies.entry(id).or_default() += 1;
            }
        }
        start += messages.len();
        let total = body["messages_count"].as_u64().unwrap_or_default() as usize;
        if messages.is_empty() || start >= total {
            return Ok(copies);
        }
    }
}
