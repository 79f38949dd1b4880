//! user-service: accounts, sign-in and profiles for the ferroshop platform.
//!
//! It owns the PostgreSQL database `users`, signs short-lived EdDSA access tokens (public keys
//! at `/.well-known/jwks.json`, so every other service verifies tokens without calling here),
//! rotates opaque refresh tokens with reuse detection, and publishes `user.*` events through a
//! transactional outbox. People sign in with a password or with an OpenID Connect provider
//! ("Sign in with Google": [`api::oidc`] for the flow, [`provider`] for the provider's side).
//! `main.rs` is a thin shell over [`Application`], which tests start on port 0 against their
//! own database and topics.

pub mod api;
pub mod config;
pub mod domain;
pub mod provider;
pub mod startup;
pub mod store;

pub use startup::Application;
