//! Turns one event into its effects, in one transaction: the processed-event record, the
//! contact snapshot, and the rendered messages queued for the senders (or the event parked
//! until its user's contact arrives).
//!
//! Sending is not done here. The consumer only writes rows, so a slow SMTP server or SMS
//! gateway never holds up the consumer group (no rebalances from slow handlers, no lag from
//! one stuck recipient); the senders work the queue in parallel. When the queue is longer
//! than the configured limit the handler waits before adding to it: that is the
//! back-pressure, and it shows as consumer lag rather than as an ever-growing table.

use std::sync::Arc;

use contracts::user::{UserRegistered, UserUpdated};
use contracts::{CloudEvent, EventData};
use messaging::{Delivery, Handler, HandlerError};
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::CONSUMER;
use crate::delivery::queue::Queue;
use crate::domain::locale::Locale;
use crate::domain::notice::{Channel, Contact, Notice, Preferences};
use crate::domain::templates::Templates;
use crate::store::messages::{self, Claimed, NewMessage, Stored};
use crate::store::waiting::{self, StoredEvent};
use crate::store::{self, contacts};

#[derive(Clone)]
pub struct NotificationEvents {
    pub pool: PgPool,
    pub templates: Arc<Templates>,
    pub queue: Arc<Queue>,
    /// Cut the back-pressure wait short on shutdown (the record is then handled anyway).
    pub shutdown: CancellationToken,
}

/// Why turning an event into messages failed.
#[derive(Debug, thiserror::Error)]
enum EnqueueError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("rendering: {0:#}")]
    Render(anyhow::Error),
}

impl From<EnqueueError> for HandlerError {
    fn from(error: EnqueueError) -> Self {
        match error {
            EnqueueError::Database(error) => HandlerError::Transient(error.into()),
            EnqueueError::Render(error) => HandlerError::Permanent(error),
        }
    }
}

fn permanent(error: impl Into<anyhow::Error>) -> HandlerError {
    HandlerError::Permanent(error.into())
}

fn transient(error: impl Into<anyhow::Error>) -> HandlerError {
    HandlerError::Transient(error.into())
}

/// A user event's contact snapshot, with the role where the event carries it.
struct ContactSnapshot {
    contact: Contact,
    /// Only the registration says; the role never changes afterwards.
    role: Option<String>,
}

/// The contact snapshot a user event carries, if it is one.
fn contact_of(event: &CloudEvent) -> Result<Option<ContactSnapshot>, contracts::EnvelopeError> {
    let snapshot = |user_id, email, name, phone, locale, role| ContactSnapshot {
        contact: Contact {
            user_id,
            email,
            name,
            phone,
            locale,
        },
        role,
    };
    Ok(match event.event_type.as_str() {
        UserRegistered::TYPE => {
            let d = event.decode::<UserRegistered>()?.data;
            Some(snapshot(
                d.user_id,
                d.email,
                d.name,
                d.phone,
                d.locale,
                Some(d.role),
            ))
        }
        UserUpdated::TYPE => {
            let d = event.decode::<UserUpdated>()?.data;
            Some(snapshot(
                d.user_id, d.email, d.name, d.phone, d.locale, None,
            ))
        }
        _ => None,
    })
}

impl Handler for NotificationEvents {
    async fn handle(&self, delivery: &Delivery) -> Result<(), HandlerError> {
        let event = &delivery.event;
        let notice = Notice::from_event(event).map_err(permanent)?;
        let contact = contact_of(event).map_err(permanent)?;
        let user_id = match (&notice, &contact) {
            (_, Some(snapshot)) => snapshot.contact.user_id,
            (Some(notice), None) => notice.user_id(),
            (None, None) => {
                tracing::debug!(event_type = %event.event_type, "not a notification concern");
                return Ok(());
            }
        };
        if notice.is_some() {
            self.queue.wait_for_room(&self.shutdown).await;
        }
        let stored = StoredEvent {
            event_id: event.id,
            topic: delivery.topic.clone(),
            event: serde_json::to_value(event).map_err(permanent)?,
            // The consume span's context: each message's send span becomes its child.
            trace_headers: serde_json::to_value(telemetry::context_headers(
                &tracing::Span::current(),
            ))
            .map_err(permanent)?,
        };

        // Taken before the transaction: the event's first message is then stored as claimed
        // and given to an idle sender of this process, which needs no claim of its own.
        let handoff = notice.as_ref().and_then(|_| self.queue.reserve_handoff());
        let mut claimed = None;
        // No later than the lease's start (the transaction's `now()`).
        let leased_at = std::time::Instant::now();

        let mut tx = self.pool.begin().await.map_err(transient)?;
        if !store::mark_processed_locking_user(&mut tx, CONSUMER, event.id, user_id)
            .await
            .map_err(transient)?
        {
            tracing::debug!(event_id = %event.id, "already handled; skipped");
            return Ok(());
        }
        if let Some(snapshot) = &contact {
            contacts::upsert(
                &mut tx,
                &snapshot.contact,
                snapshot.role.as_deref(),
                event.time,
            )
            .await
            .map_err(transient)?;
        }
        let mut queued = 0;
        if let Some(notice) = &notice {
            match contacts::with_preferences(&mut tx, user_id)
                .await
                .map_err(transient)?
            {
                Some((contact, preferences)) => {
                    let claim_for = handoff.as_ref().map(|slot| slot.lease);
                    let enqueued = enqueue(
                        &mut tx,
                        &self.templates,
                        notice,
                        &contact,
                        preferences,
                        &stored,
                        claim_for,
                    )
                    .await?;
                    queued += enqueued.pending;
                    claimed = enqueued.claimed;
                }
                None => {
                    tracing::info!(%user_id, event_id = %event.id, "no contact yet; parked");
                    waiting::park(&mut tx, user_id, &stored)
                        .await
                        .map_err(transient)?;
                }
            }
        }
        // After the event's own message (the welcome comes before the orders that waited).
        if contact.is_some() {
            queued += self.release_waiting(&mut tx, user_id).await?;
        }
        tx.commit().await.map_err(transient)?;
        if let (Some(slot), Some(message)) = (handoff, claimed) {
            slot.send(message, leased_at);
        }
        if queued > 0 {
            self.queue.queued(queued);
        }
        Ok(())
    }
}

impl NotificationEvents {
    /// Queues the messages of every event that waited for `user_id`'s contact.
    async fn release_waiting(
        &self,
        tx: &mut PgConnection,
        user_id: Uuid,
    ) -> Result<usize, HandlerError> {
        let parked = waiting::take_for_user(tx, user_id)
            .await
            .map_err(transient)?;
        if parked.is_empty() {
            return Ok(0);
        }
        // The caller stored the contact in this transaction; without it the parked events
        // taken above must not be lost, so the whole record is retried.
        let Some((contact, preferences)) = contacts::with_preferences(tx, user_id)
            .await
            .map_err(transient)?
        else {
            return Err(transient(anyhow::anyhow!("contact of {user_id} not found")));
        };
        let mut queued = 0;
        for waiting in parked {
            let notice = serde_json::from_value::<CloudEvent>(waiting.event.clone())
                .map_err(anyhow::Error::from)
                .and_then(|event| Ok(Notice::from_event(&event)?));
            let notice = match notice {
                Ok(Some(notice)) => notice,
                // It decoded when it was parked; anything else is a bug worth a log line, not
                // a reason to lose the contact update that is being handled.
                Ok(None) | Err(_) => {
                    tracing::error!(event_id = %waiting.event_id, "a parked event no longer decodes; dropped");
                    continue;
                }
            };
            match enqueue(
                tx,
                &self.templates,
                &notice,
                &contact,
                preferences,
                &waiting,
                None,
            )
            .await
            {
                Ok(enqueued) => queued += enqueued.pending,
                Err(EnqueueError::Database(error)) => return Err(transient(error)),
                Err(EnqueueError::Render(error)) => {
                    tracing::error!(event_id = %waiting.event_id, error = format!("{error:#}"), "cannot render a parked event; dropped");
                }
            }
        }
        tracing::info!(%user_id, queued, "contact arrived; parked events queued");
        Ok(queued)
    }
}

/// What [`enqueue`] stored.
struct Enqueued {
    /// Rows created as pending, for the senders to claim (0 for a redelivery).
    pending: usize,
    /// The row created as claimed, for the sender the caller hands it to.
    claimed: Option<Claimed>,
}

/// Renders `notice` for `contact` (on the channels its `preferences` allow) and stores one
/// message per planned channel. With
/// `claim_for` (a lease), the first message is stored claimed if it may go out at once
/// ([`messages::insert_claiming`]) and returned; the rest are pending.
async fn enqueue(
    tx: &mut PgConnection,
    templates: &Templates,
    notice: &Notice,
    contact: &Contact,
    preferences: Preferences,
    source: &StoredEvent,
    claim_for: Option<std::time::Duration>,
) -> Result<Enqueued, EnqueueError> {
    let locale = Locale::from_tag(&contact.locale);
    let context = notice.context(contact, locale);
    let mut enqueued = Enqueued {
        pending: 0,
        claimed: None,
    };
    for (channel, recipient) in notice.plan(contact, preferences) {
        let (subject, text, html) = match channel {
            Channel::Email => {
                let email = templates
                    .email(notice.template(), locale, &context)
                    .map_err(EnqueueError::Render)?;
                (Some(email.subject), email.text, Some(email.html))
            }
            Channel::Sms => {
                let text = templates
                    .sms(notice.template(), locale, &context)
                    .map_err(EnqueueError::Render)?;
                (None, text, None)
            }
        };
        let message = NewMessage {
            event_id: source.event_id,
            channel: channel.as_str(),
            user_id: contact.user_id,
            template: notice.template(),
            locale: locale.tag(),
            recipient: &recipient,
            subject: subject.as_deref(),
            body_text: &text,
            body_html: html.as_deref(),
            topic: &source.topic,
            event: &source.event,
            trace_headers: &source.trace_headers,
        };
        let stored = match claim_for {
            Some(lease) if enqueued.claimed.is_none() => {
                messages::insert_claiming(tx, &message, lease).await?
            }
            _ if messages::insert(tx, &message).await? => Stored::Pending,
            _ => Stored::Existing,
        };
        let inserted = match stored {
            Stored::Claimed(claimed) => {
                enqueued.claimed = Some(*claimed);
                true
            }
            Stored::Pending => {
                enqueued.pending += 1;
                true
            }
            Stored::Existing => false,
        };
        if inserted {
            metrics::counter!("notifications_queued_total", "channel" => channel.as_str())
                .increment(1);
        }
    }
    Ok(enqueued)
}
