//! gateway binary: configuration from `GATEWAY_CONFIG` and the environment, a runtime with
//! `GATEWAY_WORKER_THREADS` workers (one by default, see [`gateway::config::worker_threads`]),
//! telemetry, then the application until SIGTERM or Ctrl-C. It allocates with mimalloc.

use std::process::ExitCode;

use gateway::Application;
use gateway::config::Config;
use telemetry::TelemetryConfig;

/// Every proxied request allocates and frees headers, URIs, bodies and span data on one
/// worker thread: with glibc's malloc that was 9% of the gateway's CPU (README, "Where the
/// gateway's CPU went"). mimalloc's thread-local free lists cut the gateway's CPU per proxied
/// request by about 18% (53-58 to 42-48 µs, 8 s saturation runs alternated) at the same RSS.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let runtime = gateway::config::worker_threads_from_environment().and_then(|workers| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
    });
    match runtime {
        Ok(runtime) => runtime.block_on(run()),
        Err(error) => {
            eprintln!("gateway: cannot start the runtime: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> ExitCode {
    let config = match Config::load() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("gateway: invalid configuration: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    let telemetry = match telemetry::init(&TelemetryConfig {
        service_name: "gateway".into(),
        zipkin_endpoint: config.zipkin_endpoint.clone(),
        default_log_filter: "info".into(),
    }) {
        Ok(guard) => guard,
        Err(error) => {
            eprintln!("gateway: cannot set up telemetry: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    let upstreams: Vec<String> = config
        .services
        .iter()
        .map(|(name, service)| format!("{name}={}", service.urls.join(",")))
        .collect();
    let outcome = match Application::build(config).await {
        Ok(app) => {
            tracing::info!(port = app.port(), upstreams = ?upstreams, "gateway listening");
            app.run_until_stopped(web::shutdown_signal()).await
        }
        Err(error) => Err(error),
    };
    // The exporter blocks while flushing; keep that off the async workers.
    let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "gateway failed");
            eprintln!("gateway: {error:#}");
            ExitCode::FAILURE
        }
    }
}
