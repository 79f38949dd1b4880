//! One hot product: a burst of orders for the same product with less stock than orders, sent
//! as fast as `concurrency` allows, through the gateway. Measures how fast reservations of one
//! contended product are decided (every order leaves `PENDING`: `AWAITING_PAYMENT` when its
//! unit was reserved, `REJECTED` when the stock had run out) and checks that exactly the stock
//! was reserved: no oversell, no unit left unsold while an order was turned away.
//!
//! The product is created for the run (fresh stock), so nothing else touches it. Orders are
//! not paid; they keep their units until they expire.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use http::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use uuid::Uuid;

use crate::audit::{Units, units};
use crate::checkout::{
    AWAITING_PAYMENT, Api, CANCELLED, PAID, REJECTED, register_customers, sign_in,
};
use crate::stats::{Latencies, LatencySummary};

#[derive(Debug, Clone)]
pub struct HotConfig {
    pub gateway_url: String,
    pub user_service_url: String,
    pub product_service_url: String,
    pub admin_email: String,
    pub admin_password: String,
    pub users: usize,
    /// Orders sent, one unit each.
    pub orders: usize,
    /// Units the product starts with.
    pub stock: i64,
    /// Orders in flight at once (each: create, then follow its status until decided).
    pub concurrency: usize,
    /// An order not decided within this counts as failed.
    pub order_timeout: Duration,
}

/// What the hot-product run measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HotReport {
    pub orders: u64,
    pub stock: i64,
    pub concurrency: usize,
    /// Orders whose unit was reserved (`AWAITING_PAYMENT`) and turned away (`REJECTED`).
    pub reserved: u64,
    pub rejected: u64,
    /// Create calls order-service refused because it was busy (503 `busy`, nothing placed),
    /// each followed by a retry after the pause it asks for.
    #[serde(default)]
    pub busy_refusals: u64,
    pub failed: u64,
    pub first_failure: Option<String>,
    /// From the first order sent until the last one was decided.
    pub elapsed_secs: f64,
    /// Decided orders per second over `elapsed_secs`.
    pub decided_per_sec: f64,
    /// Order created until its reservation was decided.
    pub decision: LatencySummary,
    /// `POST /api/orders` until its answer.
    pub create_call: LatencySummary,
    /// The product's stock after the run.
    pub after: Units,
    /// Exactly `stock` orders reserved, and the product shows them reserved with none left.
    pub exact: bool,
}

enum Decision {
    Reserved {
        created: Duration,
        decided: Duration,
    },
    Rejected {
        created: Duration,
        decided: Duration,
    },
    Failed(String),
}

pub async fn run(config: HotConfig) -> Result<HotReport> {
    let api = Api::new(Duration::from_secs(60));
    let admin = sign_in(
        &api,
        &config.user_service_url,
        &config.admin_email,
        &config.admin_password,
    )
    .await
    .context("signing in as the admin")?;
    let run_id = Uuid::new_v4().simple().to_string()[..8].to_owned();
    let product = json!({
        "sku": format!("HOT-{run_id}"),
        "name": format!("Limited edition {run_id}"),
        "description": "A product everybody wants at once: the hot-product benchmark.",
        "category": "electronics",
        "tags": ["benchmark"],
        "price": {"amount": 1999, "currency": "EUR"},
        "specs": {},
        "images": [],
        "initial_stock": config.stock,
    });
    let (status, body) = api
        .call(
            Method::POST,
            &format!("{}/api/products", config.product_service_url),
            Some(&admin),
            None,
            Some(&product),
        )
        .await?;
    if status != StatusCode::CREATED {
        bail!("creating the hot product: {status} {body}");
    }
    let product_id = body["id"]
        .as_str()
        .context("the created product has no id")?
        .to_owned();

    let customers = register_customers(
        &api,
        &config.user_service_url,
        config.users,
        &format!("hot{run_id}"),
    )
    .await?;
    let customers = Arc::new(customers);
    let flows_api = Api::new(Duration::from_secs(10));

    // order-service learns of the product from product.events; wait until it takes orders
    // (this first order is one of the run's).
    let warmup_deadline = Instant::now() + Duration::from_secs(30);
    let start = Instant::now();
    let first = loop {
        match place(&flows_api, &config, &customers[0].token, &product_id).await? {
            (StatusCode::CREATED, body) => break body,
            (StatusCode::UNPROCESSABLE_ENTITY, _) if Instant::now() < warmup_deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            (status, body) => bail!("the first hot order answered {status}: {body}"),
        }
    };
    let start_after_warmup = Instant::now();

    let permits = Arc::new(Semaphore::new(config.concurrency.max(1)));
    let refusals = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let config = Arc::new(config);
    let mut flows = JoinSet::new();
    {
        let (api, config, customers, permits) = (
            flows_api.clone(),
            config.clone(),
            customers.clone(),
            permits.clone(),
        );
        let first = first.clone();
        flows.spawn(async move {
            let _permit = permits.acquire_owned().await;
            follow_order(&api, &config, &customers[0].token, &first, start).await
        });
    }
    for n in 1..config.orders {
        let permit = permits.clone().acquire_owned().await?;
        let (api, config, customers, product_id, refusals) = (
            flows_api.clone(),
            config.clone(),
            customers.clone(),
            product_id.clone(),
            refusals.clone(),
        );
        flows.spawn(async move {
            let _permit = permit;
            let token = &customers[n % customers.len()].token;
            let sent = Instant::now();
            // Refused because the shop is busy: nothing was placed; come back after
            // `Retry-After`, as a buyer would (the wait counts in the decision time).
            let mut placed = place(&api, &config, token, &product_id).await;
            while let Ok((status, body)) = &placed
                && crate::checkout::is_busy(*status, body)
                && sent.elapsed() < config.order_timeout
            {
                refusals.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(crate::checkout::BUSY_PAUSE).await;
                placed = place(&api, &config, token, &product_id).await;
            }
            match placed {
                Ok((StatusCode::CREATED, body)) => {
                    follow_order(&api, &config, token, &body, sent).await
                }
                Ok((status, body)) => Decision::Failed(format!("create answered {status}: {body}")),
                Err(error) => Decision::Failed(format!("{error:#}")),
            }
        });
    }
    let mut report = HotReport {
        orders: config.orders as u64,
        stock: config.stock,
        concurrency: config.concurrency,
        reserved: 0,
        rejected: 0,
        busy_refusals: 0,
        failed: 0,
        first_failure: None,
        elapsed_secs: 0.0,
        decided_per_sec: 0.0,
        decision: LatencySummary::default(),
        create_call: LatencySummary::default(),
        after: Units::default(),
        exact: false,
    };
    let mut decision = Latencies::new()?;
    let mut create_call = Latencies::new()?;
    let mut last_decided = start_after_warmup;
    while let Some(joined) = flows.join_next().await {
        match joined.context("an order flow panicked")? {
            Decision::Reserved { created, decided } => {
                report.reserved += 1;
                create_call.record(created);
                decision.record(decided);
            }
            Decision::Rejected { created, decided } => {
                report.rejected += 1;
                create_call.record(created);
                decision.record(decided);
            }
            Decision::Failed(why) => {
                report.failed += 1;
                report.first_failure.get_or_insert(why);
            }
        }
        last_decided = Instant::now();
    }
    // The burst starts when order-service takes orders for the product (after the warm-up).
    let elapsed = last_decided
        .duration_since(start_after_warmup)
        .as_secs_f64();
    report.elapsed_secs = elapsed;
    report.decided_per_sec = if elapsed > 0.0 {
        (report.reserved + report.rejected) as f64 / elapsed
    } else {
        0.0
    };
    report.busy_refusals = refusals.load(std::sync::atomic::Ordering::Relaxed);
    report.decision = decision.summary();
    report.create_call = create_call.summary();
    report.after = units(&api, &config.product_service_url, &product_id).await?;
    report.exact = report.reserved == config.stock as u64
        && report.after.reserved == config.stock
        && report.after.available == 0
        && report.after.total() == config.stock;
    Ok(report)
}

async fn place(
    api: &Api,
    config: &HotConfig,
    token: &str,
    product_id: &str,
) -> Result<(StatusCode, Value)> {
    let order = json!({
        "items": [{"product_id": product_id, "quantity": 1}],
        "shipping_address": {
            "name": "Hot Buyer",
            "line1": "1 Queue Street",
            "city": "Benchford",
            "postal_code": "BE1 1NC",
            "country": "GB",
        },
    });
    api.call(
        Method::POST,
        &format!("{}/api/orders", config.gateway_url),
        Some(token),
        None,
        Some(&order),
    )
    .await
}

/// Follows a created order until its reservation is decided; times are from `sent`.
async fn follow_order(
    api: &Api,
    config: &HotConfig,
    token: &str,
    created: &Value,
    sent: Instant,
) -> Decision {
    let created_after = sent.elapsed();
    let Some(order_id) = created["id"].as_str() else {
        return Decision::Failed(format!("the created order has no id: {created}"));
    };
    let order_url = format!("{}/api/orders/{order_id}", config.gateway_url);
    let deadline = sent + config.order_timeout;
    let wanted = [AWAITING_PAYMENT, PAID];
    let mut status = None;
    if let Some(mut stream) = api.status_stream(&order_url, Some(token)).await {
        status = stream.until(&wanted, deadline).await.ok().flatten();
    }
    // Without a stream, or if it ended early: poll.
    while status.is_none() && Instant::now() < deadline {
        if let Ok((StatusCode::OK, body)) = api
            .call(Method::GET, &order_url, Some(token), None, None)
            .await
        {
            let current = body["status"].as_str().unwrap_or_default();
            if current != "PENDING" {
                status = Some(current.to_owned());
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let decided = sent.elapsed();
    match status.as_deref() {
        Some(AWAITING_PAYMENT | PAID) => Decision::Reserved {
            created: created_after,
            decided,
        },
        Some(REJECTED) => Decision::Rejected {
            created: created_after,
            decided,
        },
        Some(CANCELLED) => Decision::Failed(format!("order {order_id} was cancelled")),
        Some(other) => Decision::Failed(format!("order {order_id} ended {other}")),
        None => Decision::Failed(format!(
            "order {order_id} undecided after {:?}",
            config.order_timeout
        )),
    }
}
