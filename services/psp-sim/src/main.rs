//! psp-sim binary: configuration from the environment, telemetry, then the server until
//! SIGTERM or Ctrl-C.

use std::process::ExitCode;

use psp_sim::Application;
use psp_sim::config::Config;
use telemetry::TelemetryConfig;

#[tokio::main]
async fn main() -> ExitCode {
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("psp-sim: invalid configuration: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    let telemetry = match telemetry::init(&TelemetryConfig {
        service_name: "psp-sim".into(),
        zipkin_endpoint: config.zipkin_endpoint.clone(),
        default_log_filter: "info".into(),
    }) {
        Ok(guard) => guard,
        Err(error) => {
            eprintln!("psp-sim: cannot set up telemetry: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = match Application::build(config).await {
        Ok(app) => {
            tracing::info!(port = app.port(), "psp-sim listening");
            app.run_until_stopped(web::shutdown_signal()).await
        }
        Err(error) => Err(error),
    };
    // The exporter blocks while flushing; keep that off the async workers.
    let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "psp-sim failed");
            eprintln!("psp-sim: {error:#}");
            ExitCode::FAILURE
        }
    }
}
