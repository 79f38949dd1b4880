//! Wiring: the ledger and the HTTP server.

use std::sync::Arc;

use web::{Lifecycle, Readiness};

use crate::api::{self, AppState};
use crate::config::Config;
use crate::ledger::Ledger;

/// A built, not yet running, psp-sim.
pub struct Application {
    lifecycle: Lifecycle,
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
        let router = web::documented_service_router::<api::ApiDoc>(
            "psp-sim",
            config.server.request_timeout,
            api::router(state),
            // Its only dependency is its own memory.
            Readiness::new(),
        )?;
        let lifecycle = Lifecycle::bind(&config.server.host, config.server.port, router).await?;
        Ok(Self { lifecycle, ledger })
    }

    /// The port actually bound (useful with port 0).
    pub fn port(&self) -> u16 {
        self.lifecycle.port()
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
        self.lifecycle.run_until_stopped(shutdown).await
    }
}
