//! Placing an order: `POST /api/orders` from the idempotency check to the stored `PENDING`
//! order and its `order.created` event.
//!
//! 1. With an `Idempotency-Key`, an order the customer placed under that key before is the
//!    answer: the same request (by the hash of its body) gets that order again, another one is
//!    refused. This comes first, so a repeat answers as the first request did.
//! 2. The address and the basket are checked together, the basket priced from the product
//!    replica (never from the client); every problem is named at once.
//! 3. One evaluation of the risk table ([`crate::risk`]); an order it sends to review is held
//!    `REVIEW` once its stock is reserved ([`crate::review`]).
//! 4. One transaction counts the customer's open orders under a lock (the open-order limit),
//!    inserts the order and puts `order.created` in the outbox. The key's unique index decides
//!    between concurrent duplicates: the one that lost the insert answers with the winner's
//!    order.

use chrono::{Duration, Utc};
use contracts::CloudEvent;
use contracts::order::{OrderCreated, OrderItem};
use contracts::product::Money;
use sqlx::PgPool;
use uuid::Uuid;
use web::FieldError;
use workflow::EngineClient;

use crate::domain::address::ShippingAddress;
use crate::domain::open_orders::TooManyOpen;
use crate::domain::pricing::{self, PricedBasket, Requested};
use crate::risk::{self, RiskSettings, RiskTable};
use crate::saga::{EVENT_SOURCE, SagaSettings};
use crate::store::orders::{self, NewOrder, OrderRow, StoredLine};
use crate::store::products;

/// Why an order was not placed.
#[derive(Debug, thiserror::Error)]
pub enum PlaceError {
    /// The `Idempotency-Key` was used before for a different request.
    #[error("the Idempotency-Key was used for an order with a different body")]
    KeyReused,
    /// The address or the basket is invalid; every problem, by field.
    #[error("the order is invalid")]
    Invalid(Vec<FieldError>),
    #[error("too many unpaid orders")]
    TooManyOpen(TooManyOpen),
    /// Kept apart from [`PlaceError::Internal`] so that a busy or absent database answers as
    /// it does on every other route.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// An order as the customer asks for it.
#[derive(Debug, Clone)]
pub struct PlaceOrder {
    pub user_id: Uuid,
    pub idempotency_key: Option<String>,
    /// Identifies the request's body: a repeated key must come with the same one.
    pub request_hash: String,
    pub lines: Vec<Requested>,
    pub shipping_address: ShippingAddress,
}

/// What placing answered.
#[derive(Debug)]
pub enum Placed {
    /// Placed now.
    New(OrderRow),
    /// The same request placed this order before.
    Repeat(OrderRow),
}

/// Places orders, with what that takes: the database, the saga's settings (topics, the
/// reservation deadline, the open-order limit) and the risk check's table, engine and
/// settings.
#[derive(Clone)]
pub struct Placing {
    pub pool: PgPool,
    pub saga: SagaSettings,
    pub risk_table: RiskTable,
    pub engine: EngineClient,
    pub risk: RiskSettings,
}

impl std::fmt::Debug for Placing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Placing").finish_non_exhaustive()
    }
}

impl Placing {
    /// Places `order` (or answers a repeat of it).
    pub async fn place(&self, order: PlaceOrder) -> Result<Placed, PlaceError> {
        let PlaceOrder {
            user_id,
            idempotency_key: key,
            request_hash: hash,
            lines: requested,
            shipping_address,
        } = order;
        let mut conn = self.pool.acquire().await?;
        if let Some(key) = &key
            && let Some(existing) = orders::by_idempotency_key(&mut conn, user_id, key).await?
        {
            return repeat(existing, &hash);
        }

        let mut errors = Vec::new();
        shipping_address.validate(&mut errors);
        let ids: Vec<Uuid> = requested.iter().map(|line| line.product_id).collect();
        let catalog = products::catalog(&mut conn, &ids).await?;
        drop(conn);
        let basket = match pricing::price(&requested, &catalog) {
            Ok(basket) if errors.is_empty() => basket,
            Ok(_) => return Err(PlaceError::Invalid(errors)),
            Err(price_errors) => {
                errors.extend(price_errors);
                return Err(PlaceError::Invalid(errors));
            }
        };

        let order_id = Uuid::now_v7();
        let lines: Vec<StoredLine> = basket
            .lines
            .iter()
            .map(|line| StoredLine {
                product_id: line.product_id,
                name: line.name.clone(),
                quantity: line.quantity,
                unit_amount: line.unit_price.amount,
            })
            .collect();
        let address = serde_json::to_value(&shipping_address).map_err(anyhow::Error::from)?;
        let verdict = risk::classify(
            &self.pool,
            &self.risk_table,
            &self.engine,
            &self.risk,
            user_id,
            basket.total.amount,
            &shipping_address.country,
        )
        .await?;
        let expires_at = Utc::now()
            + Duration::from_std(self.saga.reservation_timeout).map_err(anyhow::Error::from)?;
        let limit = self.saga.open_orders;
        let mut tx = orders::begin_placement(&self.pool, user_id, limit.is_on()).await?;
        if limit.is_on() {
            let open = orders::count_open(&mut tx, user_id).await?;
            if let Err(refused) = limit.admit(open) {
                return Err(PlaceError::TooManyOpen(refused));
            }
        }
        // Read back in the insert, before the commit: once committed, nothing may fail any
        // more (no new connection to wait for), or the customer would be told "busy, nothing
        // placed" about an order that exists.
        let placed = orders::insert(
            &mut tx,
            &NewOrder {
                id: order_id,
                user_id,
                items: &lines,
                total_amount: basket.total.amount,
                currency: &basket.total.currency,
                shipping_address: &address,
                idempotency_key: key.as_deref(),
                request_hash: &hash,
                expires_at,
                risk: verdict.risk.as_str(),
                risk_reason: &verdict.reason,
            },
        )
        .await?;
        let Some(order) = placed else {
            // A concurrent duplicate with the same key won the race.
            drop(tx);
            let mut conn = self.pool.acquire().await?;
            let key = key.unwrap_or_default();
            return match orders::by_idempotency_key(&mut conn, user_id, &key).await? {
                Some(existing) => repeat(existing, &hash),
                None => Err(PlaceError::Internal(anyhow::anyhow!(
                    "idempotent insert conflicted but no order holds the key"
                ))),
            };
        };
        messaging::enqueue(
            &mut tx,
            &self.saga.topics,
            CloudEvent::new(
                EVENT_SOURCE,
                order_id.to_string(),
                created(order_id, user_id, &basket),
            ),
        )
        .await?;
        tx.commit().await?;
        metrics::counter!("orders_placed_total").increment(1);
        Ok(Placed::New(order))
    }
}

/// The answer to a repeated `Idempotency-Key`: its order, if the request is the same.
fn repeat(existing: OrderRow, hash: &str) -> Result<Placed, PlaceError> {
    match existing.request_hash.as_deref() == Some(hash) {
        true => Ok(Placed::Repeat(existing)),
        false => Err(PlaceError::KeyReused),
    }
}

/// The `order.created` event of a new order.
fn created(order_id: Uuid, user_id: Uuid, basket: &PricedBasket) -> OrderCreated {
    OrderCreated {
        order_id,
        user_id,
        items: basket
            .lines
            .iter()
            .map(|line| OrderItem {
                product_id: line.product_id,
                name: line.name.clone(),
                quantity: line.quantity,
                unit_price: line.unit_price.clone(),
            })
            .collect(),
        total: Money {
            amount: basket.total.amount,
            currency: basket.total.currency.clone(),
        },
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use sqlx::types::Json;

    use super::*;
    use crate::domain::pricing::PricedLine;

    fn placed_with(request_hash: Option<&str>) -> OrderRow {
        let now = Utc::now();
        OrderRow {
            id: Uuid::nil(),
            user_id: Uuid::nil(),
            status: "PENDING".into(),
            status_reason: None,
            items: Json(Vec::new()),
            total_amount: 0,
            currency: "EUR".into(),
            shipping_address: Json(serde_json::json!({})),
            payment_id: None,
            request_hash: request_hash.map(str::to_owned),
            expires_at: now,
            created_at: now,
            updated_at: now,
            risk: None,
            risk_reason: None,
            review_process_id: None,
            review_comment: None,
        }
    }

    #[test]
    fn a_repeated_key_answers_its_order_only_for_the_same_body() {
        assert!(matches!(
            repeat(placed_with(Some("h1")), "h1"),
            Ok(Placed::Repeat(_))
        ));
        assert!(matches!(
            repeat(placed_with(Some("h1")), "h2"),
            Err(PlaceError::KeyReused)
        ));
        // An order stored without a hash cannot prove the body was the same.
        assert!(matches!(
            repeat(placed_with(None), "h1"),
            Err(PlaceError::KeyReused)
        ));
    }

    #[test]
    fn order_created_carries_the_priced_lines_and_total() {
        let euros = |amount| Money {
            amount,
            currency: "EUR".into(),
        };
        let basket = PricedBasket {
            lines: vec![PricedLine {
                product_id: Uuid::nil(),
                name: "Kettle".into(),
                quantity: 2,
                unit_price: euros(1500),
                line_total: 3000,
            }],
            total: euros(3000),
        };
        let event = created(Uuid::nil(), Uuid::max(), &basket);
        assert_eq!(event.user_id, Uuid::max());
        assert_eq!(event.items.len(), 1);
        assert_eq!(event.items[0].quantity, 2);
        assert_eq!(event.items[0].unit_price, euros(1500));
        assert_eq!(event.total, euros(3000));
    }
}
