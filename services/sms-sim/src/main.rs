//! sms-sim binary: configuration from the environment, logs, then the simulator until SIGTERM
//! or Ctrl-C.

use std::process::ExitCode;

use sms_sim::{Application, Config};
use telemetry::TelemetryConfig;

#[tokio::main]
async fn main() -> ExitCode {
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("sms-sim: invalid configuration: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    // A third party: its spans are not part of the platform's traces.
    let telemetry = match telemetry::init(&TelemetryConfig {
        service_name: "sms-sim".into(),
        zipkin_endpoint: None,
        default_log_filter: "info".into(),
    }) {
        Ok(guard) => guard,
        Err(error) => {
            eprintln!("sms-sim: cannot set up logging: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = match Application::build(config).await {
        Ok(app) => {
            tracing::info!(port = app.port(), "sms-sim listening");
            app.run_until_stopped(web::shutdown_signal()).await
        }
        Err(error) => Err(error),
    };
    telemetry.shutdown();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("sms-sim: {error:#}");
            ExitCode::FAILURE
        }
    }
}
