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
        let _ = response.into_body().collect().await;
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("answered {status}"))
        }
    };
    match tokio::time::timeout(timeout, probe).await {
        Ok(outcome) => outcome,
        Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
    }
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
