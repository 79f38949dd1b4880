//! Inventory: the stock side of the checkout saga (DESIGN "Checkout saga" steps 2 and 6).
//!
//! `order.created` reserves every line (`available` -> `reserved`), `order.paid` commits the
//! reservation (`reserved` -> `sold`), `order.cancelled` / `order.rejected` release it
//! (`reserved` -> `available`); each outcome is one `inventory.*` event. The `restock` step of
//! a refund whose goods came back returns a committed order's units (`sold` -> `available`,
//! `inventory.restocked`), idempotent per (order, product) through `restocked.<order id>` on
//! the product, as reserving is through `reservations.<order id>`.
//!
//! Two kinds of documents carry the state, each changed only by guarded single-document
//! updates (there are no multi-document transactions):
//!
//! - the product: `stock` and `reservations.<order id>: quantity`. The record is written in
//!   the same update as the stock change, so "has this order taken units of this product?" is
//!   answered by the product itself, and every per-line step is idempotent. A step reads the
//!   product, plans the change from it, and applies the plan with one `findOneAndUpdate`
//!   guarded by the version read (and the stock the plan needs). If another writer changed the
//!   product in between, nothing is written and the step reads and plans again, up to
//!   `messaging::mongo::conflict::ATTEMPTS` times; then it fails and the consumer retries the
//!   record;
//! - the order's `reservations` document: its lines, its status, and its `inventory.*` event
//!   in `pending_events`, written with the status change, guarded by the status it leaves.
//!
//! A crash between the steps leaves the order in its earlier status; the record is not
//! acknowledged, is redelivered, and the steps already done are no-ops, so it converges. A
//! failed reservation is recorded (`failed` + its event) before the units it took go back, so
//! that a second attempt at the same order (two replicas during a rebalance) that reserved
//! everything is never undone by the failing one; a redelivered `order.created` of a `failed`
//! order releases again (a no-op where nothing is held). Each
//! stock change of a product also writes its `product.updated.v1` snapshot (replicas and
//! caches follow stock through them); the changes of one product within
//! `STOCK_SNAPSHOT_HOLD_BACK_MS` leave as one snapshot, the latest, since each carries the
//! whole product.

pub mod consumer;
mod writer;

use std::sync::Arc;
use std::time::Duration;

use contracts::inventory::{
    InventoryCommitted, InventoryReleased, InventoryReservationFailed, InventoryReserved,
    InventoryRestocked, ShortLine, StockLine,
};
use contracts::topics::Topic;
use contracts::{CloudEvent, EventData};
use messaging::mongo::RelayWake;
use mongodb::Database;
use uuid::Uuid;

use crate::catalog::Catalog;
use crate::events::EVENT_SOURCE;
use crate::events::outbox::PendingEvent;
use crate::store::products::{self, ProductDoc, Products};
use crate::store::reservations::{Reservations, Status};

/// What happened to one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LineOutcome {
    /// The order holds (or now held) this product's units.
    Held,
    /// Not enough available (0 for an unknown or withdrawn product).
    Short { available: i64 },
    /// The step did not apply (nothing held, or already done).
    Nothing,
}

/// What a step does to a product, decided from the product as read: the product after it
/// ([`writer`] writes the difference, guarded by the version read).
enum Plan {
    Skip(LineOutcome),
    /// The product breaks an invariant the step relies on (books an operator corrected below
    /// what the order holds): the step fails and is retried, and an operator sees it.
    Fail(String),
    Write {
        after: Box<ProductDoc>,
        outcome: LineOutcome,
    },
}

/// Names written documents to the relays, so their events leave at once (a reservation's
/// product snapshot within `stock_hold_back`).
#[derive(Debug, Clone, Default)]
pub struct Wake {
    pub products: RelayWake,
    pub reservations: RelayWake,
    /// How long the stock writer's snapshot of a product may wait for that product's next
    /// stock changes, to leave with them as one record (`STOCK_SNAPSHOT_HOLD_BACK_MS`); zero
    /// (the default here): at once. The snapshots are on no step of the saga.
    pub stock_hold_back: Duration,
}

#[derive(Clone)]
pub struct Inventory {
    products: Products,
    reservations: Reservations,
    topics: Topic,
    writer: writer::ProductWriter,
    wake: Wake,
    /// The lines of the orders this process moved to `reserved` lately (see
    /// [`Inventory::lines_in`]).
    reserved_here: moka::sync::Cache<Uuid, Arc<Vec<StockLine>>>,
}

/// Orders kept in `reserved_here`: those awaiting payment within [`RESERVED_FOR`]; a bound,
/// not a working set (an entry leaves when its order is paid or released).
const RESERVED_KEPT: u64 = 2_048;

/// How long this process trusts its own move of an order to `reserved` without a read.
const RESERVED_FOR: Duration = Duration::from_secs(60);

impl Inventory {
    pub fn new(db: &Database, topics: Topic, catalog: Catalog, wake: Wake) -> Self {
        let products = Products::new(db);
        Self {
            writer: writer::ProductWriter::new(
                products.clone(),
                topics.clone(),
                catalog,
                wake.products.clone(),
                wake.stock_hold_back,
            ),
            products,
            reservations: Reservations::new(db),
            topics,
            wake,
            reserved_here: moka::sync::Cache::builder()
                .max_capacity(RESERVED_KEPT)
                .time_to_live(RESERVED_FOR)
                .build(),
        }
    }

    /// `order.created`: reserves every line, or none.
    pub async fn reserve(&self, order_id: Uuid, lines: &[StockLine]) -> anyhow::Result<()> {
        let reservation = self.reservations.begin(&order_id, lines).await?;
        // The stored lines, not the event's: a second `order.created` with the same id and
        // other lines must not change what the first one reserved.
        let lines = reservation.stock_lines()?;
        match reservation.status {
            Status::Reserving => {}
            // The failure is recorded before the units go back; a crash in between left them
            // held, so give them back again (a no-op where nothing is held).
            Status::Failed => return self.each_line(order_id, &lines, release_plan).await,
            status => {
                tracing::info!(%order_id, status = status.as_str(), "order seen before; nothing to do");
                return Ok(());
            }
        }
        let order = order_id.to_string();
        let mut short = Vec::new();
        for line in &lines {
            if !short.is_empty() {
                // One short line fails the order; the rest are only checked, to name them all.
                if let Some(available) = self.shortage(line).await? {
                    short.push(short_line(line, available));
                }
                continue;
            }
            let (order, quantity) = (order.clone(), line.quantity);
            let outcome = self
                .change_product(&line.product_id, move |product| {
                    reserve_plan(product, &order, quantity)
                })
                .await?;
            if let LineOutcome::Short { available } = outcome {
                short.push(short_line(line, available));
            }
        }
        let reserved = short.is_empty();
        let settled_here = if reserved {
            let event = InventoryReserved {
                order_id,
                lines: lines.clone(),
            };
            self.finish(order_id, Status::Reserving, Status::Reserved, event)
                .await?
        } else {
            tracing::info!(%order_id, short = short.len(), "reservation failed");
            let event = InventoryReservationFailed {
                order_id,
                short_lines: short,
            };
            self.finish(order_id, Status::Reserving, Status::Failed, event)
                .await?
        };
        // Settled here, or first by another consumer of this order (two replicas during a
        // partition rebalance): unless the outcome is `reserved`, nothing may stay held. The
        // records are per order, not per attempt, so if the other attempt reserved, the units
        // this one took are the order's and stay.
        let outcome = match (settled_here, reserved) {
            (true, true) => {
                self.reserved_here.insert(order_id, Arc::new(lines));
                return Ok(());
            }
            (true, false) => Status::Failed,
            (false, _) => match self.reservations.get(&order_id).await? {
                Some(reservation) => reservation.status,
                None => return Ok(()),
            },
        };
        if outcome == Status::Failed {
            self.each_line(order_id, &lines, release_plan).await?;
        }
        Ok(())
    }

    /// `order.paid`: the reserved units are sold.
    pub async fn commit(&self, order_id: Uuid) -> anyhow::Result<()> {
        self.end_hold(
            order_id,
            "order.paid",
            commit_plan,
            Status::Committed,
            |lines| InventoryCommitted { order_id, lines },
        )
        .await
    }

    /// `order.cancelled` / `order.rejected`: the reserved units return to `available`.
    pub async fn release(&self, order_id: Uuid, why: &str) -> anyhow::Result<()> {
        self.end_hold(order_id, why, release_plan, Status::Released, |lines| {
            InventoryReleased { order_id, lines }
        })
        .await
    }

    /// The `restock` step: a paid (committed) order was refunded and its goods came back; its
    /// sold units become available again, and `inventory.restocked` is published once. Returns
    /// whether the order's units are (now or already) back; `false` when the order has no
    /// committed reservation here (nothing was sold through this service), which is not an
    /// error: there is nothing to return.
    pub async fn restock(&self, order_id: Uuid, refund_request_id: Uuid) -> anyhow::Result<bool> {
        let Some(reservation) = self.reservations.get(&order_id).await? else {
            tracing::info!(%order_id, "restock: no reservation for this order; nothing to return");
            return Ok(false);
        };
        match reservation.status {
            Status::Committed => {}
            Status::Restocked => return Ok(true),
            status => {
                tracing::info!(%order_id, status = status.as_str(), "restock: the order sold nothing; nothing to return");
                return Ok(false);
            }
        }
        let lines = reservation.stock_lines()?;
        let order = order_id.to_string();
        for line in &lines {
            let (order, quantity) = (order.clone(), line.quantity);
            self.change_product(&line.product_id, move |product| {
                restock_plan(product, &order, quantity)
            })
            .await?;
        }
        self.finish(
            order_id,
            Status::Committed,
            Status::Restocked,
            InventoryRestocked {
                order_id,
                refund_request_id,
                lines,
            },
        )
        .await?;
        Ok(true)
    }

    /// Ends a `reserved` order's hold on each of its products with `plan`, then moves it to
    /// `to` with its event; `why` names the cause in the log when it does not apply.
    async fn end_hold<T: EventData>(
        &self,
        order_id: Uuid,
        why: &str,
        plan: fn(Option<&ProductDoc>, &str) -> Plan,
        to: Status,
        event: impl FnOnce(Vec<StockLine>) -> T,
    ) -> anyhow::Result<()> {
        let Some(lines) = self.lines_in(order_id, Status::Reserved, why).await? else {
            return Ok(());
        };
        self.each_line(order_id, &lines, plan).await?;
        self.finish(order_id, Status::Reserved, to, event(lines))
            .await?;
        // Moved on (here or, if the guard did not match, elsewhere): a redelivery reads.
        self.reserved_here.invalidate(&order_id);
        Ok(())
    }

    /// Applies `plan` to each line's product for the order.
    async fn each_line(
        &self,
        order_id: Uuid,
        lines: &[StockLine],
        plan: fn(Option<&ProductDoc>, &str) -> Plan,
    ) -> anyhow::Result<()> {
        let order = order_id.to_string();
        for line in lines {
            let order = order.clone();
            self.change_product(&line.product_id, move |product| plan(product, &order))
                .await?;
        }
        Ok(())
    }

    /// The order's lines if it is in `status`; `None` (logged) otherwise.
    ///
    /// An order this process moved to `reserved` lately is taken as `reserved` without a read
    /// (one `find` per paid order under the benchmark's checkout). With one consumer per order
    /// (a partition is one consumer's at a time) nothing else moves it on meanwhile, except
    /// after its partition moved to another process; the steps taken on a copy that is behind
    /// are then no-ops: each product's plan changes only units the order still holds there
    /// (`reservations.<order id>`), and the move out of `reserved` is guarded by that status,
    /// so an order that left it writes nothing and publishes nothing, as the read would have
    /// decided. The lines never change once stored.
    async fn lines_in(
        &self,
        order_id: Uuid,
        status: Status,
        event: &str,
    ) -> anyhow::Result<Option<Vec<StockLine>>> {
        if status == Status::Reserved
            && let Some(lines) = self.reserved_here.get(&order_id)
        {
            return Ok(Some(lines.as_ref().clone()));
        }
        match self.reservations.get(&order_id).await? {
            Some(reservation) if reservation.status == status => {
                Ok(Some(reservation.stock_lines()?))
            }
            Some(reservation) => {
                tracing::info!(%order_id, status = reservation.status.as_str(), event, "does not apply in this status; ignored");
                Ok(None)
            }
            None => {
                tracing::info!(%order_id, event, "no reservation for this order; ignored");
                Ok(None)
            }
        }
    }

    /// How many units of `line` are available, if fewer than it asks for.
    async fn shortage(&self, line: &StockLine) -> anyhow::Result<Option<i64>> {
        let available = match self.products.get(&line.product_id).await? {
            Some(product) if product.active => product.stock.available,
            _ => 0,
        };
        Ok((available < line.quantity).then_some(available))
    }

    /// Moves the order's reservation to `to` with its event, guarded by its status. If it
    /// already left `from`, an earlier delivery did this: nothing happens (`false`).
    async fn finish<T: EventData>(
        &self,
        order_id: Uuid,
        from: Status,
        to: Status,
        data: T,
    ) -> anyhow::Result<bool> {
        let event = PendingEvent::new(
            &self.topics,
            CloudEvent::new(EVENT_SOURCE, order_id.to_string(), data),
        )?;
        let changed = self
            .reservations
            .transition(&order_id, from, to, &event)
            .await?;
        if changed {
            self.wake.reservations.written(order_id.to_string());
            tracing::info!(%order_id, status = to.as_str(), "reservation updated");
        }
        Ok(changed)
    }

    /// Applies what `plan` decides on product `id`, in the next round of this process's
    /// writer of that product ([`writer`]): one update guarded by the version read, with its
    /// `product.updated` snapshot, shared with the other steps waiting for the product.
    async fn change_product(
        &self,
        id: &Uuid,
        plan: impl Fn(Option<&ProductDoc>) -> Plan + Send + Sync + 'static,
    ) -> anyhow::Result<LineOutcome> {
        self.writer.change(*id, Box::new(plan)).await
    }
}

fn short_line(line: &StockLine, available: i64) -> ShortLine {
    ShortLine {
        product_id: line.product_id,
        requested: line.quantity,
        available,
    }
}

/// Takes `quantity` units for `order` unless it holds them already or too few are available.
fn reserve_plan(product: Option<&ProductDoc>, order: &str, quantity: i64) -> Plan {
    let Some(product) = product else {
        return Plan::Skip(LineOutcome::Short { available: 0 });
    };
    if product.reservations.contains_key(order) {
        return Plan::Skip(LineOutcome::Held);
    }
    if !product.active {
        return Plan::Skip(LineOutcome::Short { available: 0 });
    }
    if product.stock.available < quantity {
        return Plan::Skip(LineOutcome::Short {
            available: product.stock.available,
        });
    }
    let mut after = products::next_version(product);
    after.stock.available -= quantity;
    after.stock.reserved += quantity;
    after.reservations.insert(order.to_owned(), quantity);
    Plan::Write {
        after: Box::new(after),
        outcome: LineOutcome::Held,
    }
}

/// Returns the units `order` holds to `available`; nothing if it holds none.
fn release_plan(product: Option<&ProductDoc>, order: &str) -> Plan {
    held_plan(product, order, |after, quantity| {
        after.stock.available += quantity;
    })
}

/// Moves the units `order` holds to `sold`; nothing if it holds none.
fn commit_plan(product: Option<&ProductDoc>, order: &str) -> Plan {
    held_plan(product, order, |after, quantity| {
        after.sold += quantity;
    })
}

/// Returns `quantity` sold units of `order` to `available`, once: the record
/// `restocked.<order>` is written with the change. A product whose sales were corrected below
/// the order's units is not driven negative: the step fails and an operator sees the incident.
fn restock_plan(product: Option<&ProductDoc>, order: &str, quantity: i64) -> Plan {
    let Some(product) = product else {
        return Plan::Skip(LineOutcome::Nothing);
    };
    if product.restocked.contains_key(order) {
        return Plan::Skip(LineOutcome::Held);
    }
    if product.sold < quantity {
        return Plan::Fail(format!(
            "product {} has sold {}, fewer than the {quantity} units order {order} returns",
            product.id, product.sold
        ));
    }
    let mut after = products::next_version(product);
    after.sold -= quantity;
    after.stock.available += quantity;
    after.restocked.insert(order.to_owned(), quantity);
    Plan::Write {
        after: Box::new(after),
        outcome: LineOutcome::Held,
    }
}

/// Ends `order`'s hold on the product: `reserved` drops by the recorded quantity, the record
/// goes, and `apply` says where the units go.
fn held_plan(
    product: Option<&ProductDoc>,
    order: &str,
    apply: impl FnOnce(&mut ProductDoc, i64),
) -> Plan {
    let Some((product, quantity)) =
        product.and_then(|p| p.reservations.get(order).map(|quantity| (p, *quantity)))
    else {
        return Plan::Skip(LineOutcome::Nothing);
    };
    if product.stock.reserved < quantity {
        return Plan::Fail(format!(
            "product {} has {} units reserved, fewer than the {quantity} order {order} holds",
            product.id, product.stock.reserved
        ));
    }
    let mut after = products::next_version(product);
    after.stock.reserved -= quantity;
    after.reservations.remove(order);
    apply(&mut after, quantity);
    Plan::Write {
        after: Box::new(after),
        outcome: LineOutcome::Held,
    }
}

#[cfg(test)]
mod tests {
    use contracts::product::Money;
    use mongodb::bson;

    use super::*;
    use crate::store::products::StockDoc;

    fn product(available: i64) -> ProductDoc {
        let now = bson::DateTime::now();
        ProductDoc {
            id: Uuid::from_u128(7).to_string(),
            sku: "SKU".into(),
            name: "Thing".into(),
            description: String::new(),
            category: "kitchen".into(),
            tags: vec![],
            price: Money {
                amount: 100,
                currency: "EUR".into(),
            },
            specs: serde_json::json!({}),
            images: vec![],
            stock: StockDoc {
                available,
                reserved: 0,
            },
            sold: 0,
            initial_stock: available,
            adjusted_total: 0,
            adjustments: vec![],
            reservations: Default::default(),
            restocked: Default::default(),
            active: true,
            version: 1,
            created_at: now,
            updated_at: now,
            pending_events: vec![],
            outbox_pending: false,
        }
    }

    fn written(plan: Plan) -> Option<ProductDoc> {
        match plan {
            Plan::Write { after, .. } => Some(*after),
            Plan::Skip(_) | Plan::Fail(_) => None,
        }
    }

    fn balanced(p: &ProductDoc) -> bool {
        p.initial_stock + p.adjusted_total == p.stock.available + p.stock.reserved + p.sold
            && p.stock.reserved == p.reservations.values().sum::<i64>()
    }

    #[test]
    fn a_reservation_moves_units_to_reserved_once_and_records_the_order() {
        let before = product(5);
        let after = written(reserve_plan(Some(&before), "o1", 2));
        let Some(after) = after else {
            panic!("expected a write");
        };
        assert_eq!((after.stock.available, after.stock.reserved), (3, 2));
        assert_eq!(after.reservations.get("o1"), Some(&2));
        assert_eq!(after.version, 2);
        assert!(balanced(&after));
        // Again for the same order: it holds them already.
        assert!(matches!(
            reserve_plan(Some(&after), "o1", 2),
            Plan::Skip(LineOutcome::Held)
        ));
    }

    #[test]
    fn short_unknown_and_withdrawn_products_are_not_reserved() {
        assert!(matches!(
            reserve_plan(Some(&product(1)), "o1", 2),
            Plan::Skip(LineOutcome::Short { available: 1 })
        ));
        assert!(matches!(
            reserve_plan(None, "o1", 1),
            Plan::Skip(LineOutcome::Short { available: 0 })
        ));
        let mut withdrawn = product(9);
        withdrawn.active = false;
        assert!(matches!(
            reserve_plan(Some(&withdrawn), "o1", 1),
            Plan::Skip(LineOutcome::Short { available: 0 })
        ));
    }

    #[test]
    fn commit_and_release_end_the_hold_once_and_keep_the_books_balanced() {
        let reserved = written(reserve_plan(Some(&product(5)), "o1", 2));
        let Some(reserved) = reserved else {
            panic!("expected a write");
        };
        let Some(sold) = written(commit_plan(Some(&reserved), "o1")) else {
            panic!("expected a write");
        };
        assert_eq!(
            (sold.stock.available, sold.stock.reserved, sold.sold),
            (3, 0, 2)
        );
        assert!(sold.reservations.is_empty() && balanced(&sold));
        assert!(written(commit_plan(Some(&sold), "o1")).is_none(), "once");
        assert!(written(release_plan(Some(&sold), "o1")).is_none());

        let Some(back) = written(release_plan(Some(&reserved), "o1")) else {
            panic!("expected a write");
        };
        assert_eq!(
            (back.stock.available, back.stock.reserved, back.sold),
            (5, 0, 0)
        );
        assert!(back.reservations.is_empty() && balanced(&back));
        assert!(written(release_plan(Some(&back), "o1")).is_none(), "once");
    }

    #[test]
    fn a_restock_returns_sold_units_once_and_keeps_the_books_balanced() {
        let Some(reserved) = written(reserve_plan(Some(&product(5)), "o1", 2)) else {
            panic!("expected a write");
        };
        let Some(sold) = written(commit_plan(Some(&reserved), "o1")) else {
            panic!("expected a write");
        };
        let Some(back) = written(restock_plan(Some(&sold), "o1", 2)) else {
            panic!("expected a write");
        };
        assert_eq!(
            (back.stock.available, back.stock.reserved, back.sold),
            (5, 0, 0)
        );
        assert_eq!(back.restocked.get("o1"), Some(&2));
        assert!(balanced(&back));
        // The step again (a retry, a second worker): nothing more comes back.
        assert!(matches!(
            restock_plan(Some(&back), "o1", 2),
            Plan::Skip(LineOutcome::Held)
        ));
        // Another order's return is its own, and never takes `sold` below zero.
        assert!(written(restock_plan(Some(&sold), "o2", 1)).is_some());
        assert!(matches!(restock_plan(Some(&back), "o2", 1), Plan::Fail(_)));
        assert!(matches!(
            restock_plan(None, "o1", 1),
            Plan::Skip(LineOutcome::Nothing)
        ));
    }
}
