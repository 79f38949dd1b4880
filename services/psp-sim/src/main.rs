//! psp-sim binary: configuration from the environment, telemetry, then the server until
//! SIGTERM or Ctrl-C.

use std::process::ExitCode;

use psp_sim::Application;
use psp_sim::config::Config;

#[tokio::main]
async fn main() -> ExitCode {
    web::run_binary(
        web::Binary {
            name: "psp-sim",
            default_log_filter: "info",
        },
        Config::from_env(),
        |config| config.server.zipkin_endpoint.clone(),
        |config| async move {
            let app = Application::build(config).await?;
            tracing::info!(port = app.port(), "psp-sim listening");
            app.run_until_stopped(web::shutdown_signal()).await
        },
    )
    .await
}
