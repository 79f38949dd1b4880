//! `cargo xtask chaos`: the checkout under load while processes are killed, then an audit of
//! every order the run created. Writes docs/RELIABILITY.md.
//!
//! The run has a stack of its own, so it never disturbs the development stack (or anyone's
//! tests on the default ports): its data, pid files and logs live under `.local/chaos`
//! (`FERROSHOP_LOCAL`), and every port is the default plus `--port-offset` (5000: PostgreSQL
//! 10432, Kafka 14092, the MongoDB-wire server 32017, the gateway 13080, ...; every port stays
//! below Linux's ephemeral range, see [`DEFAULT_OFFSET`]). Only what the
//! checkout needs is started: PostgreSQL, Kafka, the MongoDB-wire server, Mailpit and the
//! services; Zipkin (spans are not exported: the sampler ratio is 0), the OIDC stand-in and the
//! workflow engine are left out, since no step of the checkout calls them.
//!
//! While the bench's buyers (`loadgen::checkout`, through the gateway) place and pay orders,
//! a supervisor thread kills, every few seconds, one process chosen at random among every
//! service instance, the gateway, Kafka, PostgreSQL and the MongoDB-wire server, with SIGKILL
//! on its whole process group (no shutdown hook runs, PostgreSQL's backends die with it), and
//! starts it again from the same command line, without building anything, timing the restart
//! until the process answers again. The provider and SMS simulators are not killed: they stand
//! for third parties and keep their records in memory, and the audit reads the provider's.
//! Kills are sequential: one process is down at a time.
//!
//! Afterwards the platform is left to settle and `loadgen::audit` checks, over every order of
//! the run, the invariants of DESIGN.md (see its module documentation); the run fails, naming
//! each check that does not hold, if any is violated when the settle deadline passes.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use loadgen::audit::{AuditConfig, AuditReport};
use loadgen::{CheckoutConfig, CheckoutPace, CheckoutReport, Popularity, WindowEdge};
use rand::SeedableRng as _;
use rand::seq::SliceRandom as _;
use rand::{Rng as _, rngs::StdRng};

use crate::infra::{self, Infra};
use crate::layout::{Layout, Settings, rel};
use crate::proc::{is_ours_alive, live_pid};
use crate::services::{self, Instance, SERVICES, Upstream};
use crate::ui::say;

#[derive(Debug, Clone, clap::Args)]
pub struct ChaosArgs {
    /// Minutes of load (and kills).
    #[arg(long, default_value_t = 10.0)]
    minutes: f64,
    /// Instances of each service that scales out (user, product, order, payment,
    /// notification); Kafka consumer groups share the partitions between them.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=5))]
    replicas: u16,
    /// Added to every default port (PostgreSQL 5432 + offset, gateway 8080 + offset, ...).
    #[arg(long, default_value_t = DEFAULT_OFFSET)]
    port_offset: u16,
    /// The build the services run from: `release` (built first) or `debug` (as `cargo xtask
    /// test` leaves it, built first as well; a no-op then).
    #[arg(long, default_value = "release", value_parser = ["release", "debug"])]
    profile: String,
    /// Seconds between a process being back and the next kill: uniformly drawn between these.
    #[arg(long, default_value_t = 2.0)]
    min_interval: f64,
    #[arg(long, default_value_t = 5.0)]
    max_interval: f64,
    /// Order flows at once (each a buyer placing, paying and following an order).
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Products in the private catalog (all of them take orders).
    #[arg(long, default_value_t = 40)]
    products: usize,
    /// Seconds the audit waits for every invariant to hold after the load stopped.
    #[arg(long, default_value_t = 300.0)]
    settle_timeout: f64,
    /// Seed of the victims' draw (random when absent; the report names it).
    #[arg(long)]
    seed: Option<u64>,
    /// Where the report goes, relative to the repository.
    #[arg(long, default_value = "docs/RELIABILITY.md")]
    output: PathBuf,
    /// Leave the private stack running afterwards (to inspect it); it is stopped otherwise.
    #[arg(long)]
    keep: bool,
}

/// Set on the run that has the private stack's environment (see [`chaos`]).
const MARKER: &str = "FERROSHOP_CHAOS_STACK";

/// The infrastructure of the private stack.
const INFRA: [Infra; 4] = [
    Infra::Postgres,
    Infra::Kafka,
    Infra::MongoWire,
    Infra::Mailpit,
];

/// `ORDER_REVIEW_AMOUNT` on the private stack: out of reach of any order. The stack runs no
/// workflow engine, so an order held for review would wait in `REVIEW` for an admin who never
/// comes and never reach `PAID`; chaos tests the saga under kills, not the engine. (Without
/// the engine, order-service's risk check decides by this amount alone.)
const REVIEW_AMOUNT_OUT_OF_REACH: i64 = i64::MAX;

/// The infrastructure the supervisor kills.
const KILLED_INFRA: [Infra; 3] = [Infra::Postgres, Infra::Kafka, Infra::MongoWire];

/// The variables of every infrastructure port with their defaults (layout.rs).
const INFRA_PORTS: [(&str, u16); 9] = [
    ("PGPORT", 5432),
    ("KAFKA_PORT", 9092),
    ("KAFKA_CONTROLLER_PORT", 9093),
    ("MONGO_PORT", 27017),
    ("ZIPKIN_PORT", 9411),
    ("SMTP_PORT", 1025),
    ("MAILPIT_PORT", 8025),
    ("OIDC_PORT", 8092),
    ("WORKFLOW_ENGINE_PORT", 8086),
];

pub fn chaos(layout: &Layout, args: &ChaosArgs) -> Result<ExitCode> {
    // Services inherit xtask's environment and setting variables in this process would need
    // `unsafe` (edition 2024), so the run starts itself again with the private stack's
    // environment, as `bench` does.
    if std::env::var_os(MARKER).is_none() {
        return again_on_private_stack(layout, args);
    }
    let s = Settings::from_env()?;
    let started = Instant::now();
    let command_line = format!(
        "cargo xtask chaos {}",
        std::env::args().skip(2).collect::<Vec<_>>().join(" ")
    );
    let seed = args.seed.unwrap_or_else(|| rand::thread_rng().r#gen());
    let replicas = usize::from(args.replicas);

    say("chaos: a fresh private stack (stopping and wiping what a previous run left)");
    crate::down(layout, true)?;
    // From here on the stack is stopped however the run ends (unless --keep).
    let stack = PrivateStack::new(args.keep, |wipe| crate::down(layout, wipe));
    infra::up_only(layout, &s, &INFRA)?;
    let present = services::present(layout);
    build(layout, &present, &args.profile)?;
    let upstreams = services::start_all(layout, &s, &present, replicas, &args.profile)?;
    crate::seed::seed(args.products)?;

    let mut targets: Vec<Target> = KILLED_INFRA.iter().copied().map(Target::Infra).collect();
    for svc in &present {
        if matches!(svc.name, "psp-sim" | "sms-sim") {
            continue;
        }
        targets.extend(svc.instances(replicas)?.into_iter().map(Target::Service));
    }

    let (started_tx, started_rx) = mpsc::channel();
    let stop = Arc::new(AtomicBool::new(false));
    let run_for = Duration::from_secs_f64(args.minutes.max(0.1) * 60.0);
    let supervisor = Supervisor {
        layout: layout.clone(),
        settings: s.clone(),
        upstreams: upstreams.clone(),
        profile: args.profile.clone(),
        targets: targets.clone(),
        interval: (
            args.min_interval.max(0.0),
            args.max_interval.max(args.min_interval),
        ),
        seed,
        stop: stop.clone(),
    };
    let killer = thread::spawn(move || supervisor.run(&started_rx, run_for));

    let config = checkout_config(&s, args, run_for, started_tx)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the load generator's runtime")?;
    let outcome = runtime.block_on(loadgen::checkout::run(config));
    // The supervisor stops on its own when the load time is up; this covers a load that ended
    // early with an error.
    stop.store(true, Ordering::SeqCst);
    let kills = killer
        .join()
        .map_err(|_| anyhow::anyhow!("the supervisor thread panicked"))??;
    let report = outcome.context("the checkout load")?;
    let audit = report
        .audit
        .clone()
        .context("the checkout run returned no audit")?;

    let summary = Summary {
        command_line,
        seed,
        args,
        replicas,
        targets: &targets,
        kills: &kills,
        report: &report,
        audit: &audit,
        total_secs: started.elapsed().as_secs_f64(),
    };
    let output = layout.repo.join(&args.output);
    if let Some(dir) = output.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    fs::write(&output, summary.markdown())
        .with_context(|| format!("writing {}", output.display()))?;
    stack.finish()?;
    println!();
    for line in summary.lines() {
        println!("{line}");
    }
    println!("report written to {}", rel(layout, &output));
    Ok(if audit.passed && kills.iter().all(|k| k.error.is_none()) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Runs this same command again with the private stack's data directory and ports.
fn again_on_private_stack(layout: &Layout, args: &ChaosArgs) -> Result<ExitCode> {
    let offset = args.port_offset;
    let ephemeral = ephemeral_ports();
    let exposed: Vec<u16> = private_ports(offset, args.replicas)
        .into_iter()
        .filter(|port| ephemeral.contains(port))
        .collect();
    if !exposed.is_empty() {
        let advice = highest_offset_below(*ephemeral.start(), args.replicas).map_or_else(
            || "no offset keeps every port below them".to_owned(),
            |highest| format!("an offset up to {highest} keeps every port below them"),
        );
        eprintln!(
            "warning: --port-offset {offset} puts ports {exposed:?} among the machine's ephemeral \
             ports ({}-{}): any outgoing connection may hold one when the stack starts; {advice}",
            ephemeral.start(),
            ephemeral.end()
        );
    }
    let port = |default: u16| -> Result<String> {
        default
            .checked_add(offset)
            .map(|p| p.to_string())
            .with_context(|| format!("--port-offset {offset} moves port {default} past 65535"))
    };
    let exe = std::env::current_exe().context("locating the xtask binary")?;
    let mut again = Command::new(exe);
    again
        .args(std::env::args_os().skip(1))
        .env(MARKER, "1")
        .env("FERROSHOP_LOCAL", layout.local.join(state_dir(offset)))
        // The private stack has its own PostgreSQL, whatever the shell points at.
        .env_remove("DATABASE_URL")
        // No span is exported (no Zipkin on the private stack).
        .env("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
        .env("OTEL_TRACES_SAMPLER_ARG", "0")
        // One machine, a few buyers: the gateway's per-client limits would test the limiter.
        .env("GATEWAY_RATE_LIMIT_PER_IP", "1000000:1000000")
        .env("GATEWAY_RATE_LIMIT_PER_USER", "1000000:1000000")
        // The buyers hold many unpaid orders each (see bench's GATEWAY_LIMITS); the limit
        // against stock hoarding would refuse them.
        .env("ORDER_MAX_OPEN_PER_USER", "0")
        .env(
            "ORDER_REVIEW_AMOUNT",
            REVIEW_AMOUNT_OUT_OF_REACH.to_string(),
        );
    for (var, default) in INFRA_PORTS {
        again.env(var, port(default)?);
    }
    for svc in SERVICES {
        again.env(svc.port_var, port(svc.default_port)?);
    }
    let status = again.status().context("running xtask chaos")?;
    Ok(if status.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Stops the private stack when a run ends, whichever way it ends. A start that failed
/// part-way (a chaos Kafka that could not bind its port) used to leave what had started
/// running: its MongoDB-wire server stayed up on its port after the run. A run that gets to
/// its report stops the stack and deletes its data ([`Self::finish`]); one that fails on the
/// way (an error returned with `?`, or a panic) stops the processes and keeps data and logs to
/// look at. `--keep` leaves everything running, on purpose.
struct PrivateStack<Stop: FnMut(bool) -> Result<()>> {
    /// Stops the stack, deleting its data when given `true`; `None` once stopped, or with
    /// `--keep`.
    stop: Option<Stop>,
}

impl<Stop: FnMut(bool) -> Result<()>> PrivateStack<Stop> {
    fn new(keep: bool, stop: Stop) -> Self {
        Self {
            stop: (!keep).then_some(stop),
        }
    }

    /// The run's end: stops the stack and deletes its data, reporting a failure to do so.
    fn finish(mut self) -> Result<()> {
        self.stop.take().map_or(Ok(()), |mut stop| stop(true))
    }
}

impl<Stop: FnMut(bool) -> Result<()>> Drop for PrivateStack<Stop> {
    fn drop(&mut self) {
        if let Some(mut stop) = self.stop.take() {
            say("chaos: the run failed; stopping the private stack (its data and logs are kept)");
            // The run's own error is the one reported; this is only worth a warning.
            if let Err(error) = stop(false) {
                eprintln!("warning: stopping the private stack after the failure: {error:#}");
            }
        }
    }
}

/// The private stack's state directory under `.local`: `chaos`, or `chaos-<offset>` for
/// another port offset, so two chaos stacks never share files.
fn state_dir(offset: u16) -> String {
    if offset == DEFAULT_OFFSET {
        "chaos".to_owned()
    } else {
        format!("chaos-{offset}")
    }
}

/// The default `--port-offset`. Every port of the private stack must stay outside the range
/// the kernel hands out as the local ports of outgoing connections (Linux: 32768-60999):
/// there, any client socket of the machine (a test's connection to the development stack's
/// Kafka, say) can hold the port at the moment the stack starts. With offset 30000 a CI run's
/// chaos Kafka failed to bind 127.0.0.1:39092 ("Address already in use") and the suite went
/// red. The highest default port is the MongoDB-wire server's 27017, so an offset up to 5750
/// keeps every port below the range; [`TEST_OFFSET`] and this one do, without sharing a port
/// with each other or with the development stack (unit test).
pub const DEFAULT_OFFSET: u16 = 5_000;

/// The offset of the short chaos run in `cargo xtask test`: its own stack, apart from a longer
/// `cargo xtask chaos` on [`DEFAULT_OFFSET`] and from the development stack.
pub const TEST_OFFSET: u16 = 3_000;

/// Linux's default range of ephemeral (outgoing) local ports, both ends included.
const EPHEMERAL_PORTS: std::ops::RangeInclusive<u16> = 32_768..=60_999;

/// This machine's ephemeral port range (`/proc/sys/net/ipv4/ip_local_port_range`), or Linux's
/// default where it cannot be read.
fn ephemeral_ports() -> std::ops::RangeInclusive<u16> {
    fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| {
            let mut bounds = text.split_whitespace().map(str::parse::<u16>);
            match (bounds.next(), bounds.next()) {
                (Some(Ok(low)), Some(Ok(high))) if low <= high => Some(low..=high),
                _ => None,
            }
        })
        .unwrap_or(EPHEMERAL_PORTS)
}

/// Every port a private stack on `offset` with up to `replicas` instances of each service
/// listens on.
fn private_ports(offset: u16, replicas: u16) -> Vec<u16> {
    let infra = INFRA_PORTS.iter().map(|(_, port)| *port);
    let services = SERVICES.iter().flat_map(|svc| {
        (0..replicas).map(move |k| svc.default_port + k * services::REPLICA_PORT_STEP)
    });
    infra
        .chain(services)
        .filter_map(|port| port.checked_add(offset))
        .collect()
}

/// The largest `--port-offset` that keeps every port of a private stack with `replicas`
/// instances of each service below `first_ephemeral` (None if even offset 0 does not).
fn highest_offset_below(first_ephemeral: u16, replicas: u16) -> Option<u16> {
    let highest_port = private_ports(0, replicas).into_iter().max()?;
    first_ephemeral.checked_sub(highest_port)?.checked_sub(1)
}

/// Builds the services' binaries of `profile` (a no-op when they are current).
fn build(layout: &Layout, present: &[services::Service], profile: &str) -> Result<()> {
    crate::provision::native_build_tools(layout)?;
    // `proc::cargo`, not a bare `cargo`: the variables `cargo run` set for xtask itself would
    // change ring's fingerprint and rebuild every service (see `proc::cargo`).
    let mut build = crate::proc::cargo();
    build.current_dir(&layout.repo).arg("build");
    if profile == "release" {
        build.arg("--release");
    }
    for svc in present {
        build.args(["--package", svc.package]);
    }
    crate::proc::run_logged(
        &mut build,
        &layout.log_file("build"),
        &format!("cargo build ({profile})"),
    )
}

fn checkout_config(
    s: &Settings,
    args: &ChaosArgs,
    run_for: Duration,
    window: mpsc::Sender<WindowEdge>,
) -> Result<CheckoutConfig> {
    let url = |name: &str| -> Result<String> {
        SERVICES
            .iter()
            .find(|svc| svc.name == name)
            .with_context(|| format!("no service {name}"))?
            .base_url()
    };
    let (admin_email, admin_password) = services::admin_credentials();
    Ok(CheckoutConfig {
        gateway_url: url("gateway")?,
        user_service_url: url("user-service")?,
        product_service_url: url("product-service")?,
        admin_email,
        admin_password,
        users: 16,
        products: args.products,
        stock_per_product: 1_000,
        popularity: Popularity::Uniform,
        audit: Some(AuditConfig {
            psp_url: url("psp-sim")?,
            psp_api_key: std::env::var("PSP_API_KEY")
                .unwrap_or_else(|_| "sk_test_ferroshop".into()),
            settle_timeout: Duration::from_secs_f64(args.settle_timeout.max(1.0)),
            mailpit_url: Some(s.mailpit_url()),
        }),
        pace: CheckoutPace::Concurrent(args.concurrency.max(1)),
        duration: run_for,
        poll_interval: Duration::from_millis(100),
        // Long enough to ride out a restart of anything on the order's path.
        order_timeout: Duration::from_secs(90),
        show_progress: false,
        window: Some(window),
        retry_transient: true,
    })
}

/// A process the supervisor may kill.
#[derive(Debug, Clone)]
enum Target {
    Infra(Infra),
    Service(Instance),
}

impl Target {
    fn name(&self) -> &str {
        match self {
            Target::Infra(c) => c.name(),
            Target::Service(instance) => &instance.name,
        }
    }
    /// The component the report groups by: replicas of a service count together.
    fn component(&self) -> &str {
        match self {
            Target::Infra(c) => c.name(),
            Target::Service(instance) => instance.service.name,
        }
    }
}

/// One kill and its restart.
#[derive(Debug, Clone)]
struct Kill {
    target: String,
    component: String,
    /// Seconds from the kill to the process answering again.
    restart_secs: f64,
    error: Option<String>,
}

struct Supervisor {
    layout: Layout,
    settings: Settings,
    upstreams: Vec<Upstream>,
    profile: String,
    targets: Vec<Target>,
    interval: (f64, f64),
    seed: u64,
    stop: Arc<AtomicBool>,
}

impl Supervisor {
    /// Waits for the buyers to start, then kills and restarts until `run_for` has passed.
    fn run(self, started: &mpsc::Receiver<WindowEdge>, run_for: Duration) -> Result<Vec<Kill>> {
        // Setup (registrations, stock) takes seconds; a load that never starts ends the run.
        if started.recv_timeout(Duration::from_secs(600)).is_err() {
            return Ok(Vec::new());
        }
        let end = Instant::now() + run_for;
        let mut rng = StdRng::seed_from_u64(self.seed);
        let mut kills = Vec::new();
        loop {
            let pause = Duration::from_secs_f64(rng.gen_range(self.interval.0..=self.interval.1));
            if self.wait(pause, end) {
                return Ok(kills);
            }
            let Some(target) = self.targets.choose(&mut rng) else {
                return Ok(kills);
            };
            let kill = self.kill_and_restart(target);
            let failed = kill.error.is_some();
            say(&format!(
                "chaos: killed {} (restarted in {:.1}s){}",
                kill.target,
                kill.restart_secs,
                kill.error
                    .as_deref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            ));
            kills.push(kill);
            if failed {
                // A process that cannot be restarted ends the chaos: the audit then shows
                // what the platform does without it, and the run fails.
                return Ok(kills);
            }
        }
    }

    /// Sleeps `pause` unless the run ends first; true when it is over.
    fn wait(&self, pause: Duration, end: Instant) -> bool {
        let until = (Instant::now() + pause).min(end);
        while Instant::now() < until {
            if self.stop.load(Ordering::SeqCst) {
                return true;
            }
            thread::sleep(Duration::from_millis(100));
        }
        Instant::now() >= end || self.stop.load(Ordering::SeqCst)
    }

    fn kill_and_restart(&self, target: &Target) -> Kill {
        let killed_at = Instant::now();
        let result = self.kill(target).and_then(|()| match target {
            Target::Infra(c) => infra::restart(&self.layout, &self.settings, *c),
            Target::Service(instance) => services::restart(
                &self.layout,
                &self.settings,
                instance,
                &self.upstreams,
                &self.profile,
            ),
        });
        Kill {
            target: target.name().to_owned(),
            component: target.component().to_owned(),
            restart_secs: killed_at.elapsed().as_secs_f64(),
            error: result.err().map(|e| format!("{e:#}")),
        }
    }

    /// SIGKILL to the target's whole process group, then waits until no member is left (a
    /// PostgreSQL backend still holding shared memory would stop the new server starting).
    fn kill(&self, target: &Target) -> Result<()> {
        let pid_file = self.layout.pid_file(target.name());
        let Some(pid) = live_pid(&pid_file) else {
            bail!("{} is not running", target.name());
        };
        // PostgreSQL's backends, checkpointer and other children start sessions of their own
        // (setsid), so they are outside the postmaster's group: they are killed by pid too,
        // or a checkpointer finishing its work keeps the shared memory the new server needs.
        let children = children_of(pid);
        let group = format!("-{pid}");
        let status = Command::new("kill")
            .args(["-s", "KILL", "--", &group])
            .stderr(Stdio::null())
            .status()
            .context("running kill(1)")?;
        if !status.success() && is_ours_alive(pid) {
            bail!("could not kill process group {pid}");
        }
        for child in &children {
            let _ = Command::new("kill")
                .args(["-s", "KILL", "--", &child.to_string()])
                .stderr(Stdio::null())
                .status();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while group_has_live_members(pid)
            || children
                .iter()
                .any(|child| Path::new(&format!("/proc/{child}")).exists())
            || {
                // The leader is our child (started detached by this process): reap it, or its pid
                // stays taken and PostgreSQL's lock file check sees "another postmaster".
                crate::proc::reap_exited();
                Path::new(&format!("/proc/{pid}")).exists()
            }
        {
            if Instant::now() > deadline {
                bail!("process group {pid} still has members 10 s after SIGKILL");
            }
            thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }
}

/// The pids whose parent is `pid`.
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let child: u32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = fs::read_to_string(entry.path().join("stat")).ok()?;
            let (_, rest) = stat.rsplit_once(')')?;
            let ppid = rest.split_whitespace().nth(1)?.parse::<u32>().ok()?;
            (ppid == pid).then_some(child)
        })
        .collect()
}

/// Whether a process of group `pgid` is still running. Zombies do not count: the killed
/// services are this process's children and stay zombies until it exits (they were started
/// detached, nobody waits for them), yet they hold nothing.
fn group_has_live_members(pgid: u32) -> bool {
    let Ok(entries) = fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|entry| {
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            return false;
        };
        // Fields after the command name (which may hold spaces): state, ppid, pgrp.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            return false;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next().unwrap_or("Z");
        let pgrp = fields.nth(1).and_then(|p| p.parse::<u32>().ok());
        pgrp == Some(pgid) && state != "Z" && state != "X"
    })
}

/// Everything the report says.
struct Summary<'a> {
    command_line: String,
    seed: u64,
    args: &'a ChaosArgs,
    replicas: usize,
    targets: &'a [Target],
    kills: &'a [Kill],
    report: &'a CheckoutReport,
    audit: &'a AuditReport,
    total_secs: f64,
}

/// Kills of one component: count and restart times.
struct ComponentKills {
    component: String,
    instances: usize,
    kills: usize,
    restart_p50: f64,
    restart_max: f64,
    failed: usize,
}

impl Summary<'_> {
    fn per_component(&self) -> Vec<ComponentKills> {
        let mut components: Vec<&str> = self.targets.iter().map(Target::component).collect();
        components.dedup();
        components
            .into_iter()
            .map(|component| {
                let mut times: Vec<f64> = self
                    .kills
                    .iter()
                    .filter(|k| k.component == component)
                    .map(|k| k.restart_secs)
                    .collect();
                times.sort_by(f64::total_cmp);
                ComponentKills {
                    component: component.to_owned(),
                    instances: self
                        .targets
                        .iter()
                        .filter(|t| t.component() == component)
                        .count(),
                    kills: times.len(),
                    restart_p50: times.get(times.len() / 2).copied().unwrap_or_default(),
                    restart_max: times.last().copied().unwrap_or_default(),
                    failed: self
                        .kills
                        .iter()
                        .filter(|k| k.component == component && k.error.is_some())
                        .count(),
                }
            })
            .collect()
    }

    /// The console summary.
    fn lines(&self) -> Vec<String> {
        let a = self.audit;
        let mut lines = vec![format!(
            "chaos: {} kills in {:.1} min, {} orders ({}), settled in {:.1} s",
            self.kills.len(),
            self.args.minutes,
            a.orders,
            statuses(a),
            a.settle_secs
        )];
        for (check, violations) in &a.checks {
            lines.push(format!(
                "  {} {check}{}",
                if *violations == 0 { "ok  " } else { "FAIL" },
                if *violations == 0 {
                    String::new()
                } else {
                    format!(" ({violations} violations)")
                }
            ));
        }
        if let Some(mails) = &a.receipt_mails {
            lines.push(format!(
                "  receipt mails: {} received, {} distinct, {} duplicate copies",
                mails.received, mails.distinct, mails.duplicates
            ));
        }
        for v in &a.violations {
            lines.push(format!("  violation: {v}"));
        }
        if let Some(e) = &a.last_error {
            lines.push(format!("  the audit's last round could not complete: {e}"));
        }
        for k in self.kills.iter().filter(|k| k.error.is_some()) {
            lines.push(format!(
                "  restart of {} failed: {}",
                k.target,
                k.error.as_deref().unwrap_or_default()
            ));
        }
        lines.push(
            if a.passed && self.kills.iter().all(|k| k.error.is_none()) {
                "chaos: every invariant holds"
            } else {
                "chaos: FAILED"
            }
            .to_owned(),
        );
        lines
    }

    fn markdown(&self) -> String {
        let a = self.audit;
        let r = self.report;
        let mut out = String::new();
        let _ = writeln!(out, "# Reliability\n");
        let _ = writeln!(
            out,
            "Generated by `{}` (seed {}). What the platform guarantees under crashes, how the \
             run proves it, and the windows that remain are at the end of this page.\n",
            self.command_line.trim(),
            self.seed
        );
        let _ = writeln!(out, "## The run\n");
        let _ = writeln!(
            out,
            "- {:.1} minutes of checkout load through the gateway ({} buyers at once, 16 \
             customers, {} products), {} instance(s) of each service that scales out, on a \
             private stack (ports +{}, data under `.local/chaos*`), `{}` builds; {:.0} s in all \
             with the stack's start and the audit.",
            self.args.minutes,
            self.args.concurrency,
            r.products,
            self.replicas,
            self.args.port_offset,
            self.args.profile,
            self.total_secs
        );
        let _ = writeln!(
            out,
            "- Every {:.0} to {:.0} s after the previous victim answered again, one process \
             drawn at random among {} ({}) got SIGKILL on its process group and was started \
             again from its command line, without building; restart time is from the kill \
             to the process answering (readiness for services, the port or the log line for \
             the infrastructure).",
            self.args.min_interval,
            self.args.max_interval,
            self.targets.len(),
            self.targets
                .iter()
                .map(Target::name)
                .collect::<Vec<_>>()
                .join(", ")
        );
        let _ = writeln!(
            out,
            "- Buyers ride out failures as a real client would: the payment is retried with \
             the same `Idempotency-Key` after no answer or a 502/503/504; a broken status \
             stream falls back to polling; an order whose creation got no answer is given up \
             (it may exist: the audit's stock check covers it, its order check does not)."
        );
        let _ = writeln!(
            out,
            "- No workflow engine runs on the private stack, so the risk review is out of \
             reach: `ORDER_REVIEW_AMOUNT` is {REVIEW_AMOUNT_OUT_OF_REACH} and no order is held \
             in `REVIEW` (with the engine away, order-service's risk check decides by that \
             amount alone). The run tests the checkout saga under kills, not the engine; the \
             review and refund processes have their own tests.\n"
        );

        let _ = writeln!(out, "## Kills per component\n");
        let _ = writeln!(
            out,
            "| component | instances | kills | restart p50 | restart max | failed restarts |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|");
        for c in self.per_component() {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.1} s | {:.1} s | {} |",
                c.component, c.instances, c.kills, c.restart_p50, c.restart_max, c.failed
            );
        }
        let _ = writeln!(
            out,
            "| **all** | {} | {} | | | |\n",
            self.targets.len(),
            self.kills.len()
        );

        let _ = writeln!(out, "## Orders\n");
        let _ = writeln!(
            out,
            "{} orders created; the buyers saw {} paid, {} rejected, {} cancelled and {} fail \
             (the flow gave up: no answer, a 5xx on create, or not `PAID` within 90 s).\n",
            a.orders, r.paid, r.rejected, r.cancelled, r.failed
        );
        if !r.failures.is_empty() {
            let _ = writeln!(out, "| why a buyer gave up | orders |");
            let _ = writeln!(out, "|---|---:|");
            for (why, n) in &r.failures {
                let _ = writeln!(out, "| {} | {n} |", why.replace('|', "/"));
            }
            let _ = writeln!(out);
        }
        let _ = writeln!(out, "| final state (after settling) | orders |");
        let _ = writeln!(out, "|---|---:|");
        for (state, n) in &a.statuses {
            let _ = writeln!(out, "| {state} | {n} |");
        }
        let _ = writeln!(
            out,
            "\nPayments the client saw succeed: {}. Charges kept at the provider: {}, refunded: \
             {}.\n",
            a.payments_seen_succeeded, a.charges_kept, a.refunds
        );

        let _ = writeln!(out, "## Invariants\n");
        let _ = writeln!(
            out,
            "Time to settle (from the end of the load until every check held{}): **{:.1} s**.\n",
            if a.passed { "" } else { ", or the deadline" },
            a.settle_secs
        );
        let _ = writeln!(out, "| invariant | result |");
        let _ = writeln!(out, "|---|---|");
        for (check, violations) in &a.checks {
            let _ = writeln!(
                out,
                "| {check} | {} |",
                if *violations == 0 {
                    "holds".to_owned()
                } else {
                    format!("**violated** ({violations})")
                }
            );
        }
        let _ = writeln!(
            out,
            "\nStock: {} products, {} units sold during the run, {} units in `PAID` orders. \
             Receipts in the notification history: {} for {} `PAID` orders.",
            a.products, a.sold_units, a.paid_units, a.receipts_found, a.receipts_expected
        );
        if let Some(m) = &a.receipt_mails {
            let _ = writeln!(
                out,
                "Receipt mails at the SMTP server: {} received, {} distinct, **{} duplicate \
                 copies** (same `Message-ID`; see \"Windows that remain\").",
                m.received, m.distinct, m.duplicates
            );
        }
        if !a.violations.is_empty() {
            let _ = writeln!(out, "\nFirst violations:\n");
            for v in &a.violations {
                let _ = writeln!(out, "- {v}");
            }
        }
        if let Some(e) = &a.last_error {
            let _ = writeln!(out, "\nThe audit's last round could not complete: {e}");
        }
        let _ = writeln!(out);
        out.push_str(PROSE);
        out
    }
}

fn statuses(a: &AuditReport) -> String {
    a.statuses
        .iter()
        .map(|(s, n)| format!("{n} {s}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The part of the report that does not change from run to run.
const PROSE: &str = include_str!("chaos_prose.md");

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn private_stacks_listen_below_the_ephemeral_ports_and_apart_from_each_other() {
        let development = private_ports(0, 5);
        let test_stack = private_ports(TEST_OFFSET, 5);
        let default_stack = private_ports(DEFAULT_OFFSET, 5);
        for ports in [&test_stack, &default_stack] {
            // Every port moved: none lost to an overflow.
            assert_eq!(ports.len(), development.len());
            for port in ports.iter() {
                assert!(
                    !EPHEMERAL_PORTS.contains(port),
                    "{port} is an ephemeral port"
                );
            }
        }
        let mut seen = HashSet::new();
        for port in development.iter().chain(&test_stack).chain(&default_stack) {
            assert!(seen.insert(*port), "port {port} is used twice");
        }
    }

    #[test]
    fn the_advised_offset_is_the_highest_that_keeps_every_port_below_the_ephemeral_ones()
    -> Result<()> {
        let first = *EPHEMERAL_PORTS.start();
        for replicas in [1, 2, 5] {
            let highest = highest_offset_below(first, replicas).context("no offset fits")?;
            assert!(
                private_ports(highest, replicas)
                    .iter()
                    .all(|port| *port < first)
            );
            assert!(
                private_ports(highest + 1, replicas)
                    .iter()
                    .any(|port| *port >= first)
            );
        }
        // MongoDB's 27017 is the highest default port: 32767 - 27017.
        assert_eq!(highest_offset_below(first, 1), Some(5_750));
        assert_eq!(highest_offset_below(20_000, 1), None);
        Ok(())
    }

    /// Records what a [`PrivateStack`] was asked to do: `Some(wipe)` per stop.
    fn recording_stack(
        keep: bool,
        stops: &RefCell<Vec<bool>>,
    ) -> PrivateStack<impl FnMut(bool) -> Result<()> + '_> {
        PrivateStack::new(keep, move |wipe| {
            stops.borrow_mut().push(wipe);
            Ok(())
        })
    }

    fn start_kafka() -> Result<()> {
        bail!("Kafka could not bind 127.0.0.1:12092: Address already in use")
    }

    #[test]
    fn a_run_that_fails_on_its_way_stops_the_private_stack_and_keeps_its_data() {
        let stops = RefCell::new(Vec::new());
        let run = || -> Result<()> {
            let stack = recording_stack(false, &stops);
            start_kafka()?;
            stack.finish()
        };
        assert!(run().is_err());
        assert_eq!(*stops.borrow(), [false]);
    }

    #[test]
    fn a_finished_run_stops_and_wipes_the_private_stack_once() -> Result<()> {
        let stops = RefCell::new(Vec::new());
        recording_stack(false, &stops).finish()?;
        assert_eq!(*stops.borrow(), [true]);
        Ok(())
    }

    #[test]
    fn keep_leaves_the_private_stack_running_whichever_way_the_run_ends() -> Result<()> {
        let stops = RefCell::new(Vec::new());
        recording_stack(true, &stops).finish()?;
        drop(recording_stack(true, &stops));
        assert!(stops.borrow().is_empty());
        Ok(())
    }

    #[test]
    fn a_failure_to_stop_at_the_end_is_reported() {
        let stack = PrivateStack::new(false, |_| anyhow::bail!("postgres did not stop"));
        assert!(stack.finish().is_err());
    }
}
