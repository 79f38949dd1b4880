//! Developer task runner for ferroshop (`cargo xtask <command>`).
//!
//! `up` provisions and starts the local stack natively, without Docker: PostgreSQL (Debian's
//! server), Apache Kafka in KRaft mode, Zipkin and the MongoDB-wire server (mongo-java-server,
//! all from Maven Central), the OIDC stand-in for Google (mock-oauth2-server, Maven Central),
//! Mailpit (built from the Go module proxy), the workflow engine (Operaton, built with Maven
//! from `workflow/engine`), then builds and starts
//! the Rust services.
//! Tools are cached under `$FERROSHOP_CACHE` (default `~/.cache/ferroshop`); data, pid files
//! and logs live in the clone's git-ignored `.local/`. `down` stops exactly the process groups
//! that `up` recorded, `status` and `logs` inspect them, and `test` runs the checks and the
//! test suite against the real stack, ending with one `N passed, N failed` line.

#![allow(
    clippy::disallowed_methods,
    reason = "xtask is a synchronous command-line tool: blocking sleeps are right here, and its configuration is the developer's environment"
)]

mod bench;
mod capacity;
mod chaos;
mod deploy_check;
mod infra;
mod layout;
mod proc;
mod provision;
mod seed;
mod services;
mod storefront;
#[cfg(test)]
mod tidy;
mod ui;

use std::io::{BufRead, BufReader};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

use crate::infra::{ALL, Infra, State};
use crate::layout::{Layout, Settings, rel};
use crate::proc::{live_pid, port_open};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "ferroshop developer tasks")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Provision (first time) and start the infrastructure and the services.
    Up {
        /// Start only the infrastructure, not the Rust services.
        #[arg(long)]
        infra_only: bool,
        /// Instances of each stateless service (user, product, order, payment,
        /// notification), on ports 100 apart, all behind the gateway.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=9))]
        replicas: u16,
    },
    /// Stop everything `up` started.
    Down {
        /// Also delete all local data (.local/data).
        #[arg(long)]
        wipe: bool,
    },
    /// One line per component: up/down, port, pid.
    Status,
    /// Show the last 200 lines of a component's log.
    Logs {
        /// Component: postgres, kafka, mongo-wire, zipkin, mailpit, oidc-standin, workflow-engine
        /// or a service name.
        name: String,
        /// Keep following the log.
        #[arg(short, long)]
        follow: bool,
    },
    /// Load a realistic catalog (through product-service's admin API; needs `up`).
    Seed {
        /// How many products.
        #[arg(long, default_value_t = 1000)]
        count: usize,
    },
    /// Measure throughput, latency and memory of the stack; writes docs/BENCHMARKS.md.
    Bench(bench::BenchArgs),
    /// Only the workflow figures of `bench` (refunds per second, request-to-refund latency,
    /// the engine's memory, the risk check), against a running stack; starts nothing.
    BenchWorkflow(bench::workflow::WorkflowBenchArgs),
    /// The checkout under load while processes are killed and restarted, then an audit of
    /// every order; on a private stack (ports + offset, `.local/chaos`). Writes
    /// docs/RELIABILITY.md; fails when an invariant does not hold.
    Chaos(chaos::ChaosArgs),
    /// fmt check, clippy, deploy-file validation, infrastructure up, then the workspace tests.
    Test {
        /// Extra arguments for `cargo test` (after `--`), e.g. a test name filter.
        #[arg(last = true)]
        args: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            // One line: the context chain, never a backtrace.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    let layout = Layout::detect()?;
    let settings = Settings::from_env()?;
    match cli.command {
        Cmd::Up {
            infra_only,
            replicas,
        } => up(&layout, &settings, infra_only, replicas.into()).map(|()| ExitCode::SUCCESS),
        Cmd::Down { wipe } => down(&layout, wipe).map(|()| ExitCode::SUCCESS),
        Cmd::Status => status(&layout, &settings).map(|()| ExitCode::SUCCESS),
        Cmd::Logs { name, follow } => logs(&layout, &name, follow),
        Cmd::Seed { count } => seed::seed(count).map(|_| ExitCode::SUCCESS),
        Cmd::Bench(args) => bench::bench(&layout, &settings, &args),
        Cmd::BenchWorkflow(args) => bench::workflow::run_alone(&args).map(|()| ExitCode::SUCCESS),
        Cmd::Chaos(args) => chaos::chaos(&layout, &args),
        Cmd::Test { args } => test(&layout, &settings, &args),
    }
}

fn up(layout: &Layout, s: &Settings, infra_only: bool, replicas: usize) -> Result<()> {
    let started = Instant::now();
    infra::up(layout, s)?;
    if !infra_only {
        // Before the services: the gateway is started pointing at the built bundle.
        storefront::build(layout)?;
        services::up(layout, s, replicas)?;
    }
    let (email, password) = services::admin_credentials();
    println!();
    println!("ferroshop is up ({:.1}s)", started.elapsed().as_secs_f64());
    if !infra_only {
        for svc in services::present(layout) {
            let url = svc.base_url()?;
            println!("  {:<14} {url}   API docs {url}/docs", svc.name);
        }
        if let Some(gateway) = services::present(layout)
            .into_iter()
            .find(|svc| svc.name == "gateway")
        {
            println!("  {:<14} {}/", "Storefront", gateway.base_url()?);
        }
    }
    println!("  {:<14} {}", "Zipkin", s.zipkin_url());
    println!("  {:<14} {}", "Mail inbox", s.mailpit_url());
    println!(
        "  {:<14} {}   (Google stand-in: any e-mail address as user name)",
        "OIDC issuer",
        s.oidc_google_issuer()
    );
    println!(
        "  {:<14} {}/operaton/app/   REST {}/engine-rest   login {} / {}",
        "Workflows",
        s.workflow_url(),
        s.workflow_url(),
        services::workflow_admin().0,
        services::workflow_admin().1
    );
    println!("  {:<14} {}", "PostgreSQL", s.database_url("postgres"));
    println!("  {:<14} {}", "Kafka", s.kafka_brokers());
    println!("  {:<14} {}", "MongoDB wire", s.mongodb_url());
    println!("  {:<14} 127.0.0.1:{}", "SMTP", s.smtp_port);
    if !infra_only {
        println!("  {:<14} {email} / {password}", "Admin login");
    }
    Ok(())
}

fn down(layout: &Layout, wipe: bool) -> Result<()> {
    // Services first (they hold connections to the infrastructure), then infrastructure in
    // reverse start order.
    for instance in services::SERVICES.iter().rev().flat_map(|svc| {
        svc.recorded_instances(layout)
            .unwrap_or_else(|_| vec![])
            .into_iter()
            .rev()
    }) {
        let pid_file = layout.pid_file(&instance.name);
        if let Some(pid) = live_pid(&pid_file) {
            proc::stop_group(pid, "TERM", Duration::from_secs(30))
                .with_context(|| format!("stopping {}", instance.name))?;
            println!("stopped {} (pid {pid})", instance.name);
        }
        let _ = std::fs::remove_file(&pid_file);
    }
    for c in ALL.iter().rev() {
        if let Some(pid) =
            infra::stop(layout, *c).with_context(|| format!("stopping {}", c.name()))?
        {
            println!("stopped {} (pid {pid})", c.name());
        }
    }
    infra::stop_retired(layout)?;
    if wipe {
        let data = layout.data_root();
        // PostgreSQL's files may sit outside the clone behind a link (see infra/postgres.rs).
        if let Ok(target) = std::fs::read_link(layout.data_dir("postgres")) {
            std::fs::remove_dir_all(&target)
                .with_context(|| format!("deleting {}", target.display()))?;
        }
        if data.exists() {
            std::fs::remove_dir_all(&data)
                .with_context(|| format!("deleting {}", data.display()))?;
            println!("deleted {}", rel(layout, &data));
        }
    }
    Ok(())
}

fn status(layout: &Layout, s: &Settings) -> Result<()> {
    println!("{:<14} {:<9} {:<6} pid", "component", "state", "port");
    for c in ALL {
        let port = c.main_port(s);
        let (state, pid) = match infra::state(layout, s, c) {
            State::Running(pid) => ("up", pid.to_string()),
            State::Starting(pid) => ("starting", pid.to_string()),
            State::Stopped => ("down", "-".into()),
            State::Foreign(_, _) => ("foreign", "-".into()),
            State::External => (
                if infra::pg_query(s, "postgres", "SELECT 1").is_ok() {
                    "external"
                } else {
                    "ext-down"
                },
                "-".into(),
            ),
        };
        println!("{:<14} {state:<9} {port:<6} {pid}", c.name());
    }
    for instance in services::present(layout)
        .iter()
        .map(|svc| svc.recorded_instances(layout))
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .flatten()
    {
        let port = instance.port;
        let (state, pid) = match live_pid(&layout.pid_file(&instance.name)) {
            Some(pid) if port_open(port) => ("up", pid.to_string()),
            Some(pid) => ("starting", pid.to_string()),
            None if port_open(port) => ("foreign", "-".into()),
            None => ("down", "-".into()),
        };
        println!("{:<14} {state:<9} {port:<6} {pid}", instance.name);
    }
    Ok(())
}

fn logs(layout: &Layout, name: &str, follow: bool) -> Result<ExitCode> {
    let known = Infra::from_name(name).is_some()
        || services::SERVICES.iter().any(|s| s.name == name)
        || services::is_replica_name(name)
        || name == "build";
    if !known {
        let mut names: Vec<&str> = ALL.iter().map(|c| c.name()).collect();
        names.extend(services::SERVICES.iter().map(|s| s.name));
        bail!("unknown component {name:?}; one of: {}", names.join(", "));
    }
    let path = infra::log_path(layout, name);
    if !path.is_file() {
        bail!("no log yet for {name} ({})", rel(layout, &path));
    }
    if follow {
        // tail(1) already does following well, including truncation and rotation.
        let status = Command::new("tail")
            .args(["-n", "200", "-F"])
            .arg(&path)
            .status()
            .context("running tail -F")?;
        return Ok(if status.success() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    for line in proc::tail_lines(&path, 200) {
        println!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}

fn cargo() -> Command {
    proc::cargo()
}

fn run_step(layout: &Layout, title: &str, cmd: &mut Command) -> Result<()> {
    eprintln!("==> {title}");
    let status = cmd
        .current_dir(&layout.repo)
        .status()
        .with_context(|| format!("running {title}"))?;
    if !status.success() {
        bail!("{title} failed ({status})");
    }
    Ok(())
}

fn test(layout: &Layout, s: &Settings, args: &[String]) -> Result<ExitCode> {
    // clippy already runs librdkafka's build script.
    provision::native_build_tools(layout)?;
    run_step(
        layout,
        "cargo fmt --all --check",
        cargo().args(["fmt", "--all", "--check"]),
    )?;
    run_step(
        layout,
        "cargo clippy --workspace --all-targets -- -D warnings",
        cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    let cargo_deny = provision::cargo_deny(layout)?;
    run_step(
        layout,
        "cargo deny check licenses bans sources (deny.toml)",
        // Not `--offline`: cargo metadata must see every platform's crates, which cargo may
        // need to download from crates.io once. These checks never fetch the advisory database.
        Command::new(cargo_deny).args(["deny", "check", "licenses", "bans", "sources"]),
    )?;
    eprintln!("==> deploy files (Dockerfile, docker-compose.yml, Helm chart), offline");
    deploy_check::check(layout)?;
    eprintln!("==> infrastructure");
    infra::up(layout, s)?;

    // The system tests start every service from its binary.
    run_step(
        layout,
        "cargo build --workspace --bins",
        cargo().args(["build", "--workspace", "--bins"]),
    )?;
    // The contract tests (a system test) run schemathesis against every service.
    provision::provision_schemathesis(layout)?;
    // The browser tests (a system test) need the built storefront and playwright-core.
    eprintln!("==> storefront: npm ci and vite build when changed, then its unit tests");
    storefront::build(layout)?;
    run_step(
        layout,
        "npm test (Vitest, web/)",
        Command::new("npm")
            .args(["--prefix", "web", "test"])
            .env("npm_config_cache", layout.cache.join("npm")),
    )?;
    eprintln!(
        "==> cargo test --workspace --no-fail-fast {}",
        args.join(" ")
    );
    let mut child = cargo()
        .current_dir(&layout.repo)
        .args(["test", "--workspace", "--no-fail-fast"])
        .args(args)
        .env("TEST_DATABASE_URL", s.database_url("postgres"))
        .env("KAFKA_BROKERS", s.kafka_brokers())
        .env("ZIPKIN_URL", s.zipkin_url())
        .env("MONGODB_URL", s.mongodb_url())
        // The conformance suite starts its own instance of the local server to kill it.
        .env(
            "MONGO_WIRE_CLASSPATH",
            provision::mongo_wire_classpath(layout),
        )
        .env("MAILPIT_URL", s.mailpit_url())
        // user-service's sign-in tests start their own OIDC stand-in on a free port from these.
        .env(
            "OIDC_STANDIN_CLASSPATH",
            provision::oidc_standin_classpath(layout),
        )
        .env(
            "OIDC_STANDIN_CONFIG",
            provision::oidc_standin_config(layout),
        )
        .env("WORKFLOW_ENGINE_URL", s.workflow_url())
        .env("SMTP_HOST", "127.0.0.1")
        .env("SMTP_PORT", s.smtp_port.to_string())
        .env("SYSTEM_TEST_BIN_DIR", layout.target_dir().join("debug"))
        // The dependency outage tests start private instances of the infrastructure.
        .env("KAFKA_LIBS", provision::kafka_libs(layout))
        .env("MAILPIT_BIN", provision::mailpit_bin(layout))
        .envs(
            provision::postgres_bin_if_present()
                .map(|bin| ("POSTGRES_BIN_DIR", bin.into_os_string())),
        )
        .env("SCHEMATHESIS", provision::schemathesis_bin(layout))
        .stdout(Stdio::piped())
        .spawn()
        .context("running cargo test")?;
    let mut totals = Totals::default();
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines() {
            let line = line.context("reading cargo test output")?;
            println!("{line}");
            totals.add_line(&line);
        }
    }
    let status = child.wait().context("waiting for cargo test")?;
    if !status.success() && totals.failed == 0 {
        eprintln!("error: cargo test failed ({status})");
    }
    // A short chaos run on a private stack of its own (ports + `chaos::TEST_OFFSET`, so it
    // never meets the development stack nor a long `cargo xtask chaos` on the default offset,
    // and stays below the ephemeral ports, see `chaos::DEFAULT_OFFSET`), from the debug
    // binaries built above: about two minutes of load and a few dozen kills.
    let chaos_ok = run_step(
        layout,
        "cargo xtask chaos (short run)",
        // The xtask built by `cargo build --workspace --bins` above, not this process's own
        // executable: that build (features unified across the workspace) replaced the file
        // `cargo xtask` started, so `current_exe` now names a deleted file.
        Command::new(layout.target_dir().join("debug").join("xtask")).args([
            "chaos",
            "--minutes",
            "2",
            "--replicas",
            "1",
            "--profile",
            "debug",
            "--port-offset",
            &chaos::TEST_OFFSET.to_string(),
            "--min-interval",
            "1",
            "--max-interval",
            "3",
            "--output",
            ".local/chaos-test-report.md",
        ]),
    );
    match &chaos_ok {
        Ok(()) => {
            println!("test chaos_short_run ... ok");
            totals.passed += 1;
        }
        Err(e) => {
            println!("test chaos_short_run ... FAILED ({e:#})");
            totals.failed += 1;
        }
    }
    println!("{} passed, {} failed", totals.passed, totals.failed);
    Ok(if status.success() && totals.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Sums libtest's `test result: ok. 3 passed; 1 failed; ...` lines across test binaries.
#[derive(Debug, Default, PartialEq)]
struct Totals {
    passed: u64,
    failed: u64,
}

impl Totals {
    fn add_line(&mut self, line: &str) {
        let Some(rest) = line.trim_start().strip_prefix("test result:") else {
            return;
        };
        for part in rest.split(';') {
            let mut words = part.split_whitespace().rev();
            let (Some(label), Some(count)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(n) = count.parse::<u64>() else {
                continue;
            };
            match label {
                "passed" => self.passed += n,
                "failed" => self.failed += n,
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Totals;

    #[test]
    fn sums_test_result_lines() {
        let mut t = Totals::default();
        t.add_line("test result: ok. 3 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s");
        t.add_line(
            "test result: FAILED. 2 passed; 4 failed; 0 ignored; 0 measured; 0 filtered out",
        );
        t.add_line("test foo ... ok");
        assert_eq!(
            t,
            Totals {
                passed: 5,
                failed: 4
            }
        );
    }
}
