//! The `orders` table and its history.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::types::Json;
use sqlx::{FromRow, PgConnection};
use uuid::Uuid;

use crate::domain::status::OrderStatus;

/// A stored line: priced once, never changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredLine {
    pub product_id: Uuid,
    pub name: String,
    pub quantity: i64,
    pub unit_amount: i64,
}

#[derive(Debug, Clone, FromRow)]
pub struct OrderRow {
    pub id: Uuid,
    pub user_id: Uuid,
    pub status: String,
    pub status_reason: Option<String>,
    pub items: Json<Vec<StoredLine>>,
    pub total_amount: i64,
    pub currency: String,
    pub shipping_address: Json<Value>,
    pub payment_id: Option<Uuid>,
    pub request_hash: Option<String>,
    pub expires_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The risk check's verdict (`accept`, `review`, `unchecked`; none on older orders).
    pub risk: Option<String>,
    pub risk_reason: Option<String>,
    /// The `order-review` process of a reviewed order, once started.
    pub review_process_id: Option<String>,
    /// The reviewing admin's comment.
    pub review_comment: Option<String>,
}

impl OrderRow {
    pub fn status(&self) -> anyhow::Result<OrderStatus> {
        Ok(self.status.parse()?)
    }

    /// Whether the risk check sent the order to an admin.
    pub fn needs_review(&self) -> bool {
        self.risk.as_deref() == Some("review")
    }

    /// The shipping address's country code, as validated when the order was placed.
    pub fn shipping_country(&self) -> &str {
        self.shipping_address
            .0
            .get("country")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }
}

const COLUMNS: &str = "id, user_id, status, status_reason, items, total_amount, currency, \
    shipping_address, payment_id, request_hash, expires_at, created_at, updated_at, risk, \
    risk_reason, review_process_id, review_comment";

pub struct NewOrder<'a> {
    pub id: Uuid,
    pub user_id: Uuid,
    pub items: &'a [StoredLine],
    pub total_amount: i64,
    pub currency: &'a str,
    pub shipping_address: &'a Value,
    pub idempotency_key: Option<&'a str>,
    pub request_hash: &'a str,
    pub expires_at: DateTime<Utc>,
    /// The risk check's verdict and the rule behind it.
    pub risk: &'a str,
    pub risk_reason: &'a str,
}

/// Inserts a `PENDING` order with its first history row, and returns it as stored: `None` if
/// the caller already placed an order with this idempotency key (the unique index decides, so
/// concurrent duplicates create one order). One statement: the order, its history and the
/// read-back travel in one round trip (they were three).
pub async fn insert(
    conn: &mut PgConnection,
    order: &NewOrder<'_>,
) -> sqlx::Result<Option<OrderRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "WITH placed AS ( \
           INSERT INTO orders (id, user_id, status, items, total_amount, currency, \
             shipping_address, idempotency_key, request_hash, expires_at, risk, risk_reason) \
           VALUES ($1, $2, 'PENDING', $3, $4, $5, $6, $7, $8, $9, $10, $11) \
           ON CONFLICT (user_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING \
           RETURNING {COLUMNS}), \
         history AS ( \
           INSERT INTO order_history (order_id, status, reason, cause) \
           SELECT id, 'PENDING', NULL, 'order placed' FROM placed) \
         SELECT {COLUMNS} FROM placed"
    )))
    .bind(order.id)
    .bind(order.user_id)
    .bind(Json(order.items))
    .bind(order.total_amount)
    .bind(order.currency)
    .bind(Json(order.shipping_address))
    .bind(order.idempotency_key)
    .bind(order.request_hash)
    .bind(order.expires_at)
    .bind(order.risk)
    .bind(order.risk_reason)
    .fetch_optional(conn)
    .await
}

/// Begins the transaction that places an order of `user_id`. With the open-order limit on
/// (`locked`), the transaction takes a transaction-scoped advisory lock on the customer in the
/// same round trip as its `BEGIN` (one simple-query message of two statements): two requests
/// of one customer (on any replica) serialise from here to their commit, so both cannot see
/// room for one more order in [`count_open`] and insert. The lock is its own statement before
/// the count's, so the count's snapshot is taken once the lock is held. Without the limit
/// nothing is counted and nothing needs serialising: a plain `BEGIN`.
pub async fn begin_placement(
    pool: &sqlx::PgPool,
    user_id: Uuid,
    locked: bool,
) -> sqlx::Result<sqlx::Transaction<'static, sqlx::Postgres>> {
    if !locked {
        return pool.begin().await;
    }
    // A simple query takes no parameters; a `Uuid` prints only hex digits and hyphens, the
    // text `$1::text` gave the earlier statement, so the key is the lock it always was.
    pool.begin_with(sqlx::AssertSqlSafe(begin_locked_sql(user_id)))
        .await
}

/// `BEGIN` and the customer's advisory lock, as [`begin_placement`] sends them.
fn begin_locked_sql(user_id: Uuid) -> String {
    format!("BEGIN; SELECT pg_advisory_xact_lock(hashtextextended('{user_id}', 7301))")
}

/// The customer's open orders (`domain::open_orders::OPEN`), in a transaction that holds the
/// customer's lock ([`begin_placement`] with `locked`).
pub async fn count_open(conn: &mut PgConnection, user_id: Uuid) -> sqlx::Result<i64> {
    // The statuses written into the statement, not bound: then it matches the partial index
    // `orders_open_by_user` and is planned once per connection, not on every call.
    static COUNT_OPEN: LazyLock<String> = LazyLock::new(|| {
        format!(
            "SELECT count(*) FROM orders WHERE user_id = $1 AND status IN ({})",
            open_statuses_sql()
        )
    });
    sqlx::query_scalar(sqlx::AssertSqlSafe(COUNT_OPEN.as_str()))
        .bind(user_id)
        .fetch_one(conn)
        .await
}

/// `open_orders::OPEN` as a SQL list of literals: `'PENDING', 'AWAITING_PAYMENT'`.
fn open_statuses_sql() -> String {
    crate::domain::open_orders::OPEN
        .iter()
        .map(|status| format!("'{}'", status.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

pub async fn by_id(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<OrderRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM orders WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(conn)
    .await
}

/// Reads and row-locks the order for a status change (every writer goes through this, so
/// concurrent transitions of one order serialise).
pub async fn lock(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<OrderRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM orders WHERE id = $1 FOR UPDATE"
    )))
    .bind(id)
    .fetch_optional(conn)
    .await
}

pub async fn by_idempotency_key(
    conn: &mut PgConnection,
    user_id: Uuid,
    key: &str,
) -> sqlx::Result<Option<OrderRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM orders WHERE user_id = $1 AND idempotency_key = $2"
    )))
    .bind(user_id)
    .bind(key)
    .fetch_optional(conn)
    .await
}

/// The caller's orders, newest first, strictly older than `before` when given.
pub async fn list_for_user(
    conn: &mut PgConnection,
    user_id: Uuid,
    before: Option<Uuid>,
    limit: i64,
) -> sqlx::Result<Vec<OrderRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM orders WHERE user_id = $1 AND ($2::uuid IS NULL OR id < $2) \
         ORDER BY id DESC LIMIT $3"
    )))
    .bind(user_id)
    .bind(before)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// Every customer's orders, newest first, optionally in one status (the admin's list). The
/// primary key walk with a status filter is enough for an operator's page; a busy shop would
/// add an index on (status, id).
pub async fn list_all(
    conn: &mut PgConnection,
    status: Option<OrderStatus>,
    before: Option<Uuid>,
    limit: i64,
) -> sqlx::Result<Vec<OrderRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM orders WHERE ($1::text IS NULL OR status = $1) \
         AND ($2::uuid IS NULL OR id < $2) ORDER BY id DESC LIMIT $3"
    )))
    .bind(status.map(OrderStatus::as_str))
    .bind(before)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// A status change, as [`set_status`] stores it.
#[derive(Debug, Clone, Copy)]
pub struct StatusMove<'a> {
    pub status: OrderStatus,
    pub reason: Option<&'a str>,
    /// Kept when `None`.
    pub payment_id: Option<Uuid>,
    /// Kept when `None`.
    pub expires_at: Option<DateTime<Utc>>,
    /// What caused it (the history's `cause`).
    pub cause: &'a str,
}

/// Stores a new status (the caller holds the row lock and checked the transition) with its
/// history row, and sends `announcement` on the status feed's channel
/// ([`crate::status_feed::CHANNEL`]), delivered when the caller's transaction commits; returns
/// the order as written. One statement, one round trip: the move, the history and the `NOTIFY`
/// were two round trips per saga step before.
pub async fn set_status(
    conn: &mut PgConnection,
    id: Uuid,
    change: &StatusMove<'_>,
    announcement: &str,
) -> sqlx::Result<Option<OrderRow>> {
    write_move(conn, id, None, false, change, announcement).await
}

/// Stores a new status only if the order is in status `from` (and, with `not_for_review`, was
/// not sent to review by the risk check), with its history row and `announcement`, as
/// [`set_status`] does; returns the order as written, or `None` if it was not in that state.
/// The update takes the row lock itself and checks the guard on the row as committed, so no
/// read before it is needed: one statement for what took the lock's read and the write.
pub async fn move_from(
    conn: &mut PgConnection,
    id: Uuid,
    from: OrderStatus,
    not_for_review: bool,
    change: &StatusMove<'_>,
    announcement: &str,
) -> sqlx::Result<Option<OrderRow>> {
    write_move(conn, id, Some(from), not_for_review, change, announcement).await
}

/// The statement of [`set_status`] and [`move_from`]: the move guarded by `from` if given,
/// the history row and the `NOTIFY` only if the order was written, and the order as written.
async fn write_move(
    conn: &mut PgConnection,
    id: Uuid,
    from: Option<OrderStatus>,
    not_for_review: bool,
    change: &StatusMove<'_>,
    announcement: &str,
) -> sqlx::Result<Option<OrderRow>> {
    // `pg_notify` returns `void`, read as text (empty) so the row decodes as usual.
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "WITH moved AS ( \
           UPDATE orders SET status = $2, status_reason = $3, \
             payment_id = COALESCE($4, payment_id), expires_at = COALESCE($5, expires_at), \
             updated_at = now() \
           WHERE id = $1 AND ($9::text IS NULL OR status = $9) \
             AND (NOT $10 OR risk IS DISTINCT FROM 'review') \
           RETURNING {COLUMNS}), \
         history AS ( \
           INSERT INTO order_history (order_id, status, reason, cause) \
           SELECT id, $2, $3, $6 FROM moved) \
         SELECT {COLUMNS}, pg_notify($7, $8)::text AS notified FROM moved"
    )))
    .bind(id)
    .bind(change.status.as_str())
    .bind(change.reason)
    .bind(change.payment_id)
    .bind(change.expires_at)
    .bind(change.cause)
    .bind(crate::status_feed::CHANNEL)
    .bind(announcement)
    .bind(from.map(OrderStatus::as_str))
    .bind(not_for_review)
    .fetch_optional(conn)
    .await
}

/// Live orders past their deadline, locked for this transaction; rows another replica's
/// expiry job holds are skipped, so replicas share the work without doing it twice.
pub async fn lock_expired(conn: &mut PgConnection, limit: i64) -> sqlx::Result<Vec<Uuid>> {
    sqlx::query_scalar(
        "SELECT id FROM orders WHERE status IN ('PENDING', 'AWAITING_PAYMENT') AND expires_at <= now() \
         ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED",
    )
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// Orders in review whose process is not started yet, oldest first, locked for this
/// transaction (rows another replica is starting are skipped).
pub async fn lock_unstarted_reviews(
    conn: &mut PgConnection,
    limit: i64,
) -> sqlx::Result<Vec<OrderRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM orders WHERE status = 'REVIEW' AND review_process_id IS NULL \
         ORDER BY updated_at LIMIT $1 FOR UPDATE SKIP LOCKED"
    )))
    .bind(limit)
    .fetch_all(conn)
    .await
}

pub async fn set_review_process(
    conn: &mut PgConnection,
    id: Uuid,
    process_instance_id: &str,
) -> sqlx::Result<()> {
    sqlx::query("UPDATE orders SET review_process_id = $2 WHERE id = $1")
        .bind(id)
        .bind(process_instance_id)
        .execute(conn)
        .await
        .map(drop)
}

pub async fn by_review_process(
    conn: &mut PgConnection,
    process_instance_id: &str,
) -> sqlx::Result<Option<OrderRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM orders WHERE review_process_id = $1"
    )))
    .bind(process_instance_id)
    .fetch_optional(conn)
    .await
}

pub async fn set_review_comment(
    conn: &mut PgConnection,
    id: Uuid,
    comment: Option<&str>,
) -> sqlx::Result<()> {
    sqlx::query("UPDATE orders SET review_comment = $2 WHERE id = $1")
        .bind(id)
        .bind(comment)
        .execute(conn)
        .await
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lock taken with `BEGIN` is keyed as the bound `$1::text` of a `uuid` was: the
    /// hyphenated lower-case text, so replicas of either version serialise on the same lock.
    #[test]
    fn the_placement_lock_is_keyed_by_the_customers_uuid_text() {
        let user = Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
        assert_eq!(
            begin_locked_sql(user),
            "BEGIN; SELECT pg_advisory_xact_lock(\
             hashtextextended('01234567-89ab-cdef-0123-456789abcdef', 7301))"
        );
    }

    /// The partial index the count of open orders reads names the same statuses as the count.
    #[test]
    fn the_open_orders_index_covers_exactly_the_open_statuses() {
        let migration = include_str!("../../migrations/20261205000001_open_orders_by_user.sql");
        let statuses = open_statuses_sql();
        assert_eq!(statuses, "'PENDING', 'AWAITING_PAYMENT'");
        assert!(
            migration.contains(&format!("WHERE status IN ({statuses})")),
            "{migration}"
        );
    }
}
