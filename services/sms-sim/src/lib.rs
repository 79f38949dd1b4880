//! sms-sim: a stand-in for a third-party SMS gateway, run as its own process on port 8091.
//!
//! It speaks the shape common SMS gateways use (a JSON `POST /v1/messages` with a bearer
//! token, idempotent on the caller's `client_reference`), records every message it accepts
//! and every request it received, and can be told to fail: always, for the next N requests,
//! globally or for one recipient number only, so tests running in parallel do not disturb each
//! other. notification-service reaches it at `SMS_SIM_URL`; tests read back what arrived at
//! `GET /admin/messages?to=`. State lives in memory and is gone when the process stops.

pub mod api;
pub mod config;
pub mod gateway;

use anyhow::Context as _;
use tokio::net::TcpListener;
use web::{Readiness, ServiceInfo};

pub use config::Config;

/// A built, not yet running, simulator.
pub struct Application {
    listener: TcpListener,
    port: u16,
    router: axum::Router,
}

impl Application {
    /// Binds the listener (port 0 in tests).
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let listener = TcpListener::bind((config.host.as_str(), config.port))
            .await
            .with_context(|| format!("cannot listen on {}:{}", config.host, config.port))?;
        let port = listener.local_addr()?.port();
        let openapi = <api::ApiDoc as utoipa::OpenApi>::openapi()
            .to_json()
            .context("rendering the OpenAPI document")?;
        let router = web::service_router(
            ServiceInfo {
                name: "sms-sim",
                openapi_json: openapi,
                request_timeout: std::time::Duration::from_secs(30),
            },
            api::router(api::AppState::new(config.api_token.clone())),
            Readiness::new(),
        );
        Ok(Self {
            listener,
            port,
            router,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until `shutdown` resolves; in-flight requests finish first.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        web::serve(self.listener, self.router, shutdown)
            .await
            .context("HTTP server failed")
    }
}
