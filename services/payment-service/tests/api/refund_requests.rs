//! The `refund-payment` step of the refund process against the real workflow engine: this
//! app's worker takes the step (in its namespace), refunds the order's charge at psp-sim with
//! the request's key, and a second run of the step for the same request (a retried task)
//! refunds nothing more.

use std::time::Duration;

use uuid::Uuid;
use workflow::{EngineClient, StartProcess, Variables};

use crate::helpers::{GOOD_CARD, TestResult, card, spawn_app};

/// A process with the one step under test, under a key of its own.
async fn deploy_refund_step(engine: &EngineClient) -> anyhow::Result<String> {
    Ok(workflow::test_support::deploy_one_task_process(
        engine,
        "test-refund-payment",
        "pay-back",
        payment_service::refund_requests::TOPIC,
    )
    .await?)
}

#[tokio::test]
async fn an_approved_request_is_refunded_once_however_often_the_step_runs() -> TestResult {
    let app = spawn_app().await;
    let order = app.awaiting_order(1_800).await?;
    let paid = app.pay("k", order, card(GOOD_CARD)).await?;
    assert_eq!(paid.body["status"], "succeeded", "{paid:?}");

    let engine = EngineClient::new(&testkit::stack::workflow_engine_url())?;
    let key = deploy_refund_step(&engine).await?;
    let request = Uuid::now_v7();
    let mut references = Vec::new();
    for _ in 0..2 {
        let instance = engine
            .start_process(StartProcess {
                key: &key,
                business_key: &order.to_string(),
                variables: Variables::new()
                    .string(
                        workflow::NAMESPACE_VARIABLE,
                        workflow::default_namespace(&app.topic_prefix),
                    )
                    .string("orderId", order.to_string())
                    .string("requestId", request.to_string()),
            })
            .await?;
        testkit::eventually(Duration::from_secs(60), || async {
            let state = engine.process_state(&instance.id).await?;
            anyhow::ensure!(state == "COMPLETED", "process is {state}");
            Ok(())
        })
        .await?;
        references.push(
            engine
                .historic_variable(&instance.id, "refundReference")
                .await?,
        );
    }
    // Both runs report the same provider refund.
    assert!(
        references[0]
            .as_ref()
            .is_some_and(|r| r.as_str().is_some_and(|r| !r.is_empty()))
    );
    assert_eq!(references[0], references[1]);

    let charges = app.psp_charges(order).await?;
    assert_eq!(charges.len(), 1, "{charges:?}");
    assert_eq!(charges[0]["refunded"], true);
    assert_eq!(charges[0]["amount_refunded"], 1_800);
    app.wait_for_status(&paid.id(), "refunded").await?;
    assert_eq!(
        app.payment_event_types(order).await?,
        ["payment.succeeded.v1", "payment.refunded.v1"]
    );
    let events = app.payment_events().await?;
    assert_eq!(events[1].event.data["reason"], "refund_requested");
    Ok(())
}
