//! The `notify-approval-reminder` step on the shared workflow engine: every admin contact (and
//! every configured address) gets one reminder in their language, customers none, however
//! often the step runs; with nobody to remind the step fails instead of completing.

use std::time::Duration;

use serde_json::Value;
use uuid::Uuid;
use workflow::{EngineClient, StartProcess, Variables};

use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(60);

/// A process of its own (unique key) whose only step is the reminder.
async fn deploy_reminder_step(engine: &EngineClient) -> anyhow::Result<String> {
    Ok(workflow::test_support::deploy_one_task_process(
        engine,
        "test-reminder",
        "remind-admins",
        notification_service::approval_reminders::TOPIC,
    )
    .await?)
}

/// Starts the reminder step for refund request `request` of `order`.
async fn start_reminder(
    app: &TestApp,
    engine: &EngineClient,
    key: &str,
    request: Uuid,
    order: Uuid,
) -> anyhow::Result<String> {
    let instance = engine
        .start_process(StartProcess {
            key,
            business_key: &order.to_string(),
            variables: Variables::new()
                .string(
                    workflow::NAMESPACE_VARIABLE,
                    workflow::default_namespace(&app.topic_prefix),
                )
                .string("requestId", request.to_string())
                .string("orderId", order.to_string())
                .long("amount", 250_000)
                .string("currency", "EUR")
                .string("reason", "not_received"),
        })
        .await?;
    Ok(instance.id)
}

async fn wait_until_ended(engine: &EngineClient, instance: &str) -> TestResult {
    eventually(WAIT, || async {
        let state = engine.process_state(instance).await?;
        anyhow::ensure!(state == "COMPLETED", "process {instance} is {state}");
        Ok(())
    })
    .await
}

/// Publishes `user.registered` for an admin in `locale`; waits until the replica knows the role.
async fn register_admin(app: &TestApp, locale: &str) -> anyhow::Result<TestUser> {
    let (admin, mut registered) = app.new_user(locale, None)?;
    registered.role = "admin".into();
    app.publish(admin.id, registered).await?;
    eventually(WAIT, || async {
        let role: Option<Option<String>> =
            sqlx::query_scalar("SELECT role FROM contacts WHERE user_id = $1")
                .bind(admin.id)
                .fetch_optional(&app.pool)
                .await?;
        anyhow::ensure!(role.flatten().as_deref() == Some("admin"), "no admin yet");
        Ok(())
    })
    .await?;
    Ok(admin)
}

#[tokio::test]
async fn every_admin_is_reminded_once_in_their_language_and_customers_never() -> TestResult {
    let configured = format!("refunds-{}@test.local", Uuid::new_v4().simple());
    let mailbox = configured.clone();
    let app = spawn_app_with(move |config| {
        config.run_workflow_worker = true;
        config.admin_emails = vec![mailbox];
    })
    .await;
    let mailpit = Mailpit::default();
    let admin = register_admin(&app, "zh-CN").await?;
    let customer = app.register("en", None).await?;
    let engine = EngineClient::new(&testkit::stack::workflow_engine_url())?;
    let key = deploy_reminder_step(&engine).await?;

    // The same request's step twice (a task that ran again after a lost completion).
    let (request, order) = (Uuid::now_v7(), Uuid::now_v7());
    for _ in 0..2 {
        let instance = start_reminder(&app, &engine, &key, request, order).await?;
        wait_until_ended(&engine, &instance).await?;
        let reminded = engine
            .historic_variable(&instance, "remindedAdmins")
            .await?;
        assert_eq!(reminded, Some(Value::from(2)), "{reminded:?}");
    }

    let order_ref = order.simple().to_string()[..8].to_uppercase();
    // The admin's welcome and the reminder.
    mailpit.wait_for(&admin.email, 2, WAIT).await?;
    let zh = mailpit.the_mail(&admin.email, &order_ref).await?;
    let subject = zh["Subject"].as_str().unwrap_or_default();
    assert!(subject.contains("退款申请"), "{subject}");
    let text = zh["Text"].as_str().unwrap_or_default();
    assert!(
        text.contains("2500.00 EUR") && text.contains("未收到商品"),
        "{text}"
    );
    mailpit.wait_for(&configured, 1, WAIT).await?;
    let en = mailpit.the_mail(&configured, &order_ref).await?;
    assert!(
        en["Subject"]
            .as_str()
            .is_some_and(|s| s.starts_with("Reminder: refund request")),
        "{en}"
    );
    // Sent once each, in spite of the second run; nothing for the customer.
    app.wait_for_status(&admin, "email", "approval_reminder", "sent", WAIT)
        .await?;
    assert_eq!(
        app.messages_of(&admin).await?.len(),
        2,
        "welcome + reminder"
    );
    assert!(
        app.messages_of(&customer)
            .await?
            .iter()
            .all(|(_, template, _, _)| template != "approval_reminder")
    );
    assert_eq!(mailpit.search(&admin.email).await?.len(), 2);
    assert_eq!(mailpit.search(&configured).await?.len(), 1);
    Ok(())
}

#[tokio::test]
async fn with_nobody_to_remind_the_step_fails_instead_of_completing() -> TestResult {
    let app = spawn_app_with(|config| config.run_workflow_worker = true).await;
    app.register("en", None).await?;
    let engine = EngineClient::new(&testkit::stack::workflow_engine_url())?;
    let key = deploy_reminder_step(&engine).await?;
    let instance = start_reminder(&app, &engine, &key, Uuid::now_v7(), Uuid::now_v7()).await?;
    // The first failure is reported with the reason; the process waits, it does not end.
    eventually(WAIT, || async {
        let failed: Vec<Value> = reqwest::Client::new()
            .get(format!(
                "{}/external-task?processInstanceId={instance}",
                engine.base_url()
            ))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let message = failed
            .first()
            .and_then(|task| task["errorMessage"].as_str())
            .unwrap_or_default();
        anyhow::ensure!(message.contains("no admin to remind"), "{failed:?}");
        Ok(())
    })
    .await?;
    assert_eq!(engine.process_state(&instance).await?, "ACTIVE");
    Ok(())
}
