//! The orders API: pricing from the replica, validation, idempotent placement, ownership,
//! listing, and the owner's cancel.

use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{TestResult, address, spawn_stack};

#[tokio::test]
async fn an_order_is_priced_from_the_replica_and_reserved() -> TestResult {
    let stack = spawn_stack().await;
    let kettle = stack.product(10, 2_999, "EUR").await?;
    let teapot = stack.product(10, 1_550, "EUR").await?;
    let customer = stack.customer();

    let reply = stack.place(&customer, &[(kettle, 2), (teapot, 1)]).await?;
    assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
    assert_eq!(reply.body["status"], "PENDING");
    assert_eq!(reply.body["user_id"], json!(customer.id));
    assert_eq!(
        reply.body["total"],
        json!({"amount": 2 * 2_999 + 1_550, "currency": "EUR"})
    );
    assert_eq!(reply.body["items"][0]["unit_price"]["amount"], 2_999);
    assert_eq!(reply.body["items"][0]["line_total"]["amount"], 5_998);
    assert_eq!(reply.body["shipping_address"], address());
    let id: Uuid = reply.body["id"].as_str().unwrap_or_default().parse()?;

    let order = stack
        .wait_for_status(&customer, id, "AWAITING_PAYMENT")
        .await?;
    assert!(order["expires_at"].is_string());
    assert_eq!(stack.stock(kettle).await?, (8, 2, 0));
    assert_eq!(
        stack.order_event_types(id, 2).await?,
        ["order.created.v1", "order.awaiting_payment.v1"]
    );
    Ok(())
}

#[tokio::test]
async fn client_prices_and_unknown_fields_are_refused() -> TestResult {
    let stack = spawn_stack().await;
    let kettle = stack.product(10, 2_999, "EUR").await?;
    let customer = stack.customer();
    let reply = stack
        .send(
            stack
                .client
                .post(format!("{}/api/orders", stack.orders))
                .bearer_auth(&customer.token)
                .json(&json!({
                    "items": [{"product_id": kettle, "quantity": 1, "unit_price": 1}],
                    "shipping_address": address(),
                })),
        )
        .await?;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{reply:?}");
    assert!(
        reply.body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("unit_price"),
        "{reply:?}"
    );
    Ok(())
}

#[tokio::test]
async fn bad_baskets_get_422_naming_every_field() -> TestResult {
    let stack = spawn_stack().await;
    let euro = stack.product(10, 1_000, "EUR").await?;
    let dollar = stack.product(10, 1_000, "USD").await?;
    let withdrawn = stack.product(10, 1_000, "EUR").await?;
    let reply = stack
        .send(
            stack
                .client
                .delete(format!("{}/api/products/{withdrawn}", stack.products))
                .bearer_auth(&stack.admin_token),
        )
        .await?;
    assert!(reply.status.is_success(), "{reply:?}");
    let customer = stack.customer();
    // The deletion reaches the replica asynchronously.
    let probe = stack.pool.clone();
    crate::helpers::eventually(crate::helpers::DEADLINE, move || {
        let probe = probe.clone();
        async move {
            let active: bool = sqlx::query_scalar("SELECT active FROM products WHERE id = $1")
                .bind(withdrawn)
                .fetch_one(&probe)
                .await?;
            anyhow::ensure!(!active, "still active in the replica");
            Ok(())
        }
    })
    .await?;

    let unknown = Uuid::now_v7();
    let reply = stack
        .place(
            &customer,
            &[
                (euro, 1),
                (unknown, 1),
                (withdrawn, 1),
                (dollar, 1),
                (euro, 0),
            ],
        )
        .await?;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{reply:?}");
    assert_eq!(
        reply.fields(),
        [
            "items[4].quantity",
            "items[1].product_id",
            "items[2].product_id",
            "items[3].product_id",
        ]
    );
    let reply = stack.place(&customer, &[]).await?;
    assert_eq!(reply.fields(), ["items"]);
    let reply = stack.place(&customer, &[(euro, 101)]).await?;
    assert_eq!(reply.fields(), ["items[0].quantity"]);

    let mut bad_address = address();
    bad_address["country"] = json!("Britain");
    bad_address["city"] = json!("  ");
    let reply = stack
        .send(
            stack
                .client
                .post(format!("{}/api/orders", stack.orders))
                .bearer_auth(&customer.token)
                .json(&json!({"items": [{"product_id": euro, "quantity": 1}], "shipping_address": bad_address})),
        )
        .await?;
    assert_eq!(
        reply.fields(),
        ["shipping_address.city", "shipping_address.country"],
        "{reply:?}"
    );
    // Nothing was stored by any of these.
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM orders")
        .fetch_one(&stack.pool)
        .await?;
    assert_eq!(stored, 0);
    Ok(())
}

#[tokio::test]
async fn malformed_requests_and_missing_tokens_get_problems() -> TestResult {
    let stack = spawn_stack().await;
    let customer = stack.customer();
    let url = format!("{}/api/orders", stack.orders);
    let reply = stack.send(stack.client.get(&url)).await?;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    let reply = stack
        .send(
            stack
                .client
                .post(&url)
                .bearer_auth(&customer.token)
                .header("content-type", "application/json")
                .body("{\"items\": ["),
        )
        .await?;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{reply:?}");
    let reply = stack
        .send(
            stack
                .client
                .post(&url)
                .bearer_auth(&customer.token)
                .json(&json!({"items": [{"product_id": "nope", "quantity": 1}], "shipping_address": address()})),
        )
        .await?;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{reply:?}");
    let reply = stack
        .send(
            stack
                .client
                .get(format!("{url}/not-a-uuid"))
                .bearer_auth(&customer.token),
        )
        .await?;
    assert!(reply.status.is_client_error(), "{reply:?}");
    assert_eq!(reply.body["status"], reply.status.as_u16());
    let reply = stack
        .send(
            stack
                .client
                .get(format!("{url}?limit=0"))
                .bearer_auth(&customer.token),
        )
        .await?;
    assert_eq!(reply.fields(), ["limit"]);
    let reply = stack
        .send(
            stack
                .client
                .get(format!("{url}?cursor=xyz"))
                .bearer_auth(&customer.token),
        )
        .await?;
    assert_eq!(reply.fields(), ["cursor"]);
    Ok(())
}

#[tokio::test]
async fn a_repeated_idempotency_key_places_one_order() -> TestResult {
    let stack = spawn_stack().await;
    let kettle = stack.product(10, 2_999, "EUR").await?;
    let customer = stack.customer();
    let body =
        json!({"items": [{"product_id": kettle, "quantity": 1}], "shipping_address": address()});
    let post = |body: &serde_json::Value| {
        stack.send(
            stack
                .client
                .post(format!("{}/api/orders", stack.orders))
                .bearer_auth(&customer.token)
                .header("Idempotency-Key", "click-1")
                .json(body),
        )
    };
    // Concurrent double click.
    let (first, second) = tokio::join!(post(&body), post(&body));
    let (first, second) = (first?, second?);
    let mut statuses = [first.status.as_u16(), second.status.as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 201], "{first:?} {second:?}");
    assert_eq!(first.body["id"], second.body["id"]);
    let mut other = body.clone();
    other["items"][0]["quantity"] = json!(2);
    let reply = post(&other).await?;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{reply:?}");
    assert_eq!(reply.fields(), ["Idempotency-Key"]);

    let id: Uuid = first.body["id"].as_str().unwrap_or_default().parse()?;
    stack
        .wait_for_status(&customer, id, "AWAITING_PAYMENT")
        .await?;
    assert_eq!(stack.stock(kettle).await?, (9, 1, 0));
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM orders")
        .fetch_one(&stack.pool)
        .await?;
    assert_eq!(stored, 1);
    Ok(())
}

#[tokio::test]
async fn customers_see_only_their_own_orders_and_pages_walk_them_all() -> TestResult {
    let stack = spawn_stack().await;
    let kettle = stack.product(100, 500, "EUR").await?;
    let (alice, bob) = (stack.customer(), stack.customer());
    let mut placed = Vec::new();
    for _ in 0..5 {
        placed.push(stack.placed(&alice, &[(kettle, 1)]).await?);
    }
    let bobs = stack.placed(&bob, &[(kettle, 1)]).await?;

    let reply = stack.order(&bob, placed[0]).await?;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{reply:?}");
    let reply = stack.cancel(&bob, placed[0]).await?;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{reply:?}");
    assert_eq!(stack.order(&bob, bobs).await?.status, StatusCode::OK);

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{}/api/orders?limit=2", stack.orders);
        if let Some(cursor) = &cursor {
            url.push_str(&format!("&cursor={cursor}"));
        }
        let reply = stack
            .send(stack.client.get(url).bearer_auth(&alice.token))
            .await?;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        for item in reply.body["items"].as_array().into_iter().flatten() {
            seen.push(item["id"].as_str().unwrap_or_default().parse::<Uuid>()?);
        }
        match reply.body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    placed.reverse();
    assert_eq!(seen, placed, "newest first, each once, none of Bob's");
    Ok(())
}

/// The open-order limit holds for one customer's concurrent requests: the lock taken with the
/// placement's `BEGIN` serialises them, so exactly `max` get in. With the limit off, nothing is
/// counted or locked and every request is placed.
#[tokio::test]
async fn concurrent_orders_of_one_customer_pass_the_open_order_limit_exactly() -> TestResult {
    const MAX: usize = 3;
    const SENT: usize = 12;
    let stack = crate::helpers::spawn_stack_with(|config| {
        config.max_open_orders_per_user = MAX as u32;
    })
    .await;
    let kettle = stack.product(100, 2_999, "EUR").await?;
    let line = [(kettle, 1)];
    let customer = stack.customer();
    let replies = futures::future::join_all((0..SENT).map(|_| stack.place(&customer, &line))).await;
    let mut placed = 0;
    for reply in replies {
        let reply = reply?;
        match reply.status {
            StatusCode::CREATED => placed += 1,
            StatusCode::CONFLICT => assert_eq!(
                reply.body["type"], "https://ferroshop.dev/problems/too-many-open-orders",
                "{reply:?}"
            ),
            _ => anyhow::bail!("unexpected answer: {reply:?}"),
        }
    }
    assert_eq!(placed, MAX);
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM orders WHERE user_id = $1")
        .bind(customer.id)
        .fetch_one(&stack.pool)
        .await?;
    assert_eq!(stored, MAX as i64);

    // The limit off, on a replica of the same stack: another customer's 12 all get in.
    let unlimited = stack
        .replica(|config| config.max_open_orders_per_user = 0)
        .await;
    let customer = stack.customer();
    let replies = futures::future::join_all((0..SENT).map(|_| {
        stack.send(
            stack
                .client
                .post(format!("{unlimited}/api/orders"))
                .bearer_auth(&customer.token)
                .json(&json!({
                    "items": [{"product_id": kettle, "quantity": 1}],
                    "shipping_address": address(),
                })),
        )
    }))
    .await;
    for reply in replies {
        let reply = reply?;
        assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
    }
    Ok(())
}

#[tokio::test]
async fn the_owner_cancels_before_payment_and_the_stock_returns() -> TestResult {
    let stack = spawn_stack().await;
    let kettle = stack.product(10, 2_999, "EUR").await?;
    let customer = stack.customer();
    let id = stack.placed(&customer, &[(kettle, 3)]).await?;
    stack
        .wait_for_status(&customer, id, "AWAITING_PAYMENT")
        .await?;
    assert_eq!(stack.stock(kettle).await?, (7, 3, 0));

    let reply = stack.cancel(&customer, id).await?;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(reply.body["status"], "CANCELLED");
    assert_eq!(reply.body["status_reason"], "customer_request");
    let again = stack.cancel(&customer, id).await?;
    assert_eq!(again.status, StatusCode::CONFLICT, "{again:?}");

    crate::helpers::eventually(crate::helpers::DEADLINE, || async {
        let stock = stack.stock(kettle).await?;
        anyhow::ensure!(stock == (10, 0, 0), "stock {stock:?}");
        Ok(())
    })
    .await?;
    assert_eq!(
        stack.order_event_types(id, 3).await?,
        [
            "order.created.v1",
            "order.awaiting_payment.v1",
            "order.cancelled.v1"
        ]
    );
    Ok(())
}

#[tokio::test]
async fn an_order_cancelled_while_pending_still_releases_what_gets_reserved() -> TestResult {
    let stack = spawn_stack().await;
    let kettle = stack.product(10, 2_999, "EUR").await?;
    let customer = stack.customer();
    let id = stack.placed(&customer, &[(kettle, 4)]).await?;
    // Usually before product-service has answered.
    let reply = stack.cancel(&customer, id).await?;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    // product-service handles order.created before order.cancelled (same key, same
    // partition): it reserves, then releases.
    let types = stack.inventory_event_types(id, 2).await?;
    assert_eq!(types, ["inventory.reserved.v1", "inventory.released.v1"]);
    assert_eq!(stack.stock(kettle).await?, (10, 0, 0));
    let order = stack.order(&customer, id).await?;
    assert_eq!(order.body["status"], "CANCELLED");
    Ok(())
}

#[tokio::test]
async fn admins_list_every_order_by_status_and_customers_are_refused() -> TestResult {
    let stack = spawn_stack().await;
    let kettle = stack.product(100, 500, "EUR").await?;
    let (alice, bob) = (stack.customer(), stack.customer());
    let cancelled = stack.placed(&alice, &[(kettle, 1)]).await?;
    stack
        .wait_for_status(&alice, cancelled, "AWAITING_PAYMENT")
        .await?;
    assert_eq!(
        stack.cancel(&alice, cancelled).await?.status,
        StatusCode::OK
    );
    let awaiting = stack.placed(&bob, &[(kettle, 1)]).await?;
    stack
        .wait_for_status(&bob, awaiting, "AWAITING_PAYMENT")
        .await?;

    let list = |query: &str, token: &str| {
        stack.send(
            stack
                .client
                .get(format!("{}/api/admin/orders{query}", stack.orders))
                .bearer_auth(token),
        )
    };
    let ids = |reply: &crate::helpers::Reply| -> Vec<String> {
        reply.body["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|item| item["id"].as_str().map(str::to_owned))
            .collect()
    };

    let all = list("", &stack.admin_token).await?;
    assert_eq!(all.status, StatusCode::OK, "{all:?}");
    assert_eq!(ids(&all), [awaiting.to_string(), cancelled.to_string()]);

    let only_cancelled = list("?status=CANCELLED", &stack.admin_token).await?;
    assert_eq!(ids(&only_cancelled), [cancelled.to_string()]);
    assert_eq!(only_cancelled.body["items"][0]["status"], "CANCELLED");

    let first_page = list("?limit=1", &stack.admin_token).await?;
    assert_eq!(ids(&first_page), [awaiting.to_string()]);
    let cursor = first_page.body["next_cursor"].as_str().unwrap_or_default();
    let second_page = list(&format!("?limit=1&cursor={cursor}"), &stack.admin_token).await?;
    assert_eq!(ids(&second_page), [cancelled.to_string()]);
    assert!(second_page.body.get("next_cursor").is_none());

    let bad = list("?status=SHIPPED", &stack.admin_token).await?;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad:?}");
    assert_eq!(bad.fields(), ["status"]);
    let bad_limit = list("?limit=0", &stack.admin_token).await?;
    assert_eq!(bad_limit.fields(), ["limit"]);

    let refused = list("", &alice.token).await?;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{refused:?}");
    let anonymous = stack
        .send(
            stack
                .client
                .get(format!("{}/api/admin/orders", stack.orders)),
        )
        .await?;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED, "{anonymous:?}");
    Ok(())
}

/// Admission control: orders that wait too long for their reservation make new orders answer
/// 503 at once, placing nothing, until the backlog is served. Here no relay publishes
/// `order.created` at first, so every placed order stays `PENDING`; a replica with its relay
/// running then serves them.
#[tokio::test]
async fn while_orders_wait_too_long_new_ones_are_refused_until_the_backlog_is_served() -> TestResult
{
    use order_service::admission::{AdmissionSettings, BUSY};
    use std::time::Duration;

    let admission = AdmissionSettings {
        max_wait: Duration::from_millis(200),
        max_late: 2,
        check_interval: Duration::from_millis(50),
        max_backlog: AdmissionSettings::DEFAULT_MAX_BACKLOG,
    };
    let stack = crate::helpers::spawn_stack_with(|config| {
        config.run_outbox_relay = false;
        config.admission = admission;
    })
    .await;
    let kettle = stack.product(100, 2_999, "EUR").await?;
    for _ in 0..2 {
        stack.placed(&stack.customer(), &[(kettle, 1)]).await?;
    }

    // Once two orders have waited 200 ms, placing is refused, and the refusal places nothing.
    let refused = std::sync::Arc::new(tokio::sync::Mutex::new(None));
    testkit::eventually(crate::helpers::DEADLINE, || {
        let (stack, refused) = (&stack, refused.clone());
        async move {
            let customer = stack.customer();
            let reply = stack.place(&customer, &[(kettle, 1)]).await?;
            anyhow::ensure!(
                reply.status == StatusCode::SERVICE_UNAVAILABLE,
                "not refused yet: {reply:?}"
            );
            *refused.lock().await = Some((customer, reply));
            Ok(())
        }
    })
    .await?;
    let Some((customer, reply)) = refused.lock().await.take() else {
        anyhow::bail!("no refusal recorded");
    };
    assert_eq!(reply.body["type"], BUSY, "{reply:?}");
    assert_eq!(reply.body["status"], 503, "{reply:?}");
    assert_eq!(
        reply
            .headers
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1"),
        "{reply:?}"
    );
    let mine = stack
        .send(
            stack
                .client
                .get(format!("{}/api/orders", stack.orders))
                .bearer_auth(&customer.token),
        )
        .await?;
    assert_eq!(mine.status, StatusCode::OK, "{mine:?}");
    assert_eq!(mine.body["items"], json!([]), "{mine:?}");

    // A replica whose relay runs publishes the waiting orders; once they are reserved, orders
    // are taken again.
    let _relaying = stack.replica(|config| config.admission = admission).await;
    eventually_taken(&stack, kettle).await?;
    Ok(())
}

/// Admission control's second signal: a consumer group on the saga's path that takes
/// `order.events` slower than orders come makes new orders answer 503 at once, though no order
/// is late for its reservation (that signal is off here); once the group has caught up, orders
/// are taken again. The slow group is a real consumer whose handler takes 100 ms a record.
#[tokio::test]
async fn while_a_watched_consumer_group_falls_behind_new_orders_are_refused_until_it_catches_up()
-> TestResult {
    use messaging::{
        ConsumerSettings, Delivery, EventConsumer, Handler, HandlerError, KafkaConfig,
    };
    use order_service::admission::{AdmissionSettings, BUSY};
    use std::time::Duration;

    struct Slow;
    impl Handler for Slow {
        async fn handle(&self, _delivery: &Delivery) -> Result<(), HandlerError> {
            tokio::time::sleep(Duration::from_millis(100)).await;
            Ok(())
        }
    }

    let stack = crate::helpers::spawn_stack_with(|config| {
        config.admission = AdmissionSettings {
            max_wait: Duration::from_secs(1),
            max_late: 0,
            check_interval: Duration::from_millis(50),
            max_backlog: Duration::from_secs(1),
        };
        config.admission_watch_groups = vec!["slow-payments".into()];
    })
    .await;
    let kettle = stack.product(1_000, 2_999, "EUR").await?;
    let slow_group = EventConsumer::new(
        &KafkaConfig::new(testkit::stack::kafka_brokers()),
        ConsumerSettings::new(
            format!("{}slow-payments", stack.topic_prefix),
            vec![format!("{}order.events", stack.topic_prefix)],
        ),
    )?;
    let stop = tokio_util::sync::CancellationToken::new();
    let consuming = tokio::spawn(slow_group.run(Slow, stop.clone()));

    // Orders (and their saga's events) arrive faster than 10 records a second are taken.
    let refused = std::sync::Arc::new(tokio::sync::Mutex::new(None));
    testkit::eventually(crate::helpers::DEADLINE, || {
        let (stack, refused) = (&stack, refused.clone());
        async move {
            for _ in 0..5 {
                let reply = stack.place(&stack.customer(), &[(kettle, 1)]).await?;
                if reply.status == StatusCode::SERVICE_UNAVAILABLE {
                    *refused.lock().await = Some(reply);
                    return Ok(());
                }
                anyhow::ensure!(reply.status == StatusCode::CREATED, "{reply:?}");
            }
            anyhow::bail!("not refused yet")
        }
    })
    .await?;
    let Some(reply) = refused.lock().await.take() else {
        anyhow::bail!("no refusal recorded");
    };
    assert_eq!(reply.body["type"], BUSY, "{reply:?}");
    assert!(
        reply.body["detail"]
            .as_str()
            .is_some_and(|detail| detail.contains("ms behind")),
        "{reply:?}"
    );

    // Refused orders add nothing; the group works through its backlog and orders are taken
    // again.
    eventually_taken(&stack, kettle).await?;
    stop.cancel();
    consuming.await?;
    Ok(())
}

/// The product replica keeps names, prices and whether a product is sold; the snapshots of
/// stock changes (most of `product.events`) leave its row alone, and a later change of what it
/// keeps still applies after them while an older snapshot redelivered does not.
#[tokio::test]
async fn the_replica_skips_stock_only_snapshots_and_still_applies_later_changes() -> TestResult {
    use order_service::store::products::apply_snapshot;
    let stack = spawn_stack().await;
    let mut conn = stack.pool.acquire().await?;
    let id = Uuid::now_v7();
    let snapshot = |version: i64, amount: i64, available: i64| {
        serde_json::from_value::<contracts::product::ProductSnapshot>(json!({
            "id": id, "sku": "REPLICA-1", "name": "Kettle", "description": "",
            "category": "kitchen", "tags": [], "price": {"amount": amount, "currency": "EUR"},
            "specs": {}, "images": [],
            "stock": {"available": available, "reserved": 10 - available, "sold": 0},
            "active": true, "version": version,
            "created_at": "2026-12-01T00:00:00Z", "updated_at": "2026-12-01T00:00:00Z",
        }))
    };
    let stored = |pool: sqlx::PgPool| async move {
        sqlx::query_as::<_, (i64, i64, bool)>(
            "SELECT amount, version, active FROM products WHERE id = $1",
        )
        .bind(id)
        .fetch_one(&pool)
        .await
    };

    assert!(apply_snapshot(&mut conn, &snapshot(1, 1_000, 10)?, false).await?);
    // Two reservations: stock only.
    assert!(!apply_snapshot(&mut conn, &snapshot(2, 1_000, 9)?, false).await?);
    assert!(!apply_snapshot(&mut conn, &snapshot(3, 1_000, 8)?, false).await?);
    assert_eq!(stored(stack.pool.clone()).await?, (1_000, 1, true));
    // A new price after them applies, though the stored version is still the first.
    assert!(apply_snapshot(&mut conn, &snapshot(4, 1_200, 8)?, false).await?);
    assert_eq!(stored(stack.pool.clone()).await?, (1_200, 4, true));
    // Redelivered older snapshots change nothing back.
    assert!(!apply_snapshot(&mut conn, &snapshot(2, 1_000, 9)?, false).await?);
    assert!(!apply_snapshot(&mut conn, &snapshot(4, 1_200, 8)?, false).await?);
    assert_eq!(stored(stack.pool.clone()).await?, (1_200, 4, true));
    // A deletion with nothing else changed applies.
    assert!(apply_snapshot(&mut conn, &snapshot(5, 1_200, 8)?, true).await?);
    assert_eq!(stored(stack.pool.clone()).await?, (1_200, 5, false));
    Ok(())
}

/// Waits until an order for one unit of `product` is taken again after refusals.
async fn eventually_taken(stack: &crate::helpers::Stack, product: Uuid) -> TestResult {
    testkit::eventually(crate::helpers::DEADLINE, || async {
        let reply = stack.place(&stack.customer(), &[(product, 1)]).await?;
        anyhow::ensure!(
            reply.status == StatusCode::CREATED,
            "still refused: {reply:?}"
        );
        Ok(())
    })
    .await
}
