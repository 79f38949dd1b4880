//! product-service binary: configuration from the environment, telemetry, then the application
//! until SIGTERM or Ctrl-C.

use std::process::ExitCode;

use product_service::Application;
use product_service::config::Config;

#[tokio::main]
async fn main() -> ExitCode {
    web::run_binary(
        web::Binary {
            name: "product-service",
            default_log_filter: "info,mongodb=warn,rdkafka=warn",
        },
        Config::from_env(),
        |config| config.server.zipkin_endpoint.clone(),
        |config| async move {
            let app = Application::build(config).await?;
            tracing::info!(port = app.port(), "product-service listening");
            app.run_until_stopped(web::shutdown_signal()).await
        },
    )
    .await
}
