//! `user.*` events on the real broker, through the transactional outbox.

use contracts::topics::{Topic, USER_EVENTS};
use messaging::{KafkaConfig, OutboxRelay};
use reqwest::StatusCode;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::helpers::{TestResult, read_topic, spawn_app, spawn_app_with, string, unique_email};

#[tokio::test]
async fn registration_publishes_exactly_one_cloud_event_keyed_by_user() -> TestResult {
    let app = spawn_app().await;
    let reply = app.register(&unique_email()).await?;
    assert_eq!(reply.status, StatusCode::CREATED);
    let user_id = string(&reply.body["id"])?;
    app.wait_for_empty_outbox().await?;

    let records = read_topic(&app.topic(USER_EVENTS)).await?;
    let mine: Vec<_> = records
        .iter()
        .filter(|r| r.event.subject == user_id)
        .collect();
    assert_eq!(mine.len(), 1, "{mine:?}");
    let record = mine[0];
    assert_eq!(record.key, user_id);
    assert_eq!(record.event.event_type, "user.registered.v1");
    assert_eq!(record.event.specversion, "1.0");
    assert_eq!(record.event.source, "/user-service");
    assert_eq!(record.event.data["email"], reply.body["email"]);
    assert!(record.event.data.get("password").is_none());
    let traceparent = record
        .headers
        .get("traceparent")
        .cloned()
        .unwrap_or_default();
    assert!(
        traceparent.starts_with("00-"),
        "traceparent header: {traceparent:?}"
    );
    Ok(())
}

#[tokio::test]
async fn login_and_profile_changes_publish_their_events_in_order() -> TestResult {
    let app = spawn_app().await;
    let (user_id, token, _) = app.signed_in_user().await?;
    let patched = app
        .send(
            app.client
                .patch(app.url("/api/users/me"))
                .bearer_auth(&token)
                .json(&json!({"name": "Grace"})),
        )
        .await?;
    assert_eq!(patched.status, StatusCode::OK);
    app.wait_for_empty_outbox().await?;
    let types: Vec<String> = read_topic(&app.topic(USER_EVENTS))
        .await?
        .into_iter()
        .filter(|r| r.event.subject == user_id)
        .map(|r| r.event.event_type)
        .collect();
    assert_eq!(
        types,
        ["user.registered.v1", "user.logged_in.v1", "user.updated.v1"]
    );
    Ok(())
}

#[tokio::test]
async fn a_failed_request_publishes_nothing() -> TestResult {
    let app = spawn_app().await;
    let email = unique_email();
    app.register(&email).await?;
    assert_eq!(app.register(&email).await?.status, StatusCode::CONFLICT);
    app.wait_for_empty_outbox().await?;
    let registered = read_topic(&app.topic(USER_EVENTS))
        .await?
        .into_iter()
        .filter(|r| r.event.data["email"] == email.as_str())
        .count();
    assert_eq!(
        registered, 1,
        "the refused duplicate must not emit an event"
    );
    Ok(())
}

/// Events committed while no relay runs are published once relays come back, even when a relay
/// is stopped half-way through the backlog and two successors race for what is left.
/// A relay publishes only while it holds the relay lock: with the lock held elsewhere (another
/// replica's relay in the middle of a round) its round reads and publishes nothing, and once
/// the lock is free the same relay publishes in id order.
#[tokio::test]
async fn a_relay_publishes_nothing_while_another_holds_the_relay_lock() -> TestResult {
    let app = spawn_app_with(|config| config.run_outbox_relay = false).await;
    for _ in 0..3 {
        let reply = app.register(&unique_email()).await?;
        assert_eq!(reply.status, StatusCode::CREATED);
    }
    let waiting = app.outbox_backlog().await?;
    assert!(waiting >= 3, "{waiting} rows waiting");

    let kafka = KafkaConfig::new(crate::helpers::brokers());
    let relay = OutboxRelay::new(app.pool.clone(), kafka.producer()?);
    let mut leader = app.pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(messaging::outbox::RELAY_LOCK)
        .execute(&mut *leader)
        .await?;
    assert_eq!(relay.publish_batch().await?, 0);
    assert_eq!(app.outbox_backlog().await?, waiting);
    leader.rollback().await?;

    assert_eq!(relay.publish_batch().await?, usize::try_from(waiting)?);
    assert_eq!(app.outbox_backlog().await?, 0);
    // An empty outbox: the lock is taken, nothing read.
    assert_eq!(relay.publish_batch().await?, 0);
    Ok(())
}

#[tokio::test]
async fn relay_restarts_and_competing_relays_publish_each_event_exactly_once() -> TestResult {
    let app = spawn_app_with(|config| config.run_outbox_relay = false).await;
    let mut user_ids = Vec::new();
    for _ in 0..30 {
        let reply = app.register(&unique_email()).await?;
        assert_eq!(reply.status, StatusCode::CREATED);
        user_ids.push(string(&reply.body["id"])?);
    }
    // The admin seed is in the outbox too.
    assert_eq!(
        app.outbox_backlog().await?,
        31,
        "nothing is published without a relay"
    );

    let kafka = KafkaConfig::new(crate::helpers::brokers());
    // A relay publishes two batches and is then gone (a restart between batches).
    let first = OutboxRelay::new(app.pool.clone(), kafka.producer()?).with_batch_size(4);
    assert_eq!(first.publish_batch().await?, 4);
    assert_eq!(first.publish_batch().await?, 4);
    drop(first);
    assert_eq!(app.outbox_backlog().await?, 23);

    let stop = CancellationToken::new();
    let successors: Vec<_> = (0..2)
        .map(|_| -> anyhow::Result<_> {
            let relay = OutboxRelay::new(app.pool.clone(), kafka.producer()?).with_batch_size(4);
            Ok(tokio::spawn(relay.run(stop.clone())))
        })
        .collect::<Result<_, _>>()?;
    app.wait_for_empty_outbox().await?;
    stop.cancel();
    for task in successors {
        task.await?;
    }

    let records =
        read_topic(&Topic::with_prefix(app.topic_prefix.clone()).qualified(USER_EVENTS)).await?;
    for user_id in &user_ids {
        let copies = records
            .iter()
            .filter(|r| &r.event.subject == user_id)
            .count();
        assert_eq!(copies, 1, "user {user_id} was published {copies} times");
    }
    let ids: std::collections::HashSet<_> = records.iter().map(|r| r.event.id).collect();
    assert_eq!(ids.len(), records.len(), "no event id appears twice");
    Ok(())
}
