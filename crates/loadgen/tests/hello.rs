//! The load generator against the bare hello server on port 0, in process: both pacing modes
//! complete and count what they sent. No timing is asserted (this machine is shared; throughput
//! belongs in `cargo xtask bench`, not in tests).

use std::time::Duration;

use anyhow::Result;
use loadgen::{Endpoint, LoadSpec, Pace, RequestSpec};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

struct Hello {
    url: String,
    stop: Option<oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<()>,
}

async fn spawn_hello() -> Result<Hello> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hello", listener.local_addr()?);
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(loadgen::hello::serve(listener, async move {
        let _ = stopped.await;
    }));
    Ok(Hello {
        url,
        stop: Some(stop),
        server,
    })
}

impl Hello {
    async fn stop(mut self) -> Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), self.server).await??;
        Ok(())
    }
}

async fn spec(url: &str, pace: Pace, paths: &[&str]) -> Result<LoadSpec> {
    Ok(LoadSpec {
        label: "hello".into(),
        endpoint: Endpoint::parse(url).await?,
        requests: paths.iter().map(|p| RequestSpec::get(*p)).collect(),
        connections: 4,
        duration: Duration::from_millis(500),
        warmup: Duration::from_millis(100),
        pace,
        timeout: Duration::from_secs(5),
        show_progress: false,
    })
}

#[tokio::test]
async fn saturation_gets_answers_without_errors() -> Result<()> {
    let hello = spawn_hello().await?;
    let report = loadgen::load::run(spec(&hello.url, Pace::Saturate, &["/a", "/b"]).await?).await?;
    assert!(report.ok > 0, "{report:?}");
    assert_eq!((report.non_2xx, report.errors), (0, 0), "{report:?}");
    assert_eq!(report.latency.count, report.ok);
    assert_eq!(report.mode, "saturation");
    assert!(report.latency.p50_ms <= report.latency.p99_ms);
    assert!(report.latency.p99_ms <= report.latency.max_ms);
    hello.stop().await
}

#[tokio::test]
async fn fixed_rate_sends_what_is_due_and_reports_it() -> Result<()> {
    let hello = spawn_hello().await?;
    let report = loadgen::load::run(spec(&hello.url, Pace::Rate(200.0), &["/"]).await?).await?;
    // 200/s over 0.5 s measured: 100 due; every one is either answered or counted as missed.
    assert_eq!(report.ok + report.errors + report.missed, 100, "{report:?}");
    assert_eq!(report.target_rate, Some(200.0));
    assert_eq!(report.service_time.count, report.ok);
    hello.stop().await
}

#[tokio::test]
async fn a_closed_port_counts_errors_instead_of_failing_the_run() -> Result<()> {
    // Bind then drop: the port is free and nothing listens on it.
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/", listener.local_addr()?);
    drop(listener);
    let report = loadgen::load::run(spec(&url, Pace::Saturate, &["/"]).await?).await?;
    assert_eq!(report.ok, 0);
    assert!(report.errors > 0, "{report:?}");
    assert!(report.first_error.is_some());
    Ok(())
}

#[tokio::test]
async fn the_report_survives_a_json_round_trip() -> Result<()> {
    let hello = spawn_hello().await?;
    let report = loadgen::load::run(spec(&hello.url, Pace::Saturate, &["/"]).await?).await?;
    let text = serde_json::to_string(&report)?;
    let back: loadgen::RunReport = serde_json::from_str(&text)?;
    // Floats may differ in the last bit after parsing; the counts must not.
    assert_eq!(
        (back.ok, back.errors, back.latency.count),
        (report.ok, report.errors, report.latency.count)
    );
    assert!((back.latency.p99_ms - report.latency.p99_ms).abs() < 1e-9);
    hello.stop().await
}
