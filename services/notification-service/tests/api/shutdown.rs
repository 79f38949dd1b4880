//! The real binary: configured from the environment like `cargo xtask up` does, it sends, and
//! on SIGTERM it drains and exits cleanly.

use std::process::Command;
use std::time::Duration;

use testkit::{ServiceProcess, free_port};

use crate::helpers::*;

#[tokio::test]
async fn the_binary_sends_and_stops_cleanly_on_sigterm() -> TestResult {
    // The in-process app only provides the database, topics and sms-sim; its own consumers
    // and senders stay off so the binary does the work.
    let app = spawn_app_with(|config| {
        config.run_consumers = false;
        config.run_senders = false;
    })
    .await;
    let port = free_port()?;
    let mut service = ServiceProcess::spawn(
        Command::new(env!("CARGO_BIN_EXE_notification-service"))
            .env("PORT", port.to_string())
            .env("DATABASE_URL", &app.database_url)
            .env("KAFKA_BROKERS", brokers())
            .env("KAFKA_TOPIC_PREFIX", &app.topic_prefix)
            .env("ZIPKIN_ENDPOINT", "off")
            .env("JWKS_URL", "http://127.0.0.1:9/unused")
            .env("SMTP_HOST", smtp_host())
            .env("SMTP_PORT", smtp_port().to_string())
            .env("SMS_SIM_URL", &app.sms_url)
            .env("NOTIFICATION_CONCURRENCY", "4")
            .env("NOTIFICATION_CONSUMERS", "1")
            .env("RUST_LOG", "warn"),
    )?;
    service
        .wait_ready(
            &format!("http://127.0.0.1:{port}/health/ready"),
            Duration::from_secs(60),
        )
        .await?;
    let user = app.register("en", None).await?;
    Mailpit::default()
        .wait_for(&user.email, 1, Duration::from_secs(60))
        .await?;
    service.terminate()?;
    let status = service.wait_exit(Duration::from_secs(30)).await?;
    assert!(status.success(), "{status}");
    app.wait_for_status(&user, "email", "welcome", "sent", Duration::from_secs(5))
        .await?;
    Ok(())
}
