//! The reconciler: finishes what a request could not.
//!
//! Every `RECONCILE_INTERVAL_MS` it looks for
//! - `pending` payments (the provider did not answer in time): it asks the provider for the
//!   charge under the payment's idempotency key and records the outcome, exactly once (the
//!   same guarded, conditional transition the request uses). If the provider has no charge under
//!   the key once the charge's time budget has passed, nothing was charged: failed
//!   (`provider_unavailable`);
//! - `processing` payments older than `RECONCILE_STALE_MS` (their process died during the
//!   call): the same;
//! - `refunding` payments (the provider's refund call failed): the refund is retried under the
//!   same key;
//! - `succeeded` payments whose `refund_check` is still up (every success: the request looks at
//!   the order and leaves the flag for this pass): the batch's orders are read in one query,
//!   the payments of cancelled ones refunded, and the batch's flags cleared in one update;
//! - claims older than `RECONCILE_STALE_MS` whose payment is failed or missing (a crash between
//!   the claim and the payment's insert, or before the release): released. A claim whose
//!   payment succeeded is marked settled instead, so it is not read again on every pass
//!   (before that, the 100 oldest claims of paid orders were re-read every second and hid any
//!   abandoned claim behind them).

use std::time::Duration;

use mongodb::bson;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;
use uuid::Uuid;

use crate::charging::Charging;
use crate::domain::payment_status::PaymentStatus;
use crate::psp::ChargeOutcome;
use crate::store::payments::{BATCH, PaymentDoc};

/// The most batches of one kind a pass works through (bounded, so one pass ends, and other
/// work of the pass is not starved by a long backlog).
const MAX_BATCHES: usize = 20;

#[derive(Debug, Clone)]
pub struct Reconciler {
    pub charging: Charging,
    pub interval: Duration,
    pub stale_after: Duration,
}

fn ago(duration: Duration) -> bson::DateTime {
    bson::DateTime::from_millis(
        bson::DateTime::now().timestamp_millis() - duration.as_millis() as i64,
    )
}

impl Reconciler {
    /// Runs passes until `shutdown` is cancelled (the pass in progress finishes).
    pub async fn run(self, shutdown: CancellationToken) {
        // Claims from before they carried `open`: looked at once, so the passes need not.
        match self.charging.payments.claims_without_open_flag().await {
            Ok(claims) => {
                if let Err(error) = self.check_claims(claims, true).await {
                    tracing::warn!(error = format!("{error:#}"), "checking older claims failed");
                }
            }
            Err(error) => {
                tracing::warn!(error = format!("{error:#}"), "listing older claims failed");
            }
        }
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(self.interval) => {}
            }
            if let Err(error) = self.pass().await {
                tracing::warn!(error = format!("{error:#}"), "reconciliation pass failed");
            }
        }
        tracing::info!("reconciler stopped");
    }

    /// One pass over everything that waits; returns how many payments it settled.
    pub async fn pass(&self) -> anyhow::Result<usize> {
        let payments = &self.charging.payments;
        let mut settled = 0;
        let now = bson::DateTime::now();
        let mut waiting = payments.in_status(PaymentStatus::Pending, now, 100).await?;
        waiting.extend(
            payments
                .in_status(PaymentStatus::Processing, ago(self.stale_after), 100)
                .await?,
        );
        for payment in waiting {
            let span = tracing::info_span!("reconcile", payment_id = %payment.id);
            if self.reconcile(payment).instrument(span).await? {
                settled += 1;
            }
        }
        for payment in payments
            .in_status(PaymentStatus::Refunding, now, 100)
            .await?
        {
            if let Err(error) = self.charging.refunds.refund(payment.payment_id()?).await {
                tracing::info!(error = format!("{error:#}"), payment_id = %payment.id, "refund retry failed");
            }
        }
        // Successes whose look at the order is still to be confirmed: every success, since
        // the request leaves the flag for this pass to clear in batches (see `refunds`).
        // Batches follow each other while they come full and all their checks finish, so
        // the pass keeps up with any rate of payments; a batch with a check that failed
        // ends the pass (those payments lead the next query again).
        for _ in 0..MAX_BATCHES {
            let due = payments
                .refund_checks_due(ago(Duration::from_secs(5)))
                .await?;
            let full = due.len() as i64 >= BATCH;
            let cleared = self.charging.refunds.finish_refund_checks(&due).await?;
            if !full || cleared < due.len() {
                break;
            }
        }
        // Claims likewise, while batches come full and some of their claims leave the query.
        for _ in 0..MAX_BATCHES {
            let claims = payments
                .unsettled_claims_before(ago(self.stale_after))
                .await?;
            let full = claims.len() as i64 >= BATCH;
            let done = self.check_claims(claims, false).await?;
            if !full || done == 0 {
                break;
            }
        }
        Ok(settled)
    }

    /// Releases the claims whose payment failed or never existed, and settles those whose
    /// payment succeeded; returns how many it released or settled. The holders' statuses are
    /// read in one query and the settled claims marked in one update: a claim is settled once
    /// in its life, so this is a share of two round trips per paid order, not two of its own.
    /// `legacy`: claims without `open`; those still in flight get `open: true` so the passes
    /// find them. (Not done for open claims: a write to a claim races with its release.)
    async fn check_claims(
        &self,
        claims: Vec<(String, String)>,
        legacy: bool,
    ) -> anyhow::Result<usize> {
        let payments = &self.charging.payments;
        let holders: Vec<String> = claims
            .iter()
            .filter(|(_, holder)| Uuid::parse_str(holder).is_ok())
            .map(|(_, holder)| holder.clone())
            .collect();
        // Missing: no such payment; `None`: a status this version does not know.
        let statuses = payments.statuses_of(&holders).await?;
        let mut settled = Vec::new();
        let mut released = 0;
        for (order, holder) in claims {
            match statuses.get(&holder) {
                None | Some(Some(PaymentStatus::Failed)) => {
                    tracing::info!(order_id = %order, payment_id = %holder, "releasing an abandoned claim");
                    payments.release_claim(&order, &holder).await?;
                    released += 1;
                }
                Some(Some(
                    PaymentStatus::Succeeded | PaymentStatus::Refunding | PaymentStatus::Refunded,
                )) => settled.push((order, holder)),
                // Still at the provider or being reconciled: look again next pass.
                Some(Some(PaymentStatus::Processing | PaymentStatus::Pending) | None) => {
                    if legacy {
                        payments.set_claim_open(&order, &holder, true).await?;
                    }
                }
            }
        }
        // A crash before this update leaves the claims open: the next pass settles them.
        payments.settle_claims(&settled).await?;
        Ok(released + settled.len())
    }

    /// Asks the provider about one payment and records what it says; `true` once settled.
    async fn reconcile(&self, payment: PaymentDoc) -> anyhow::Result<bool> {
        let id = payment.payment_id()?;
        let outcome = match self.charging.psp.outcome_by_key(&payment.id).await {
            Ok(Some(outcome)) => outcome,
            Ok(None) => {
                // Nothing under the key. Give a charge in flight its whole budget first.
                let budget = self.charging.psp.charge_budget() + Duration::from_secs(1);
                if payment.updated_at > ago(budget) {
                    return Ok(false);
                }
                ChargeOutcome::NotCharged {
                    reason: "the provider has no charge under the key".into(),
                }
            }
            Err(error) => {
                tracing::info!(
                    error = format!("{error:#}"),
                    "provider look-up failed; will retry"
                );
                return Ok(false);
            }
        };
        tracing::info!(?outcome, "reconciled");
        let after = self.charging.record_outcome(id, outcome).await?;
        Ok(after.status().is_some_and(PaymentStatus::is_settled))
    }
}
