//! Refunds: of charges whose order was cancelled, and of paid orders whose refund request
//! was approved (the `refund-payment` step of the `refund` process, see [`RefundCause`]).
//!
//! Two things must both have happened: the charge succeeded, and the order was cancelled.
//! They arrive in either order, on different paths (the payment request or the reconciler
//! records the success; the `order.events` consumer records the cancellation). Each path
//! first writes its own fact, then looks for the other: the payment path reads the order
//! replica after writing `succeeded`, the consumer reads the order's payments after writing
//! `cancelled`. Whichever comes second therefore sees both and refunds; if both see both,
//! the refund still happens once, because it starts with the transition `succeeded ->
//! refunding`, an update guarded by the payment's revision (only one caller makes it), the
//! provider call uses a key derived from the payment id (a repeat replays the first refund),
//! and `refunding -> refunded` with its `payment.refunded` event is again a guarded,
//! conditional transition. A failed provider call leaves the payment `refunding`; the
//! reconciler finishes it.
//!
//! The success's look is made twice: by the request at once (so a refund is not delayed) and
//! by the reconciler a few seconds later in batches, which clears the `refund_check` flag the
//! success set ([`Refunds::finish_refund_checks`]). The second look is what a crash during the
//! first needs anyway; making it always spares every paid payment a write of its own.

use contracts::payment::PaymentRefunded;
use contracts::product::Money;
use contracts::topics::Topic;
use messaging::mongo::RelayWake;
use mongodb::bson::{self, doc};
use uuid::Uuid;

use crate::domain::order_status::OrderStatus;
use crate::domain::payment_status::PaymentStatus;
use crate::psp::PspClient;
use crate::store::orders::{AppliedOrders, Orders};
use crate::store::payments::{LogEntry, PaymentDoc, Payments, pending_event, with_event};

/// Why the refunds this module makes happen.
pub const REASON_ORDER_CANCELLED: &str = "order_cancelled";
pub const REASON_REFUND_REQUESTED: &str = "refund_requested";

/// Why a payment is refunded, and the provider idempotency key its refund uses. The key is
/// derived from what asked for the refund (the payment for a cancelled order, the request for
/// a refund request), is stored with the move to `refunding`, and is reused by every retry, so
/// the provider refunds once however often the refund is attempted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundCause {
    pub key: String,
    pub reason: String,
}

impl RefundCause {
    pub fn order_cancelled(payment_id: &str) -> Self {
        Self {
            key: refund_key(payment_id),
            reason: REASON_ORDER_CANCELLED.into(),
        }
    }

    pub fn requested(request_id: Uuid) -> Self {
        Self {
            key: format!("refund-request-{request_id}"),
            reason: REASON_REFUND_REQUESTED.into(),
        }
    }

    /// The cause stored with a `refunding` payment (the cancelled-order one for documents
    /// from before causes were stored).
    fn of(payment: &PaymentDoc) -> Self {
        match (&payment.refund_key, &payment.refund_reason) {
            (Some(key), Some(reason)) => Self {
                key: key.clone(),
                reason: reason.clone(),
            },
            _ => Self::order_cancelled(&payment.id),
        }
    }
}

#[derive(Clone)]
pub struct Refunds {
    pub payments: Payments,
    pub orders: Orders,
    pub psp: PspClient,
    pub topics: Topic,
    pub relay_wake: RelayWake,
}

impl std::fmt::Debug for Refunds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Refunds").finish_non_exhaustive()
    }
}

/// The provider's idempotency key of a payment's refund.
pub fn refund_key(payment_id: &str) -> String {
    format!("refund-{payment_id}")
}

impl Refunds {
    /// After a success was written: refund it if the replica has the order cancelled; `true`
    /// if it did (the payment has moved on from `succeeded`).
    ///
    /// The success set `refund_check`, and this leaves it up: the reconciler clears it in
    /// batches ([`Self::finish_refund_checks`]) after looking at the order once more. That
    /// second look is what a crash or an error here would need anyway, and it costs a share of
    /// one query and one update per batch instead of an update of every payment here.
    ///
    /// `announced`: the request's subscription to this process's replica announcements, taken
    /// before it decided the order payable. A cancellation this process applied since then is
    /// among them, so the request needs no read to find it; one applied by another replica's
    /// consumer is not, and is found by that consumer's own look for succeeded payments or,
    /// when the success was written after that look, by the reconciler's look at the order
    /// (the flag stays up). Without a subscription, or when it missed announcements, the order
    /// is read, as before.
    pub async fn refund_if_order_cancelled(
        &self,
        payment: &PaymentDoc,
        announced: Option<AppliedOrders>,
    ) -> anyhow::Result<bool> {
        let order_id = payment.order_uuid()?;
        let seen = announced.and_then(|mut announced| announced.announced_cancelled(order_id));
        let cancelled = match seen {
            Some(cancelled) => cancelled,
            None => {
                let order = self.orders.get(order_id).await?;
                order.and_then(|o| o.status()) == Some(OrderStatus::Cancelled)
            }
        };
        if !cancelled {
            return Ok(false);
        }
        tracing::info!(payment_id = %payment.id, "charge succeeded for a cancelled order; refunding");
        self.refund(payment.payment_id()?).await?;
        Ok(true)
    }

    /// The reconciler's half of the success's look at the order, for the succeeded payments
    /// `due` (their `refund_check` up): the orders are read in one query, the payments of
    /// cancelled ones refunded, and the flag of every payment whose look is done cleared in
    /// one update. Returns how many were cleared.
    ///
    /// Safe at every step: a crash before the clear leaves the flags up, and the next pass
    /// looks again (a refund already made is not made twice, see the module documentation).
    /// An order cancelled after its read here is not missed: its cancellation was written
    /// before the consumer looks for the order's succeeded payments, and these payments were
    /// `succeeded` before this read, so that look finds them.
    pub async fn finish_refund_checks(&self, due: &[PaymentDoc]) -> anyhow::Result<usize> {
        let orders: Vec<String> = due.iter().map(|payment| payment.order_id.clone()).collect();
        let cancelled = self.orders.cancelled_among(&orders).await?;
        let mut checked = Vec::with_capacity(due.len());
        for payment in due {
            if cancelled.contains(&payment.order_id) {
                tracing::info!(payment_id = %payment.id, "charge succeeded for a cancelled order; refunding");
                let refunded = match payment.payment_id() {
                    Ok(id) => self.refund(id).await,
                    Err(error) => Err(error),
                };
                if let Err(error) = refunded {
                    // The flag stays up: the next pass tries again.
                    tracing::info!(error = format!("{error:#}"), payment_id = %payment.id, "refund check failed");
                    continue;
                }
            }
            checked.push(payment.id.clone());
        }
        self.payments.clear_refund_checks(&checked).await?;
        Ok(checked.len())
    }

    /// After a cancellation was written: refund the order's succeeded payments (and finish
    /// refunds under way).
    pub async fn refund_order(&self, order: Uuid) -> anyhow::Result<()> {
        let payments = self
            .payments
            .of_order(order, &[PaymentStatus::Succeeded, PaymentStatus::Refunding])
            .await?;
        for payment in payments {
            self.refund(payment.payment_id()?).await?;
        }
        Ok(())
    }

    /// Refunds payment `id` of a cancelled order if it succeeded (or finishes its refund,
    /// whatever its cause); a no-op otherwise.
    pub async fn refund(&self, id: Uuid) -> anyhow::Result<()> {
        self.refund_because(id, None).await
    }

    /// Refunds payment `id` if it succeeded, for `cause` (`None`: the order was cancelled), or
    /// finishes a refund under way with the cause it started with; a no-op otherwise.
    pub async fn refund_because(&self, id: Uuid, cause: Option<RefundCause>) -> anyhow::Result<()> {
        let now = bson::DateTime::now();
        let Some(started) = self
            .payments
            .update_guarded(id, |payment| {
                Ok(match payment.status() {
                    Some(PaymentStatus::Succeeded) => {
                        let cause = cause
                            .clone()
                            .unwrap_or_else(|| RefundCause::order_cancelled(&payment.id));
                        Some(doc! {"$set": {
                            "status": PaymentStatus::Refunding.as_str(),
                            "refund_key": cause.key,
                            "refund_reason": cause.reason,
                            "updated_at": now,
                        }})
                    }
                    _ => None,
                })
            })
            .await?
        else {
            return Ok(());
        };
        let payment = started.payment;
        if started.changed {
            self.payments.log(LogEntry::status_of(&payment)).await;
        }
        if payment.status() != Some(PaymentStatus::Refunding) {
            return Ok(());
        }
        let charge = payment.provider_reference.clone().ok_or_else(|| {
            anyhow::anyhow!("payment {id} succeeded without a provider reference")
        })?;
        let cause = RefundCause::of(&payment);
        let refund = match self.psp.refund(&cause.key, &charge).await {
            Ok(refund) => refund,
            Err(error) => {
                let mut entry = LogEntry::about(&payment, "attempt");
                entry.outcome = Some("refund_failed".into());
                entry.error = Some(format!("{error:#}"));
                self.payments.log(entry).await;
                return Err(error.context("refunding at the provider"));
            }
        };
        let topics = self.topics.clone();
        let finished = self
            .payments
            .update_guarded(id, |payment| {
                if payment.status() != Some(PaymentStatus::Refunding) {
                    return Ok(None);
                }
                let order_id = payment.order_uuid()?;
                let event = pending_event(
                    &topics,
                    order_id,
                    PaymentRefunded {
                        payment_id: payment.payment_id()?,
                        order_id,
                        user_id: payment.user_uuid()?,
                        amount: Money {
                            amount: payment.amount,
                            currency: payment.currency.clone(),
                        },
                        provider_reference: charge.clone(),
                        reason: cause.reason.clone(),
                    },
                )?;
                Ok(Some(with_event(
                    doc! {
                        "status": PaymentStatus::Refunded.as_str(),
                        "refund_reference": &refund.id,
                        "updated_at": bson::DateTime::now(),
                    },
                    &event,
                )?))
            })
            .await?;
        if let Some(finished) = finished.filter(|f| f.changed) {
            self.relay_wake.written(finished.payment.id.clone());
            self.payments
                .log(LogEntry::status_of(&finished.payment))
                .await;
            metrics::counter!("payments_refunded_total").increment(1);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_cause_has_its_own_provider_key_and_reason() {
        let request = Uuid::nil();
        assert_eq!(
            RefundCause::requested(request),
            RefundCause {
                key: format!("refund-request-{request}"),
                reason: REASON_REFUND_REQUESTED.into(),
            }
        );
        assert_eq!(
            RefundCause::order_cancelled("p-1"),
            RefundCause {
                key: "refund-p-1".into(),
                reason: REASON_ORDER_CANCELLED.into(),
            }
        );
    }
}
