//! payment-service binary: configuration from the environment, telemetry, then the application
//! until SIGTERM or Ctrl-C.

use std::process::ExitCode;

use payment_service::Application;
use payment_service::config::Config;
use telemetry::TelemetryConfig;

#[tokio::main]
async fn main() -> ExitCode {
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("payment-service: invalid configuration: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    let telemetry = match telemetry::init(&TelemetryConfig {
        service_name: "payment-service".into(),
        zipkin_endpoint: config.zipkin_endpoint.clone(),
        default_log_filter: "info,mongodb=warn,rdkafka=warn,reqwest=warn".into(),
    }) {
        Ok(guard) => guard,
        Err(error) => {
            eprintln!("payment-service: cannot set up telemetry: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = match Application::build(config).await {
        Ok(app) => {
            tracing::info!(port = app.port(), "payment-service listening");
            app.run_until_stopped(web::shutdown_signal()).await
        }
        Err(error) => Err(error),
    };
    // The exporter blocks while flushing; keep that off the async workers.
    let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "payment-service failed");
            eprintln!("payment-service: {error:#}");
            ExitCode::FAILURE
        }
    }
}
