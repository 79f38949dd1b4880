//! The product replica: what order-service needs of each product (name, price, whether it is
//! sold), built from the full snapshots on `product.events`.

use std::collections::HashMap;

use contracts::product::{Money, ProductSnapshot};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::pricing::CatalogEntry;

/// Applies a snapshot if it is newer than the stored one. `deleted` snapshots are kept as
/// inactive rows, so an order for a deleted product is a clear 422, not "unknown".
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
         WHERE products.version < EXCLUDED.version \
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
