//! The bench's runs: the release-built load generator and the bare hello server it is compared
//! with, one run at saturation and at half of it, the checkout and hot-product runs, and the
//! browser and large-catalog steps. Each run's `--json` report is read back here.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use loadgen::{CheckoutReport, HotReport, RunReport, WindowEdge};
use serde::de::DeserializeOwned;

use super::*;

/// Before an HTTP run, the machine must have been below this share busy for a second ...
pub(super) const SETTLED_BUSY_SHARE: f64 = 0.3;
/// ... or this long must have passed.
pub(super) const SETTLE_MAX: Duration = Duration::from_secs(30);

/// Waits until the machine is quiet (see [`SETTLED_BUSY_SHARE`]); returns how long it waited.
fn settle() -> Duration {
    let started = Instant::now();
    while started.elapsed() < SETTLE_MAX {
        let before = machine::CpuTicks::now();
        thread::sleep(Duration::from_secs(1));
        let share = before
            .zip(machine::CpuTicks::now())
            .and_then(|(start, end)| end.busy_share_since(&start));
        if share.is_none_or(|share| share <= SETTLED_BUSY_SHARE) {
            break;
        }
    }
    started.elapsed()
}

/// [`settle`], saying so when it took long.
fn settled(label: &str) {
    let waited = settle();
    if waited > Duration::from_secs(3) {
        say(&format!(
            "waited {:.0} s for the machine to settle before {label}",
            waited.as_secs_f64()
        ));
    }
}

pub(super) struct Tools {
    pub(super) loadgen: PathBuf,
    pub(super) hello_server: PathBuf,
    pub(super) mongo_bench: PathBuf,
}

pub(super) fn build_loadgen(layout: &Layout) -> Result<Tools> {
    let task = Task::start("cargo build", "building the load generator (release)");
    let mut build = crate::proc::cargo();
    build
        .current_dir(&layout.repo)
        .args(["build", "--release", "--package", "loadgen"])
        // `--bins`: every binary of both (`--bin` would leave out loadgen's).
        .args(["--package", "mongo-conformance", "--bins"]);
    if let Err(e) = run_logged(
        &mut build,
        &layout.log_file("build"),
        "cargo build --release",
    ) {
        task.fail();
        return Err(e);
    }
    task.done("load generator built");
    let release = layout.target_dir().join("release");
    Ok(Tools {
        loadgen: release.join("loadgen"),
        hello_server: release.join("hello-server"),
        mongo_bench: release.join("mongo-bench"),
    })
}

/// The ceiling server, stopped when dropped.
pub(super) struct HelloServer {
    pub(super) child: Child,
    pub(super) url: String,
}

impl HelloServer {
    pub(super) fn start(exe: &Path) -> Result<Self> {
        let mut child = Command::new(exe)
            .args(["--port", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", exe.display()))?;
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            BufReader::new(out)
                .read_line(&mut line)
                .context("reading hello-server's address")?;
        }
        let Some(url) = line.trim().strip_prefix("listening on ") else {
            let _ = child.kill();
            let _ = child.wait();
            bail!("hello-server did not start: {line:?}");
        };
        let url = url.to_owned();
        Ok(Self { child, url })
    }

    pub(super) fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for HelloServer {
    fn drop(&mut self) {
        // Our own child: stopping it is safe and nothing else depends on it.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The label of the unmeasured checkout run (not an HTTP run of the CPU table).
pub(super) const CHECKOUT_WARMUP: &str = "checkout warm-up";

pub(super) struct Runner<'a> {
    pub(super) tools: &'a Tools,
    pub(super) plan: &'a Plan,
    pub(super) args: &'a BenchArgs,
}

impl Runner<'_> {
    pub(super) fn base(&self) -> Command {
        let mut cmd = Command::new(&self.tools.loadgen);
        cmd.args([
            "--json",
            "--threads",
            &self.args.loadgen_threads.max(1).to_string(),
        ]);
        cmd
    }

    pub(super) fn http_args(
        &self,
        cmd: &mut Command,
        label: &str,
        connections: usize,
        rate: Option<f64>,
    ) {
        cmd.args([
            "--label",
            label,
            "--connections",
            &connections.to_string(),
            "--duration",
            &self.plan.seconds.to_string(),
            "--warmup",
            &self.plan.warmup.to_string(),
        ]);
        if let Some(rate) = rate {
            cmd.args(["--rate", &format!("{rate:.1}")]);
        }
    }

    /// `connections` 0 means the default (`--connections`).
    pub(super) fn http(
        &self,
        memory: &mut MemoryLog,
        label: &str,
        base_url: &str,
        paths: &[String],
        rate: Option<f64>,
    ) -> Result<RunReport> {
        let mut cmd = self.base();
        cmd.args(["http", base_url]);
        for path in paths {
            cmd.args(["--path", path]);
        }
        self.http_args(&mut cmd, label, self.args.connections, rate);
        settled(label);
        parse(&run_json(cmd, memory, label)?, label)
    }

    /// A saturation run over `paths_file`, then an open-loop run at half its rate, each
    /// request with `headers` (`name: value`).
    pub(super) fn saturation_and_half(
        &self,
        memory: &mut MemoryLog,
        label: &str,
        base_url: &str,
        paths_file: &Path,
        headers: &[&str],
    ) -> Result<(RunReport, RunReport)> {
        let saturation = self.http_file(memory, label, base_url, paths_file, headers, None)?;
        let half = self.http_file(
            memory,
            &format!("{label} 50%"),
            base_url,
            paths_file,
            headers,
            Some((saturation.ok_per_sec * 0.5).max(0.1)),
        )?;
        Ok((saturation, half))
    }

    /// Listings, search and suggestions from their paths files, each at saturation and at
    /// half; `suffix` follows each run's label.
    pub(super) fn catalog_reads(
        &self,
        memory: &mut MemoryLog,
        suffix: &str,
        base_url: &str,
        [listings, search, suggest]: [&Path; 3],
    ) -> Result<CatalogReads> {
        let (listing_sat, listing_half) =
            self.saturation_and_half(memory, &format!("listing{suffix}"), base_url, listings, &[])?;
        let (search_sat, search_half) =
            self.saturation_and_half(memory, &format!("search{suffix}"), base_url, search, &[])?;
        // The same searches with their matches computed afresh for every request: what a
        // search costs when product-service has not kept the matches of its text.
        let (search_fresh_sat, search_fresh_half) = self.saturation_and_half(
            memory,
            &format!("search afresh{suffix}"),
            base_url,
            search,
            &["Cache-Control: no-cache"],
        )?;
        let (suggest_sat, suggest_half) =
            self.saturation_and_half(memory, &format!("suggest{suffix}"), base_url, suggest, &[])?;
        Ok(CatalogReads {
            listing_sat,
            listing_half,
            search_sat,
            search_half,
            search_fresh_sat,
            search_fresh_half,
            suggest_sat,
            suggest_half,
        })
    }

    pub(super) fn http_file(
        &self,
        memory: &mut MemoryLog,
        label: &str,
        base_url: &str,
        paths_file: &Path,
        headers: &[&str],
        rate: Option<f64>,
    ) -> Result<RunReport> {
        let mut cmd = self.base();
        cmd.args(["http", base_url, "--paths-file"]).arg(paths_file);
        for header in headers {
            cmd.args(["--header", header]);
        }
        self.http_args(&mut cmd, label, self.args.connections, rate);
        settled(label);
        parse(&run_json(cmd, memory, label)?, label)
    }

    /// A measured checkout run; `at_edge` runs at the edges of its window (see
    /// [`run_json_windowed`]).
    pub(super) fn checkout(
        &self,
        memory: &mut MemoryLog,
        gateway_url: &str,
        rate: Option<f64>,
        at_edge: &mut dyn FnMut(WindowEdge) -> Result<()>,
    ) -> Result<CheckoutReport> {
        let mut cmd = self.checkout_command(gateway_url, self.plan.checkout_seconds)?;
        cmd.args(["--audit", "--psp-url", &service_url("psp-sim")?]);
        let label = match rate {
            Some(rate) => {
                cmd.args(["--rate", &rate.to_string(), "--poll-ms", "10"]);
                format!("checkout at {rate}/s")
            }
            None => {
                self.sustained_pace(&mut cmd);
                "checkout sustained".to_owned()
            }
        };
        parse(&run_json_windowed(cmd, memory, &label, at_edge)?, &label)
    }

    /// The unmeasured checkout before the measured ones (`--checkout-warmup`): the sustained
    /// run's flows, its report discarded. Its orders are real and stay in the stack; the
    /// measured runs' audits look only at the orders each run created.
    pub(super) fn checkout_warmup(&self, memory: &mut MemoryLog, gateway_url: &str) -> Result<()> {
        if self.plan.checkout_warmup <= 0.0 {
            return Ok(());
        }
        let mut cmd = self.checkout_command(gateway_url, self.plan.checkout_warmup)?;
        self.sustained_pace(&mut cmd);
        let label = CHECKOUT_WARMUP;
        let _: CheckoutReport = parse(&run_json(cmd, memory, label)?, label)?;
        Ok(())
    }

    /// The sustained run's pace: back-to-back flows.
    fn sustained_pace(&self, cmd: &mut Command) {
        // Polling costs the system what it measures; throughput needs less precision.
        cmd.args([
            "--concurrency",
            &self.args.order_concurrency.to_string(),
            "--poll-ms",
            "50",
        ]);
    }

    /// A checkout run of `seconds` through `gateway_url`, without its pace.
    fn checkout_command(&self, gateway_url: &str, seconds: f64) -> Result<Command> {
        let (admin_email, admin_password) = services::admin_credentials();
        let mut cmd = self.base();
        cmd.args([
            "checkout",
            "--gateway-url",
            gateway_url,
            "--user-service-url",
            &service_url("user-service")?,
            "--product-service-url",
            &service_url("product-service")?,
            "--admin-email",
            &admin_email,
            "--admin-password",
            &admin_password,
            "--duration",
            &seconds.to_string(),
            "--products",
            &self.args.order_products.to_string(),
            "--popularity",
            "zipf:1.0",
        ]);
        Ok(cmd)
    }

    pub(super) fn hot_product(
        &self,
        memory: &mut MemoryLog,
        gateway_url: &str,
    ) -> Result<HotReport> {
        let (admin_email, admin_password) = services::admin_credentials();
        // A smoke run sends a fifth of the burst.
        let quick_divisor: usize = if self.args.quick { 5 } else { 1 };
        let mut cmd = self.base();
        cmd.args([
            "hot-product",
            "--gateway-url",
            gateway_url,
            "--user-service-url",
            &service_url("user-service")?,
            "--product-service-url",
            &service_url("product-service")?,
            "--admin-email",
            &admin_email,
            "--admin-password",
            &admin_password,
            "--orders",
            &(self.args.hot_orders / quick_divisor).max(1).to_string(),
            "--stock",
            &(self.args.hot_stock / quick_divisor as i64).to_string(),
        ]);
        parse(&run_json(cmd, memory, "hot product")?, "hot product")
    }
}

/// What one paid order of the sustained run cost the infrastructure: everything the platform
/// did while the order flows ran (setup and the audit left out), divided by the orders paid
/// meanwhile (the run's rate of paid orders times the counted window).
pub(super) struct OrderCosts {
    /// Orders paid in the run.
    pub(super) orders: u64,
    /// Seconds between the two readings of the counters.
    pub(super) window_secs: f64,
    pub(super) kafka_records: f64,
    pub(super) pg_commits: f64,
    pub(super) mongo_writes: f64,
    pub(super) mongo_commits: f64,
    /// Write commands per paid order by namespace, the largest first.
    pub(super) mongo_writes_by_namespace: Vec<(String, f64)>,
    /// Every command per paid order (reads too) by name and namespace, the largest first.
    pub(super) mongo_commands: Vec<(String, f64)>,
}

impl OrderCosts {
    /// From counters read `window_secs` apart while `run`'s order flows ran, at its rate of
    /// paid orders.
    pub(super) fn between(
        before: &capacity::Counters,
        after: &capacity::Counters,
        window_secs: f64,
        run: &CheckoutReport,
    ) -> Self {
        let orders = run.paid_per_sec * window_secs;
        let per = |a: i64, b: i64| {
            if orders <= 0.0 || a < 0 || b < 0 {
                f64::NAN
            } else {
                (b - a) as f64 / orders
            }
        };
        Self {
            orders: run.paid,
            window_secs,
            kafka_records: per(before.kafka_records, after.kafka_records),
            pg_commits: per(before.pg_commits, after.pg_commits),
            mongo_writes: per(before.mongo_writes, after.mongo_writes),
            mongo_commits: per(before.mongo_commits, after.mongo_commits),
            mongo_writes_by_namespace: per_order_by_key(
                &before.mongo_writes_by_namespace,
                &after.mongo_writes_by_namespace,
                orders,
            ),
            mongo_commands: per_order_by_key(&before.mongo_commands, &after.mongo_commands, orders),
        }
    }
}

/// Each key's growth during the run (write commands by namespace, commands by name and
/// namespace) per paid order, the largest first (keys that did not grow left out).
fn per_order_by_key(
    before: &std::collections::BTreeMap<String, i64>,
    after: &std::collections::BTreeMap<String, i64>,
    orders: f64,
) -> Vec<(String, f64)> {
    if orders <= 0.0 {
        return Vec::new();
    }
    let mut per_order: Vec<(String, f64)> = after
        .iter()
        .filter_map(|(key, count)| {
            let was = before.get(key).copied().unwrap_or(0);
            (count > &was).then(|| (key.clone(), (count - was) as f64 / orders))
        })
        .collect();
    per_order.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    per_order
}

/// Runs one loadgen process (progress on the inherited stderr), sampling the stack's memory
/// while it runs, and returns its JSON report line; its CPU time is counted from start to exit.
pub(super) fn run_json(cmd: Command, memory: &mut MemoryLog, label: &str) -> Result<String> {
    run_json_windowed(cmd, memory, label, &mut |_| Ok(()))
}

/// [`run_json`] for a run that marks the edges of its measured window on stdout (a checkout
/// run, see [`WindowEdge`]): CPU time is counted between them, so setup (registering
/// customers, stocking products) and the audit are not charged to the orders. `at_edge` runs
/// at each edge outside the CPU window (before it opens, after it closes), so what it costs
/// (reading the infrastructure's counters starts a JVM) is not counted either.
pub(super) fn run_json_windowed(
    mut cmd: Command,
    memory: &mut MemoryLog,
    label: &str,
    at_edge: &mut dyn FnMut(WindowEdge) -> Result<()>,
) -> Result<String> {
    let mut cpu_before = Some(memory.cpu_snapshot());
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        // stderr as the caller set it: the terminal unless it was sent elsewhere.
        .spawn()
        .with_context(|| format!("starting the load generator for {label}"))?;
    let stdout = child.stdout.take().context("the load generator's stdout")?;
    // Lines are read on a thread of their own, so memory keeps being sampled meanwhile and an
    // edge is handled when it is printed.
    let (lines_out, lines) = std::sync::mpsc::channel::<String>();
    let reader = thread::spawn(move || {
        for line in BufReader::new(stdout)
            .lines()
            .map_while(std::io::Result::ok)
        {
            if lines_out.send(line).is_err() {
                break;
            }
        }
    });
    let mut report = String::new();
    let mut failed = None;
    loop {
        match lines.recv_timeout(Duration::from_millis(250)) {
            Ok(line) => match WindowEdge::from_marker(&line) {
                Some(edge @ WindowEdge::FlowsStarted) => {
                    if let Err(error) = at_edge(edge) {
                        failed = Some(error);
                        break;
                    }
                    cpu_before = Some(memory.cpu_snapshot());
                }
                Some(edge @ WindowEdge::FlowsFinished) => {
                    if let Some(before) = cpu_before.take() {
                        memory.record_cpu(label, before);
                    }
                    if let Err(error) = at_edge(edge) {
                        failed = Some(error);
                        break;
                    }
                }
                None => report = line,
            },
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => memory.sample_load(),
            // stdout closed: the load generator is exiting.
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    if let Some(error) = failed {
        // Already gone is fine: the error is what is reported.
        let _ = child.kill();
        let _ = child.wait();
        return Err(error.context(format!("measuring {label}")));
    }
    let status = child.wait().context("waiting for the load generator")?;
    if reader.join().is_err() {
        bail!("reading the load generator's output failed for {label}");
    }
    if !status.success() {
        bail!("the load generator failed for {label} ({status})");
    }
    if let Some(before) = cpu_before {
        memory.record_cpu(label, before);
    }
    Ok(report)
}

pub(super) fn parse<T: DeserializeOwned>(line: &str, label: &str) -> Result<T> {
    serde_json::from_str(line).with_context(|| format!("parsing the report of {label}: {line:?}"))
}

/// Runs the storefront's browser measurement; an error (no Chromium, say) is reported in
/// the report rather than ending the bench, with the reason the script gave.
pub(super) fn storefront_budgets(
    layout: &Layout,
    gateway_url: &str,
    memory: &mut MemoryLog,
) -> Result<StorefrontFigures, String> {
    // The path the browser helpers launch (`web/tests/browser/helpers.mjs`).
    let chromium = std::env::var_os("CHROMIUM_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    if !chromium.is_file() {
        return Err(format!(
            "{} is missing: install Debian's chromium (`.ci/run` does), or set CHROMIUM_PATH",
            chromium.display()
        ));
    }
    let output = layout.local.join("bench").join("storefront");
    fs::create_dir_all(&output)
        .map_err(|error| format!("creating {}: {error}", output.display()))?;
    // Its progress and any failure go to a log, whose last line names a failure's cause.
    let log_path = output.join("storefront.log");
    let log = fs::File::create(&log_path)
        .map_err(|error| format!("creating {}: {error}", log_path.display()))?;
    let mut node = Command::new("node");
    node.arg(crate::storefront::web_dir(layout).join("bench/storefront.mjs"))
        .env("STOREFRONT_URL", gateway_url)
        .env("BROWSER_TEST_OUTPUT", &output)
        .stderr(log);
    run_json(node, memory, "storefront")
        .and_then(|line| parse(&line, "storefront"))
        .map_err(|error| {
            let cause = fs::read_to_string(&log_path)
                .ok()
                .and_then(|log| last_error_line(&log).map(str::to_owned));
            match cause {
                Some(cause) => format!("{error:#}: {cause} (log: {})", log_path.display()),
                None => format!("{error:#} (log: {})", log_path.display()),
            }
        })
}

/// The line of a script's stderr that names why it failed: the last one that mentions an
/// error, else the last line.
fn last_error_line(log: &str) -> Option<&str> {
    let lines = || log.lines().map(str::trim).filter(|line| !line.is_empty());
    lines()
        .rfind(|line| line.contains("Error") || line.contains("error"))
        .or_else(|| lines().next_back())
}

/// Seeds up to `--large-products`, restarts product-service and times it to ready, then
/// measures listings, search and suggestions through the gateway again.
pub(super) fn large_catalog(
    layout: &Layout,
    s: &Settings,
    runner: &Runner<'_>,
    memory: &mut MemoryLog,
    gateway_url: &str,
    [listings, search, suggest]: [&Path; 3],
) -> Result<LargeCatalog> {
    let products = runner.args.large_products;
    say(&format!("seeding the catalog up to {products} products"));
    let started = Instant::now();
    let seeded = seed::seed(products)?;
    let seed_seconds = started.elapsed().as_secs_f64();
    say("restarting product-service to time a replica's load of the whole catalog");
    let pid_file = layout.pid_file("product-service");
    let stopped_at = Instant::now();
    if let Some(pid) = crate::proc::live_pid(&pid_file) {
        crate::proc::stop_group(pid, "TERM", Duration::from_secs(30))
            .context("stopping product-service")?;
        let _ = fs::remove_file(&pid_file);
    }
    services::up(layout, s, 1)?;
    let ready_seconds = stopped_at.elapsed().as_secs_f64();
    memory.follow_restart(layout, "product-service");
    // Ready is product-service's own answer; the gateway takes the replica back into rotation
    // at its next probe of it. Without this wait the first second or two of the runs below
    // were the gateway's 503s ("no instance in rotation"): 771 of them, in the warm-up.
    wait_for_route(&format!("{gateway_url}/api/products?limit=1"))?;
    let rss_loaded_kib = product_service_rss_kib(layout);
    let reads = runner.catalog_reads(
        memory,
        &format!(" ({products})"),
        gateway_url,
        [listings, search, suggest],
    )?;
    Ok(LargeCatalog {
        products,
        seeded,
        seed_seconds,
        ready_seconds,
        rss_loaded_kib,
        rss_after_kib: product_service_rss_kib(layout),
        reads,
    })
}

/// Waits (up to 30 s) until `url` answers 200 through the gateway.
fn wait_for_route(url: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = crate::proc::http_status(url);
        if status == Some(200) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{url} still answers {status:?} after 30 s");
        }
        thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn quiet_log() -> MemoryLog {
        MemoryLog {
            components: Vec::new(),
            phase: Phase::Checkout,
            figures: BTreeMap::new(),
            cpu: Vec::new(),
            trees: Default::default(),
        }
    }

    #[test]
    fn a_failed_scripts_cause_is_its_last_line_naming_an_error() {
        let log = "home 300 ms, search 310 ms\n\
                   file:///web/bench/storefront.mjs:40\n\
                   Error: no product in stock: 200 {}\n    at main (storefront.mjs:41)\n\n";
        assert_eq!(
            last_error_line(log),
            Some("Error: no product in stock: 200 {}")
        );
        assert_eq!(last_error_line("killed\n"), Some("killed"));
        assert_eq!(last_error_line("\n  \n"), None);
    }

    /// A stand-in for the load generator: prints `lines` on stdout, one by one.
    fn printing(lines: &[&str]) -> Command {
        let mut cmd = Command::new("sh");
        let script: Vec<String> = lines
            .iter()
            .map(|line| format!("printf '%s\\n' '{line}'"))
            .collect();
        cmd.args(["-c", &script.join("; ")]);
        cmd
    }

    #[test]
    fn a_marked_window_is_called_back_at_both_edges_and_the_report_is_the_last_other_line()
    -> Result<()> {
        let mut memory = quiet_log();
        let cmd = printing(&[
            "registering customers",
            WindowEdge::FlowsStarted.marker(),
            WindowEdge::FlowsFinished.marker(),
            r#"{"paid":3}"#,
        ]);
        let mut edges = Vec::new();
        let report = run_json_windowed(cmd, &mut memory, "checkout", &mut |edge| {
            edges.push(edge);
            Ok(())
        })?;
        assert_eq!(report, r#"{"paid":3}"#);
        assert_eq!(edges, [WindowEdge::FlowsStarted, WindowEdge::FlowsFinished]);
        // One CPU record for the run, made when the window closed.
        assert_eq!(memory.cpu.len(), 1);
        assert!(memory.cpu_of("checkout").is_some());
        Ok(())
    }

    #[test]
    fn a_run_without_markers_is_measured_from_start_to_exit() -> Result<()> {
        let mut memory = quiet_log();
        let mut edges = 0;
        let report =
            run_json_windowed(printing(&[r#"{"ok":1}"#]), &mut memory, "http", &mut |_| {
                edges += 1;
                Ok(())
            })?;
        assert_eq!(report, r#"{"ok":1}"#);
        assert_eq!(edges, 0);
        assert_eq!(memory.cpu.len(), 1);
        Ok(())
    }

    #[test]
    fn a_failed_edge_ends_the_run_with_its_error() {
        let mut memory = quiet_log();
        let cmd = printing(&[WindowEdge::FlowsStarted.marker(), r#"{"paid":3}"#]);
        let outcome = run_json_windowed(cmd, &mut memory, "checkout", &mut |_| {
            bail!("counters unavailable")
        });
        let error = outcome.err().map(|e| format!("{e:#}")).unwrap_or_default();
        assert!(error.contains("counters unavailable"), "{error}");
        assert!(memory.cpu.is_empty());
    }
}
