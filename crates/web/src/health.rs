//! `GET /health/live` (the process answers) and `GET /health/ready` (its own dependencies
//! answer). Orchestrators route traffic on readiness and restart on liveness, so liveness
//! never looks at dependencies: a database outage must not restart every replica.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use futures::future::{BoxFuture, join_all};
use serde_json::{Map, Value, json};

/// One dependency check: `Ok` when the dependency answers.
pub type ReadinessCheck = Arc<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// How long one check may take before it counts as failed.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// The named checks behind `/health/ready`.
#[derive(Clone, Default)]
pub struct Readiness {
    checks: Vec<(String, ReadinessCheck)>,
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.checks.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("Readiness").field("checks", &names).finish()
    }
}

impl Readiness {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a check named after the dependency it probes (`postgres`, `kafka`).
    pub fn with_check<F, Fut>(mut self, name: &str, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        let check: ReadinessCheck = Arc::new(move || Box::pin(check()));
        self.checks.push((name.to_owned(), check));
        self
    }

    /// Runs every check concurrently; returns whether all passed and each one's outcome.
    pub async fn evaluate(&self) -> (bool, Map<String, Value>) {
        let outcomes = join_all(self.checks.iter().map(|(name, check)| async move {
            let outcome = match tokio::time::timeout(CHECK_TIMEOUT, check()).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(error)) => Err(error),
                Err(_) => Err(format!("no answer within {}s", CHECK_TIMEOUT.as_secs())),
            };
            (name.clone(), outcome)
        }))
        .await;
        let ready = outcomes.iter().all(|(_, outcome)| outcome.is_ok());
        let checks = outcomes
            .into_iter()
            .map(|(name, outcome)| {
                let value = match outcome {
                    Ok(()) => json!({"status": "up"}),
                    Err(error) => json!({"status": "down", "error": error}),
                };
                (name, value)
            })
            .collect();
        (ready, checks)
    }
}

/// The two health routes.
pub fn router(readiness: Readiness) -> Router {
    Router::new()
        .route(
            "/health/live",
            get(|| async { axum::Json(json!({"status": "up"})) }),
        )
        .route(
            "/health/ready",
            get(move || {
                let readiness = readiness.clone();
                async move {
                    let (ready, checks) = readiness.evaluate().await;
                    let status = if ready {
                        StatusCode::OK
                    } else {
                        StatusCode::SERVICE_UNAVAILABLE
                    };
                    let body =
                        json!({"status": if ready { "up" } else { "down" }, "checks": checks});
                    (status, axum::Json(body)).into_response()
                }
            }),
        )
}

#[cfg(feature = "sqlx")]
impl Readiness {
    /// Adds the check every PostgreSQL service has: `postgres` answers `SELECT 1`.
    pub fn with_postgres(self, pool: sqlx::PgPool) -> Self {
        self.with_check("postgres", move || {
            let pool = pool.clone();
            async move {
                sqlx::query("SELECT 1")
                    .execute(&pool)
                    .await
                    .map(|_| ())
                    .map_err(|error| format!("PostgreSQL unreachable: {error}"))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_failing_check_makes_the_service_not_ready_and_is_named() {
        let readiness = Readiness::new()
            .with_check("postgres", || async { Ok(()) })
            .with_check("kafka", || async { Err("broker unreachable".to_owned()) });
        let (ready, checks) = readiness.evaluate().await;
        assert!(!ready);
        assert_eq!(checks["postgres"]["status"], "up");
        assert_eq!(checks["kafka"]["error"], "broker unreachable");
    }
}
