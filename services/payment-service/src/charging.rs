//! Taking a payment: `POST /api/payments` from the idempotency check to the recorded outcome.
//!
//! The whole request has a time budget (`PAYMENT_REQUEST_BUDGET_MS`, 1.5 s): a client gets an
//! answer within it, never a hang, even while MongoDB or the provider is away. When the budget
//! runs out, a payment that was already created is answered as it stands (`processing`: 202,
//! the outcome to be read with `GET /api/payments/{id}`), and a request that created nothing
//! gets 503 with `Retry-After`. What was under way goes on or stops according to whether it
//! can be cut safely:
//!
//! - Reads and waits (steps 1 and 2) are simply dropped: nothing was written.
//! - From the circuit breaker's check on (steps 3 to 6), the work runs in a task of its own
//!   that the budget does not cancel: the request stops waiting for it, the task goes on. So a
//!   provider call in flight is never cut between "sent" and "recorded": its answer (or its
//!   retries, or its timeout, then `pending`) is recorded as if the client had waited, and the
//!   client's retry with the same Idempotency-Key finds that payment (step 1) and answers with
//!   its outcome, or waits for it again within its own budget. The provider's idempotency key
//!   is the payment id, so nothing a retry does can charge twice; and the charge is not lost,
//!   because the same task records it. A process that stops before the task finishes leaves
//!   the payment `processing`, exactly as a crash would, and the reconciler settles it by key
//!   after `RECONCILE_STALE_MS`.
//!
//! 1. The payment id is derived from (user, Idempotency-Key). If that payment exists, this is
//!    a repeat: the same request gets the same payment (waiting, within the budget, while
//!    another request with the key is still at the provider); another request under the key
//!    is refused (422).
//! 2. The order must be in the replica, the caller's, and awaiting payment. A fresh order may
//!    not have reached the replica yet, so the request waits for it for up to `ORDER_WAIT_MS`
//!    (shorter than the budget; then 404 if unknown, 409 if still reserving stock).
//! 3. An open circuit breaker answers 503 before anything is written.
//! 4. The order is claimed (insert under the order id). Held by another payment: 409, unless
//!    that payment failed (its claim release was lost), in which case the claim is taken over.
//! 5. The payment document is inserted (`processing`) and the provider is called.
//! 6. The outcome is recorded only while the payment still awaits it, decided on the payment
//!    as inserted (no read: a change meanwhile fails the guard and the payment is read and
//!    decided on again) and written with its event by one update guarded by the revision (see
//!    `Payments::update_guarded_from`): succeeded (then refunded if the order was cancelled
//!    meanwhile), failed (claim released, so another card may be tried), or pending (the
//!    reconciler finishes it). The log lines of the payment's creation, its attempts and its
//!    outcome follow in one insert.
//!
//! A paid payment thus costs six MongoDB writes (claim, payment, outcome, log, and the relay's
//! two) and two reads (idempotency, order; the refund handshake after a success looks for a
//! cancellation among the replica's announcements since the order was decided payable, and
//! reads the order only when it missed some); the
//! README's "MongoDB commands per paid order" says why each is there, and
//! `tests/api/round_trips.rs` holds the count.

use std::time::{Duration, Instant};

use contracts::payment::{PaymentFailed, PaymentSucceeded};
use contracts::product::Money;
use contracts::topics::Topic;
use messaging::mongo::{PendingEvent, RelayWake};
use mongodb::bson::{self, doc};
use secrecy::{ExposeSecret as _, SecretString};
use tracing::Instrument as _;
use uuid::Uuid;

use crate::domain::card::{self, Card};
use crate::domain::idempotency;
use crate::domain::order_status::{self, OrderStatus, Refusal};
use crate::domain::payment_status::PaymentStatus;
use crate::psp::{ChargeCall, ChargeOutcome, PspClient};
use crate::refunds::Refunds;
use crate::store::orders::{AppliedOrders, OrderDoc, Orders};
use crate::store::payments::{Claim, LogEntry, PaymentDoc, Payments, pending_event, with_event};

/// Why a payment was not taken.
#[derive(Debug, thiserror::Error)]
pub enum PayError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("the Idempotency-Key was used with a different request")]
    KeyReused,
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// A checked payment request.
#[derive(Debug, Clone)]
pub struct PayRequest {
    pub idempotency_key: String,
    pub order_id: Uuid,
    pub card: Card,
}

#[derive(Clone)]
pub struct Charging {
    pub payments: Payments,
    pub orders: Orders,
    pub psp: PspClient,
    pub refunds: Refunds,
    pub topics: Topic,
    pub relay_wake: RelayWake,
    pub fingerprint_key: SecretString,
    pub order_wait: Duration,
    /// The longest a waiting request goes without reading the order again (see [`Config`]).
    ///
    /// [`Config`]: crate::config::Config
    pub replica_poll: Duration,
    /// The longest `POST /api/payments` takes to answer (see the module documentation).
    pub request_budget: Duration,
}

/// How long the answer after an exhausted budget may look for the payment: 1.5 s of budget
/// plus this stays under the 2 s a client may wait.
const LOOK_UP_AFTER_BUDGET: Duration = Duration::from_millis(250);

/// The detail of the 503 when the budget runs out before a payment was created.
const OUT_OF_TIME: &str = "the payment is taking longer than a request may wait; \
     retry with the same Idempotency-Key to get its outcome";

impl std::fmt::Debug for Charging {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Charging").finish_non_exhaustive()
    }
}

impl Charging {
    /// Takes (or replays) a payment for `user`, answering within the request budget.
    pub async fn pay(&self, user: Uuid, request: PayRequest) -> Result<PaymentDoc, PayError> {
        let deadline = Instant::now() + self.request_budget;
        let payment_id = idempotency::payment_id(user, &request.idempotency_key);
        tracing::Span::current().record("payment_id", tracing::field::display(payment_id));
        let fingerprint = card::fingerprint(
            self.fingerprint_key.expose_secret().as_bytes(),
            request.order_id,
            &request.card,
        );
        let paying = self.pay_by(user, request, payment_id, fingerprint.clone(), deadline);
        match tokio::time::timeout_at(deadline.into(), paying).await {
            Ok(outcome) => outcome,
            Err(_) => {
                metrics::counter!("payment_requests_out_of_time_total").increment(1);
                self.as_it_stands(payment_id, &fingerprint).await
            }
        }
    }

    /// The answer when the budget has run out: a payment that was created is answered as it
    /// stands (`processing` or `pending`, so 202: the charge goes on in its task and
    /// `GET /api/payments/{id}` shows the outcome), as the documented slow-provider path
    /// always answered; only a request that created nothing in time gets 503. The look-up has
    /// a short bound of its own, so a MongoDB that is away still gets its 503 within 2 s.
    async fn as_it_stands(
        &self,
        payment_id: Uuid,
        fingerprint: &str,
    ) -> Result<PaymentDoc, PayError> {
        match tokio::time::timeout(LOOK_UP_AFTER_BUDGET, self.payments.get(payment_id)).await {
            Ok(Ok(Some(payment))) if payment.fingerprint == fingerprint => Ok(payment),
            _ => Err(PayError::Unavailable(OUT_OF_TIME.into())),
        }
    }

    /// [`Self::pay`] without its time limit; waits end at `deadline`.
    async fn pay_by(
        &self,
        user: Uuid,
        request: PayRequest,
        payment_id: Uuid,
        fingerprint: String,
        deadline: Instant,
    ) -> Result<PaymentDoc, PayError> {
        if let Some(existing) = self.payments.get(payment_id).await? {
            return self.replay(existing, &fingerprint, deadline).await;
        }
        let (order, announced) = self.payable_order(request.order_id, user).await?;
        let total = order
            .total
            .clone()
            .ok_or_else(|| PayError::Conflict("order not yet ready for payment".into()))?;
        // From here on a write may happen: in a task the budget does not cancel.
        let charging = self.clone();
        let charge = tokio::spawn(
            async move {
                charging
                    .charge(
                        user,
                        request,
                        payment_id,
                        fingerprint,
                        Payable { total, announced },
                        deadline,
                    )
                    .await
            }
            .instrument(tracing::Span::current()),
        );
        charge.await.map_err(|error| {
            PayError::Internal(anyhow::anyhow!("the charge task failed: {error}"))
        })?
    }

    /// Steps 3 to 6: the breaker, the claim, the payment, the provider, the outcome.
    async fn charge(
        &self,
        user: Uuid,
        request: PayRequest,
        payment_id: Uuid,
        fingerprint: String,
        payable: Payable,
        deadline: Instant,
    ) -> Result<PaymentDoc, PayError> {
        let Payable { total, announced } = payable;
        if !self.psp.available() {
            return Err(PayError::Unavailable(
                "the payment provider is unavailable; try again shortly".into(),
            ));
        }
        match self.claim(request.order_id, payment_id).await? {
            ClaimOutcome::Taken => {}
            ClaimOutcome::Ours => {
                return self
                    .wait_for_replay(payment_id, &fingerprint, deadline)
                    .await;
            }
        }

        let now = bson::DateTime::now();
        let payment = PaymentDoc {
            id: payment_id.to_string(),
            order_id: request.order_id.to_string(),
            user_id: user.to_string(),
            idempotency_key: request.idempotency_key.clone(),
            fingerprint: fingerprint.clone(),
            status: PaymentStatus::Processing.as_str().into(),
            amount: total.amount,
            currency: total.currency.clone(),
            card_brand: request.card.brand().into(),
            card_last4: request.card.last4(),
            provider_reference: None,
            failure_reason: None,
            refund_reference: None,
            refund_key: None,
            refund_reason: None,
            refund_check: false,
            created_at: now,
            updated_at: now,
            pending_events: Vec::new(),
            outbox_pending: false,
            revision: 0,
        };
        if !self.payments.insert(&payment).await? {
            // The same key won the insert an instant earlier.
            return self
                .wait_for_replay(payment_id, &fingerprint, deadline)
                .await;
        }
        // The log lines of the creation and of each attempt go with the outcome's line in one
        // insert (see `record_outcome_from`); each keeps the time it happened.
        let mut log = vec![LogEntry::status_of(&payment)];

        let key = payment_id.to_string();
        let order_id = request.order_id.to_string();
        let (outcome, attempts) = self
            .psp
            .charge(&ChargeCall {
                key: &key,
                amount: total.amount,
                currency: &total.currency,
                reference: &order_id,
                card: &request.card,
            })
            .await;
        for attempt in attempts {
            let mut entry = LogEntry::about(&payment, "attempt");
            entry.attempt = Some(attempt.number);
            entry.outcome = Some(attempt.outcome);
            entry.http_status = attempt.http_status;
            entry.duration_ms = Some(attempt.duration.as_millis() as u64);
            entry.error = attempt.error;
            log.push(entry);
        }
        // Decided on the document just inserted, not read again (its revision guards it).
        Ok(self
            .record_outcome_from(payment_id, Some(payment), outcome, log, Some(announced))
            .await?)
    }

    /// The same request again: the same payment, once it has an answer to give.
    async fn replay(
        &self,
        payment: PaymentDoc,
        fingerprint: &str,
        deadline: Instant,
    ) -> Result<PaymentDoc, PayError> {
        if payment.fingerprint != fingerprint {
            return Err(PayError::KeyReused);
        }
        if payment.status() == Some(PaymentStatus::Processing) {
            return self
                .wait_for_replay(payment.payment_id()?, fingerprint, deadline)
                .await;
        }
        Ok(payment)
    }

    /// Waits while another request with the same key is at the provider, until `deadline`
    /// (then the payment as it stands: 202 while it awaits its outcome), and answers as it did.
    async fn wait_for_replay(
        &self,
        id: Uuid,
        fingerprint: &str,
        deadline: Instant,
    ) -> Result<PaymentDoc, PayError> {
        loop {
            let current = self.payments.get(id).await?;
            if let Some(payment) = &current {
                if payment.fingerprint != fingerprint {
                    return Err(PayError::KeyReused);
                }
                if payment.status() != Some(PaymentStatus::Processing) {
                    return Ok(payment.clone());
                }
                if Instant::now() >= deadline {
                    // Still at the provider: answered as it stands (202), like the request
                    // that started it.
                    return Ok(payment.clone());
                }
            } else if Instant::now() >= deadline {
                return Err(PayError::Conflict(
                    "a payment with this Idempotency-Key is being processed; retry shortly".into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The caller's order, once the replica shows it awaiting payment (waiting briefly for a
    /// replica that lags behind a fresh order).
    /// Returns the subscription too: the refund handshake after a success looks there for a
    /// cancellation applied since (see `Refunds::refund_if_order_cancelled`).
    async fn payable_order(
        &self,
        order_id: Uuid,
        user: Uuid,
    ) -> Result<(OrderDoc, AppliedOrders), PayError> {
        let deadline = Instant::now() + self.order_wait;
        // Subscribed before the first read, so an event applied between the read and the wait
        // still wakes it.
        let mut applied = self.orders.applied();
        // The order as this process's consumer just wrote it, once one was announced: as
        // current as a read right after would be, without the round trip. To begin with, the
        // copy of the order this process's consumer last wrote, if it did lately (see
        // `Orders::applied_here`); the replica is read when there is none.
        let mut announced: Option<OrderDoc> = self
            .orders
            .applied_here(order_id)
            .map(std::sync::Arc::unwrap_or_clone);
        loop {
            let order = match announced.take() {
                Some(order) => Some(order),
                None => self.orders.get(order_id).await?,
            };
            let verdict = match &order {
                Some(order) => match (order.owner(), order.status()) {
                    (Some(owner), Some(status)) if order.total.is_some() || owner != user => {
                        order_status::payable(owner, status, user)
                    }
                    // Known only from a later event so far: wait for `order.created`.
                    (Some(owner), Some(_)) => {
                        order_status::payable(owner, OrderStatus::Pending, user)
                    }
                    _ => Err(Refusal::NotFound),
                },
                None => Err(Refusal::NotFound),
            };
            let waiting_helps = matches!(
                (&verdict, order.as_ref().and_then(OrderDoc::status)),
                (Err(Refusal::NotFound), None)
                    | (Err(Refusal::NotPayable(_)), Some(OrderStatus::Pending))
            );
            match verdict {
                Ok(()) => {
                    return order
                        .map(|order| (order, applied))
                        .ok_or_else(|| PayError::NotFound("no such order".into()));
                }
                Err(_) if waiting_helps && Instant::now() < deadline => {
                    // Until this process's consumer applies an event of the order; at most a
                    // pause, for a replica whose consumer runs in another process.
                    let pause = deadline
                        .saturating_duration_since(Instant::now())
                        .min(self.replica_poll);
                    announced = applied
                        .wait_for(order_id, pause)
                        .await
                        .map(std::sync::Arc::unwrap_or_clone);
                }
                Err(Refusal::NotFound) => return Err(PayError::NotFound("no such order".into())),
                Err(Refusal::NotPayable(reason)) => return Err(PayError::Conflict(reason)),
            }
        }
    }

    async fn claim(&self, order: Uuid, payment: Uuid) -> Result<ClaimOutcome, PayError> {
        let mine = payment.to_string();
        for _ in 0..2 {
            match self.payments.claim(order, payment).await? {
                Claim::Taken => return Ok(ClaimOutcome::Taken),
                Claim::HeldBy(holder) if holder == mine => return Ok(ClaimOutcome::Ours),
                Claim::HeldBy(holder) => {
                    let failed = match Uuid::parse_str(&holder) {
                        Ok(id) => self
                            .payments
                            .get(id)
                            .await?
                            .is_some_and(|p| p.status() == Some(PaymentStatus::Failed)),
                        Err(_) => true,
                    };
                    if !failed {
                        return Err(PayError::Conflict(
                            "another payment for this order is in progress or has succeeded".into(),
                        ));
                    }
                    // Its release was lost (a crash after the failure): take the claim over.
                    self.payments
                        .release_claim(&order.to_string(), &holder)
                        .await?;
                }
            }
        }
        Err(PayError::Conflict(
            "another payment for this order is in progress; retry shortly".into(),
        ))
    }

    /// Records what the provider did with payment `id`, once: only a payment still awaiting
    /// its outcome changes. Returns the payment as it is afterwards.
    pub async fn record_outcome(
        &self,
        id: Uuid,
        outcome: ChargeOutcome,
    ) -> anyhow::Result<PaymentDoc> {
        self.record_outcome_from(id, None, outcome, Vec::new(), None)
            .await
    }

    /// [`Self::record_outcome`] deciding first on `known` (the payment as this caller holds
    /// it; see `Payments::update_guarded_from`), and writing `log` (the lines of what led to
    /// the outcome) with the outcome's own line in one insert.
    ///
    /// The log lines are written after the outcome, so a process that dies before they are
    /// written loses them, whereas before this the creation's line was written before the
    /// provider was called; the attempts' lines were never written before the call ended.
    /// The log is an audit trail that nothing decides on: the payment document holds the
    /// status (and `created_at`), the outbox its event, and the reconciler logs the outcome
    /// it records for a payment a crash abandoned.
    async fn record_outcome_from(
        &self,
        id: Uuid,
        known: Option<PaymentDoc>,
        outcome: ChargeOutcome,
        mut log: Vec<LogEntry>,
        announced: Option<AppliedOrders>,
    ) -> anyhow::Result<PaymentDoc> {
        let topics = self.topics.clone();
        let now = bson::DateTime::now();
        let updated = self
            .payments
            .update_guarded_from(id, known, |payment| {
                if !payment.status().is_some_and(PaymentStatus::awaits_outcome) {
                    return Ok(None);
                }
                let amount = Money {
                    amount: payment.amount,
                    currency: payment.currency.clone(),
                };
                let (payment_id, order_id, user_id) =
                    (payment.payment_id()?, payment.order_uuid()?, payment.user_uuid()?);
                let event = |data| pending_event(&topics, order_id, data);
                Ok(Some(match &outcome {
                    ChargeOutcome::Succeeded { reference } => with_event(
                        doc! {
                            "status": PaymentStatus::Succeeded.as_str(),
                            "provider_reference": reference,
                            "refund_check": true,
                            "updated_at": now,
                        },
                        &pending_event(&topics, order_id, PaymentSucceeded {
                            payment_id,
                            order_id,
                            user_id,
                            amount,
                            provider_reference: reference.clone(),
                            card_brand: payment.card_brand.clone(),
                            card_last4: payment.card_last4.clone(),
                        })?,
                    )?,
                    ChargeOutcome::Declined { reference, code } => {
                        failed_update(now, Some(reference), code, event(failed(payment_id, order_id, user_id, amount, code))?)?
                    }
                    ChargeOutcome::NotCharged { reason } => {
                        tracing::warn!(%reason, "the provider could not charge");
                        let code = "provider_unavailable";
                        failed_update(now, None, code, event(failed(payment_id, order_id, user_id, amount, code))?)?
                    }
                    ChargeOutcome::Unknown { reason } => {
                        if payment.status() == Some(PaymentStatus::Pending) {
                            return Ok(None);
                        }
                        tracing::warn!(%reason, "the charge's outcome is unknown; reconciling");
                        doc! {"$set": {"status": PaymentStatus::Pending.as_str(), "updated_at": now}}
                    }
                }))
            })
            .await?
            .ok_or_else(|| anyhow::anyhow!("payment {id} does not exist"))?;
        let payment = updated.payment;
        if updated.changed {
            self.relay_wake.written(payment.id.clone());
            log.push(LogEntry::status_of(&payment));
            metrics::counter!("payments_total", "status" => payment.status.clone()).increment(1);
        }
        self.payments.log_all(log).await;
        match payment.status() {
            Some(PaymentStatus::Failed) => {
                // Only after the failure is recorded, so a new attempt never overlaps this one.
                self.payments
                    .release_claim(&payment.order_id, &payment.id)
                    .await?;
            }
            Some(PaymentStatus::Succeeded) if updated.changed => {
                // The second half of the refund handshake (the consumer holds the first): the
                // success is written, now look at the order.
                match self
                    .refunds
                    .refund_if_order_cancelled(&payment, announced)
                    .await
                {
                    // Nothing moved it on: the document the update returned is current.
                    Ok(false) => return Ok(payment),
                    Ok(true) => {}
                    Err(error) => {
                        tracing::warn!(
                            error = format!("{error:#}"),
                            "refund check failed; the reconciler will retry"
                        );
                    }
                }
                // Re-read: the refund (or its attempt) moved it on.
                return Ok(self.payments.get(id).await?.unwrap_or(payment));
            }
            _ => {}
        }
        Ok(payment)
    }
}

/// What the charge needs of the order it was decided payable on.
struct Payable {
    total: Money,
    /// The replica's announcements since before that decision (for the refund handshake).
    announced: AppliedOrders,
}

enum ClaimOutcome {
    /// This request holds the order's claim.
    Taken,
    /// A request with the same key holds it.
    Ours,
}

fn failed(
    payment_id: Uuid,
    order_id: Uuid,
    user_id: Uuid,
    amount: Money,
    code: &str,
) -> PaymentFailed {
    PaymentFailed {
        payment_id,
        order_id,
        user_id,
        amount,
        reason: code.to_owned(),
    }
}

fn failed_update(
    now: bson::DateTime,
    reference: Option<&String>,
    code: &str,
    event: PendingEvent,
) -> anyhow::Result<bson::Document> {
    with_event(
        doc! {
            "status": PaymentStatus::Failed.as_str(),
            "failure_reason": code,
            "provider_reference": reference,
            "updated_at": now,
        },
        &event,
    )
}
