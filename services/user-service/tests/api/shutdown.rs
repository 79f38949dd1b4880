//! SIGTERM under load, against the real binary: requests in flight finish, no 5xx is served,
//! the process exits cleanly, and every registration that was answered 201 has its event on
//! the broker (nothing left behind in the outbox).

use std::process::{Command, Stdio};
use std::time::Duration;

use contracts::topics::USER_EVENTS;
use reqwest::StatusCode;
use serde_json::json;
use testkit::{ServiceProcess, eventually, free_port};
use uuid::Uuid;

use crate::helpers::{PASSWORD, TestResult, brokers, fresh_database, read_topic, unique_email};

async fn customers(pool: &sqlx::PgPool) -> anyhow::Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM users WHERE role = 'customer'")
            .fetch_one(pool)
            .await?,
    )
}

#[tokio::test]
async fn sigterm_under_load_finishes_in_flight_work_and_loses_no_event() -> TestResult {
    let database_url = fresh_database().await?;
    let prefix = format!("test-{}.", Uuid::new_v4().simple());
    let port = free_port()?;
    let key = testkit::TempPath::new("test-jwt.pem");
    let mut service = ServiceProcess::spawn(
        Command::new(env!("CARGO_BIN_EXE_user-service"))
            .env("PORT", port.to_string())
            .env("DATABASE_URL", &database_url)
            .env("KAFKA_BROKERS", brokers())
            .env("KAFKA_TOPIC_PREFIX", &prefix)
            .env("ZIPKIN_ENDPOINT", "off")
            .env("JWT_PRIVATE_KEY_PATH", key.path())
            .env("APP_PROFILE", "local")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )?;
    let base = format!("http://127.0.0.1:{port}");
    service
        .wait_ready(&format!("{base}/health/ready"), Duration::from_secs(60))
        .await?;

    // 60 registrations (each an Argon2 hash) keep the service busy for a while.
    let client = reqwest::Client::new();
    let requests: Vec<_> = (0..60)
        .map(|_| {
            let client = client.clone();
            let url = format!("{base}/api/users/register");
            tokio::spawn(async move {
                client
                    .post(url)
                    .json(&json!({"email": unique_email(), "password": PASSWORD, "name": "Load"}))
                    .send()
                    .await
                    .map(|response| response.status())
            })
        })
        .collect();

    // Signal once the load is under way: a few registrations committed, most still queued.
    let pool = sqlx::PgPool::connect(&database_url).await?;
    eventually(Duration::from_secs(60), || async {
        anyhow::ensure!(customers(&pool).await? >= 3, "the load has not started");
        Ok(())
    })
    .await?;
    service.terminate()?;

    let mut created = 0;
    for request in requests {
        match request.await? {
            Ok(status) => {
                assert_eq!(
                    status,
                    StatusCode::CREATED,
                    "an answered request must succeed"
                );
                created += 1;
            }
            // Refused or closed before being accepted: never started, nothing to finish.
            Err(error) => assert!(error.is_connect() || error.is_request(), "{error}"),
        }
    }
    assert!(
        created > 0,
        "the signal came before any request was accepted"
    );
    let exit = service.wait_exit(Duration::from_secs(90)).await?;
    assert!(exit.success(), "exit status {exit}");

    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
        .fetch_one(&pool)
        .await?;
    assert_eq!(
        customers(&pool).await?,
        created,
        "every 201 is a committed user, and only those"
    );
    assert_eq!(left, 0, "the relay drained the outbox before exiting");
    let registered = read_topic(&format!("{prefix}{USER_EVENTS}"))
        .await?
        .into_iter()
        .filter(|r| {
            r.event.event_type == "user.registered.v1" && r.event.data["role"] == "customer"
        })
        .count();
    assert_eq!(
        registered as i64, created,
        "one event per committed registration"
    );
    Ok(())
}
