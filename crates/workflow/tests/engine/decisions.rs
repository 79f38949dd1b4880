//! The decision tables of `workflow/models` (`refund-approval.dmn`, `order-risk.dmn`), rule by
//! rule, through the engine's evaluate endpoint. Each file is deployed under a unique decision
//! key so the tests never depend on (or change) what the engine deployed at start.

use workflow::decision_table::DecisionTable;
use workflow::{EngineClient, Variables};

use crate::helpers::{engine, unique};

const TABLE: &str = include_str!("../../../../workflow/models/refund-approval.dmn");
const RISK_TABLE: &str = include_str!("../../../../workflow/models/order-risk.dmn");

/// Deploys decision `id` of `table` under a unique key and returns the key.
async fn deploy_decision(engine: &EngineClient, table: &str, id: &str) -> anyhow::Result<String> {
    let key = unique(id);
    let marker = format!(r#"id="{id}""#);
    anyhow::ensure!(table.contains(&marker), "the table has no decision {id}");
    let table = table.replace(&marker, &format!(r#"id="{key}""#));
    engine
        .deploy(
            &key,
            vec![(format!("{key}.dmn"), table.into_bytes())],
            false,
        )
        .await?;
    Ok(key)
}

async fn outcome(
    engine: &EngineClient,
    key: &str,
    amount: i64,
    recent_refunds: i32,
    reason: &str,
) -> anyhow::Result<String> {
    let results = engine
        .evaluate_decision(
            key,
            Variables::new()
                .long("amount", amount)
                .integer("recentRefunds", recent_refunds)
                .string("reason", reason),
        )
        .await?;
    anyhow::ensure!(
        results.len() == 1,
        "hit policy FIRST gives one result: {results:?}"
    );
    Ok(results[0].get_str("outcome")?.to_owned())
}

#[tokio::test]
async fn refund_approval_rules() -> anyhow::Result<()> {
    let engine = engine()?;
    let key = deploy_decision(&engine, TABLE, "refund-approval").await?;
    // (amount, refunds in 90 days, reason) -> outcome
    let cases = [
        (4_200, 0, "damaged", "approve"),
        (20_000, 1, "changed_mind", "approve"), // the limit itself is still automatic
        (20_001, 0, "damaged", "review"),       // above 200.00
        (100, 2, "damaged", "review"),          // two refunds in 90 days
        (100, 7, "other", "review"),
        (100, 0, "not_received", "review"),
        (0, 0, "wrong_item", "approve"),
    ];
    for (amount, recent, reason, expected) in cases {
        assert_eq!(
            outcome(&engine, &key, amount, recent, reason).await?,
            expected,
            "amount {amount}, {recent} recent refunds, reason {reason}"
        );
    }
    Ok(())
}

/// The inputs of one order-risk evaluation.
struct Order {
    amount: i64,
    review_amount: i64,
    account_age_days: i32,
    orders_last_hour: i32,
    country: &'static str,
}

fn risk_inputs(order: &Order) -> Variables {
    Variables::new()
        .long("amount", order.amount)
        .long("reviewAmount", order.review_amount)
        .integer("accountAgeDays", order.account_age_days)
        .integer("ordersLastHour", order.orders_last_hour)
        .string("shippingCountry", order.country)
}

async fn risk(engine: &EngineClient, key: &str, order: &Order) -> anyhow::Result<(String, String)> {
    let results = engine.evaluate_decision(key, risk_inputs(order)).await?;
    anyhow::ensure!(
        results.len() == 1,
        "hit policy FIRST gives one result: {results:?}"
    );
    Ok((
        results[0].get_str("outcome")?.to_owned(),
        results[0].get_str("reason")?.to_owned(),
    ))
}

#[tokio::test]
async fn order_risk_rules() -> anyhow::Result<()> {
    let engine = engine()?;
    let key = deploy_decision(&engine, RISK_TABLE, "order-risk").await?;
    let order = |amount, account_age_days, orders_last_hour, country| Order {
        amount,
        review_amount: 100_000,
        account_age_days,
        orders_last_hour,
        country,
    };
    // (amount, account age, orders in the last hour, country) with a review amount of
    // 1,000.00 -> (outcome, reason)
    let cases = [
        // rule large_amount: the review amount itself is reviewed, whoever orders
        (order(100_000, 400, 0, "DE"), "review", "large_amount"),
        (order(99_999, 400, 0, "DE"), "accept", "low_risk"),
        (order(250_000, 0, 9, "BR"), "review", "large_amount"), // first rule wins
        // rule new_account: under a day old and half the review amount
        (order(50_000, 0, 0, "DE"), "review", "new_account"),
        (order(49_999, 0, 0, "DE"), "accept", "low_risk"),
        (order(50_000, 1, 0, "DE"), "accept", "low_risk"),
        // rule order_velocity: five orders in the hour before and a tenth of the amount
        (order(10_000, 400, 5, "DE"), "review", "order_velocity"),
        (order(10_000, 400, 4, "DE"), "accept", "low_risk"),
        (order(9_999, 400, 50, "DE"), "accept", "low_risk"),
        // rule shipping_country: outside the usual markets and a quarter of the amount
        (order(25_000, 400, 0, "BR"), "review", "shipping_country"),
        (order(24_999, 400, 0, "BR"), "accept", "low_risk"),
        (order(25_000, 400, 0, "CN"), "accept", "low_risk"),
        (order(25_000, 400, 0, "US"), "accept", "low_risk"),
        // the default rule
        (order(0, 0, 0, "BR"), "accept", "low_risk"),
    ];
    for (order, outcome, reason) in cases {
        assert_eq!(
            risk(&engine, &key, &order).await?,
            (outcome.to_owned(), reason.to_owned()),
            "amount {}, account {} days old, {} orders in the last hour, shipping to {}",
            order.amount,
            order.account_age_days,
            order.orders_last_hour,
            order.country
        );
    }
    Ok(())
}

/// What the risk check adds to placing an order: one evaluation of `order-risk` over HTTP,
/// timed sequentially from this process. A measurement for the docs, not a test: run with
/// `cargo test -p workflow --test engine -- --ignored --nocapture order_risk_latency`.
#[tokio::test]
#[ignore = "a measurement; prints percentiles"]
async fn order_risk_latency() -> anyhow::Result<()> {
    let engine = engine()?;
    let key = deploy_decision(&engine, RISK_TABLE, "order-risk").await?;
    let order = Order {
        amount: 4_200,
        review_amount: 1_000_000,
        account_age_days: 30,
        orders_last_hour: 1,
        country: "DE",
    };
    for _ in 0..50 {
        risk(&engine, &key, &order).await?;
    }
    let mut samples = Vec::with_capacity(1_000);
    for _ in 0..1_000 {
        let started = std::time::Instant::now();
        risk(&engine, &key, &order).await?;
        samples.push(started.elapsed());
    }
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    println!(
        "order-risk evaluate over HTTP, {} calls: p50 {:?}, p90 {:?}, p99 {:?}, max {:?}",
        samples.len(),
        at(0.5),
        at(0.9),
        at(0.99),
        at(1.0)
    );
    Ok(())
}

/// Outcome and reason of one evaluation, the same way for both evaluators (no match: empty).
fn first_outputs(results: &[Variables]) -> (String, String) {
    let text = |name| {
        results
            .first()
            .and_then(|r| r.get_str(name).ok())
            .unwrap_or_default()
            .to_owned()
    };
    (text("outcome"), text("reason"))
}

/// order-service evaluates `order-risk` in-process from the XML the engine serves
/// (`workflow::decision_table`). Over a grid of inputs around every rule's boundaries, the
/// engine's evaluate endpoint and the in-process evaluation of the XML fetched from the engine
/// must agree; and so must they for `refund-approval`, which the engine alone evaluates today
/// but which the subset also reads.
#[tokio::test]
async fn in_process_evaluation_agrees_with_the_engine() -> anyhow::Result<()> {
    let engine = engine()?;
    let key = deploy_decision(&engine, RISK_TABLE, "order-risk").await?;
    let deployed = engine.decision_xml(&key).await?;
    let table = DecisionTable::parse(&deployed.dmn_xml, &key)?;
    let review_amount = 10_000;
    let mut compared = 0;
    for amount in [
        0, 999, 1_000, 2_499, 2_500, 4_999, 5_000, 9_999, 10_000, 250_000,
    ] {
        for age in [0, 1, 400] {
            for velocity in [0, 4, 5] {
                for country in ["DE", "CN", "BR", "", "de"] {
                    let inputs = risk_inputs(&Order {
                        amount,
                        review_amount,
                        account_age_days: age,
                        orders_last_hour: velocity,
                        country,
                    });
                    let here = table.evaluate(&inputs)?;
                    let there = engine.evaluate_decision(&key, inputs).await?;
                    assert_eq!(
                        first_outputs(&here),
                        first_outputs(&there),
                        "amount {amount}, age {age}, velocity {velocity}, country {country:?}"
                    );
                    assert_eq!(here.len(), there.len());
                    compared += 1;
                }
            }
        }
    }
    assert_eq!(compared, 450);

    let key = deploy_decision(&engine, TABLE, "refund-approval").await?;
    let table = DecisionTable::parse(&engine.decision_xml(&key).await?.dmn_xml, &key)?;
    for amount in [0, 20_000, 20_001] {
        for recent in [0, 1, 2] {
            for reason in ["damaged", "not_received", "other"] {
                let inputs = Variables::new()
                    .long("amount", amount)
                    .integer("recentRefunds", recent)
                    .string("reason", reason);
                let here = table.evaluate(&inputs)?;
                let there = engine.evaluate_decision(&key, inputs).await?;
                assert_eq!(
                    here.first()
                        .map(|r| r.get_str("outcome").map(str::to_owned).ok()),
                    there
                        .first()
                        .map(|r| r.get_str("outcome").map(str::to_owned).ok()),
                    "amount {amount}, {recent} recent refunds, reason {reason}"
                );
            }
        }
    }
    Ok(())
}
