//! user-service binary: configuration from the environment, telemetry, then the application
//! until SIGTERM or Ctrl-C.

use std::process::ExitCode;

use telemetry::TelemetryConfig;
use user_service::Application;
use user_service::config::Config;

#[tokio::main]
async fn main() -> ExitCode {
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("user-service: invalid configuration: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    let telemetry = match telemetry::init(&TelemetryConfig {
        service_name: "user-service".into(),
        zipkin_endpoint: config.zipkin_endpoint.clone(),
        default_log_filter: "info,sqlx=warn,rdkafka=warn".into(),
    }) {
        Ok(guard) => guard,
        Err(error) => {
            eprintln!("user-service: cannot set up telemetry: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = match Application::build(config).await {
        Ok(app) => {
            tracing::info!(port = app.port(), "user-service listening");
            app.run_until_stopped(web::shutdown_signal()).await
        }
        Err(error) => Err(error),
    };
    // The exporter blocks while flushing; keep that off the async workers.
    let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "user-service failed");
            eprintln!("user-service: {error:#}");
            ExitCode::FAILURE
        }
    }
}
