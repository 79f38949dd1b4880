//! `loadgen`: HTTP load runs and the checkout scenario from the command line.
//!
//! ```text
//! cargo run -p loadgen --release -- http http://127.0.0.1:8082/api/products -c 16 -d 10
//! cargo run -p loadgen --release -- http http://127.0.0.1:8080/health/live --rate 2000 -d 10
//! cargo run -p loadgen --release -- checkout --rate 5 -d 30
//! ```
//!
//! `--json` prints the report as one JSON line on stdout (progress stays on stderr); that is
//! how `cargo xtask bench` reads the results. A checkout run also prints, before it, a line
//! when its order flows start and one when they have finished (`WindowEdge::marker`), so the
//! bench can leave setup and the audit out of what it charges to the orders.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use clap::{Parser, Subcommand};
use http::{HeaderName, HeaderValue, Method};
use loadgen::audit::{AuditConfig, AuditReport};
use loadgen::{
    CheckoutConfig, CheckoutPace, CheckoutReport, Endpoint, HotConfig, HotReport, LatencySummary,
    LoadSpec, Pace, Popularity, RequestSpec, RunReport, WindowEdge, format_ms,
};

#[derive(Parser)]
#[command(name = "loadgen", about = "ferroshop load generator")]
struct Cli {
    /// Runtime worker threads. One leaves the other cores to the servers being measured.
    #[arg(long, global = true, default_value_t = 1)]
    threads: usize,
    /// Print the report as one JSON line instead of a table.
    #[arg(long, global = true)]
    json: bool,
    /// No progress display.
    #[arg(long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Load one URL (or a list of paths on its host) with saturation or a fixed rate.
    Http {
        /// http://host:port/path; the path is used unless --path or --paths-file are given.
        url: String,
        /// Paths on the URL's host to rotate through (repeatable).
        #[arg(long = "path")]
        paths: Vec<String>,
        /// A file with one path per line to rotate through.
        #[arg(long)]
        paths_file: Option<std::path::PathBuf>,
        /// Connections (each carries one request at a time).
        #[arg(short, long, default_value_t = 16)]
        connections: usize,
        /// Measured seconds.
        #[arg(short, long, default_value_t = 10.0)]
        duration: f64,
        /// Seconds run before the measurement and not recorded.
        #[arg(long, default_value_t = 1.0)]
        warmup: f64,
        /// Requests per second in total (open loop); without it, saturation (closed loop).
        #[arg(long)]
        rate: Option<f64>,
        #[arg(long, default_value = "GET")]
        method: String,
        /// Extra header `name: value` (repeatable).
        #[arg(short = 'H', long = "header")]
        headers: Vec<String>,
        /// Request body (sent as application/json).
        #[arg(long)]
        body: Option<String>,
        /// Seconds before an unanswered request counts as an error.
        #[arg(long, default_value_t = 10.0)]
        timeout: f64,
        /// Name shown in the progress line and the report.
        #[arg(long)]
        label: Option<String>,
    },
    /// The checkout saga through the gateway: create -> AWAITING_PAYMENT -> pay -> PAID.
    Checkout {
        #[arg(long, env = "GATEWAY_URL", default_value = "http://127.0.0.1:8080")]
        gateway_url: String,
        #[arg(
            long,
            env = "USER_SERVICE_URL",
            default_value = "http://127.0.0.1:8081"
        )]
        user_service_url: String,
        #[arg(
            long,
            env = "PRODUCT_SERVICE_URL",
            default_value = "http://127.0.0.1:8082"
        )]
        product_service_url: String,
        #[arg(long, env = "ADMIN_EMAIL", default_value = "admin@example.com")]
        admin_email: String,
        #[arg(long, env = "ADMIN_PASSWORD", default_value = "admin-dev-password")]
        admin_password: String,
        /// Orders per second (open loop). Without it: --concurrency flows back to back.
        #[arg(long)]
        rate: Option<f64>,
        /// Concurrent order flows when no --rate is given.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// Seconds during which orders are started.
        #[arg(short, long, default_value_t = 60.0)]
        duration: f64,
        /// Customers the orders are spread over.
        #[arg(long, default_value_t = 16)]
        users: usize,
        /// Products the orders are spread over.
        #[arg(long, default_value_t = 32)]
        products: usize,
        /// Units of stock added to each product first.
        #[arg(long, default_value_t = 1_000)]
        stock: i64,
        /// Milliseconds between two status checks of an order.
        #[arg(long, default_value_t = 10)]
        poll_ms: u64,
        /// Seconds an order may take to reach PAID before it counts as failed.
        #[arg(long, default_value_t = 30.0)]
        order_timeout: f64,
        /// How orders pick their product: `uniform`, or `zipf:S` (Zipf's law, exponent S).
        #[arg(long, default_value = "uniform")]
        popularity: String,
        /// After the run, check the invariants over every order it created (needs the
        /// provider simulator: --psp-url, --psp-api-key).
        #[arg(long)]
        audit: bool,
        #[arg(long, env = "PSP_URL", default_value = "http://127.0.0.1:8090")]
        psp_url: String,
        #[arg(long, env = "PSP_API_KEY", default_value = "sk_test_ferroshop")]
        psp_api_key: String,
        /// Seconds the audit waits for orders to settle and receipts to arrive.
        #[arg(long, default_value_t = 60.0)]
        settle_timeout: f64,
    },
    /// A burst of orders for one new product with less stock than orders: how fast one
    /// contended product's reservations are decided, and whether exactly the stock is reserved.
    HotProduct {
        #[arg(long, env = "GATEWAY_URL", default_value = "http://127.0.0.1:8080")]
        gateway_url: String,
        #[arg(
            long,
            env = "USER_SERVICE_URL",
            default_value = "http://127.0.0.1:8081"
        )]
        user_service_url: String,
        #[arg(
            long,
            env = "PRODUCT_SERVICE_URL",
            default_value = "http://127.0.0.1:8082"
        )]
        product_service_url: String,
        #[arg(long, env = "ADMIN_EMAIL", default_value = "admin@example.com")]
        admin_email: String,
        #[arg(long, env = "ADMIN_PASSWORD", default_value = "admin-dev-password")]
        admin_password: String,
        #[arg(long, default_value_t = 16)]
        users: usize,
        /// Orders sent (one unit each).
        #[arg(long, default_value_t = 2_000)]
        orders: usize,
        /// Units the product starts with.
        #[arg(long, default_value_t = 500)]
        stock: i64,
        /// Orders in flight at once.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        #[arg(long, default_value_t = 60.0)]
        order_timeout: f64,
    },
}

/// `uniform` or `zipf:S`.
fn popularity(text: &str) -> Result<Popularity> {
    match text.split_once(':') {
        None if text == "uniform" => Ok(Popularity::Uniform),
        Some(("zipf", exponent)) => {
            let exponent: f64 = exponent
                .parse()
                .with_context(|| format!("--popularity {text}: {exponent:?} is not a number"))?;
            if !(exponent.is_finite() && exponent > 0.0) {
                bail!("--popularity {text}: the exponent must be positive");
            }
            Ok(Popularity::Zipf(exponent))
        }
        _ => bail!("--popularity {text}: expected `uniform` or `zipf:S`"),
    }
}

fn seconds(value: f64, what: &str) -> Result<Duration> {
    Duration::try_from_secs_f64(value)
        .with_context(|| format!("{what}: {value} is not a duration in seconds"))
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cli.threads.max(1))
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let show_progress = !cli.quiet;
    match cli.command {
        Command::Http {
            url,
            mut paths,
            paths_file,
            connections,
            duration,
            warmup,
            rate,
            method,
            headers,
            body,
            timeout,
            label,
        } => {
            if let Some(file) = paths_file {
                let text = std::fs::read_to_string(&file)
                    .with_context(|| format!("reading {}", file.display()))?;
                paths.extend(
                    text.lines()
                        .map(str::trim)
                        .filter(|l| !l.is_empty())
                        .map(str::to_owned),
                );
            }
            let method: Method = method
                .parse()
                .with_context(|| format!("{method:?} is not an HTTP method"))?;
            let mut parsed_headers = Vec::new();
            for header in headers {
                let (name, value) = header
                    .split_once(':')
                    .with_context(|| format!("header {header:?} is not `name: value`"))?;
                parsed_headers.push((
                    HeaderName::try_from(name.trim())
                        .with_context(|| format!("header name {name:?}"))?,
                    HeaderValue::try_from(value.trim())
                        .with_context(|| format!("header value {value:?}"))?,
                ));
            }
            let report = runtime.block_on(async {
                let endpoint = Endpoint::parse(&url).await?;
                if paths.is_empty() {
                    paths.push(endpoint.path.clone());
                }
                let requests = paths
                    .into_iter()
                    .map(|path| RequestSpec {
                        method: method.clone(),
                        path,
                        headers: parsed_headers.clone(),
                        body: body.clone().map(Bytes::from).unwrap_or_default(),
                    })
                    .collect();
                let pace = match rate {
                    Some(rate) if rate.is_finite() && rate > 0.0 => Pace::Rate(rate),
                    Some(rate) => bail!("--rate {rate}: must be a positive number"),
                    None => Pace::Saturate,
                };
                loadgen::load::run(LoadSpec {
                    label: label.unwrap_or_else(|| url.clone()),
                    endpoint,
                    requests,
                    connections,
                    duration: seconds(duration, "--duration")?,
                    warmup: seconds(warmup, "--warmup")?,
                    pace,
                    timeout: seconds(timeout, "--timeout")?,
                    show_progress,
                })
                .await
            })?;
            if cli.json {
                println!(
                    "{}",
                    serde_json::to_string(&report).context("encoding the report")?
                );
            } else {
                print_run(&report);
            }
        }
        Command::Checkout {
            gateway_url,
            user_service_url,
            product_service_url,
            admin_email,
            admin_password,
            rate,
            concurrency,
            duration,
            users,
            products,
            stock,
            poll_ms,
            order_timeout,
            popularity: popularity_text,
            audit,
            psp_url,
            psp_api_key,
            settle_timeout,
        } => {
            let pace = match rate {
                Some(rate) if rate.is_finite() && rate > 0.0 => CheckoutPace::Rate(rate),
                Some(rate) => bail!("--rate {rate}: must be a positive number"),
                None => CheckoutPace::Concurrent(concurrency.max(1)),
            };
            let config = CheckoutConfig {
                gateway_url: gateway_url.trim_end_matches('/').to_owned(),
                user_service_url: user_service_url.trim_end_matches('/').to_owned(),
                product_service_url: product_service_url.trim_end_matches('/').to_owned(),
                admin_email,
                admin_password,
                users,
                products,
                stock_per_product: stock,
                popularity: popularity(&popularity_text)?,
                audit: if audit {
                    Some(AuditConfig {
                        psp_url: psp_url.trim_end_matches('/').to_owned(),
                        psp_api_key,
                        settle_timeout: seconds(settle_timeout, "--settle-timeout")?,
                        mailpit_url: None,
                    })
                } else {
                    None
                },
                pace,
                duration: seconds(duration, "--duration")?,
                poll_interval: Duration::from_millis(poll_ms.max(1)),
                order_timeout: seconds(order_timeout, "--order-timeout")?,
                show_progress,
                window: None,
                retry_transient: false,
            };
            let report = if cli.json {
                // The window's edges go out as lines of their own before the report, when
                // they happen, for a caller that measures the platform between them.
                let (window, edges) = std::sync::mpsc::channel::<WindowEdge>();
                let printer = std::thread::spawn(move || {
                    for edge in edges {
                        println!("{}", edge.marker());
                    }
                });
                let report = runtime.block_on(loadgen::checkout::run(CheckoutConfig {
                    window: Some(window),
                    ..config
                }));
                // The run dropped its sender, so the printer ends once the edges are out,
                // and the report stays the last line.
                if printer.join().is_err() {
                    bail!("the window printer panicked");
                }
                report?
            } else {
                runtime.block_on(loadgen::checkout::run(config))?
            };
            if cli.json {
                println!(
                    "{}",
                    serde_json::to_string(&report).context("encoding the report")?
                );
            } else {
                print_checkout(&report);
            }
        }
        Command::HotProduct {
            gateway_url,
            user_service_url,
            product_service_url,
            admin_email,
            admin_password,
            users,
            orders,
            stock,
            concurrency,
            order_timeout,
        } => {
            let config = HotConfig {
                gateway_url: gateway_url.trim_end_matches('/').to_owned(),
                user_service_url: user_service_url.trim_end_matches('/').to_owned(),
                product_service_url: product_service_url.trim_end_matches('/').to_owned(),
                admin_email,
                admin_password,
                users,
                orders: orders.max(1),
                stock,
                concurrency,
                order_timeout: seconds(order_timeout, "--order-timeout")?,
            };
            let report = runtime.block_on(loadgen::hot::run(config))?;
            if cli.json {
                println!(
                    "{}",
                    serde_json::to_string(&report).context("encoding the report")?
                );
            } else {
                print_hot(&report);
            }
        }
    }
    Ok(())
}

fn print_hot(r: &HotReport) {
    println!(
        "hot product ({} orders, {} units, {} in flight)",
        r.orders, r.stock, r.concurrency
    );
    println!(
        "  decided        {} reserved, {} rejected, {} failed in {:.1} s ({:.0} orders/s)",
        r.reserved, r.rejected, r.failed, r.elapsed_secs, r.decided_per_sec
    );
    latency_line("create call", &r.create_call);
    latency_line("decision", &r.decision);
    println!(
        "  product after  available {} reserved {} sold {}: {}",
        r.after.available,
        r.after.reserved,
        r.after.sold,
        if r.exact {
            "exactly the stock reserved"
        } else {
            "NOT exact"
        }
    );
    if let Some(failure) = &r.first_failure {
        println!("  first failure  {failure}");
    }
}

fn print_audit(a: &AuditReport) {
    println!(
        "  invariants     {} ({} orders, settled in {:.1} s; {:?})",
        if a.passed { "hold" } else { "VIOLATED" },
        a.orders,
        a.settle_secs,
        a.statuses
    );
    println!(
        "                 sold {} = paid units {}; charges kept {} (+{} refunded); receipts {}/{}",
        a.sold_units,
        a.paid_units,
        a.charges_kept,
        a.refunds,
        a.receipts_found,
        a.receipts_expected
    );
    for violation in &a.violations {
        println!("  violation      {violation}");
    }
}

fn latency_line(name: &str, s: &LatencySummary) {
    println!(
        "  {name:<14} p50 {:>9}  p90 {:>9}  p99 {:>9}  p99.9 {:>9}  max {:>9}  (n={})",
        format_ms(s.p50_ms),
        format_ms(s.p90_ms),
        format_ms(s.p99_ms),
        format_ms(s.p999_ms),
        format_ms(s.max_ms),
        s.count
    );
}

fn print_run(r: &RunReport) {
    println!(
        "{} ({}, {} connections, {:.0} s)",
        r.label, r.mode, r.connections, r.duration_secs
    );
    if let Some(rate) = r.target_rate {
        println!("  target rate    {rate:.0} req/s");
    }
    println!(
        "  throughput     {:.0} req/s (2xx)   ok {}  non-2xx {}  errors {}  missed {}",
        r.ok_per_sec, r.ok, r.non_2xx, r.errors, r.missed
    );
    latency_line("latency", &r.latency);
    if r.target_rate.is_some() {
        latency_line("service time", &r.service_time);
    }
    for (status, count) in &r.statuses {
        println!("  status {status}     {count}");
    }
    if let Some(error) = &r.first_error {
        println!("  first error    {error}");
    }
}

fn print_checkout(r: &CheckoutReport) {
    println!(
        "checkout ({}, {:.0} s, {} users, {} products, poll {} ms)",
        r.mode, r.duration_secs, r.users, r.products, r.poll_interval_ms
    );
    println!(
        "  orders         {} started, {} paid ({:.1}/s), {} rejected, {} cancelled, {} failed",
        r.started, r.paid, r.paid_per_sec, r.rejected, r.cancelled, r.failed
    );
    latency_line("create->PAID", &r.total);
    latency_line("create call", &r.create_call);
    latency_line("reservation", &r.reservation);
    latency_line("payment call", &r.payment_call);
    latency_line("settlement", &r.settlement);
    for (reason, count) in &r.failures {
        println!("  failed: {reason} x{count}");
    }
    if let Some(failure) = &r.first_failure {
        println!("  first failure  {failure}");
    }
    if let Some(audit) = &r.audit {
        print_audit(audit);
    }
}
