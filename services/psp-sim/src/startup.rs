//! Wiring: the ledger and the HTTP server.

use std::sync::Arc;

use anyhow::Context as _;
use tokio::net::TcpListener;
use web::{Readiness, ServiceInfo};

use crate::api::{self, AppState};
use crate::config::Config;
use crate::ledger::Ledger;

/// A built, not yet running, psp-sim.
pub struct Application {
    listener: TcpListener,
    port: u16,
    router: axum::Router,
    ledger: Arc<Ledger>,
}

impl Application {
    /// Binds the listener (port 0 in tests).
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let ledger = Arc::new(Ledger::default());
        let state = AppState {
            ledger: ledger.clone(),
            api_key: config.api_key.clone(),
            latency: config.latency,
            failure_rate: config.failure_rate,
            slow_delay: config.slow_delay,
        };
        let openapi = <api::ApiDoc as utoipa::OpenApi>::openapi()
            .to_json()
            .context("rendering the OpenAPI document")?;
        let router = web::service_router(
            ServiceInfo {
                name: "psp-sim",
                openapi_json: openapi,
                request_timeout: config.request_timeout,
            },
            api::router(state),
            // Its only dependency is its own memory.
            Readiness::new(),
        );
        let listener = TcpListener::bind((config.host.as_str(), config.port))
            .await
            .with_context(|| format!("cannot listen on {}:{}", config.host, config.port))?;
        let port = listener.local_addr()?.port();
        Ok(Self {
            listener,
            port,
            router,
            ledger,
        })
    }

    /// The port actually bound (useful with port 0).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The books, for tests that inspect them in process.
    pub fn ledger(&self) -> Arc<Ledger> {
        self.ledger.clone()
    }

    /// Serves until `shutdown` resolves; in-flight calls (a slow answer too) finish first.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        web::serve(self.listener, self.router, shutdown)
            .await
            .context("HTTP server failed")
    }
}
