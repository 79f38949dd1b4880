//! The product replica: what order-service needs of each product (name, price, whether it is
//! sold), built from the full snapshots on `product.events`.

use std::collections::HashMap;

use contracts::product::{Money, ProductSnapshot};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::pricing::CatalogEntry;

/// Applies a snapshot if it is newer than the stored one and changes what the replica keeps.
/// `deleted` snapshots are kept as inactive rows, so an order for a deleted product is a clear
/// 422, not "unknown". Most snapshots are stock changes (every reservation and sale writes
/// one), which the replica does not keep: those leave the row as it is (no new row version, no
/// WAL) and the stored `version` behind. That is safe because snapshots of a product arrive in
/// version order (one partition per product): a later one that does change the row is newer
/// than the stored version too, and an older one redelivered is older still. Returns whether
/// the row changed.
pub async fn apply_snapshot(
    conn: &mut PgConnection,
    snapshot: &ProductSnapshot,
    deleted: bool,
) -> sqlx::Result<bool> {
    let result = sqlx::query(
        "INSERT INTO products (id, name, amount, currency, active, version) \
         VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, amount = EXCLUDED.amount, \
           currency = EXCLUDED.currency, active = EXCLUDED.active, version = EXCLUDED.version, \
           updated_at = now() \
         WHERE (products.version < EXCLUDED.version \
             AND (products.name, products.amount, products.currency, products.active) \
                 IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.amount, EXCLUDED.currency, EXCLUDED.active)) \
            OR (products.version = EXCLUDED.version AND products.active AND NOT EXCLUDED.active)",
    )
    .bind(snapshot.id)
    .bind(&snapshot.name)
    .bind(snapshot.price.amount)
    .bind(&snapshot.price.currency)
    .bind(snapshot.active && !deleted)
    .bind(snapshot.version)
    .execute(conn)
    .await?;
    Ok(result.rows_affected() == 1)
}

/// The replica's entries for `ids` (absent ids are unknown products).
pub async fn catalog(
    conn: &mut PgConnection,
    ids: &[Uuid],
) -> sqlx::Result<HashMap<Uuid, CatalogEntry>> {
    let rows: Vec<(Uuid, String, i64, String, bool)> = sqlx::query_as(
        "SELECT id, name, amount, currency, active FROM products WHERE id = ANY($1)",
    )
    .bind(ids)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, name, amount, currency, active)| {
            (
                id,
                CatalogEntry {
                    name,
                    price: Money { amount, currency },
                    active,
                },
            )
        })
        .collect())
}
