//! Integration tests against the real workflow engine (`WORKFLOW_ENGINE_URL`, started by
//! `cargo xtask up`/`test`). Every test deploys its own model under a unique key and topic, so
//! tests run in parallel and never see each other's tasks.

mod decisions;
mod helpers;
mod worker;
