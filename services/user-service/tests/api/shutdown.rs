//! SIGTERM under load, against the real binary: requests in flight finish, no 5xx is served,
//! the process exits cleanly, and every registration that was answered 201 has its event on
//! the broker (nothing left behind in the outbox).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use contracts::topics::USER_EVENTS;
use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{PASSWORD, TestResult, brokers, fresh_database, read_topic, unique_email};

/// Stops the child if the test fails half-way.
struct Service(Child);

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

#[tokio::test]
async fn sigterm_under_load_finishes_in_flight_work_and_loses_no_event() -> TestResult {
    let database_url = fresh_database().await?;
    let prefix = format!("test-{}.", Uuid::new_v4().simple());
    let port = free_port()?;
    let key = std::env::temp_dir().join(format!("ferroshop-test-{}.pem", Uuid::new_v4()));
    let mut service = Service(
        Command::new(env!("CARGO_BIN_EXE_user-service"))
            .env("PORT", port.to_string())
            .env("DATABASE_URL", &database_url)
            .env("KAFKA_BROKERS", brokers())
            .env("KAFKA_TOPIC_PREFIX", &prefix)
            .env("ZIPKIN_ENDPOINT", "off")
            .env("JWT_PRIVATE_KEY_PATH", &key)
            .env("APP_PROFILE", "local")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();

    let started = Instant::now();
    loop {
        let ready = client.get(format!("{base}/health/ready")).send().await;
        if ready.is_ok_and(|r| r.status() == StatusCode::OK) {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(60),
            "never became ready"
        );
        anyhow::ensure!(
            service.0.try_wait()?.is_none(),
            "the service exited during start-up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // 60 registrations (each an Argon2 hash) keep the service busy for a while.
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
    loop {
        let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users WHERE role = 'customer'")
            .fetch_one(&pool)
            .await?;
        if users >= 3 {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(60),
            "the load never started"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let pid = service.0.id().to_string();
    anyhow::ensure!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()?
            .success(),
        "kill failed"
    );

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

    let exit = loop {
        if let Some(status) = service.0.try_wait()? {
            break status;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(90),
            "did not exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(exit.success(), "exit status {exit}");

    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users WHERE role = 'customer'")
        .fetch_one(&pool)
        .await?;
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
        .fetch_one(&pool)
        .await?;
    assert_eq!(
        users, created,
        "every 201 is a committed user and nothing else was committed"
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
