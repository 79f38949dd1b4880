//! The `notify-approval-reminder` step of the `refund` process: a refund request that waited
//! `approvalReminder` for an admin escalates, and this service mails every admin a reminder
//! (`domain::reminder` decides who and with which words) before the process rejects it at
//! `approvalTimeout`.
//!
//! The messages go through the same queue as the customers' notices: they are rendered and
//! stored in one transaction, then the senders deliver them with retries and dead letters.
//! The task completes only after that transaction committed, and each message's id is derived
//! from the request and the address, so a task that runs again stores nothing new: one
//! reminder per admin and request, however often the engine hands the step out. With no admin
//! to remind (no contact with role `admin` and no `NOTIFICATION_ADMIN_EMAILS`), the step fails
//! and, after its retries, the engine raises an incident that Cockpit shows: a reminder nobody
//! can receive is an operator's problem, not something to complete silently.

use std::sync::Arc;

use anyhow::Context as _;
use chrono::Utc;
use contracts::product::Money;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;
use workflow::{EngineClient, LockedTask, TaskFailure, Variables, Worker};

use crate::delivery::queue::Queue;
use crate::domain::notice::Channel;
use crate::domain::reminder::{self, WaitingRequest};
use crate::domain::templates::Templates;
use crate::store::contacts;
use crate::store::messages::{self, NewMessage};

/// The topic of the step in `workflow/models/refund.bpmn`.
pub const TOPIC: &str = "notify-approval-reminder";
/// The logical topic recorded with each reminder: a reminder whose mail keeps failing is
/// dead-lettered to its `.dlt` like any notice (it comes from the engine, not from Kafka).
pub const SOURCE_TOPIC: &str = "workflow.approval-reminders";

/// What the step needs.
#[derive(Clone)]
pub struct Reminders {
    pub pool: PgPool,
    pub templates: Arc<Templates>,
    pub queue: Arc<Queue>,
    /// `NOTIFICATION_ADMIN_EMAILS`.
    pub admin_emails: Arc<[String]>,
    /// [`SOURCE_TOPIC`] with this deployment's prefix.
    pub source_topic: String,
}

/// The worker of this service's step, taking tasks of `namespace` only.
pub fn worker(engine: EngineClient, reminders: Reminders, namespace: &str) -> Worker {
    Worker::new(
        engine,
        workflow::namespaced_config("notification-service", namespace),
    )
    .topic(TOPIC, move |task| {
        let reminders = reminders.clone();
        async move { remind(&reminders, &task).await }
    })
}

fn uuid_variable(task: &LockedTask, name: &str) -> anyhow::Result<Uuid> {
    task.variables
        .get_str(name)?
        .parse()
        .with_context(|| format!("{name} is not a UUID"))
}

fn waiting_request(task: &LockedTask) -> anyhow::Result<WaitingRequest> {
    Ok(WaitingRequest {
        request_id: uuid_variable(task, "requestId")?,
        order_id: uuid_variable(task, "orderId")?,
        amount: Money {
            amount: task.variables.get_i64("amount")?,
            currency: task.variables.get_str("currency")?.to_owned(),
        },
        reason: task.variables.get_str("reason")?.to_owned(),
    })
}

async fn remind(reminders: &Reminders, task: &LockedTask) -> Result<Variables, TaskFailure> {
    let waiting = waiting_request(task)?;
    let mut tx = reminders
        .pool
        .begin()
        .await
        .context("beginning a transaction")?;
    let admins = contacts::with_role(&mut tx, reminder::ADMIN_ROLE)
        .await
        .context("reading the admins' contacts")?;
    let recipients = reminder::recipients(&admins, &reminders.admin_emails);
    if recipients.is_empty() {
        return Err(TaskFailure::Retry(anyhow::anyhow!(
            "no admin to remind of refund request {}: no contact has role admin and \
             NOTIFICATION_ADMIN_EMAILS is empty",
            waiting.request_id
        )));
    }
    // Stored with each message in the shape of an event, so that a dead letter carries what
    // the reminder was about.
    let source = json!({
        "specversion": "1.0",
        "id": waiting.request_id,
        "source": "/notification-service/approval-reminders",
        "type": "workflow.approval_reminder",
        "subject": waiting.order_id,
        "time": Utc::now(),
        "data": {
            "refund_request_id": waiting.request_id,
            "order_id": waiting.order_id,
            "amount": waiting.amount,
            "reason": waiting.reason,
            "process_instance_id": task.process_instance_id,
        },
    });
    let trace_headers = serde_json::to_value(telemetry::context_headers(&tracing::Span::current()))
        .context("encoding the trace context")?;
    let mut queued = 0;
    for recipient in &recipients {
        let context = waiting.context(recipient);
        let email = reminders
            .templates
            .email(reminder::TEMPLATE, recipient.locale, &context)
            .context("rendering the approval reminder")?;
        let inserted = messages::insert(
            &mut tx,
            &NewMessage {
                event_id: reminder::message_id(waiting.request_id, &recipient.email),
                channel: Channel::Email.as_str(),
                user_id: recipient.user_id,
                template: reminder::TEMPLATE,
                locale: recipient.locale.tag(),
                recipient: &recipient.email,
                subject: Some(&email.subject),
                body_text: &email.text,
                body_html: Some(&email.html),
                topic: &reminders.source_topic,
                event: &source,
                trace_headers: &trace_headers,
            },
        )
        .await
        .context("storing an approval reminder")?;
        if inserted {
            queued += 1;
            metrics::counter!("notifications_queued_total", "channel" => Channel::Email.as_str())
                .increment(1);
        }
    }
    tx.commit().await.context("committing the reminders")?;
    if queued > 0 {
        reminders.queue.queued(queued);
    }
    tracing::info!(
        refund_request_id = %waiting.request_id,
        order_id = %waiting.order_id,
        admins = recipients.len(),
        queued,
        "admins reminded of a refund request awaiting approval"
    );
    Ok(Variables::new().integer(
        "remindedAdmins",
        i32::try_from(recipients.len()).unwrap_or(i32::MAX),
    ))
}
