//! HTTP basics every service shares: RFC 9457 problem documents, a JSON extractor whose
//! rejections are problems naming the field, health and readiness endpoints, Prometheus
//! metrics per route, an offline API docs page, and a server that takes a listener and a
//! shutdown signal.
//!
//! A service builds its own API router and hands it to [`service_router`], which adds the
//! platform endpoints and the middleware stack (request ids, trace spans joined to the caller's
//! `traceparent`, body limit, timeout, panic catching, metrics) in one place, so every service
//! answers the same way at its edges. [`Lifecycle`] runs that router with the service's
//! background work and stops both in the order that loses nothing.

pub mod config;
pub mod docs;
pub mod error;
pub mod extract;
pub mod health;
pub mod lifecycle;
pub mod main_shell;
pub mod metrics;
pub mod openapi;
pub mod problem;
pub mod server;

pub use config::ServerConfig;
pub use error::{ApiError, ApiResult};
pub use extract::{Json, Path};
pub use health::{Readiness, ReadinessCheck};
pub use lifecycle::{Lifecycle, StopStage};
pub use main_shell::{Binary, run_binary};
pub use problem::{FieldError, Problem};
pub use server::{
    CLIENT_POOL_IDLE_TIMEOUT, ConnectionLimits, ServiceInfo, documented_service_router, serve,
    serve_with_limits, service_router, shutdown_signal,
};
