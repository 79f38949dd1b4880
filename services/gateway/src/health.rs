//! Active health checks: every instance's readiness URL is polled on a fixed interval; a
//! streak of failures takes it out of rotation and a streak of passes brings it back. The
//! gateway's own `/health/ready` reports what the checker sees.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use futures::future::join_all;
use http::{Request, Uri, header};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::config::HealthConfig;
use crate::proxy::{Proxy, UpstreamClient};
use crate::upstream::{Instance, Pool, Transition};

/// Polls every instance until `stop` is cancelled.
pub async fn run(proxy: Arc<Proxy>, config: HealthConfig, stop: CancellationToken) {
    let mut ticker = tokio::time::interval(Duration::from_millis(config.interval_ms));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    publish_gauges(proxy.pools());
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = ticker.tick() => {}
        }
        let (client, config) = (proxy.client(), &config);
        let checks = proxy.pools().iter().flat_map(|pool| {
            pool.instances
                .iter()
                .map(move |instance| check_and_record(client, pool, instance, config))
        });
        join_all(checks).await;
    }
}

async fn check_and_record(
    client: &UpstreamClient,
    pool: &Pool,
    instance: &Instance,
    config: &HealthConfig,
) {
    let outcome = check(client, instance, config).await;
    let passed = outcome.is_ok();
    match instance.observe(passed, config.unhealthy_after, config.healthy_after) {
        Transition::Unchanged => {}
        Transition::WentDown => tracing::warn!(
            service = %pool.service,
            instance = %instance.url,
            reason = outcome.err().unwrap_or_default(),
            "upstream instance left rotation"
        ),
        Transition::CameBack => tracing::info!(
            service = %pool.service,
            instance = %instance.url,
            "upstream instance is back in rotation"
        ),
    }
    set_gauge(pool, instance);
}

/// One readiness probe: 2xx within the timeout passes.
async fn check(
    client: &UpstreamClient,
    instance: &Instance,
    config: &HealthConfig,
) -> Result<(), String> {
    let uri = Uri::builder()
        .scheme(instance.scheme.clone())
        .authority(instance.authority.clone())
        .path_and_query(config.path.as_str())
        .build()
        .map_err(|error| format!("bad health URL: {error}"))?;
    let request = Request::get(uri)
        .header(header::USER_AGENT, "ferroshop-gateway-health")
        .body(Body::empty())
        .map_err(|error| format!("bad health request: {error}"))?;
    let timeout = Duration::from_millis(config.timeout_ms);
    let probe = async {
        let response = client
            .request(request)
            .await
            .map_err(|error| format!("{error}"))?;
        let status = response.status();
        // Reading the small body to its end lets the connection go back to the pool.
        let body = response.into_body().collect().await;
        if status.is_success() {
            Ok(())
        } else {
            let failing = body
                .ok()
                .map(|body| failing_checks(&body.to_bytes()))
                .unwrap_or_default();
            Err(match failing.is_empty() {
                true => format!("answered {status}"),
                false => format!("answered {status}: {failing}"),
            })
        }
    };
    match tokio::time::timeout(timeout, probe).await {
        Ok(outcome) => outcome,
        Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
    }
}

/// The checks a not-ready answer names as down (`{"checks": {"kafka": {"status": "down",
/// "error": "..."}}}`, the services' readiness document), as `name: error; ...`, so the log
/// line that takes an instance out of rotation says why. At most 500 characters; empty when
/// the body is not such a document.
fn failing_checks(body: &[u8]) -> String {
    const LIMIT: usize = 500;
    let Ok(document) = serde_json::from_slice::<Value>(body) else {
        return String::new();
    };
    let Some(checks) = document.get("checks").and_then(Value::as_object) else {
        return String::new();
    };
    let mut failing: String = checks
        .iter()
        .filter(|(_, check)| check.get("status").and_then(Value::as_str) != Some("up"))
        .map(|(name, check)| {
            let error = check.get("error").and_then(Value::as_str).unwrap_or("down");
            format!("{name}: {error}")
        })
        .collect::<Vec<_>>()
        .join("; ");
    if failing.len() > LIMIT {
        let mut end = LIMIT;
        while !failing.is_char_boundary(end) {
            end -= 1;
        }
        failing.truncate(end);
        failing.push('…');
    }
    failing
}

fn publish_gauges(pools: &[Pool]) {
    for pool in pools {
        for instance in &pool.instances {
            set_gauge(pool, instance);
        }
    }
}

fn set_gauge(pool: &Pool, instance: &Instance) {
    metrics::gauge!(
        "gateway_upstream_healthy",
        "service" => pool.service.clone(),
        "instance" => instance.url.clone()
    )
    .set(if instance.is_healthy() { 1.0 } else { 0.0 });
}

/// `GET /health/ready`: 200 whenever the gateway can answer, with every instance's state.
/// Not-ready would not help: with no healthy upstream the gateway still answers quickly (503
/// problems), and taking it out of a load balancer or restarting it would not heal a service.
pub fn readiness(proxy: &Proxy) -> Response {
    let upstreams: serde_json::Map<String, Value> = proxy
        .pools()
        .iter()
        .map(|pool| {
            let instances: Vec<Value> = pool
                .instances
                .iter()
                .map(|i| json!({"url": &*i.url, "healthy": i.is_healthy()}))
                .collect();
            (
                pool.service.to_string(),
                json!({"healthy": pool.healthy_count(), "instances": instances}),
            )
        })
        .collect();
    axum::Json(json!({"status": "up", "upstreams": upstreams})).into_response()
}

#[cfg(test)]
mod tests {
    use super::failing_checks;

    #[test]
    fn a_not_ready_answer_names_its_failing_checks() {
        let body = br#"{"status":"down","checks":{"catalog":{"status":"up"},
            "kafka":{"status":"down","error":"Kafka broker unreachable: timed out"},
            "mongodb":{"status":"down"}}}"#;
        assert_eq!(
            failing_checks(body),
            "kafka: Kafka broker unreachable: timed out; mongodb: down"
        );
    }

    #[test]
    fn a_body_that_is_not_a_readiness_document_names_nothing() {
        assert_eq!(failing_checks(b"<html>busy</html>"), "");
        assert_eq!(failing_checks(br#"{"status":"down"}"#), "");
    }

    #[test]
    fn a_long_reason_is_cut_on_a_character_boundary() {
        let error = "é".repeat(400);
        let body = format!(r#"{{"checks":{{"kafka":{{"status":"down","error":"{error}"}}}}}}"#);
        let failing = failing_checks(body.as_bytes());
        assert!(failing.len() <= 500 + '…'.len_utf8(), "{}", failing.len());
        assert!(failing.ends_with('…'));
    }
}
