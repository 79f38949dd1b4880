//! One writer of stock per product in this process, which takes every step waiting for that
//! product in one guarded update.
//!
//! Without it, each consumer read the product, planned its step and wrote it guarded by the
//! version read; on a product many orders want at once (a sale's one hot item) the consumers
//! of this replica kept invalidating each other's reads, and every lost race cost a re-read
//! and, after three, a jittered pause. Now a step is queued under its product's id: the first
//! step of an idle product starts a task that drains the queue, and every step queued while
//! that task writes goes into its next round. A round reads the product once, plans the
//! waiting steps one after another on the result of the previous ones (so they see each
//! other's units exactly as if they had run in turn), and writes the outcome with one update
//! guarded by the version read, with one `product.updated` snapshot. Each step then gets its
//! own outcome.
//!
//! Nothing else changes: the write is still one atomic single-document update guarded by the
//! version, so another replica's writer or an admin's edit in between is a conflict, retried
//! on a fresh read as before, and every step is still idempotent per (order, product) through
//! the product's `reservations` / `restocked` records. A round that fails (the database away,
//! too many conflicts) fails every step in it; each caller's record is then redelivered, as a
//! single step's failure always was.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use contracts::CloudEvent;
use contracts::product::ProductUpdated;
use contracts::topics::Topic;
use messaging::mongo::{ConflictRetry, RelayWake};
use mongodb::bson::{self, Document, doc};
use tokio::sync::oneshot;
use uuid::Uuid;

use super::{LineOutcome, Plan};
use crate::catalog::Catalog;
use crate::events::EVENT_SOURCE;
use crate::events::outbox::PendingEvent;
use crate::store::products::{self, ProductDoc, Products};

/// A step on one product: decides, from the product as it will be when the step runs, what
/// it changes.
pub(super) type StepPlan = Box<dyn Fn(Option<&ProductDoc>) -> Plan + Send + Sync>;

/// What a step came to: its line's outcome, or why it failed (the round's write failed, or
/// the step refused the product as it found it).
type StepOutcome = Result<LineOutcome, String>;

/// Steps one round takes at most; the rest wait for the next round.
const MAX_ROUND: usize = 256;

struct Step {
    plan: StepPlan,
    outcome: oneshot::Sender<StepOutcome>,
}

/// The per-product queues of this process (cheap to clone).
#[derive(Clone)]
pub(super) struct ProductWriter {
    shared: Arc<Shared>,
}

/// Products whose last written state this process keeps (see [`Shared::last_written`]).
const KEPT_PRODUCTS: u64 = 1_024;

struct Shared {
    /// Steps waiting, by product. A product has an entry exactly while its drain task runs.
    queues: Mutex<HashMap<Uuid, Vec<Step>>>,
    /// Each product as this process's last round wrote it (the document its guarded update
    /// returned), so the next round plans on it instead of reading the product first: a read
    /// per round was a third of the MongoDB-wire commands of the stock side of an order. Only
    /// a guarded write that succeeds trusts a kept copy: it matches only while the product is
    /// still at the kept version, and every change of a product's stock, records or details
    /// raises the version (the relay's outbox fields are not planned on). A kept copy that is
    /// stale (another replica or an admin wrote since) makes the write match nothing; the
    /// round then reads the product and plans again at once, without counting a conflict. A
    /// round that would write nothing (every step a no-op or refused on the kept copy) is
    /// decided again on the product as read, since no write would prove the copy current.
    last_written: moka::sync::Cache<Uuid, Arc<ProductDoc>>,
    products: Products,
    topics: Topic,
    catalog: Catalog,
    wake: RelayWake,
    /// How long a round's snapshot may wait for the product's next rounds
    /// ([`RelayWake::written_within`]): the snapshots are marked replaceable, so a product
    /// that changes many times within it publishes its latest snapshot once.
    hold_back: Duration,
}

impl ProductWriter {
    pub(super) fn new(
        products: Products,
        topics: Topic,
        catalog: Catalog,
        wake: RelayWake,
        hold_back: Duration,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                queues: Mutex::new(HashMap::new()),
                last_written: moka::sync::Cache::new(KEPT_PRODUCTS),
                products,
                topics,
                catalog,
                wake,
                hold_back,
            }),
        }
    }

    /// Runs `plan` on product `id` in the next round of its writer and returns the step's
    /// outcome once that round is written.
    pub(super) async fn change(&self, id: Uuid, plan: StepPlan) -> anyhow::Result<LineOutcome> {
        let (outcome, written) = oneshot::channel();
        let step = Step { plan, outcome };
        let start = {
            let mut queues = self
                .shared
                .queues
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            match queues.get_mut(&id) {
                Some(waiting) => {
                    waiting.push(step);
                    false
                }
                None => {
                    queues.insert(id, vec![step]);
                    true
                }
            }
        };
        if start {
            // A task of its own, so a caller that goes away (a consumer stopping) never
            // strands the steps queued behind its own.
            let shared = Arc::clone(&self.shared);
            tokio::spawn(async move { shared.drain(id).await });
        }
        match written.await {
            Ok(outcome) => outcome.map_err(anyhow::Error::msg),
            Err(_) => anyhow::bail!("the writer of product {id} stopped before this step"),
        }
    }
}

/// Removes the product's entry if its drain task ends without doing so (a panic), so later
/// steps start a new task instead of waiting for one that is gone; their callers see the
/// dropped steps fail and retry.
struct EntryGuard<'a> {
    shared: &'a Shared,
    id: Uuid,
    armed: bool,
}

impl Drop for EntryGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.shared
                .queues
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&self.id);
        }
    }
}

impl Shared {
    async fn drain(&self, id: Uuid) {
        let mut guard = EntryGuard {
            shared: self,
            id,
            armed: true,
        };
        loop {
            let round: Vec<Step> = {
                let mut queues = self.queues.lock().unwrap_or_else(PoisonError::into_inner);
                let Some(waiting) = queues.get_mut(&id) else {
                    guard.armed = false;
                    return;
                };
                if waiting.is_empty() {
                    queues.remove(&id);
                    guard.armed = false;
                    return;
                }
                let take = waiting.len().min(MAX_ROUND);
                waiting.drain(..take).collect()
            };
            metrics::histogram!("inventory_product_round_steps").record(round.len() as f64);
            match self.write_round(&id, &round).await {
                Ok(outcomes) => {
                    for (step, outcome) in round.into_iter().zip(outcomes) {
                        // A caller that went away no longer needs its outcome.
                        let _ = step.outcome.send(outcome);
                    }
                }
                Err(error) => {
                    let message = format!("{error:#}");
                    for step in round {
                        let _ = step.outcome.send(Err(message.clone()));
                    }
                }
            }
        }
    }

    /// Reads product `id`, plans `round` in order on it, and writes the result with its
    /// snapshot in one update guarded by the version read; a lost race is planned again on
    /// the product as it is then. Returns each step's outcome.
    async fn write_round(&self, id: &Uuid, round: &[Step]) -> anyhow::Result<Vec<StepOutcome>> {
        let mut retry = ConflictRetry::new();
        let mut may_use_kept = true;
        loop {
            let kept = if may_use_kept {
                self.last_written.get(id)
            } else {
                None
            };
            let planned_on_kept = kept.is_some();
            let before = match kept {
                Some(kept) => Some(ProductDoc::clone(&kept)),
                None => self.products.get(id).await?,
            };
            let (after, outcomes) = plan_round(before.as_ref(), round.iter().map(|s| &s.plan));
            let (Some(before), Some(after)) = (before, after) else {
                if planned_on_kept {
                    // Decided on the kept copy with nothing to write: decide on the database's.
                    may_use_kept = false;
                    continue;
                }
                // Nothing to write: every step was a no-op on the product as read.
                return Ok(outcomes);
            };
            // The whole product, as every event of a product document is: a later snapshot
            // of it makes this one unnecessary, so the relay may send only the later one.
            let event = PendingEvent::new(
                &self.topics,
                CloudEvent::new(
                    EVENT_SOURCE,
                    id.to_string(),
                    ProductUpdated(after.snapshot()?),
                ),
            )?
            .replaced_by_later();
            let update =
                products::with_event(stock_update(&before, &after), &after, event.to_document()?);
            let written = self
                .products
                .update_at_version(id, before.version, doc! {}, update)
                .await?;
            if let Some(committed) = written {
                self.last_written.insert(*id, Arc::new(committed.clone()));
                // This replica's read model shows the new stock at once; the snapshot on
                // product.events arrives later and is ignored by version. Stock alone never
                // touches the search index, so this is a map update, not an index commit.
                let applied = committed
                    .snapshot()
                    .and_then(|snapshot| self.catalog.apply(snapshot));
                if let Err(error) = applied {
                    tracing::warn!(error = format!("{error:#}"), %id, "read model not updated; the topic will");
                }
                self.wake.written_within(id.to_string(), self.hold_back);
                return Ok(outcomes);
            }
            self.last_written.invalidate(id);
            if planned_on_kept {
                // The kept copy was stale, not the product contended: read it and go again.
                may_use_kept = false;
                metrics::counter!("inventory_kept_product_stale_total").increment(1);
                continue;
            }
            if !retry.again().await {
                anyhow::bail!(
                    "product {id} kept changing; gave up after {} conflicts",
                    retry.conflicts()
                );
            }
        }
    }
}

/// Plans `steps` in turn, each on the product as the previous ones left it. Returns the
/// product to write (`None` when no step changes anything) as one version after `before`,
/// and each step's outcome; a step that fails changes nothing.
fn plan_round<'a>(
    before: Option<&ProductDoc>,
    steps: impl Iterator<Item = &'a StepPlan>,
) -> (Option<ProductDoc>, Vec<StepOutcome>) {
    let mut current: Option<ProductDoc> = None;
    let mut outcomes = Vec::new();
    for plan in steps {
        match plan(current.as_ref().or(before)) {
            Plan::Skip(outcome) => outcomes.push(Ok(outcome)),
            Plan::Fail(reason) => outcomes.push(Err(reason)),
            Plan::Write { after, outcome } => {
                current = Some(*after);
                outcomes.push(Ok(outcome));
            }
        }
    }
    let after = match (before, current) {
        (Some(before), Some(mut after)) => {
            // One write, one version, however many steps it carries.
            after.version = before.version + 1;
            Some(after)
        }
        _ => None,
    };
    (after, outcomes)
}

/// The update that turns `before` into `after` in the fields a stock step changes: the
/// levels, `sold`, and the per-order `reservations` and `restocked` records (entry by entry,
/// so a round touches only the orders in it). The version guard makes absolute values
/// safe: the update applies only to the product exactly as read.
fn stock_update(before: &ProductDoc, after: &ProductDoc) -> Document {
    let mut set = Document::new();
    let mut unset = Document::new();
    if before.stock != after.stock {
        set.insert("stock.available", after.stock.available);
        set.insert("stock.reserved", after.stock.reserved);
    }
    if before.sold != after.sold {
        set.insert("sold", after.sold);
    }
    for (field, was, now) in [
        ("reservations", &before.reservations, &after.reservations),
        ("restocked", &before.restocked, &after.restocked),
    ] {
        record_changes(field, was, now, &mut set, &mut unset);
    }
    let mut update = Document::new();
    if !set.is_empty() {
        update.insert("$set", set);
    }
    if !unset.is_empty() {
        update.insert("$unset", unset);
    }
    update
}

fn record_changes(
    field: &str,
    was: &BTreeMap<String, i64>,
    now: &BTreeMap<String, i64>,
    set: &mut Document,
    unset: &mut Document,
) {
    for (order, quantity) in now {
        if was.get(order) != Some(quantity) {
            set.insert(format!("{field}.{order}"), *quantity);
        }
    }
    for order in was.keys() {
        if !now.contains_key(order) {
            unset.insert(
                format!("{field}.{order}"),
                bson::Bson::String(String::new()),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{commit_plan, release_plan, reserve_plan};
    use super::*;
    use crate::store::products::tests::sample_product;

    fn stocked(available: i64) -> ProductDoc {
        let mut product = sample_product();
        product.stock.available = available;
        product.stock.reserved = 0;
        product.version = 7;
        product
    }

    fn reserve(order: &'static str, quantity: i64) -> StepPlan {
        Box::new(move |product| reserve_plan(product, order, quantity))
    }

    #[test]
    fn a_round_plans_its_steps_in_turn_and_writes_one_version() {
        let before = stocked(3);
        let steps = [
            reserve("o1", 2),
            reserve("o2", 2),
            reserve("o3", 1),
            reserve("o1", 2),
        ];
        let (after, outcomes) = plan_round(Some(&before), steps.iter());
        assert_eq!(
            outcomes,
            [
                Ok(LineOutcome::Held),
                Ok(LineOutcome::Short { available: 1 }),
                Ok(LineOutcome::Held),
                // o1 again (a redelivery in the same round): already held, nothing more.
                Ok(LineOutcome::Held),
            ]
        );
        let Some(after) = after else {
            panic!("expected a write");
        };
        assert_eq!(after.version, 8, "one version for the whole round");
        assert_eq!((after.stock.available, after.stock.reserved), (0, 3));
        assert_eq!(
            after.reservations,
            BTreeMap::from([("o1".to_owned(), 2), ("o3".to_owned(), 1)])
        );
    }

    #[test]
    fn a_round_of_no_ops_writes_nothing() {
        let before = stocked(0);
        let (after, outcomes) = plan_round(Some(&before), [reserve("o1", 1)].iter());
        assert!(after.is_none());
        assert_eq!(outcomes, [Ok(LineOutcome::Short { available: 0 })]);
        let (after, outcomes) = plan_round(None, [reserve("o1", 1)].iter());
        assert!(after.is_none());
        assert_eq!(outcomes, [Ok(LineOutcome::Short { available: 0 })]);
    }

    #[test]
    fn a_step_that_fails_fails_alone() {
        let mut before = stocked(5);
        // Books an operator corrected: o1 holds 2 but only 1 is reserved.
        before.stock.reserved = 1;
        before.reservations.insert("o1".into(), 2);
        let steps: [StepPlan; 2] = [
            Box::new(|product| commit_plan(product, "o1")),
            reserve("o2", 1),
        ];
        let (after, outcomes) = plan_round(Some(&before), steps.iter());
        assert!(outcomes[0].is_err());
        assert_eq!(outcomes[1], Ok(LineOutcome::Held));
        let Some(after) = after else {
            panic!("expected a write");
        };
        assert_eq!(after.reservations.get("o1"), Some(&2), "o1 untouched");
        assert_eq!((after.stock.available, after.stock.reserved), (4, 2));
    }

    #[test]
    fn the_update_sets_the_levels_and_only_the_records_that_changed() {
        let mut before = stocked(5);
        before.stock.reserved = 2;
        before.reservations.insert("held".into(), 2);
        before.reservations.insert("untouched".into(), 0);
        let steps: [StepPlan; 3] = [
            reserve("new", 1),
            Box::new(|product| commit_plan(product, "held")),
            // Reserved and released in the same round: no record is left to write.
            Box::new(|product| release_plan(product, "new")),
        ];
        let (after, _) = plan_round(Some(&before), steps.iter());
        let Some(after) = after else {
            panic!("expected a write");
        };
        assert_eq!(
            stock_update(&before, &after),
            doc! {
                "$set": {"stock.available": 5_i64, "stock.reserved": 0_i64, "sold": 2_i64},
                "$unset": {"reservations.held": ""},
            }
        );
    }
}
