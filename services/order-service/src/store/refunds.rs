//! The `refund_requests` table: a customer's request and how it ended. Its progress in
//! between belongs to the workflow engine.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::types::Json;
use sqlx::{FromRow, PgConnection};
use uuid::Uuid;

/// Where a request stands in the shop's eyes.
pub const OPEN: &str = "OPEN";
pub const REFUNDED: &str = "REFUNDED";
pub const REJECTED: &str = "REJECTED";

#[derive(Debug, Clone, FromRow)]
pub struct RefundRow {
    pub id: Uuid,
    pub order_id: Uuid,
    pub user_id: Uuid,
    pub reason: String,
    pub items: Option<Json<Value>>,
    pub amount: i64,
    pub currency: String,
    pub status: String,
    pub process_instance_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str = "id, order_id, user_id, reason, items, amount, currency, status, \
    process_instance_id, created_at, closed_at";

pub struct NewRefund<'a> {
    pub id: Uuid,
    pub order_id: Uuid,
    pub user_id: Uuid,
    pub reason: &'a str,
    pub items: Option<&'a Value>,
    pub amount: i64,
    pub currency: &'a str,
}

/// Inserts an `OPEN` request; `Ok(false)` when the order has an open one already (the unique
/// index decides, so two concurrent requests create one).
pub async fn insert(conn: &mut PgConnection, new: &NewRefund<'_>) -> sqlx::Result<bool> {
    let result = sqlx::query(
        "INSERT INTO refund_requests (id, order_id, user_id, reason, items, amount, currency, status) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'OPEN') ON CONFLICT DO NOTHING",
    )
    .bind(new.id)
    .bind(new.order_id)
    .bind(new.user_id)
    .bind(new.reason)
    .bind(new.items.map(Json))
    .bind(new.amount)
    .bind(new.currency)
    .execute(conn)
    .await?;
    Ok(result.rows_affected() == 1)
}

pub async fn set_process(conn: &mut PgConnection, id: Uuid, process: &str) -> sqlx::Result<()> {
    sqlx::query("UPDATE refund_requests SET process_instance_id = $2 WHERE id = $1")
        .bind(id)
        .bind(process)
        .execute(conn)
        .await
        .map(drop)
}

/// Removes a request whose process could not be started (nothing else refers to it yet).
pub async fn delete_unstarted(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM refund_requests WHERE id = $1 AND process_instance_id IS NULL")
        .bind(id)
        .execute(conn)
        .await
        .map(drop)
}

/// Removes the order's open request that never got its process (the service died between
/// storing it and starting the process) once it is older than `seconds`; `true` if one was.
pub async fn delete_abandoned(
    conn: &mut PgConnection,
    order_id: Uuid,
    seconds: i32,
) -> sqlx::Result<bool> {
    let result = sqlx::query(
        "DELETE FROM refund_requests WHERE order_id = $1 AND status = 'OPEN' \
         AND process_instance_id IS NULL AND created_at < now() - make_interval(secs => $2)",
    )
    .bind(order_id)
    .bind(f64::from(seconds))
    .execute(conn)
    .await?;
    Ok(result.rows_affected() > 0)
}

pub async fn of_order(conn: &mut PgConnection, order_id: Uuid) -> sqlx::Result<Vec<RefundRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM refund_requests WHERE order_id = $1 ORDER BY created_at DESC"
    )))
    .bind(order_id)
    .fetch_all(conn)
    .await
}

pub async fn lock(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<RefundRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM refund_requests WHERE id = $1 FOR UPDATE"
    )))
    .bind(id)
    .fetch_optional(conn)
    .await
}

/// Closes an open request as `status`; `false` when it was closed already.
pub async fn close(conn: &mut PgConnection, id: Uuid, status: &str) -> sqlx::Result<bool> {
    let result = sqlx::query(
        "UPDATE refund_requests SET status = $2, closed_at = now() WHERE id = $1 AND status = 'OPEN'",
    )
    .bind(id)
    .bind(status)
    .execute(conn)
    .await?;
    Ok(result.rows_affected() == 1)
}

/// How many of the customer's requests ended refunded within the last `days` days.
pub async fn refunded_since(
    conn: &mut PgConnection,
    user_id: Uuid,
    days: i32,
) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "SELECT count(*) FROM refund_requests WHERE user_id = $1 AND status = 'REFUNDED' \
         AND closed_at > now() - make_interval(days => $2)",
    )
    .bind(user_id)
    .bind(days)
    .fetch_one(conn)
    .await
}

/// When the order became `PAID` (its history row).
pub async fn paid_at(
    conn: &mut PgConnection,
    order_id: Uuid,
) -> sqlx::Result<Option<DateTime<Utc>>> {
    sqlx::query_scalar("SELECT min(at) FROM order_history WHERE order_id = $1 AND status = 'PAID'")
        .bind(order_id)
        .fetch_one(conn)
        .await
}

/// The request whose process is `process`.
pub async fn by_process(conn: &mut PgConnection, process: &str) -> sqlx::Result<Option<RefundRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM refund_requests WHERE process_instance_id = $1"
    )))
    .bind(process)
    .fetch_optional(conn)
    .await
}

/// Records the admin's comment on an open request.
pub async fn set_comment(
    conn: &mut PgConnection,
    id: Uuid,
    comment: Option<&str>,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE refund_requests SET decision_comment = $2 WHERE id = $1 AND status = 'OPEN'",
    )
    .bind(id)
    .bind(comment)
    .execute(conn)
    .await
    .map(drop)
}
