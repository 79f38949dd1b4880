//! Reservations from order events on the real broker: all or nothing per order, exactly once
//! per order under races and redelivery, commit and release, and poison records dead-lettered.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use contracts::order::{OrderCancelled, OrderCreated, OrderItem, OrderPaid, OrderRejected};
use contracts::product::Money;
use contracts::topics::{INVENTORY_EVENTS, ORDER_EVENTS};
use messaging::KafkaConfig;
use messaging::mongo::RelayWake;
use mongodb::bson::{Document, doc};
use product_service::events::outbox::{self, OutboxRelay};
use product_service::store::reservations::Reservations;
use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{
    Record, TestApp, TestResult, eventually, order_event, product_body, read_topic, spawn_app,
    spawn_app_with, spawn_replica, string,
};

const DEADLINE: Duration = Duration::from_secs(180);

fn created(order_id: Uuid, lines: &[(&str, i64)]) -> anyhow::Result<OrderCreated> {
    let items = lines
        .iter()
        .map(|(product, quantity)| {
            Ok(OrderItem {
                product_id: Uuid::parse_str(product)?,
                name: (*product).to_owned(),
                quantity: *quantity,
                unit_price: Money {
                    amount: 1999,
                    currency: "EUR".into(),
                },
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let total = items.iter().map(|i| i.quantity * i.unit_price.amount).sum();
    Ok(OrderCreated {
        order_id,
        user_id: Uuid::now_v7(),
        items,
        total: Money {
            amount: total,
            currency: "EUR".into(),
        },
    })
}

fn paid_event(order_id: Uuid) -> OrderPaid {
    OrderPaid {
        order_id,
        user_id: Uuid::nil(),
        total: Money {
            amount: 1999,
            currency: "EUR".into(),
        },
        payment_id: Uuid::nil(),
    }
}

/// Places a new order for `lines` (product id, quantity); returns its id.
async fn place(app: &TestApp, lines: &[(&str, i64)]) -> anyhow::Result<Uuid> {
    let order = Uuid::now_v7();
    app.produce(ORDER_EVENTS, &[order_event(order, created(order, lines)?)?])
        .await?;
    Ok(order)
}

/// A product with `stock` units; returns its id.
async fn product(app: &TestApp, sku: &str, stock: i64) -> anyhow::Result<String> {
    let mut body = product_body(sku);
    body["initial_stock"] = json!(stock);
    string(&app.created(&body).await?["id"])
}

/// Waits until every order in `orders` has left `reserving`; returns their statuses.
async fn settled(app: &TestApp, orders: &[Uuid]) -> anyhow::Result<HashMap<String, String>> {
    let ids: Vec<String> = orders.iter().map(Uuid::to_string).collect();
    let collection = app.db.collection::<Document>("reservations");
    let started = Instant::now();
    loop {
        let found: Vec<Document> =
            futures::TryStreamExt::try_collect(collection.find(doc! {"_id": {"$in": &ids}}).await?)
                .await?;
        let statuses: HashMap<String, String> = found
            .iter()
            .filter_map(|d| {
                Some((
                    d.get_str("_id").ok()?.into(),
                    d.get_str("status").ok()?.into(),
                ))
            })
            .collect();
        let done = statuses.len() == ids.len() && statuses.values().all(|s| s != "reserving");
        if done {
            return Ok(statuses);
        }
        anyhow::ensure!(
            started.elapsed() < DEADLINE,
            "{} of {} orders settled",
            statuses.values().filter(|s| *s != "reserving").count(),
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `order` is in `status`.
async fn status(app: &TestApp, order: Uuid, status: &str) -> TestResult {
    let collection = app.db.collection::<Document>("reservations");
    eventually(DEADLINE, || {
        let collection = collection.clone();
        async move {
            let found = collection
                .find_one(doc! {"_id": order.to_string()})
                .await?
                .and_then(|d| d.get_str("status").ok().map(str::to_owned));
            anyhow::ensure!(found.as_deref() == Some(status), "{order} is {found:?}");
            Ok(())
        }
    })
    .await
}

/// Waits until product `id`'s stock is `expected` (a failed order gives its units back just
/// after it is marked failed), checking the books each time.
async fn books_reach(app: &TestApp, id: &str, expected: (i64, i64, i64)) -> TestResult {
    eventually(DEADLINE, || async move {
        let found = app.books(id).await?;
        anyhow::ensure!(found == expected, "{id}: {found:?}, expected {expected:?}");
        Ok(())
    })
    .await
}

/// This test's `inventory.*` events, after the relays published everything.
async fn inventory_events(app: &TestApp) -> anyhow::Result<Vec<Record>> {
    app.wait_for_empty_outbox().await?;
    read_topic(&app.topic(INVENTORY_EVENTS)).await
}

fn types_of(records: &[Record], order: Uuid) -> Vec<String> {
    records
        .iter()
        .filter(|r| r.event.subject == order.to_string())
        .map(|r| r.event.event_type.clone())
        .collect()
}

#[tokio::test]
async fn two_hundred_orders_racing_for_the_last_ten_units_reserve_exactly_ten() -> TestResult {
    let app = spawn_app().await;
    // Two replicas share the order partitions, so reservations really race for the product.
    let _replica = spawn_replica(&app, |_| {}).await;
    let id = product(&app, "HOT-1", 10).await?;
    let orders: Vec<Uuid> = (0..200).map(|_| Uuid::now_v7()).collect();
    let records = orders
        .iter()
        .map(|order| order_event(*order, created(*order, &[(&id, 1)])?))
        .collect::<anyhow::Result<Vec<_>>>()?;

    let started = Instant::now();
    app.produce(ORDER_EVENTS, &records).await?;
    let statuses = settled(&app, &orders).await?;
    let elapsed = started.elapsed();
    eprintln!(
        "200 orders for one product settled in {elapsed:?} ({:.0} orders/s)",
        200.0 / elapsed.as_secs_f64()
    );

    let reserved = statuses.values().filter(|s| *s == "reserved").count();
    let failed = statuses.values().filter(|s| *s == "failed").count();
    assert_eq!((reserved, failed), (10, 190));
    assert_eq!(app.books(&id).await?, (0, 10, 0));

    let events = inventory_events(&app).await?;
    assert_eq!(events.len(), 200, "one event per order");
    for order in &orders {
        let expected = match statuses[&order.to_string()].as_str() {
            "reserved" => "inventory.reserved.v1",
            _ => "inventory.reservation_failed.v1",
        };
        assert_eq!(types_of(&events, *order), [expected]);
    }
    let failure = events
        .iter()
        .find(|r| r.event.event_type == "inventory.reservation_failed.v1")
        .map(|r| r.event.data["short_lines"].clone());
    assert_eq!(
        failure,
        Some(json!([{"product_id": id, "requested": 1, "available": 0}]))
    );
    // Every published snapshot of the product had non-negative stock.
    for record in app.product_events().await? {
        let stock = &record.event.data["stock"];
        assert!(stock["available"].as_i64() >= Some(0), "{stock}");
    }
    Ok(())
}

#[tokio::test]
async fn two_hundred_orders_spread_over_ten_products_are_all_reserved() -> TestResult {
    let app = spawn_app().await;
    let _replica = spawn_replica(&app, |_| {}).await;
    let mut products = Vec::new();
    for n in 0..10 {
        products.push(product(&app, &format!("SPREAD-{n}"), 20).await?);
    }
    let orders: Vec<Uuid> = (0..200).map(|_| Uuid::now_v7()).collect();
    let records = orders
        .iter()
        .enumerate()
        .map(|(n, order)| order_event(*order, created(*order, &[(&products[n % 10], 1)])?))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let started = Instant::now();
    app.produce(ORDER_EVENTS, &records).await?;
    let statuses = settled(&app, &orders).await?;
    let elapsed = started.elapsed();
    eprintln!(
        "200 orders over 10 products settled in {elapsed:?} ({:.0} orders/s)",
        200.0 / elapsed.as_secs_f64()
    );
    assert!(statuses.values().all(|s| s == "reserved"), "{statuses:?}");
    for id in &products {
        assert_eq!(app.books(id).await?, (0, 20, 0));
    }
    Ok(())
}

#[tokio::test]
async fn an_order_with_one_short_line_keeps_nothing_reserved() -> TestResult {
    let app = spawn_app().await;
    let plenty = product(&app, "MULTI-1", 10).await?;
    let scarce = product(&app, "MULTI-2", 2).await?;
    let order = place(&app, &[(&plenty, 3), (&scarce, 5)]).await?;
    status(&app, order, "failed").await?;

    books_reach(&app, &plenty, (10, 0, 0)).await?;
    assert_eq!(app.books(&scarce).await?, (2, 0, 0));
    let events = inventory_events(&app).await?;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(
        events[0].event.event_type,
        "inventory.reservation_failed.v1"
    );
    assert_eq!(events[0].key, order.to_string());
    assert_eq!(
        events[0].event.data,
        json!({"order_id": order, "short_lines": [
            {"product_id": scarce, "requested": 5, "available": 2}
        ]})
    );

    // The rejection that follows has nothing to release.
    let rejected = OrderRejected {
        order_id: order,
        user_id: Uuid::nil(),
        reason: "out_of_stock".into(),
    };
    let unknown = Uuid::now_v7();
    let unknown_paid = order_event(unknown, paid_event(unknown))?;
    app.produce(ORDER_EVENTS, &[order_event(order, rejected)?, unknown_paid])
        .await?;
    // An order for an unknown product fails like a short one.
    let ghost = Uuid::now_v7();
    let ghost_product = Uuid::now_v7().to_string();
    let ghost_order = order_event(ghost, created(ghost, &[(&ghost_product, 1)])?)?;
    app.produce(ORDER_EVENTS, &[ghost_order]).await?;
    status(&app, ghost, "failed").await?;
    status(&app, order, "failed").await?;
    assert_eq!(app.books(&plenty).await?, (10, 0, 0));
    assert_eq!(inventory_events(&app).await?.len(), 2);
    Ok(())
}

#[tokio::test]
async fn a_redelivered_order_is_reserved_once_and_payment_sells_the_units() -> TestResult {
    let app = spawn_app().await;
    let id = product(&app, "REDELIVER-1", 10).await?;
    let order = Uuid::now_v7();
    let event = order_event(order, created(order, &[(&id, 3)])?)?;
    // The same CloudEvent (same id) twice, as after a producer retry or a consumer crash.
    app.produce(ORDER_EVENTS, std::slice::from_ref(&event))
        .await?;
    app.produce(ORDER_EVENTS, &[event]).await?;
    status(&app, order, "reserved").await?;
    assert_eq!(app.books(&id).await?, (7, 3, 0));

    // Same key, same partition: the payment is handled after both copies.
    let paid = order_event(order, paid_event(order))?;
    app.produce(ORDER_EVENTS, &[paid.clone(), paid]).await?;
    status(&app, order, "committed").await?;
    assert_eq!(app.books(&id).await?, (7, 0, 3));

    let events = inventory_events(&app).await?;
    assert_eq!(
        types_of(&events, order),
        ["inventory.reserved.v1", "inventory.committed.v1"]
    );
    assert_eq!(
        events[1].event.data,
        json!({"order_id": order, "lines": [{"product_id": id, "quantity": 3}]})
    );
    // A cancellation after the payment changes nothing.
    let cancelled = OrderCancelled {
        order_id: order,
        user_id: Uuid::nil(),
        reason: "customer_request".into(),
    };
    let later = Uuid::now_v7();
    app.produce(
        ORDER_EVENTS,
        &[
            order_event(order, cancelled)?,
            order_event(later, created(later, &[(&id, 1)])?)?,
        ],
    )
    .await?;
    status(&app, later, "reserved").await?;
    status(&app, order, "committed").await?;
    assert_eq!(app.books(&id).await?, (6, 1, 3));
    Ok(())
}

/// The `find` commands the MongoDB-wire server counted on this test's `reservations`
/// collection (`serverStatus.ferroshop.commands`, every client's).
async fn reservation_reads(app: &TestApp) -> anyhow::Result<i64> {
    let status = app
        .db
        .client()
        .database("admin")
        .run_command(doc! {"serverStatus": 1})
        .await?;
    let commands = status.get_document("ferroshop")?.get_document("commands")?;
    let key = format!("find {}.reservations", app.db.name());
    Ok(match commands.get(&key) {
        Some(mongodb::bson::Bson::Int64(count)) => *count,
        Some(mongodb::bson::Bson::Int32(count)) => i64::from(*count),
        Some(other) => anyhow::bail!("{key}: {other}"),
        None => 0,
    })
}

/// An order this process reserved is sold on `order.paid` without reading its reservation
/// again (the lines and the status are the ones it wrote; a redelivered `order.paid` reads it,
/// see `a_redelivered_order_is_reserved_once_and_payment_sells_the_units`). The relay's timer
/// is off, so only the consumer could read.
#[tokio::test]
async fn payment_sells_an_order_reserved_here_without_reading_its_reservation() -> TestResult {
    let app = spawn_app_with(|config| {
        config.relay_poll_interval = Duration::from_secs(3_600);
    })
    .await;
    let id = product(&app, "SOLD-HERE-1", 10).await?;
    let order = Uuid::now_v7();
    app.produce(
        ORDER_EVENTS,
        &[order_event(order, created(order, &[(&id, 3)])?)?],
    )
    .await?;
    status(&app, order, "reserved").await?;
    let reads_before = reservation_reads(&app).await?;

    app.produce(ORDER_EVENTS, &[order_event(order, paid_event(order))?])
        .await?;
    // The books, not the reservation: the test's own reads would count.
    books_reach(&app, &id, (7, 0, 3)).await?;
    assert_eq!(reservation_reads(&app).await? - reads_before, 0);

    Ok(())
}

#[tokio::test]
async fn a_cancelled_order_releases_its_units_once() -> TestResult {
    let app = spawn_app().await;
    let first = product(&app, "CANCEL-1", 5).await?;
    let second = product(&app, "CANCEL-2", 5).await?;
    let order = place(&app, &[(&first, 2), (&second, 5)]).await?;
    status(&app, order, "reserved").await?;
    assert_eq!(app.books(&first).await?, (3, 2, 0));
    assert_eq!(app.books(&second).await?, (0, 5, 0));

    let cancelled = order_event(
        order,
        OrderCancelled {
            order_id: order,
            user_id: Uuid::nil(),
            reason: "payment_timeout".into(),
        },
    )?;
    let late_payment = order_event(order, paid_event(order))?;
    app.produce(ORDER_EVENTS, &[cancelled.clone(), cancelled, late_payment])
        .await?;
    status(&app, order, "released").await?;
    let events = inventory_events(&app).await?;
    assert_eq!(
        types_of(&events, order),
        ["inventory.reserved.v1", "inventory.released.v1"]
    );
    assert_eq!(app.books(&first).await?, (5, 0, 0));
    assert_eq!(app.books(&second).await?, (5, 0, 0));
    Ok(())
}

#[tokio::test]
async fn malformed_order_events_are_dead_lettered_and_the_next_one_is_handled() -> TestResult {
    let app = spawn_app().await;
    let id = product(&app, "POISON-1", 5).await?;
    let order = Uuid::now_v7();
    let key = order.to_string();
    let bad_data = json!({
        "specversion": "1.0", "id": Uuid::now_v7(), "source": "/order-service",
        "type": "order.created.v1", "subject": key, "time": "2026-01-01T00:00:00Z",
        "data": {"order_id": "not-a-uuid", "items": []},
    });
    let zero_quantity = order_event(order, created(order, &[(&id, 0)])?)?;
    app.produce(
        ORDER_EVENTS,
        &[
            (key.clone(), b"{ not json".to_vec()),
            (key.clone(), serde_json::to_vec(&bad_data)?),
            zero_quantity,
        ],
    )
    .await?;
    // Same key, same partition: this one comes after the poison.
    let good = Uuid::now_v7();
    let mut next = order_event(good, created(good, &[(&id, 1)])?)?;
    next.0 = key;
    app.produce(ORDER_EVENTS, &[next]).await?;
    status(&app, good, "reserved").await?;
    assert_eq!(app.books(&id).await?, (4, 1, 0));

    let dead = messaging::testing::read_topic(
        &crate::helpers::brokers(),
        &format!("{}.dlt", app.topic(ORDER_EVENTS)),
    )
    .await?;
    assert_eq!(dead.len(), 3, "{dead:?}");
    assert_eq!(dead[0].payload, b"{ not json");
    assert!(
        dead[1].headers["dlt.reason"].contains("order.created.v1"),
        "{:?}",
        dead[1].headers
    );
    assert!(
        dead[2].headers["dlt.reason"].contains("quantity 0"),
        "{:?}",
        dead[2].headers
    );
    Ok(())
}

/// What a crash half-way through `order.created` leaves: the order `reserving`, its first
/// line's product (`lines[0]`, the lowest id) already holding the units. The redelivered
/// record finishes the job once.
async fn crashed_after_first_line(
    app: &TestApp,
    order: Uuid,
    lines: &[(&str, i64)],
) -> anyhow::Result<(String, Vec<u8>)> {
    let event = created(order, lines)?;
    let stock_lines = product_service::domain::reservation::lines(&event.items)
        .map_err(|reason| anyhow::anyhow!(reason))?;
    Reservations::new(&app.db)
        .begin(&order, &stock_lines)
        .await?;
    let (first, quantity) = lines[0];
    anyhow::ensure!(
        stock_lines[0].product_id.to_string() == first,
        "lines[0] sorts first"
    );
    app.db
        .collection::<Document>("products")
        .update_one(
            doc! {"_id": first},
            doc! {
                "$inc": {"stock.available": -quantity, "stock.reserved": quantity, "version": 1},
                "$set": {format!("reservations.{order}"): quantity},
            },
        )
        .await?;
    order_event(order, event)
}

#[tokio::test]
async fn a_reservation_interrupted_half_way_converges_on_redelivery() -> TestResult {
    let app = spawn_app_with(|config| config.run_inventory_consumer = false).await;
    let mut ids = Vec::new();
    for (n, stock) in [10, 10, 1].into_iter().enumerate() {
        ids.push(product(&app, &format!("CRASH-{n}"), stock).await?);
    }
    // Ids are UUID v7: lines are reserved in this order.
    let (a, b, scarce) = (&ids[0], &ids[1], &ids[2]);
    let will_succeed = Uuid::now_v7();
    let will_fail = Uuid::now_v7();
    let first = crashed_after_first_line(&app, will_succeed, &[(a, 2), (b, 3)]).await?;
    let second = crashed_after_first_line(&app, will_fail, &[(a, 4), (scarce, 5)]).await?;
    // This one crashed after it was marked failed, before its units went back.
    let failed_earlier = Uuid::now_v7();
    let third = crashed_after_first_line(&app, failed_earlier, &[(a, 1), (scarce, 5)]).await?;
    app.db
        .collection::<Document>("reservations")
        .update_one(
            doc! {"_id": failed_earlier.to_string()},
            doc! {"$set": {"status": "failed"}},
        )
        .await?;
    assert_eq!(app.books(a).await?, (3, 7, 0));

    // The process comes back (a replica with the consumer) and the records are redelivered.
    let _restarted = spawn_replica(&app, |_| {}).await;
    app.produce(ORDER_EVENTS, &[first, second, third]).await?;
    status(&app, will_succeed, "reserved").await?;
    status(&app, will_fail, "failed").await?;
    books_reach(&app, a, (8, 2, 0)).await?;
    assert_eq!(app.books(b).await?, (7, 3, 0));
    assert_eq!(app.books(scarce).await?, (1, 0, 0));
    let events = inventory_events(&app).await?;
    assert_eq!(types_of(&events, will_succeed), ["inventory.reserved.v1"]);
    assert_eq!(
        types_of(&events, will_fail),
        ["inventory.reservation_failed.v1"]
    );
    assert!(
        types_of(&events, failed_earlier).is_empty(),
        "said before the crash"
    );
    Ok(())
}

/// Deploys a process of one `restock` task (the step of `refund.bpmn`) under a unique key.
async fn deploy_restock_step(engine: &workflow::EngineClient) -> anyhow::Result<String> {
    Ok(workflow::test_support::deploy_one_task_process(
        engine,
        "test-restock",
        "restock",
        product_service::restock::TOPIC,
    )
    .await?)
}

/// Runs the restock step for `order` as refund request `request`; returns the step's
/// `restocked` output once the process completed.
async fn run_restock(
    app: &TestApp,
    engine: &workflow::EngineClient,
    key: &str,
    order: Uuid,
    request: Uuid,
) -> anyhow::Result<serde_json::Value> {
    let instance = engine
        .start_process(workflow::StartProcess {
            key,
            business_key: &order.to_string(),
            variables: workflow::Variables::new()
                .string(
                    workflow::NAMESPACE_VARIABLE,
                    workflow::default_namespace(&app.topic_prefix),
                )
                .string("orderId", order.to_string())
                .string("requestId", request.to_string()),
        })
        .await?;
    eventually(DEADLINE, || async {
        let state = engine.process_state(&instance.id).await?;
        anyhow::ensure!(state == "COMPLETED", "process is {state}");
        Ok(())
    })
    .await?;
    Ok(engine
        .historic_variable(&instance.id, "restocked")
        .await?
        .unwrap_or_default())
}

#[tokio::test]
async fn a_refund_whose_goods_came_back_restocks_the_sold_units_once() -> TestResult {
    let app = spawn_app_with(|config| {
        config.workflow_engine_url = Some(testkit::stack::workflow_engine_url());
    })
    .await;
    let engine = workflow::EngineClient::new(&testkit::stack::workflow_engine_url())?;
    let key = deploy_restock_step(&engine).await?;
    let mug = product(&app, "RESTOCK-1", 10).await?;
    let lamp = product(&app, "RESTOCK-2", 4).await?;
    let order = place(&app, &[(&mug, 3), (&lamp, 1)]).await?;
    status(&app, order, "reserved").await?;
    app.produce(ORDER_EVENTS, &[order_event(order, paid_event(order))?])
        .await?;
    status(&app, order, "committed").await?;
    assert_eq!(app.books(&mug).await?, (7, 0, 3));

    // The step twice for the same request (a retry after a lost completion, or a second
    // worker after a lock expired): the goods come back once.
    let request = Uuid::now_v7();
    for _ in 0..2 {
        assert_eq!(
            run_restock(&app, &engine, &key, order, request).await?,
            json!(true)
        );
    }
    status(&app, order, "restocked").await?;
    assert_eq!(app.books(&mug).await?, (10, 0, 0));
    assert_eq!(app.books(&lamp).await?, (4, 0, 0));
    let events = inventory_events(&app).await?;
    assert_eq!(
        types_of(&events, order),
        [
            "inventory.reserved.v1",
            "inventory.committed.v1",
            "inventory.restocked.v1"
        ]
    );
    let restocked = events
        .iter()
        .find(|r| r.event.event_type == "inventory.restocked.v1")
        .ok_or_else(|| anyhow::anyhow!("no inventory.restocked"))?;
    assert_eq!(restocked.event.data["refund_request_id"], json!(request));
    assert_eq!(
        restocked.event.data["lines"].as_array().map(Vec::len),
        Some(2)
    );

    // An order that sold nothing here has nothing to return; the step still completes.
    let unpaid = place(&app, &[(&mug, 1)]).await?;
    status(&app, unpaid, "reserved").await?;
    assert_eq!(
        run_restock(&app, &engine, &key, unpaid, Uuid::now_v7()).await?,
        json!(false)
    );
    assert_eq!(app.books(&mug).await?, (9, 1, 0));
    Ok(())
}

/// The stock writer plans a round on the product as its last round wrote it; a change made
/// elsewhere since (here an admin's stock adjustment, which another replica's writer would
/// make the same way) must still be what the next reservation is decided on: units taken
/// away are not reserved, and the books add up.
#[tokio::test]
async fn a_change_made_elsewhere_since_the_last_reservation_is_what_the_next_one_sees() -> TestResult
{
    let app = spawn_app().await;
    let id = product(&app, "KEPT-1", 10).await?;
    let first = place(&app, &[(&id, 2)]).await?;
    status(&app, first, "reserved").await?;
    assert_eq!(app.books(&id).await?, (8, 2, 0));

    // Outside the writer: 7 of the 8 available units leave in a stocktake.
    let adjusted = app.adjust(&id, -7, "stocktake").await?;
    assert_eq!(adjusted.status, StatusCode::OK, "{adjusted:?}");
    assert_eq!(app.books(&id).await?, (1, 2, 0));

    // Two units wanted, one there: refused, nothing taken.
    let second = place(&app, &[(&id, 2)]).await?;
    status(&app, second, "failed").await?;
    assert_eq!(app.books(&id).await?, (1, 2, 0));
    // One unit: reserved from what the stocktake left.
    let third = place(&app, &[(&id, 1)]).await?;
    status(&app, third, "reserved").await?;
    assert_eq!(app.books(&id).await?, (0, 3, 0));

    // A delivery elsewhere: the writer's own last copy shows none available, and an order
    // decided on it would be refused without a write to catch the mistake.
    let delivered = app.adjust(&id, 5, "delivery").await?;
    assert_eq!(delivered.status, StatusCode::OK, "{delivered:?}");
    let fourth = place(&app, &[(&id, 3)]).await?;
    status(&app, fourth, "reserved").await?;
    assert_eq!(app.books(&id).await?, (2, 6, 0));

    // The first order's payment sells its units on the product as it is now.
    app.produce(ORDER_EVENTS, &[order_event(first, paid_event(first))?])
        .await?;
    status(&app, first, "committed").await?;
    assert_eq!(app.books(&id).await?, (2, 4, 2));
    Ok(())
}

/// Stock snapshots are marked replaceable and leave as one record: three reservations written
/// while no relay runs wait in the product's document with its creation event, and one relay
/// round publishes the creation (a catalog write, never replaced) and only the latest
/// snapshot, which carries the final stock and version. Nothing stays pending.
#[tokio::test]
async fn stock_snapshots_waiting_together_leave_as_the_latest_one() -> TestResult {
    let app = spawn_app_with(|config| config.run_outbox_relay = false).await;
    let id = product(&app, "COALESCE-1", 10).await?;
    for _ in 0..3 {
        let order = Uuid::now_v7();
        app.produce(
            ORDER_EVENTS,
            &[order_event(order, created(order, &[(&id, 1)])?)?],
        )
        .await?;
        settled(&app, &[order]).await?;
    }
    let document = app.document(&id).await?;
    let marks: Vec<bool> = document
        .get_array("pending_events")?
        .iter()
        .map(|event| {
            event
                .as_document()
                .and_then(|event| event.get_bool("replaceable").ok())
                .unwrap_or(false)
        })
        .collect();
    assert_eq!(
        marks,
        [false, true, true, true],
        "the creation, then three rounds"
    );

    let relay = OutboxRelay::new(
        &app.db,
        outbox::PRODUCTS,
        KafkaConfig::new(testkit::stack::kafka_brokers()).producer()?,
        RelayWake::default(),
    );
    assert_eq!(relay.publish_batch().await?, 1);
    let events: Vec<Record> = app
        .product_events()
        .await?
        .into_iter()
        .filter(|record| record.event.subject == id)
        .collect();
    let types: Vec<&str> = events
        .iter()
        .map(|record| record.event.event_type.as_str())
        .collect();
    assert_eq!(types, ["product.created.v1", "product.updated.v1"]);
    let latest = &events
        .last()
        .ok_or_else(|| anyhow::anyhow!("no events"))?
        .event
        .data;
    assert_eq!(latest["stock"]["reserved"], 3);
    assert_eq!(latest["version"].as_i64(), document.get_i64("version").ok());
    assert_eq!(app.pending_events(&id).await?, 0);
    Ok(())
}
