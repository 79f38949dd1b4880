//! The expiry job: orders still `PENDING` or `AWAITING_PAYMENT` past their deadline become
//! `CANCELLED` (`reservation_timeout` / `payment_timeout`), and product-service releases their
//! stock on the `order.cancelled` this emits.
//!
//! Every replica runs the job. Each pass locks a batch of expired rows with `FOR UPDATE SKIP
//! LOCKED` and cancels them in that transaction, so two replicas never take the same order,
//! and a payment that races the job serialises on the same row lock: whichever commits first
//! wins and the other sees a terminal order (a late payment is then refunded by
//! payment-service).

use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::domain::status::Trigger;
use crate::saga::{self, Advanced, SagaSettings};
use crate::store::orders;

/// Orders cancelled per transaction.
const BATCH: i64 = 100;

#[derive(Debug, Clone)]
pub struct ExpiryJob {
    pub pool: PgPool,
    pub settings: SagaSettings,
    pub interval: Duration,
}

impl ExpiryJob {
    pub async fn run(self, shutdown: CancellationToken) {
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = ticker.tick() => {}
            }
            loop {
                match self.pass().await {
                    Ok(n) if n as i64 == BATCH => continue,
                    Ok(_) => break,
                    Err(error) => {
                        tracing::warn!(error = format!("{error:#}"), "expiry pass failed");
                        break;
                    }
                }
            }
        }
    }

    /// Cancels one batch of expired orders; returns how many.
    pub async fn pass(&self) -> anyhow::Result<usize> {
        let mut tx = self.pool.begin().await?;
        let expired = orders::lock_expired(&mut tx, BATCH).await?;
        let mut cancelled = 0;
        for order_id in &expired {
            let span = tracing::info_span!("expire order", order_id = %order_id);
            if let Advanced::Moved(_) = saga::advance(
                &mut tx,
                &self.settings,
                *order_id,
                Trigger::Expired,
                None,
                "expiry",
            )
            .instrument(span)
            .await?
            {
                cancelled += 1;
            }
        }
        tx.commit().await?;
        if cancelled > 0 {
            tracing::info!(cancelled, "expired orders cancelled");
        }
        Ok(expired.len())
    }
}
