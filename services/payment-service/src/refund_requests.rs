//! The `refund-payment` step of the `refund` process (a customer's approved refund request):
//! the order's payment is refunded at the provider, with an idempotency key derived from the
//! request ([`RefundCause::requested`]).
//!
//! The step may run more than once (a lost completion, a worker killed mid-task, a retry after
//! a provider failure) and refunds once: the move `succeeded -> refunding` is guarded (one
//! caller makes it) and stores the key; every later attempt, here or in the reconciler, reuses
//! the stored key, which the provider answers by replaying its first refund; and a payment
//! found `refunded` completes the step without calling the provider at all.

use anyhow::Context as _;
use uuid::Uuid;
use workflow::{EngineClient, LockedTask, TaskFailure, Variables, Worker};

use crate::domain::payment_status::PaymentStatus;
use crate::refunds::{RefundCause, Refunds};

/// The topic of the step in `workflow/models/refund.bpmn`.
pub const TOPIC: &str = "refund-payment";

/// The worker of this service's refund step, taking tasks of `namespace` only.
pub fn worker(engine: EngineClient, refunds: Refunds, namespace: &str) -> Worker {
    Worker::new(
        engine,
        workflow::namespaced_config("payment-service", namespace),
    )
    .topic(TOPIC, move |task| {
        let refunds = refunds.clone();
        async move { refund_payment(&refunds, &task).await }
    })
}

fn uuid_variable(task: &LockedTask, name: &str) -> anyhow::Result<Uuid> {
    task.variables
        .get_str(name)?
        .parse()
        .with_context(|| format!("{name} is not a UUID"))
}

async fn refund_payment(refunds: &Refunds, task: &LockedTask) -> Result<Variables, TaskFailure> {
    let order = uuid_variable(task, "orderId")?;
    let request = uuid_variable(task, "requestId")?;
    // At most one payment per order ever succeeds (the claim), so there is one to refund.
    let payments = refunds
        .payments
        .of_order(
            order,
            &[
                PaymentStatus::Succeeded,
                PaymentStatus::Refunding,
                PaymentStatus::Refunded,
            ],
        )
        .await?;
    let payment = payments.into_iter().next().ok_or_else(|| {
        TaskFailure::Retry(anyhow::anyhow!(
            "order {order} has no succeeded payment to refund"
        ))
    })?;
    let id = payment.payment_id()?;
    if payment.status() != Some(PaymentStatus::Refunded) {
        refunds
            .refund_because(id, Some(RefundCause::requested(request)))
            .await?;
    }
    let after = refunds
        .payments
        .get(id)
        .await?
        .with_context(|| format!("payment {id} vanished"))?;
    if after.status() != Some(PaymentStatus::Refunded) {
        return Err(TaskFailure::Retry(anyhow::anyhow!(
            "payment {id} is {}, not refunded yet",
            after.status
        )));
    }
    tracing::info!(order_id = %order, refund_request_id = %request, payment_id = %id, "refund request paid back");
    Ok(Variables::new().string("paymentId", id.to_string()).string(
        "refundReference",
        after.refund_reference.unwrap_or_default(),
    ))
}
