//! `product.*` events on the real broker, through the single-document outbox.

use messaging::KafkaConfig;
use messaging::mongo::{PENDING_FLAG, RelayWake};
use product_service::events::outbox::{self, OutboxRelay};
use reqwest::StatusCode;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::helpers::{TestResult, brokers, product_body, spawn_app, spawn_app_with, string};

#[tokio::test]
async fn every_write_publishes_exactly_one_event_with_the_full_snapshot() -> TestResult {
    let app = spawn_app().await;
    let created = app.created(&product_body("EVT-1")).await?;
    let id = string(&created["id"])?;
    let patched = app
        .patch(&id, &json!({"version": 1, "name": "Renamed"}))
        .await?;
    let adjusted = app.adjust(&id, -4, "sold offline").await?;
    assert_eq!(app.delete(&id).await?.status, StatusCode::NO_CONTENT);
    // Refused writes publish nothing.
    assert_eq!(
        app.adjust(&id, -1, "x").await?.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.create(&product_body("EVT-1")).await?.status,
        StatusCode::CONFLICT
    );
    app.wait_for_empty_outbox().await?;

    let records = app.product_events().await?;
    let mine: Vec<_> = records.iter().filter(|r| r.event.subject == id).collect();
    let types: Vec<&str> = mine.iter().map(|r| r.event.event_type.as_str()).collect();
    assert_eq!(
        types,
        [
            "product.created.v1",
            "product.updated.v1",
            "product.updated.v1",
            "product.deleted.v1"
        ]
    );
    assert_eq!(records.len(), 4, "no other events");
    for record in &mine {
        assert_eq!(record.key, id);
        assert_eq!(record.event.source, "/product-service");
        assert!(
            record
                .headers
                .get("traceparent")
                .is_some_and(|t| t.starts_with("00-")),
            "{:?}",
            record.headers
        );
    }
    // The snapshots are exactly what the API answered after each write.
    assert_eq!(mine[0].event.data, created);
    assert_eq!(mine[1].event.data, patched.body);
    assert_eq!(mine[2].event.data, adjusted.body);
    assert_eq!(mine[2].event.data["stock"]["available"], 6);
    assert_eq!(mine[3].event.data["active"], false);
    assert_eq!(mine[3].event.data["version"], 4);
    assert_eq!(mine[3].event.data["specs"], created["specs"]);
    Ok(())
}

/// A write whose publish never happened (the process died between the two) stays pending in
/// its document and is published exactly once when a relay runs again.
#[tokio::test]
async fn events_written_while_no_relay_runs_are_published_once_later() -> TestResult {
    let app = spawn_app_with(|config| config.run_outbox_relay = false).await;
    let created = app.created(&product_body("EVT-CRASH")).await?;
    let id = string(&created["id"])?;
    app.adjust(&id, 1, "recount").await?;
    assert_eq!(app.pending_events(&id).await?, 2);
    assert!(
        app.product_events().await?.is_empty(),
        "nothing published yet"
    );

    let kafka = KafkaConfig::new(brokers());
    let relay = OutboxRelay::new(
        &app.db,
        outbox::PRODUCTS,
        kafka.producer()?,
        RelayWake::default(),
    );
    // Two relays race for the backlog; a relay's claim on a document lets one publish it.
    let stop = CancellationToken::new();
    let tasks = [
        tokio::spawn(relay.clone().run(stop.clone())),
        tokio::spawn(
            OutboxRelay::new(
                &app.db,
                outbox::PRODUCTS,
                kafka.producer()?,
                RelayWake::default(),
            )
            .run(stop.clone()),
        ),
    ];
    app.wait_for_empty_outbox().await?;
    stop.cancel();
    for task in tasks {
        task.await?;
    }
    assert_eq!(app.pending_events(&id).await?, 0);

    let records = app.product_events().await?;
    let types: Vec<&str> = records
        .iter()
        .map(|r| r.event.event_type.as_str())
        .collect();
    assert_eq!(types, ["product.created.v1", "product.updated.v1"]);
    let ids: std::collections::HashSet<_> = records.iter().map(|r| r.event.id).collect();
    assert_eq!(ids.len(), 2);
    assert_eq!(relay.publish_batch().await?, 0, "nothing left to publish");
    Ok(())
}

/// A relay told which document a write changed publishes it at once, reading it by `_id`,
/// without waiting for its poll (an hour here), and clears the document in the same round.
#[tokio::test]
async fn a_relay_told_of_a_written_document_publishes_it_without_polling() -> TestResult {
    let app = spawn_app_with(|config| config.run_outbox_relay = false).await;
    let kafka = KafkaConfig::new(brokers());
    let wake = RelayWake::default();
    let relay = OutboxRelay::new(&app.db, outbox::PRODUCTS, kafka.producer()?, wake.clone())
        .with_poll_interval(std::time::Duration::from_secs(3600));
    let stop = CancellationToken::new();
    // Its first round polls an empty outbox; from then on only `wake` brings it work.
    let task = tokio::spawn(relay.run(stop.clone()));
    let id = string(&app.created(&product_body("EVT-WAKE")).await?["id"])?;
    app.adjust(&id, 2, "recount").await?;
    wake.written(id.clone());
    app.wait_for_empty_outbox().await?;
    let flag = app.document(&id).await?.get_bool(PENDING_FLAG).ok();
    assert_eq!(flag, Some(false), "the flag went down with the events");
    stop.cancel();
    task.await?;
    let records = app.product_events().await?;
    let types: Vec<&str> = records
        .iter()
        .map(|r| r.event.event_type.as_str())
        .collect();
    assert_eq!(types, ["product.created.v1", "product.updated.v1"]);
    Ok(())
}

/// The relay's poll reads only documents flagged as holding events; documents written by a
/// version before the flag are published once when a relay starts, and the flag goes down
/// with the last event.
#[tokio::test]
async fn the_outbox_flag_follows_the_pending_events() -> TestResult {
    let app = spawn_app_with(|config| config.run_outbox_relay = false).await;
    let flagged = string(&app.created(&product_body("EVT-FLAG")).await?["id"])?;
    let legacy = string(&app.created(&product_body("EVT-LEGACY")).await?["id"])?;
    app.adjust(&legacy, 1, "recount").await?;
    let flag = |document: mongodb::bson::Document| document.get_bool(PENDING_FLAG).ok();
    assert_eq!(flag(app.document(&flagged).await?), Some(true));
    // As a version before the flag left it: events waiting, no flag.
    app.db
        .collection::<mongodb::bson::Document>("products")
        .update_one(
            mongodb::bson::doc! {"_id": &legacy},
            mongodb::bson::doc! {"$unset": {PENDING_FLAG: ""}},
        )
        .await?;

    let kafka = KafkaConfig::new(brokers());
    let relay = OutboxRelay::new(
        &app.db,
        outbox::PRODUCTS,
        kafka.producer()?,
        RelayWake::default(),
    );
    let stop = CancellationToken::new();
    let task = tokio::spawn(relay.clone().run(stop.clone()));
    app.wait_for_empty_outbox().await?;
    stop.cancel();
    task.await?;
    for id in [&flagged, &legacy] {
        assert_eq!(app.pending_events(id).await?, 0);
        assert_eq!(flag(app.document(id).await?), Some(false), "{id}");
    }
    let records = app.product_events().await?;
    let mut legacy_types: Vec<&str> = records
        .iter()
        .filter(|r| r.event.subject == legacy)
        .map(|r| r.event.event_type.as_str())
        .collect();
    legacy_types.sort_unstable();
    assert_eq!(legacy_types, ["product.created.v1", "product.updated.v1"]);
    assert_eq!(records.len(), 3, "each event once");

    // A new write raises the flag again and the poll finds it.
    app.adjust(&flagged, 1, "recount").await?;
    assert_eq!(flag(app.document(&flagged).await?), Some(true));
    assert_eq!(relay.publish_batch().await?, 1);
    assert_eq!(flag(app.document(&flagged).await?), Some(false));
    assert_eq!(relay.publish_batch().await?, 0, "nothing left to publish");
    Ok(())
}

/// A batched relay round claims many documents with one update and clears them with one
/// more. A write that lands between the claim and the clear keeps its event and its flag (the
/// clear matches only arrays holding nothing but published events), a second relay cannot
/// claim what the first holds, and the next round publishes the late event: every event once,
/// each product's in order.
#[tokio::test]
async fn a_write_between_a_batch_claim_and_its_clear_keeps_its_event() -> TestResult {
    let app = spawn_app_with(|config| config.run_outbox_relay = false).await;
    let mut ids = Vec::new();
    for sku in ["EVT-BATCH-A", "EVT-BATCH-B", "EVT-BATCH-C"] {
        ids.push(string(&app.created(&product_body(sku)).await?["id"])?);
    }
    let kafka = KafkaConfig::new(brokers());
    let relay = || -> anyhow::Result<OutboxRelay> {
        Ok(OutboxRelay::new(
            &app.db,
            outbox::PRODUCTS,
            kafka.producer()?,
            RelayWake::default(),
        ))
    };
    let (first, second) = (relay()?, relay()?);
    let keys: Vec<mongodb::bson::Bson> = ids.iter().map(|id| id.as_str().into()).collect();
    let claimed = first.claim(&keys).await?;
    assert_eq!(claimed.len(), 3);
    assert!(
        second.claim(&keys).await?.is_empty(),
        "the first relay holds them"
    );

    app.adjust(&ids[1], 1, "recount").await?;
    assert_eq!(first.publish_claimed(claimed).await?, 3);
    let flag = |document: mongodb::bson::Document| document.get_bool(PENDING_FLAG).ok();
    for id in [&ids[0], &ids[2]] {
        assert_eq!(app.pending_events(id).await?, 0, "{id}");
        assert_eq!(flag(app.document(id).await?), Some(false), "{id}");
    }
    assert_eq!(
        app.pending_events(&ids[1]).await?,
        1,
        "the late event stays"
    );
    assert_eq!(flag(app.document(&ids[1]).await?), Some(true));

    assert_eq!(
        second.publish_batch().await?,
        1,
        "the poll finds the late event"
    );
    assert_eq!(app.pending_events(&ids[1]).await?, 0);
    assert_eq!(flag(app.document(&ids[1]).await?), Some(false));
    assert_eq!(second.publish_batch().await?, 0, "nothing left to publish");

    let records = app.product_events().await?;
    let of = |id: &str| -> Vec<String> {
        records
            .iter()
            .filter(|r| r.event.subject == id)
            .map(|r| r.event.event_type.clone())
            .collect()
    };
    assert_eq!(of(&ids[0]), ["product.created.v1"]);
    assert_eq!(of(&ids[1]), ["product.created.v1", "product.updated.v1"]);
    assert_eq!(of(&ids[2]), ["product.created.v1"]);
    assert_eq!(records.len(), 4, "each event once");
    Ok(())
}

#[tokio::test]
async fn the_event_continues_the_callers_trace() -> TestResult {
    let app = spawn_app().await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let reply = app
        .send(
            app.client
                .post(app.url("/api/products"))
                .bearer_auth(&app.admin_token)
                .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
                .json(&product_body("EVT-TRACE")),
        )
        .await?;
    assert_eq!(reply.status, StatusCode::CREATED);
    app.wait_for_empty_outbox().await?;
    let records = app.product_events().await?;
    let traceparent = records
        .first()
        .and_then(|r| r.headers.get("traceparent"))
        .cloned()
        .unwrap_or_default();
    assert!(
        traceparent.starts_with(&format!("00-{trace_id}-")),
        "{traceparent:?}"
    );
    Ok(())
}
