//! notification-service binary: configuration from the environment, telemetry, then the
//! application until SIGTERM or Ctrl-C.

use std::process::ExitCode;

use notification_service::Application;
use notification_service::config::Config;

#[tokio::main]
async fn main() -> ExitCode {
    web::run_binary(
        web::Binary {
            name: "notification-service",
            default_log_filter: "info,sqlx=warn,rdkafka=warn,lettre=warn",
        },
        Config::from_env(),
        |config| config.server.zipkin_endpoint.clone(),
        |config| async move {
            let app = Application::build(config).await?;
            tracing::info!(port = app.port(), "notification-service listening");
            app.run_until_stopped(web::shutdown_signal()).await
        },
    )
    .await
}
