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
//! The risk check is timed where it happens, in order-service, which evaluates the table
//! in-process: its `order_risk_check_seconds` histogram (the customer's two indexed reads and
//! the evaluation) is read from `/metrics` before and after the orders for the refund run are
//! placed, and once more over everything since the service started (the saturated checkout
//! runs included); `order_risk_checks_total{source}` shows which path decided. The quantiles
//! are bucket bounds (0.5, 1, 2.5, 5, 10, 25 ms, ...). The engine's evaluate endpoint, the
//! path when the table is not in process, is still timed sequentially from one client with
//! the inputs of a low-risk order.

use std::collections::BTreeMap;
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
    /// order-service, whose `/metrics` time the risk check.
    #[arg(long, default_value = "http://127.0.0.1:8083")]
    pub orders: String,
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
    /// order-service's risk checks of the orders placed for the refund run.
    pub risk_in_service: Option<RiskHistogram>,
    /// order-service's risk checks since it started.
    pub risk_in_service_all: Option<RiskHistogram>,
}

/// `order_risk_check_seconds` and `order_risk_checks_total` as order-service exports them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RiskHistogram {
    /// (upper bound in seconds, cumulative count), ascending; `+Inf` last.
    buckets: Vec<(f64, u64)>,
    /// Checks by the path that decided: `table`, `engine`, `fallback`.
    sources: BTreeMap<String, u64>,
}

impl RiskHistogram {
    /// From Prometheus' text format.
    fn parse(text: &str) -> Self {
        let label = |line: &str, name: &str| {
            let start = line.find(&format!("{name}=\""))? + name.len() + 2;
            let end = start + line[start..].find('"')?;
            Some(line[start..end].to_owned())
        };
        let value = |line: &str| line.rsplit(' ').next()?.parse::<f64>().ok();
        let mut histogram = Self::default();
        for line in text.lines() {
            if line.starts_with("order_risk_check_seconds_bucket{") {
                let bound = label(line, "le").and_then(|le| match le.as_str() {
                    "+Inf" => Some(f64::INFINITY),
                    other => other.parse().ok(),
                });
                if let (Some(bound), Some(count)) = (bound, value(line)) {
                    histogram.buckets.push((bound, count as u64));
                }
            } else if line.starts_with("order_risk_checks_total{")
                && let (Some(source), Some(count)) = (label(line, "source"), value(line))
            {
                histogram.sources.insert(source, count as u64);
            }
        }
        histogram.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        histogram
    }

    /// What was counted after `earlier`.
    fn since(&self, earlier: &Self) -> Self {
        let before = |bound: f64| {
            earlier
                .buckets
                .iter()
                .find(|(b, _)| *b == bound)
                .map_or(0, |(_, c)| *c)
        };
        Self {
            buckets: self
                .buckets
                .iter()
                .map(|(bound, count)| (*bound, count.saturating_sub(before(*bound))))
                .collect(),
            sources: self
                .sources
                .iter()
                .map(|(source, count)| {
                    let earlier = earlier.sources.get(source).copied().unwrap_or(0);
                    (source.clone(), count.saturating_sub(earlier))
                })
                .collect(),
        }
    }

    pub fn count(&self) -> u64 {
        self.buckets.last().map_or(0, |(_, c)| *c)
    }

    /// The bucket bound (ms) under which the share `q` of the checks fell.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = ((total as f64) * q).ceil().max(1.0) as u64;
        self.buckets
            .iter()
            .find(|(_, count)| *count >= rank)
            .map(|(bound, _)| bound * 1_000.0)
    }

    fn source(&self, name: &str) -> u64 {
        self.sources.get(name).copied().unwrap_or(0)
    }
}

/// order-service's risk-check metrics now (`None` when it cannot be read).
fn risk_histogram(client: &Client, orders: &str) -> Option<RiskHistogram> {
    let text = client
        .get(format!("{orders}/metrics"))
        .send()
        .and_then(reqwest::blocking::Response::error_for_status)
        .and_then(reqwest::blocking::Response::text)
        .ok()?;
    Some(RiskHistogram::parse(&text))
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
    let admin = crate::services::login(&client, &args.gateway, &admin_email, &admin_password)?;

    say(&format!(
        "workflow: preparing {} paid orders for the refund run",
        args.refunds
    ));
    let risk_before = risk_histogram(&client, &args.orders);
    let orders = prepare_paid_orders(&client, args, &admin)?;
    let risk_all = risk_histogram(&client, &args.orders);
    let risk_in_service = risk_before
        .zip(risk_all.clone())
        .map(|(before, after)| after.since(&before));
    if risk_all.is_none() {
        say("order-service's /metrics could not be read; its risk check is not measured");
    }

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
        risk_in_service,
        risk_in_service_all: risk_all,
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
    crate::services::login(client, users, &email, password)
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
        let in_service = |label: &str, histogram: &Option<RiskHistogram>, target: bool| {
            let Some(h) = histogram.as_ref().filter(|h| h.count() > 0) else {
                return format!("| {label} | not measured |\n");
            };
            let bound = |q| {
                h.quantile_ms(q)
                    .map_or_else(|| "-".into(), |b| format!("<= {}", ms(b)))
            };
            let verdict = match h.quantile_ms(0.99) {
                Some(p99) if target && p99 <= RISK_P99_TARGET_MS => {
                    format!(" (target p99 < {RISK_P99_TARGET_MS} ms: met)")
                }
                Some(_) if target => format!(" (target p99 < {RISK_P99_TARGET_MS} ms: missed)"),
                _ => String::new(),
            };
            format!(
                "| {label}, {} checks, p50 / p99 | {} / {}{verdict}; decided in-process {}, by the engine {}, without the table {} |\n",
                h.count(),
                bound(0.5),
                bound(0.99),
                h.source("table"),
                h.source("engine"),
                h.source("fallback"),
            )
        };
        out.push_str(&in_service(
            "risk check in order-service (`order_risk_check_seconds`), the orders placed for this run",
            &self.risk_in_service,
            true,
        ));
        out.push_str(&in_service(
            "risk check in order-service, every order since it started (the checkout runs included)",
            &self.risk_in_service_all,
            false,
        ));
        match self.risk {
            Some(r) => {
                let _ = writeln!(
                    out,
                    "| the engine's evaluate endpoint, the path when the table is not in process ({} sequential evaluations), p50 / p99 / max | {} / {} / {} |",
                    self.risk_evaluations,
                    ms(r.p50),
                    ms(r.p99),
                    ms(r.max),
                );
            }
            None => {
                let _ = writeln!(out, "| the engine's evaluate endpoint | not measured |");
            }
        }
        out.push('\n');
        out
    }

    /// One line for the console summary.
    pub fn summary(&self) -> String {
        format!(
            "workflow: {:.1} refunds/s, request to REFUNDED p99 {}, risk check p99 {} (engine's endpoint {})",
            self.refunds_per_second(),
            self.latency.map_or_else(|| "-".into(), |l| ms(l.p99)),
            self.risk_in_service
                .as_ref()
                .and_then(|h| h.quantile_ms(0.99))
                .map_or_else(|| "-".into(), |b| format!("<= {}", ms(b))),
            self.risk.map_or_else(|| "-".into(), |r| ms(r.p99)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::{Millis, RiskHistogram};

    #[test]
    fn the_risk_histogram_is_read_from_prometheus_text_and_subtracted() {
        let exported = |counts: [u64; 4], table: u64| {
            format!(
                "# TYPE order_risk_check_seconds histogram\n\
                 order_risk_check_seconds_bucket{{le=\"0.001\"}} {}\n\
                 order_risk_check_seconds_bucket{{le=\"0.005\"}} {}\n\
                 order_risk_check_seconds_bucket{{le=\"0.025\"}} {}\n\
                 order_risk_check_seconds_bucket{{le=\"+Inf\"}} {}\n\
                 order_risk_check_seconds_sum 0.5\n\
                 order_risk_checks_total{{source=\"table\"}} {table}\n\
                 order_risk_checks_total{{source=\"fallback\"}} 1\n",
                counts[0], counts[1], counts[2], counts[3]
            )
        };
        let before = RiskHistogram::parse(&exported([10, 10, 11, 11], 10));
        let after = RiskHistogram::parse(&exported([50, 108, 110, 111], 110));
        assert_eq!(after.count(), 111);
        let run = after.since(&before);
        assert_eq!(run.count(), 100);
        assert_eq!(run.quantile_ms(0.5), Some(5.0));
        assert_eq!(run.quantile_ms(0.4), Some(1.0));
        assert_eq!(run.quantile_ms(0.99), Some(25.0));
        assert_eq!(run.quantile_ms(1.0), Some(f64::INFINITY));
        assert_eq!((run.source("table"), run.source("fallback")), (100, 0));
        assert_eq!(RiskHistogram::parse("").quantile_ms(0.5), None);
    }

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
