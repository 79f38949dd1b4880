//! What every service binary does around its application, in one place: read the
//! configuration, set up telemetry, run until SIGTERM or Ctrl-C, flush spans, and turn the
//! outcome into an exit code with the error on stderr.

use std::process::ExitCode;

use telemetry::TelemetryConfig;

/// The binary's settings for [`run_binary`].
#[derive(Debug, Clone)]
pub struct Binary {
    /// The service name, in messages and as the Zipkin service.
    pub name: &'static str,
    /// `RUST_LOG` when the variable is unset, e.g. `info,sqlx=warn`.
    pub default_log_filter: &'static str,
}

/// Runs a service binary: `config` is the parsed configuration (an error exits at once),
/// `zipkin` picks its span endpoint (`None`: logs only), and `serve` builds the application and
/// serves until [`crate::shutdown_signal`].
pub async fn run_binary<C, Serve, Served>(
    binary: Binary,
    config: anyhow::Result<C>,
    zipkin: impl FnOnce(&C) -> Option<String>,
    serve: Serve,
) -> ExitCode
where
    Serve: FnOnce(C) -> Served,
    Served: Future<Output = anyhow::Result<()>>,
{
    let name = binary.name;
    let config = match config {
        Ok(config) => config,
        Err(error) => {
            eprintln!("{name}: invalid configuration: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    let telemetry = match telemetry::init(&TelemetryConfig {
        service_name: name.into(),
        zipkin_endpoint: zipkin(&config),
        default_log_filter: binary.default_log_filter.into(),
    }) {
        Ok(guard) => guard,
        Err(error) => {
            eprintln!("{name}: cannot set up telemetry: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = serve(config).await;
    // The exporter blocks while flushing; keep that off the async workers.
    let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "{name} failed");
            eprintln!("{name}: {error:#}");
            ExitCode::FAILURE
        }
    }
}
