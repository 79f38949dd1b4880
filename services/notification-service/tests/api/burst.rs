//! A burst of 1,000 events becomes 1,000 mails, none twice; prints the consume and send
//! throughput (run with `--nocapture` to see the figures).
//!
//! The shared Mailpit keeps only its newest 500 mails (its default `--max`), so the test reads
//! its mails as they arrive, remembers them, and deletes them (its own only) to stay far below
//! that limit and not push other tests' mails out.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use contracts::user::UserRegistered;
use futures::future::try_join_all;
use uuid::Uuid;

use crate::helpers::*;

const EVENTS: usize = 1_000;
/// Senders, as in production's default.
const CONCURRENCY: usize = 16;

async fn count(app: &TestApp, sql: &'static str) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(sql).fetch_one(&app.pool).await?)
}

#[tokio::test]
async fn a_burst_of_1000_events_gives_1000_mails_and_no_duplicates() -> TestResult {
    // First only the consumers: the burst is queued, nothing sent yet.
    let app = spawn_app_with(|config| {
        config.run_senders = false;
        config.consumers_per_group = 3;
    })
    .await;
    let mailpit = Mailpit::default();
    // Unique per test, so Mailpit's search sees this test's mails only.
    let domain = format!("{}.burst.test.local", Uuid::new_v4().simple());
    let started = Instant::now();
    try_join_all((0..EVENTS).map(|n| {
        let user_id = Uuid::now_v7();
        let event = UserRegistered {
            user_id,
            email: format!("user{n}@{domain}"),
            name: format!("Customer {n}"),
            phone: None,
            locale: if n % 2 == 0 { "en" } else { "zh-CN" }.into(),
            role: "customer".into(),
            method: Default::default(),
        };
        let app = &app;
        async move { app.publish(user_id, event).await }
    }))
    .await?;
    eventually(Duration::from_secs(300), || async {
        let queued = count(&app, "SELECT count(*) FROM messages").await?;
        anyhow::ensure!(queued == EVENTS as i64, "{queued} queued");
        Ok(())
    })
    .await?;
    let consumed = started.elapsed();

    // Then a sender process: the figure is the send throughput alone.
    let sending = Instant::now();
    let _senders = spawn_replica(&app, |config| {
        config.run_consumers = false;
        config.delivery.concurrency = CONCURRENCY;
    })
    .await;
    let mut copies: HashMap<String, usize> = HashMap::new();
    let mut recipients = HashSet::new();
    let mut all_sent_at = None;
    loop {
        anyhow::ensure!(
            sending.elapsed() < Duration::from_secs(300),
            "{} of {EVENTS} mails after 300 s",
            copies.len()
        );
        let mails = mailpit.search(&domain).await?;
        for mail in &mails {
            *copies.entry(mail.message_id.clone()).or_default() += 1;
            recipients.extend(mail.to.iter().cloned());
        }
        let ids: Vec<String> = mails.into_iter().map(|mail| mail.id).collect();
        if !ids.is_empty() {
            mailpit.delete(&ids).await?;
        }
        let sent = count(&app, "SELECT count(*) FROM messages WHERE status = 'sent'").await?;
        if sent == EVENTS as i64 && all_sent_at.is_none() {
            all_sent_at = Some(sending.elapsed());
        }
        if copies.len() == EVENTS && all_sent_at.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Every message row is `sent` by now, so no sender holds a claim that could still deliver a
    // second copy: one more look at the inbox is final, without waiting.
    for mail in mailpit.search(&domain).await? {
        *copies.entry(mail.message_id.clone()).or_default() += 1;
    }
    let duplicates: Vec<_> = copies.iter().filter(|(_, n)| **n > 1).collect();
    assert!(duplicates.is_empty(), "duplicates: {duplicates:?}");
    assert_eq!(copies.len(), EVENTS);
    assert_eq!(recipients.len(), EVENTS);

    let send_time = all_sent_at.unwrap_or_default().as_secs_f64().max(0.001);
    eprintln!(
        "burst: {EVENTS} events consumed and queued in {:.1} s ({:.0} events/s, 3 consumers per group); \
         {EVENTS} mails sent to Mailpit in {send_time:.1} s = {:.0} mails/s (concurrency {CONCURRENCY})",
        consumed.as_secs_f64(),
        EVENTS as f64 / consumed.as_secs_f64(),
        EVENTS as f64 / send_time
    );
    Ok(())
}
