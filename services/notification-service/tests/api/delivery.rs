//! Delivery guarantees: one mail per event under redelivery, nothing lost while the SMTP
//! server is down, dead letters for what cannot be sent (while everything else flows), and no
//! second SMS after a crash between sending and recording.

use std::collections::HashMap;
use std::time::Duration;

use contracts::EventData;
use contracts::order::{OrderCancelled, OrderCreated, OrderItem, OrderPaid};
use contracts::topics::ORDER_EVENTS;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn the_same_event_delivered_twice_gives_one_mail() -> TestResult {
    let app = spawn_app().await;
    let mailpit = Mailpit::default();
    let user = app.register("en", None).await?;
    let order = Uuid::now_v7();
    let created = app
        .publish(
            order,
            OrderCreated {
                order_id: order,
                user_id: user.id,
                items: vec![OrderItem {
                    product_id: Uuid::now_v7(),
                    name: "Kettle".into(),
                    quantity: 1,
                    unit_price: eur(1000),
                }],
                total: eur(1000),
            },
        )
        .await?;
    // The redelivery: the very same envelope again, once before and once after the send.
    app.publish_event(OrderCreated::TOPIC, &created, &HashMap::new())
        .await?;
    app.wait_for_status(&user, "email", "order_received", "sent", WAIT)
        .await?;
    app.publish_event(OrderCreated::TOPIC, &created, &HashMap::new())
        .await?;
    // A later event of the same order (same key, same partition) marks the point by which the
    // copies were consumed.
    app.publish(
        order,
        OrderCancelled {
            order_id: order,
            user_id: user.id,
            reason: "customer_request".into(),
        },
    )
    .await?;
    mailpit.wait_for(&user.email, 3, WAIT).await?;
    app.wait_for_status(&user, "email", "order_cancelled", "sent", WAIT)
        .await?;
    let received: Vec<Mail> = mailpit
        .search(&user.email)
        .await?
        .into_iter()
        .filter(|mail| mail.subject.starts_with("We received your order"))
        .collect();
    assert_eq!(received.len(), 1, "{received:?}");
    assert_eq!(
        received[0].message_id,
        format!("{}.email@notification-service.ferroshop", created.id)
    );
    Ok(())
}

#[tokio::test]
async fn mail_is_delivered_after_the_smtp_server_comes_back_and_nothing_is_lost() -> TestResult {
    let smtp = SmtpSwitch::start(false).await?;
    let port = smtp.port;
    let app = spawn_app_with(|config| {
        config.smtp.port = port;
        config.delivery.max_attempts = 30;
        config.delivery.retry_base = Duration::from_millis(200);
    })
    .await;
    let mailpit = Mailpit::default();
    let first = app.register("en", None).await?;
    let second = app.register("en", None).await?;
    // Down: attempts fail and are retried.
    eventually(WAIT, || async {
        let rows = app.messages_of(&first).await?;
        anyhow::ensure!(
            rows.iter()
                .any(|(_, _, status, attempts)| status == "pending" && *attempts >= 2),
            "not retrying yet: {rows:?}"
        );
        Ok(())
    })
    .await?;
    let last_error: Option<String> =
        sqlx::query_scalar("SELECT last_error FROM messages WHERE user_id = $1")
            .bind(first.id)
            .fetch_one(&app.pool)
            .await?;
    assert!(last_error.is_some_and(|error| error.contains("SMTP")));
    assert!(mailpit.search(&first.email).await?.is_empty());

    smtp.set(true);
    for user in [&first, &second] {
        let mails = mailpit.wait_for(&user.email, 1, WAIT).await?;
        assert_eq!(mails.len(), 1, "{mails:?}");
        app.wait_for_status(user, "email", "welcome", "sent", WAIT)
            .await?;
    }
    Ok(())
}

#[tokio::test]
async fn an_sms_gateway_that_keeps_failing_gives_a_failed_message_and_a_dead_letter() -> TestResult
{
    let app = spawn_app().await;
    let mailpit = Mailpit::default();
    let phone = unique_phone();
    app.sms_failure(json!({"mode": "fail_always", "to": phone}))
        .await?;
    let user = app.register("en", Some(phone.clone())).await?;
    app.opt_in_to_sms(&user).await?;
    let paid = Uuid::now_v7();
    let event = app
        .publish(
            paid,
            OrderPaid {
                order_id: paid,
                user_id: user.id,
                total: eur(4200),
                payment_id: Uuid::now_v7(),
            },
        )
        .await?;
    app.wait_for_status(&user, "sms", "receipt", "failed", WAIT)
        .await?;
    let rows = app.messages_of(&user).await?;
    assert!(
        rows.contains(&("sms".into(), "receipt".into(), "failed".into(), 4)),
        "{rows:?}"
    );
    // The mail of the same event went out regardless.
    app.wait_for_status(&user, "email", "receipt", "sent", WAIT)
        .await?;
    let (_, requests) = app.sms_to(&phone).await?;
    assert_eq!(requests, 4);

    let dead_letters = eventually_read(&app.topic(&format!("{ORDER_EVENTS}.dlt")), 1).await?;
    assert_eq!(dead_letters.len(), 1);
    let letter = &dead_letters[0];
    assert_eq!(letter.event()?.id, event.id);
    assert_eq!(
        letter.headers.get("dlt.channel").map(String::as_str),
        Some("sms")
    );
    let reason = letter
        .headers
        .get("dlt.reason")
        .cloned()
        .unwrap_or_default();
    assert!(
        reason.contains("gave up after 4 attempts") && reason.contains("503"),
        "{reason}"
    );

    // The consumer keeps going: a later event is still turned into mail.
    let cancelled = Uuid::now_v7();
    app.publish(
        cancelled,
        OrderCancelled {
            order_id: cancelled,
            user_id: user.id,
            reason: "customer_request".into(),
        },
    )
    .await?;
    mailpit.wait_for(&user.email, 3, WAIT).await?;
    Ok(())
}

/// Reads `topic` until it holds at least `count` records.
async fn eventually_read(
    topic: &str,
    count: usize,
) -> anyhow::Result<Vec<messaging::testing::Record>> {
    eventually(WAIT, || async {
        let found = messaging::testing::read_topic(&brokers(), topic)
            .await?
            .len();
        anyhow::ensure!(found >= count, "{found} records in {topic}");
        Ok(())
    })
    .await?;
    messaging::testing::read_topic(&brokers(), topic).await
}

#[tokio::test]
async fn an_sms_resent_after_a_crash_between_sending_and_recording_arrives_once() -> TestResult {
    let app = spawn_app().await;
    let phone = unique_phone();
    let user = app.register("en", Some(phone.clone())).await?;
    app.opt_in_to_sms(&user).await?;
    let paid = Uuid::now_v7();
    app.publish(
        paid,
        OrderPaid {
            order_id: paid,
            user_id: user.id,
            total: eur(4200),
            payment_id: Uuid::now_v7(),
        },
    )
    .await?;
    app.wait_for_status(&user, "sms", "receipt", "sent", WAIT)
        .await?;
    // What a sender killed after the gateway accepted, before it recorded that, leaves behind:
    // the message claimed, its lease running out.
    sqlx::query(
        "UPDATE messages SET status = 'sending', sent_at = NULL,
                lease_until = now() - interval '1 second'
          WHERE user_id = $1 AND channel = 'sms'",
    )
    .bind(user.id)
    .execute(&app.pool)
    .await?;
    eventually(WAIT, || async {
        let rows = app.messages_of(&user).await?;
        anyhow::ensure!(
            rows.contains(&("sms".into(), "receipt".into(), "sent".into(), 2)),
            "not taken over yet: {rows:?}"
        );
        Ok(())
    })
    .await?;
    let (sms, requests) = app.sms_to(&phone).await?;
    assert_eq!(requests, 2, "the gateway was asked again");
    assert_eq!(sms.len(), 1, "but delivered once: {sms:?}");
    Ok(())
}

#[tokio::test]
async fn a_full_queue_holds_the_consumers_back_until_senders_drain_it() -> TestResult {
    const MAX_QUEUE: i64 = 5;
    // Consumers only, with a small queue: nothing drains it.
    let app = spawn_app_with(|config| {
        config.run_senders = false;
        config.delivery.max_queue = MAX_QUEUE;
    })
    .await;
    let mut users = Vec::new();
    for _ in 0..12 {
        users.push(app.register("en", None).await?);
    }
    let depth = || async {
        let depth: i64 = sqlx::query_scalar("SELECT count(*) FROM messages")
            .fetch_one(&app.pool)
            .await?;
        anyhow::Ok(depth)
    };
    eventually(WAIT, || async {
        let depth = depth().await?;
        anyhow::ensure!(depth >= MAX_QUEUE, "{depth} queued");
        Ok(())
    })
    .await?;
    // The consumer waits (lag) instead of growing the queue; allow one in-flight record per
    // consumer that checked just before the limit was reached.
    let mut observed = Vec::new();
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        observed.push(depth().await?);
    }
    assert!(
        observed.iter().all(|depth| *depth <= MAX_QUEUE + 2),
        "{observed:?}"
    );

    // Senders start: the queue drains and every event gets its mail.
    let _senders = spawn_replica(&app, |config| config.run_consumers = false).await;
    let mailpit = Mailpit::default();
    for user in &users {
        mailpit.wait_for(&user.email, 1, WAIT).await?;
    }
    Ok(())
}

/// The rule that lets the consumer hand a message straight to a sender without a claim: it is
/// stored claimed only when nothing earlier of its user on its channel is unfinished, so a
/// user's messages still go out in order; a redelivery stores nothing twice.
#[tokio::test]
async fn a_message_is_stored_claimed_only_when_its_user_has_nothing_unfinished_before_it()
-> TestResult {
    use anyhow::Context as _;
    use notification_service::store::messages::{self, Stored};

    // No senders: what the test stores stays as it is.
    let app = spawn_app_with(|config| config.run_senders = false).await;
    let user = Uuid::now_v7();
    let (event, headers) = (json!({}), json!({}));
    let message = |event_id, channel| receipt(event_id, user, channel, (&event, &headers));
    let lease = Duration::from_secs(60);
    let mut conn = app.pool.acquire().await?;
    let (first, second) = (Uuid::now_v7(), Uuid::now_v7());

    let claimed =
        match messages::insert_claiming(&mut conn, &message(first, "email"), lease).await? {
            Stored::Claimed(claimed) => claimed,
            other => anyhow::bail!("the user's first message was stored {other:?}, not claimed"),
        };
    assert_eq!((claimed.attempts, claimed.resumed), (1, false));
    // The same event again (a redelivery): nothing new, either way.
    assert!(matches!(
        messages::insert_claiming(&mut conn, &message(first, "email"), lease).await?,
        Stored::Existing
    ));
    assert!(!messages::insert(&mut conn, &message(first, "email")).await?);
    // The user's next mail waits for the first: stored pending, in the same statement.
    assert!(matches!(
        messages::insert_claiming(&mut conn, &message(second, "email"), lease).await?,
        Stored::Pending
    ));
    assert!(!messages::insert(&mut conn, &message(second, "email")).await?);
    // Another channel has its own order.
    assert!(matches!(
        messages::insert_claiming(&mut conn, &message(second, "sms"), lease).await?,
        Stored::Claimed(_)
    ));
    // The stored claim holds against the senders' claim: only the pending mail is claimable,
    // and only once the first is done.
    assert!(messages::claim(&app.pool, lease).await?.is_none());
    assert!(messages::mark_sent(&app.pool, claimed.id, 1, "ref").await?);
    let next = messages::claim(&app.pool, lease)
        .await?
        .context("no claimable mail")?;
    assert_eq!((next.event_id, next.channel.as_str()), (second, "email"));

    let statuses: Vec<(Uuid, String, String)> = sqlx::query_as(
        "SELECT event_id, channel, status FROM messages WHERE user_id = $1 ORDER BY id",
    )
    .bind(user)
    .fetch_all(&app.pool)
    .await?;
    assert_eq!(
        statuses,
        vec![
            (first, "email".into(), "sent".into()),
            (second, "email".into(), "sending".into()),
            (second, "sms".into(), "sending".into()),
        ]
    );
    Ok(())
}

/// Recording a send claims the same user's next message on that channel in the same statement,
/// as the senders' claim would pick it: the oldest unfinished one, only if it is due, never
/// another user's, and nothing when the send's lease was lost.
#[tokio::test]
async fn recording_a_send_claims_the_users_next_message_in_turn() -> TestResult {
    use anyhow::Context as _;
    use notification_service::store::messages;

    let app = spawn_app_with(|config| config.run_senders = false).await;
    let (user, other_user) = (Uuid::now_v7(), Uuid::now_v7());
    let (event, headers) = (json!({}), json!({}));
    let message = |event_id, user_id| receipt(event_id, user_id, "email", (&event, &headers));
    let lease = Duration::from_secs(60);
    let mut conn = app.pool.acquire().await?;
    let events = [Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7()];
    let first = match messages::insert_claiming(&mut conn, &message(events[0], user), lease).await?
    {
        messages::Stored::Claimed(first) => first,
        other => anyhow::bail!("the user's first message was stored {other:?}, not claimed"),
    };
    // Another user's due mail, queued before the user's next ones: not the user's turn.
    assert!(messages::insert(&mut conn, &message(Uuid::now_v7(), other_user)).await?);
    assert!(messages::insert(&mut conn, &message(events[1], user)).await?);
    assert!(messages::insert(&mut conn, &message(events[2], user)).await?);

    let (recorded, next) =
        messages::mark_sent_and_claim_next(&app.pool, &first, "ref-1", lease).await?;
    assert!(recorded);
    let next = next.context("the user's next mail was not claimed")?;
    assert_eq!(
        (next.event_id, next.user_id, next.attempts, next.resumed),
        (events[1], user, 1, false)
    );
    // A sender whose lease was lost records nothing and claims nothing.
    let (recorded, claimed) =
        messages::mark_sent_and_claim_next(&app.pool, &first, "ref-1", lease).await?;
    assert!(!recorded && claimed.is_none());
    // The third is not due yet (as after a failed attempt): it is left to the claim.
    sqlx::query(
        "UPDATE messages SET next_attempt_at = now() + interval '1 hour' WHERE event_id = $1",
    )
    .bind(events[2])
    .execute(&app.pool)
    .await?;
    let (recorded, after) =
        messages::mark_sent_and_claim_next(&app.pool, &next, "ref-2", lease).await?;
    assert!(recorded);
    assert!(after.is_none(), "a mail not due was claimed: {after:?}");

    let statuses: Vec<(Uuid, String)> =
        sqlx::query_as("SELECT user_id, status FROM messages ORDER BY id")
            .fetch_all(&app.pool)
            .await?;
    assert_eq!(
        statuses,
        vec![
            (user, "sent".into()),
            (other_user, "pending".into()),
            (user, "sent".into()),
            (user, "pending".into()),
        ]
    );
    Ok(())
}

/// A rendered receipt as the consumer stores it, for the tests that store messages directly.
fn receipt<'a>(
    event_id: Uuid,
    user_id: Uuid,
    channel: &'a str,
    (event, trace_headers): (&'a serde_json::Value, &'a serde_json::Value),
) -> notification_service::store::messages::NewMessage<'a> {
    notification_service::store::messages::NewMessage {
        event_id,
        channel,
        user_id,
        template: "receipt",
        locale: "en",
        recipient: "someone@example.com",
        subject: Some("Receipt"),
        body_text: "text",
        body_html: None,
        topic: ORDER_EVENTS,
        event,
        trace_headers,
    }
}
