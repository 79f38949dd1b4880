//! The workflow engine's figures (issue 16): auto-approved refund processes completed per
//! second and the latency from a customer's refund request to the order seen `REFUNDED`
//! (p50/p99), the engine's resident memory before, during and after that run, and what the
//! risk check adds to a low-risk order (one evaluation of the decision table `order-risk`,
//! p50/p99).
//!
//! It only talks to a running stack over HTTP and never starts or stops anything, so it runs
//! inside `cargo xtask bench` (after the checkout runs, on the stack `bench` started) and on
//! its own against any stack: `cargo xtask bench-workflow` (default: the local ports; it
//! prints the section and, with `--output`, writes it to a file).
//!
//! How: the refunds need `PAID` orders, which are prepared first (customers registered at
//! user-service directly, so the gateway's per-IP bucket for registrations does not decide the
//! pace; each customer asks for at most one refund, so the approval table's "frequent
//! refunds" rule never sends one to an admin; small amounts and the reason `damaged`, which the
//! table approves). Then `concurrency` clients each send a request through the gateway and
//! follow the order until it is `REFUNDED`: the latency includes the engine's decision, the
//! provider refund by payment-service, order-service's step and the polling interval (10 ms).
//! The risk check is timed where it happens, at the engine's evaluate endpoint, sequentially
//! from one client with the inputs of a low-risk order (order-service adds one HTTP hop on a
//! kept-alive connection; its `order_risk_check_seconds` histogram shows that cost in
//! production).

use std::fmt::Write as _;
use std::fs;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use reqwest::blocking::Client;
use serde_json::{Value, json};

use crate::ui::say;

/// The risk check's target for a low-risk order (issue 16).
const RISK_P99_TARGET_MS: f64 = 20.0;
/// How often a client looks at its order while the refund runs.
const POLL: Duration = Duration::from_millis(10);
/// Longest wait for one order to reach a status.
const PATIENCE: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, clap::Args)]
pub struct WorkflowBenchArgs {
    /// The gateway the customers' requests go through.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub gateway: String,
    /// user-service, where the bench registers its customers.
    #[arg(long, default_value = "http://127.0.0.1:8081")]
    pub users: String,
    /// The workflow engine (without `/engine-rest`).
    #[arg(long, default_value = "http://127.0.0.1:8086")]
    pub engine: String,
    /// Refund requests of the throughput run (one PAID order each).
    #[arg(long, default_value_t = 60)]
    pub refunds: usize,
    /// Clients sending refund requests at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Sequential evaluations of `order-risk`.
    #[arg(long, default_value_t = 500)]
    pub risk_evaluations: usize,
    /// Also write the report section to this file.
    #[arg(long)]
    pub output: Option<PathBuf>,
}

/// Quantiles in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct Millis {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

impl Millis {
    fn of(mut samples: Vec<f64>) -> Option<Self> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_by(f64::total_cmp);
        let at = |q: f64| {
            let rank = ((samples.len() as f64) * q).ceil() as usize;
            samples[rank.clamp(1, samples.len()) - 1]
        };
        Some(Self {
            p50: at(0.50),
            p99: at(0.99),
            max: at(1.0),
        })
    }
}

/// What the run measured.
#[derive(Debug, Clone)]
pub struct WorkflowFigures {
    pub refunds: usize,
    pub concurrency: usize,
    pub completed: usize,
    pub failed: usize,
    pub seconds: f64,
    pub latency: Option<Millis>,
    /// KiB: before the refund run, its highest sample during it, after it.
    pub engine_rss_kib: (Option<u64>, Option<u64>, Option<u64>),
    pub risk_evaluations: usize,
    pub risk: Option<Millis>,
}

/// Runs every measurement against the stack behind `args`' addresses.
pub fn measure(args: &WorkflowBenchArgs) -> Result<WorkflowFigures> {
    let client = Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .context("building the HTTP client")?;
    let engine_pid = engine_pid(&args.engine);
    if engine_pid.is_none() {
        say(
            "the workflow engine's process was not found on this machine; its memory is not measured",
        );
    }
    let (admin_email, admin_password) = crate::services::admin_credentials();
    let admin = login(&client, &args.gateway, &admin_email, &admin_password)?;

    say(&format!(
        "workflow: preparing {} paid orders for the refund run",
        args.refunds
    ));
    let orders = prepare_paid_orders(&client, args, &admin)?;

    let before = engine_pid.and_then(rss_kib);
    say(&format!(
        "workflow: {} auto-approved refunds, {} at a time",
        orders.len(),
        args.concurrency
    ));
    let peak = AtomicUsize::new(0);
    let done = AtomicBool::new(false);
    let (latencies, failed, seconds) = thread::scope(|scope| {
        scope.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                if let Some(kib) = engine_pid.and_then(rss_kib) {
                    peak.fetch_max(
                        usize::try_from(kib).unwrap_or(usize::MAX),
                        Ordering::Relaxed,
                    );
                }
                thread::sleep(Duration::from_millis(200));
            }
        });
        let outcome = refund_run(&client, args, &orders);
        done.store(true, Ordering::Relaxed);
        outcome
    })?;
    let during = Some(peak.load(Ordering::Relaxed) as u64).filter(|kib| *kib > 0);
    let after = engine_pid.and_then(rss_kib);

    say(&format!(
        "workflow: {} sequential evaluations of order-risk",
        args.risk_evaluations
    ));
    let risk = risk_check(&client, &args.engine, args.risk_evaluations)?;
    Ok(WorkflowFigures {
        refunds: orders.len(),
        concurrency: args.concurrency,
        completed: latencies.len(),
        failed,
        seconds,
        latency: Millis::of(latencies),
        engine_rss_kib: (before, during, after),
        risk_evaluations: args.risk_evaluations,
        risk: Millis::of(risk),
    })
}

/// `cargo xtask bench-workflow`: the measurement alone, against a running stack.
pub fn run_alone(args: &WorkflowBenchArgs) -> Result<()> {
    let figures = measure(args)?;
    let section = figures.markdown(&format!(
        "cargo xtask bench-workflow --refunds {} --concurrency {} --risk-evaluations {}",
        args.refunds, args.concurrency, args.risk_evaluations
    ));
    println!("{section}");
    if let Some(output) = &args.output {
        fs::write(output, &section).with_context(|| format!("writing {}", output.display()))?;
    }
    Ok(())
}

fn login(client: &Client, base: &str, email: &str, password: &str) -> Result<String> {
    let reply: Value = client
        .post(format!("{base}/api/users/login"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .and_then(reqwest::blocking::Response::error_for_status)
        .with_context(|| format!("logging in as {email}"))?
        .json()?;
    reply["access_token"]
        .as_str()
        .map(str::to_owned)
        .context("a login answer without access_token")
}

/// A customer's token: registered and logged in at user-service.
fn customer(client: &Client, users: &str) -> Result<String> {
    let email = format!("bench-refund-{}@bench.local", unique());
    let password = "bench refund password";
    client
        .post(format!("{users}/api/users/register"))
        .json(&json!({"email": email, "password": password, "name": "Bench Customer"}))
        .send()
        .and_then(reqwest::blocking::Response::error_for_status)
        .context("registering a customer")?;
    login(client, users, &email, password)
}

/// A random name part, so that runs against the same stack never collide.
fn unique() -> String {
    format!(
        "{:016x}{:016x}",
        rand::random::<u64>(),
        rand::random::<u64>()
    )
}

fn get_json(client: &Client, url: &str, token: &str) -> Result<(u16, Value)> {
    let response = client.get(url).bearer_auth(token).send()?;
    let status = response.status().as_u16();
    Ok((status, response.json().unwrap_or(Value::Null)))
}

/// Polls the order until it has `status`; returns when it was first seen so.
fn wait_for_status(
    client: &Client,
    gateway: &str,
    token: &str,
    order: &str,
    status: &str,
) -> Result<Instant> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (code, body) = get_json(client, &format!("{gateway}/api/orders/{order}"), token)?;
        if code == 200 && body["status"] == status {
            return Ok(Instant::now());
        }
        if Instant::now() > deadline {
            bail!(
                "order {order} is {} after {PATIENCE:?}, waiting for {status}",
                body["status"]
            );
        }
        thread::sleep(POLL);
    }
}

/// (customer token, order id) of `args.refunds` paid orders.
fn prepare_paid_orders(
    client: &Client,
    args: &WorkflowBenchArgs,
    admin: &str,
) -> Result<Vec<(String, String)>> {
    let sku = format!("BENCH-REFUND-{}", unique());
    let product: Value = client
        .post(format!("{}/api/products", args.gateway))
        .bearer_auth(admin)
        .json(&json!({
            "sku": sku, "name": format!("Refund bench product {sku}"),
            "description": "made by cargo xtask bench for the refund run", "category": "bench",
            "tags": ["bench"], "price": {"amount": 1_000, "currency": "EUR"},
            "specs": {}, "images": [], "initial_stock": args.refunds + 10,
        }))
        .send()
        .and_then(reqwest::blocking::Response::error_for_status)
        .context("creating the bench product")?
        .json()?;
    let product = product["id"]
        .as_str()
        .context("a product without id")?
        .to_owned();
    let next = AtomicUsize::new(0);
    let orders = Mutex::new(Vec::new());
    let errors = Mutex::new(Vec::new());
    thread::scope(|scope| {
        for _ in 0..args.concurrency.clamp(1, 4) {
            scope.spawn(|| {
                while next.fetch_add(1, Ordering::Relaxed) < args.refunds {
                    match paid_order(client, args, &product) {
                        Ok(order) => orders.lock().map(|mut o| o.push(order)).unwrap_or(()),
                        Err(error) => errors
                            .lock()
                            .map(|mut e| e.push(format!("{error:#}")))
                            .unwrap_or(()),
                    }
                }
            });
        }
    });
    let errors = errors.into_inner().unwrap_or_default();
    let orders = orders.into_inner().unwrap_or_default();
    ensure!(
        errors.is_empty(),
        "preparing paid orders failed: {}",
        errors.join("; ")
    );
    Ok(orders)
}

fn paid_order(
    client: &Client,
    args: &WorkflowBenchArgs,
    product: &str,
) -> Result<(String, String)> {
    let token = customer(client, &args.users)?;
    // The catalog replica of order-service learns of a new product a moment later.
    let deadline = Instant::now() + PATIENCE;
    let order = loop {
        let reply = client
            .post(format!("{}/api/orders", args.gateway))
            .bearer_auth(&token)
            .json(
                &json!({"items": [{"product_id": product, "quantity": 1}], "shipping_address": {
                "name": "Bench Customer", "line1": "1 Bench Street", "city": "Benchville",
                "postal_code": "12345", "country": "DE"}}),
            )
            .send()?;
        let status = reply.status().as_u16();
        let body: Value = reply.json().unwrap_or(Value::Null);
        if status == 201 {
            break body["id"]
                .as_str()
                .context("an order without id")?
                .to_owned();
        }
        ensure!(
            status == 422 && Instant::now() < deadline,
            "placing an order: {status} {body}"
        );
        thread::sleep(Duration::from_millis(200));
    };
    wait_for_status(client, &args.gateway, &token, &order, "AWAITING_PAYMENT")?;
    client
        .post(format!("{}/api/payments", args.gateway))
        .bearer_auth(&token)
        .header("Idempotency-Key", unique())
        .json(&json!({"order_id": order, "card": {
            "number": "4242424242424242", "exp_month": 12, "exp_year": 2040, "cvc": "123"}}))
        .send()
        .and_then(reqwest::blocking::Response::error_for_status)
        .context("paying")?;
    wait_for_status(client, &args.gateway, &token, &order, "PAID")?;
    Ok((token, order))
}

/// Request-to-`REFUNDED` latencies in ms, failures, and the run's wall time in seconds.
fn refund_run(
    client: &Client,
    args: &WorkflowBenchArgs,
    orders: &[(String, String)],
) -> Result<(Vec<f64>, usize, f64)> {
    let next = AtomicUsize::new(0);
    let latencies = Mutex::new(Vec::new());
    let failures = Mutex::new(Vec::new());
    let started = Instant::now();
    thread::scope(|scope| {
        for _ in 0..args.concurrency.max(1) {
            scope.spawn(|| {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some((token, order)) = orders.get(index) else {
                        break;
                    };
                    match one_refund(client, &args.gateway, token, order) {
                        Ok(ms) => latencies.lock().map(|mut l| l.push(ms)).unwrap_or(()),
                        Err(error) => failures
                            .lock()
                            .map(|mut f| f.push(format!("{error:#}")))
                            .unwrap_or(()),
                    }
                }
            });
        }
    });
    let seconds = started.elapsed().as_secs_f64();
    let failures = failures.into_inner().unwrap_or_default();
    if let Some(first) = failures.first() {
        say(&format!(
            "workflow: {} refunds failed, e.g. {first}",
            failures.len()
        ));
    }
    Ok((
        latencies.into_inner().unwrap_or_default(),
        failures.len(),
        seconds,
    ))
}

fn one_refund(client: &Client, gateway: &str, token: &str, order: &str) -> Result<f64> {
    let sent = Instant::now();
    let reply = client
        .post(format!("{gateway}/api/orders/{order}/refund-requests"))
        .bearer_auth(token)
        .json(&json!({"reason": "damaged"}))
        .send()?;
    let status = reply.status().as_u16();
    ensure!(
        status == 201,
        "refund request: {status} {}",
        reply.text().unwrap_or_default()
    );
    let refunded = wait_for_status(client, gateway, token, order, "REFUNDED")?;
    Ok(refunded.duration_since(sent).as_secs_f64() * 1_000.0)
}

/// Milliseconds of each evaluation of `order-risk` with a low-risk order's inputs.
fn risk_check(client: &Client, engine: &str, count: usize) -> Result<Vec<f64>> {
    let url = format!("{engine}/engine-rest/decision-definition/key/order-risk/evaluate");
    let body = json!({"variables": {
        "amount": {"value": 2_500, "type": "Long"},
        "reviewAmount": {"value": 1_000_000, "type": "Long"},
        "accountAgeDays": {"value": 400, "type": "Integer"},
        "ordersLastHour": {"value": 0, "type": "Integer"},
        "shippingCountry": {"value": "DE", "type": "String"},
    }});
    // The first calls warm the connection and the engine's caches.
    let mut samples = Vec::with_capacity(count);
    for index in 0..count + 20 {
        let started = Instant::now();
        let answer: Value = client
            .post(&url)
            .json(&body)
            .send()
            .and_then(reqwest::blocking::Response::error_for_status)
            .context("evaluating order-risk")?
            .json()?;
        let elapsed = started.elapsed().as_secs_f64() * 1_000.0;
        ensure!(
            answer[0]["outcome"]["value"] == "accept",
            "order-risk did not accept a low-risk order: {answer}"
        );
        if index >= 20 {
            samples.push(elapsed);
        }
    }
    Ok(samples)
}

/// The engine serving `engine`'s port: a `java` process running `workflow-engine.jar` whose
/// `WORKFLOW_ENGINE_PORT` is that port (absent: the default 8086).
fn engine_pid(engine: &str) -> Option<u32> {
    let port = engine
        .rsplit(':')
        .next()
        .and_then(|tail| tail.trim_end_matches('/').parse::<u16>().ok())
        .unwrap_or(8086);
    fs::read_dir("/proc").ok()?.flatten().find_map(|entry| {
        let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
        let cmdline = fs::read(entry.path().join("cmdline")).ok()?;
        if !String::from_utf8_lossy(&cmdline).contains("workflow-engine.jar") {
            return None;
        }
        let environ = fs::read(entry.path().join("environ")).unwrap_or_default();
        let environ = String::from_utf8_lossy(&environ);
        let configured = environ
            .split('\0')
            .find_map(|pair| pair.strip_prefix("WORKFLOW_ENGINE_PORT="))
            .and_then(|value| value.parse::<u16>().ok())
            .unwrap_or(8086);
        (configured == port).then_some(pid)
    })
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
}

fn ms(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0} ms")
    } else {
        format!("{value:.1} ms")
    }
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or_else(
        || "not measured".into(),
        |kib| format!("{:.0} MiB", kib as f64 / 1024.0),
    )
}

impl WorkflowFigures {
    /// Completed refund processes per second over the run.
    pub fn refunds_per_second(&self) -> f64 {
        if self.seconds > 0.0 {
            self.completed as f64 / self.seconds
        } else {
            0.0
        }
    }

    /// The report's section, with the command that produced it.
    pub fn markdown(&self, command: &str) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "## Workflows: refunds and the risk check\n");
        let _ = writeln!(
            out,
            "Measured with `{command}` (see `xtask/src/bench/workflow.rs` for how).\n"
        );
        let _ = writeln!(out, "| figure | value |\n|---|---|");
        let _ = writeln!(
            out,
            "| auto-approved refund processes completed | {} of {} ({} failed), {} clients at a time |",
            self.completed, self.refunds, self.failed, self.concurrency
        );
        let _ = writeln!(
            out,
            "| refunds per second | {:.1} ({:.1} s in all) |",
            self.refunds_per_second(),
            self.seconds
        );
        match self.latency {
            Some(l) => {
                let _ = writeln!(
                    out,
                    "| request to `REFUNDED`, p50 / p99 / max | {} / {} / {} |",
                    ms(l.p50),
                    ms(l.p99),
                    ms(l.max)
                );
            }
            None => {
                let _ = writeln!(out, "| request to `REFUNDED` | no refund completed |");
            }
        }
        let (before, during, after) = self.engine_rss_kib;
        let _ = writeln!(
            out,
            "| engine RSS before / highest during / after the run | {} / {} / {} |",
            mib(before),
            mib(during),
            mib(after)
        );
        match self.risk {
            Some(r) => {
                let _ = writeln!(
                    out,
                    "| risk check of a low-risk order ({} evaluations), p50 / p99 / max | {} / {} / {} (target p99 < {RISK_P99_TARGET_MS} ms: {}) |",
                    self.risk_evaluations,
                    ms(r.p50),
                    ms(r.p99),
                    ms(r.max),
                    if r.p99 < RISK_P99_TARGET_MS {
                        "met"
                    } else {
                        "missed"
                    }
                );
            }
            None => {
                let _ = writeln!(out, "| risk check | not measured |");
            }
        }
        out.push('\n');
        out
    }

    /// One line for the console summary.
    pub fn summary(&self) -> String {
        format!(
            "workflow: {:.1} refunds/s, request to REFUNDED p99 {}, risk check p99 {}",
            self.refunds_per_second(),
            self.latency.map_or_else(|| "-".into(), |l| ms(l.p99)),
            self.risk.map_or_else(|| "-".into(), |r| ms(r.p99)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::Millis;

    #[test]
    fn quantiles_take_the_nearest_rank() -> anyhow::Result<()> {
        let samples: Vec<f64> = (1..=100).map(f64::from).collect();
        let q = Millis::of(samples).ok_or_else(|| anyhow::anyhow!("no quantiles"))?;
        assert_eq!((q.p50, q.p99, q.max), (50.0, 99.0, 100.0));
        let one = Millis::of(vec![7.0]).ok_or_else(|| anyhow::anyhow!("no quantiles"))?;
        assert_eq!((one.p50, one.p99, one.max), (7.0, 7.0, 7.0));
        assert!(Millis::of(Vec::new()).is_none());
        Ok(())
    }
}
