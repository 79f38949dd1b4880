//! gateway: the single entry point of the ferroshop platform.
//!
//! It routes `/api/users/**`, `/.well-known/jwks.json`, `/api/products/**`, `/api/orders/**`,
//! `/api/payments/**`, `/api/notifications/**` and `/api/admin/approvals/**` to their services, spreading requests over
//! every healthy instance (round robin, active health checks, connect failures ejecting an
//! instance at once), over pooled keep-alive connections with streamed bodies. At the edge it
//! verifies access tokens against user-service's JWKS where a route needs one (the token is
//! passed on unchanged; services still check roles), limits request rates per client IP and
//! per user (a stricter bucket for login and register), answers CORS preflights, assigns
//! request ids, caps body sizes, and joins every request to the caller's trace. Every failure
//! of its own or of an upstream is a problem document: 502, 503 or 504, never a hang.
//! Everything outside the platform's paths is the web storefront's static files, when a
//! directory is configured (`web_root`, `GATEWAY_WEB_ROOT`).
//! `main.rs` is a thin shell over [`Application`], which tests start on port 0.

pub mod config;
pub mod health;
pub mod proxy;
pub mod ratelimit;
pub mod routes;
pub mod startup;
pub mod storefront;
pub mod upstream;

pub use startup::Application;
