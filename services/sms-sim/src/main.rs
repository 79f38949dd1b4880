//! sms-sim binary: configuration from the environment, logs, then the simulator until SIGTERM
//! or Ctrl-C.

use std::process::ExitCode;

use sms_sim::{Application, Config};

#[tokio::main]
async fn main() -> ExitCode {
    // A third party: its spans are not part of the platform's traces.
    web::run_binary(
        web::Binary {
            name: "sms-sim",
            default_log_filter: "info",
        },
        Config::from_env(),
        |_| None,
        |config| async move {
            let app = Application::build(config).await?;
            tracing::info!(port = app.port(), "sms-sim listening");
            app.run_until_stopped(web::shutdown_signal()).await
        },
    )
    .await
}
