//! The sender pool: `concurrency` workers, each claiming one due message at a time from
//! PostgreSQL, sending it, and recording the outcome.
//!
//! A message the consumer stores while a sender of this process is idle is stored already
//! claimed and handed to that sender in memory (`Queue::reserve_handoff`), so it costs no
//! claim; if this process dies first, its lease runs out and it is claimed like any other.
//! Likewise a sender that sent a message claims the same user's next one on that channel in
//! the statement that records the send ([`messages::mark_sent_and_claim_next`]), and sends it
//! next: a customer's messages queued behind one another cost no claim of their own.
//!
//! Ordering and parallelism come from the claim ([`messages::claim`]): a message is claimable
//! only when no earlier message of the same user on the same channel is unfinished, so one
//! user's mails go out in order while different users' go out side by side. Every attempt has
//! a deadline (SMTP/HTTP timeouts plus an overall one), so a slow server costs one worker a
//! bounded wait and the others carry on. Transient failures come back after an exponential
//! backoff with jitter; after the last attempt (or a permanent failure) the event goes to the
//! dead-letter topic and the message is marked failed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use messaging::consumer::backoff;
use sqlx::PgPool;
use tokio::sync::Mutex;
use tokio::sync::mpsc::Receiver;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::SendError;
use super::dead_letter::DeadLetters;
use super::mail::{Mail, Mailer};
use super::queue::{Handoff, Queue};
use super::sms::{Sms, SmsGateway};
use crate::config::DeliveryConfig;
use crate::store::messages::{self, Claimed};

pub struct Dispatcher<G> {
    pub pool: PgPool,
    pub mailer: Mailer,
    pub sms: Arc<G>,
    pub dead_letters: DeadLetters,
    pub queue: Arc<Queue>,
    pub settings: DeliveryConfig,
    /// The most one attempt may take, whatever the protocol timeouts say.
    pub send_timeout: Duration,
}

impl<G> Clone for Dispatcher<G> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            mailer: self.mailer.clone(),
            sms: self.sms.clone(),
            dead_letters: self.dead_letters.clone(),
            queue: self.queue.clone(),
            settings: self.settings.clone(),
            send_timeout: self.send_timeout,
        }
    }
}

/// Why an idle sender stopped waiting.
enum Woke {
    /// A wake-up (or shutdown): claim at once.
    ToClaim,
    /// Its poll timer fired; the poll gate says whether this sender polls.
    PollDue,
    /// A message stored claimed by this process's consumer.
    Handoff(Box<Handoff>),
}

/// What became of an attempt.
enum Outcome {
    Sent(String),
    Retry(Duration, String),
    GiveUp(String),
}

impl<G: SmsGateway> Dispatcher<G> {
    /// Runs the workers until `shutdown`; each finishes the message in hand first.
    pub async fn run(self, shutdown: CancellationToken) {
        let handoffs = self
            .queue
            .accept_handoffs(self.settings.concurrency, self.settings.lease)
            .map(|receiver| Arc::new(Mutex::new(receiver)));
        let mut workers = JoinSet::new();
        for _ in 0..self.settings.concurrency {
            workers.spawn(self.clone().work(shutdown.clone(), handoffs.clone()));
        }
        while let Some(result) = workers.join_next().await {
            if let Err(error) = result {
                tracing::error!(%error, "a sender task failed");
            }
        }
        // Messages handed over as the senders stopped are in hand too: sent now rather than
        // left claimed until their lease runs out.
        if let Some(handoffs) = handoffs {
            let mut receiver = handoffs.lock().await;
            receiver.close();
            while let Ok(handoff) = receiver.try_recv() {
                self.take(handoff).await;
            }
        }
        tracing::info!("senders stopped");
    }

    /// Sends a message handed over by this process's consumer, unless so much of its lease
    /// went by (waiting for this sender) that the send might outlast it: then it is left to
    /// be claimed once the lease ends, so that no second sender can take it mid-send.
    async fn take(&self, handoff: Handoff) {
        if handoff.leased_at.elapsed() + self.send_timeout >= self.settings.lease {
            tracing::warn!(
                message_id = handoff.message.id,
                "a handed-off message waited too long for a sender; left for a claim"
            );
            return;
        }
        self.deliver_in_turn(handoff.message).await;
    }

    /// Waits, idle, for a wake-up, the poll interval or shutdown, sending what is handed over
    /// meanwhile. Returns early after a hand-off if queued messages may wait for a claim.
    async fn wait(
        &self,
        shutdown: &CancellationToken,
        handoffs: Option<&Mutex<Receiver<Handoff>>>,
    ) {
        let mut poll_at = tokio::time::Instant::now() + self.settings.poll_interval;
        loop {
            let woke = {
                let _idle = self.queue.idle_sender();
                tokio::select! {
                    () = shutdown.cancelled() => Woke::ToClaim,
                    () = self.queue.woken() => Woke::ToClaim,
                    () = tokio::time::sleep_until(poll_at) => Woke::PollDue,
                    Some(handoff) = next_handoff(handoffs) => Woke::Handoff(Box::new(handoff)),
                }
            };
            match woke {
                Woke::ToClaim => return,
                // One sender of the process polls per interval (`PollGate`).
                Woke::PollDue => match self
                    .queue
                    .polls()
                    .take(Instant::now(), self.settings.poll_interval)
                {
                    None => return,
                    Some(due) => poll_at = due.into(),
                },
                Woke::Handoff(handoff) => {
                    self.take(*handoff).await;
                    if self.queue.may_have_more() {
                        return;
                    }
                }
            }
        }
    }

    async fn work(
        self,
        shutdown: CancellationToken,
        handoffs: Option<Arc<Mutex<Receiver<Handoff>>>>,
    ) {
        let handoffs = handoffs.as_deref();
        let idle = || self.wait(&shutdown, handoffs);
        loop {
            if shutdown.is_cancelled() {
                return;
            }
            match messages::claim(&self.pool, self.settings.lease).await {
                Ok(Some(message)) => {
                    // If the message was not one this process queued, `claimed` has woken
                    // another sender to look for more like it.
                    let _ = self.queue.claimed();
                    self.deliver_in_turn(message).await;
                    // Straight on to the next one only if this process queued messages no
                    // sender has taken yet; otherwise the wake-up or the poll says when.
                    if !self.queue.may_have_more() {
                        idle().await;
                    }
                }
                Ok(None) => {
                    self.queue
                        .polls()
                        .found_nothing(Instant::now(), self.settings.poll_interval);
                    idle().await
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot claim messages; retrying");
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        }
    }

    /// Delivers `message`, then each message of its user on its channel that recording the
    /// previous one as sent claimed ([`messages::mark_sent_and_claim_next`]), in order.
    async fn deliver_in_turn(&self, message: Claimed) {
        let mut next = Some(message);
        while let Some(message) = next.take() {
            next = self.deliver(message).await;
            if next.is_some() {
                // The user's next message: claimed in turn, whoever queued it.
                let _ = self.queue.claimed();
            }
        }
    }

    /// Sends `message` and records the outcome; returns the user's next message on the channel
    /// if recording the send claimed it.
    async fn deliver(&self, message: Claimed) -> Option<Claimed> {
        let span = tracing::info_span!(
            "notification.send",
            otel.name = %format!("send {}", message.channel),
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            channel = %message.channel,
            template = %message.template,
            message_id = message.id,
            event_id = %message.event_id,
            attempt = message.attempts,
        );
        let parent: HashMap<String, String> =
            serde_json::from_value(message.trace_headers.clone()).unwrap_or_default();
        telemetry::adopt_parent(&span, telemetry::context_from_headers(&parent));
        async {
            if message.resumed {
                // The previous sender died mid-send: the message may have gone out. The
                // Message-ID / client reference make a second copy recognisable.
                tracing::warn!("resuming a message whose previous attempt has no outcome");
            }
            let started = Instant::now();
            let result = match tokio::time::timeout(self.send_timeout, self.send(&message)).await {
                Ok(result) => result,
                Err(_) => Err(SendError::Transient(format!(
                    "no answer within {:?}",
                    self.send_timeout
                ))),
            };
            metrics::histogram!("notification_send_seconds", "channel" => message.channel.clone())
                .record(started.elapsed().as_secs_f64());
            let outcome = match result {
                Ok(reference) => Outcome::Sent(reference),
                Err(SendError::Transient(reason))
                    if message.attempts < self.settings.max_attempts =>
                {
                    let delay = backoff(
                        self.settings.retry_base,
                        u32::try_from(message.attempts).unwrap_or(1),
                    );
                    Outcome::Retry(delay, reason)
                }
                Err(SendError::Transient(reason)) => Outcome::GiveUp(format!(
                    "gave up after {} attempts: {reason}",
                    message.attempts
                )),
                Err(SendError::Permanent(reason)) => Outcome::GiveUp(reason),
            };
            self.record(&message, outcome).await
        }
        .instrument(span)
        .await
    }

    async fn send(&self, message: &Claimed) -> Result<String, SendError> {
        match message.channel.as_str() {
            "email" => {
                self.mailer
                    .send(Mail {
                        event_id: message.event_id,
                        to: &message.recipient,
                        subject: message.subject.as_deref().unwrap_or_default(),
                        text: &message.body_text,
                        html: message.body_html.as_deref().unwrap_or_default(),
                    })
                    .await
            }
            "sms" => {
                self.sms
                    .send(Sms {
                        event_id: message.event_id,
                        to: &message.recipient,
                        text: &message.body_text,
                    })
                    .await
            }
            other => Err(SendError::Permanent(format!("unknown channel {other}"))),
        }
    }

    /// Stores the outcome; after a send, claims the user's next message on the channel with it
    /// and returns it. Database hiccups are retried for a while: giving up here leaves the
    /// message claimed until its lease ends, after which it is sent again.
    async fn record(&self, message: &Claimed, outcome: Outcome) -> Option<Claimed> {
        let channel = message.channel.clone();
        let span = tracing::Span::current();
        let (result, label, next) = match outcome {
            Outcome::Sent(reference) => {
                tracing::info!(%reference, "sent");
                let result = persist(|| {
                    messages::mark_sent_and_claim_next(
                        &self.pool,
                        message,
                        &reference,
                        self.settings.lease,
                    )
                })
                .await;
                let (result, next) = match result {
                    Ok((recorded, next)) => (Ok(recorded), next),
                    Err(error) => (Err(error), None),
                };
                (result, "sent", next)
            }
            Outcome::Retry(delay, reason) => {
                span.record("otel.status_code", "ERROR");
                tracing::warn!(%reason, ?delay, "send failed; will retry");
                metrics::counter!("notification_retries_total", "channel" => channel.clone())
                    .increment(1);
                let result = persist(|| {
                    messages::retry_later(&self.pool, message.id, message.attempts, delay, &reason)
                })
                .await;
                (result, "retry", None)
            }
            Outcome::GiveUp(reason) => {
                span.record("otel.status_code", "ERROR");
                tracing::error!(%reason, "giving up on the message; dead-lettering its event");
                if let Err(error) = self.dead_letters.publish(message, &reason).await {
                    // Without the dead letter the failure would be silent: try again later.
                    tracing::error!(error = format!("{error:#}"), "dead letter not written");
                    let delay = backoff(self.settings.retry_base, 1);
                    let _ = persist(|| {
                        messages::retry_later(
                            &self.pool,
                            message.id,
                            message.attempts,
                            delay,
                            &reason,
                        )
                    })
                    .await;
                    return None;
                }
                let result = persist(|| {
                    messages::mark_failed(&self.pool, message.id, message.attempts, &reason)
                })
                .await;
                (result, "failed", None)
            }
        };
        match result {
            Ok(true) => {
                metrics::counter!("notifications_sent_total", "channel" => channel, "outcome" => label)
                    .increment(1);
            }
            Ok(false) => tracing::warn!("the lease ran out before the outcome was recorded"),
            Err(error) => tracing::error!(%error, "cannot record the outcome"),
        }
        next
    }
}

/// The next handed-off message; never, without a hand-off (or once it closed).
async fn next_handoff(handoffs: Option<&Mutex<Receiver<Handoff>>>) -> Option<Handoff> {
    match handoffs {
        Some(receiver) => receiver.lock().await.recv().await,
        None => std::future::pending().await,
    }
}

/// Runs a status update, retrying database errors with backoff for about ten seconds.
async fn persist<T, F, Fut>(mut update: F) -> sqlx::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = sqlx::Result<T>>,
{
    let mut attempt = 1;
    loop {
        match update().await {
            Ok(done) => return Ok(done),
            Err(error) if attempt >= 6 => return Err(error),
            Err(error) => {
                tracing::warn!(%error, attempt, "status update failed; retrying");
                tokio::time::sleep(backoff(Duration::from_millis(100), attempt)).await;
                attempt += 1;
            }
        }
    }
}
