//! The infrastructure components: how each is classified, provisioned, started and probed.
//!
//! This module holds what is common (the component list, state, start, readiness, stop); each
//! component's own command line and set-up lives in the submodule named after it, and
//! `provisioning` fetches or builds whatever a start is missing.

use std::fs;
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::layout::{Layout, Settings, rel};
use crate::proc::{
    file_len, http_status, live_pid, log_contains_since, port_open, print_tail, spawn_detached,
};
use crate::provision;
use crate::ui::{Task, say};

mod kafka;
mod mailpit;
mod mongo_wire;
mod oidc_standin;
mod postgres;
mod provisioning;
mod workflow_engine;
mod zipkin;

use kafka::start_kafka;
use mailpit::mailpit_command;
pub use mongo_wire::mongo_wire_command;
pub use oidc_standin::oidc_standin_command;
pub use postgres::pg_query;
use postgres::{ensure_databases, start_postgres, wait_postgres};
use provisioning::provision_all;
pub use workflow_engine::workflow_engine_command;
use zipkin::zipkin_command;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Infra {
    Postgres,
    Kafka,
    MongoWire,
    Zipkin,
    Mailpit,
    /// The OpenID Connect provider standing in for Google (mock-oauth2-server).
    OidcStandin,
    WorkflowEngine,
}

/// Start order: PostgreSQL first (its databases are created before anything else starts), the
/// rest side by side.
pub const ALL: [Infra; 7] = [
    Infra::Postgres,
    Infra::Kafka,
    Infra::MongoWire,
    Infra::Zipkin,
    Infra::Mailpit,
    Infra::OidcStandin,
    Infra::WorkflowEngine,
];

impl Infra {
    pub fn name(self) -> &'static str {
        match self {
            Infra::Postgres => "postgres",
            Infra::Kafka => "kafka",
            Infra::MongoWire => "mongo-wire",
            Infra::Zipkin => "zipkin",
            Infra::Mailpit => "mailpit",
            Infra::OidcStandin => "oidc-standin",
            Infra::WorkflowEngine => "workflow-engine",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        ALL.into_iter().find(|c| c.name() == name)
    }

    /// Every port the component binds, with the variable that moves it. The first one is the
    /// port clients use and the one whose answer means "running".
    pub fn ports(self, s: &Settings) -> Vec<(u16, &'static str)> {
        match self {
            Infra::Postgres => vec![(s.pg_port, "PGPORT")],
            Infra::Kafka => vec![
                (s.kafka_port, "KAFKA_PORT"),
                (s.kafka_controller_port, "KAFKA_CONTROLLER_PORT"),
            ],
            Infra::MongoWire => vec![(s.mongo_port, "MONGO_PORT")],
            Infra::Zipkin => vec![(s.zipkin_port, "ZIPKIN_PORT")],
            Infra::Mailpit => vec![(s.mailpit_port, "MAILPIT_PORT"), (s.smtp_port, "SMTP_PORT")],
            Infra::OidcStandin => vec![(s.oidc_port, "OIDC_PORT")],
            Infra::WorkflowEngine => vec![(s.workflow_port, "WORKFLOW_ENGINE_PORT")],
        }
    }

    pub fn main_port(self, s: &Settings) -> u16 {
        self.ports(s).first().map_or(0, |p| p.0)
    }

    /// Whether an external server replaces ours (only PostgreSQL, via DATABASE_URL).
    pub fn is_external(self, s: &Settings) -> bool {
        self == Infra::Postgres && s.external_database_url.is_some()
    }

    fn deadline(self) -> Duration {
        match self {
            Infra::Postgres | Infra::MongoWire | Infra::Mailpit | Infra::OidcStandin => {
                Duration::from_secs(60)
            }
            Infra::Kafka | Infra::Zipkin => Duration::from_secs(180),
            // Spring Boot plus the engine's schema on a first start: 38 s measured on a busy
            // two-core box; the margin covers a CI machine that is still compiling.
            Infra::WorkflowEngine => Duration::from_secs(240),
        }
    }
}

/// What is on a component's ports right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Our recorded process is alive and its port answers.
    Running(u32),
    /// Our recorded process is alive but not answering yet (still booting, or wedged).
    Starting(u32),
    Stopped,
    /// Nothing of ours is alive, yet the port answers: someone else has it.
    Foreign(u16, &'static str),
    External,
}

pub fn state(layout: &Layout, s: &Settings, c: Infra) -> State {
    if c.is_external(s) {
        return State::External;
    }
    let ports = c.ports(s);
    match live_pid(&layout.pid_file(c.name())) {
        Some(pid) if port_open(c.main_port(s)) => State::Running(pid),
        Some(pid) => State::Starting(pid),
        None => match ports.into_iter().find(|(p, _)| port_open(*p)) {
            Some((port, var)) => State::Foreign(port, var),
            None => State::Stopped,
        },
    }
}

/// A started process and how to tell it is ready.
struct Pending {
    infra: Infra,
    pid: u32,
    task: Task,
    /// Log size when we started it; None when we found it already booting.
    log_offset: Option<u64>,
}

/// Brings up every infrastructure component that is not already running.
pub fn up(layout: &Layout, s: &Settings) -> Result<()> {
    up_only(layout, s, &ALL)
}

/// Brings up the components of `wanted` that are not already running (PostgreSQL first when
/// it is one of them).
pub fn up_only(layout: &Layout, s: &Settings, wanted: &[Infra]) -> Result<()> {
    for dir in ["data", "run", "logs"] {
        let path = layout.local.join(dir);
        fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
    }

    stop_retired(layout)?;
    // Classify first so a port conflict is reported before minutes of provisioning.
    let mut to_start = Vec::new();
    let mut booting = Vec::new();
    for c in wanted.iter().copied() {
        match state(layout, s, c) {
            // A jar built from older sources: stopped here, rebuilt and started below.
            State::Running(pid)
                if c == Infra::WorkflowEngine && !provision::workflow_engine_ready(layout) =>
            {
                stop(layout, c)?;
                say(&format!(
                    "↻ {:>14} stopped (pid {pid}): workflow/engine or workflow/models changed",
                    c.name()
                ));
                to_start.push(c);
            }
            State::Running(pid) => say(&format!(
                "✔ {:>14} already running (pid {pid}, port {})",
                c.name(),
                c.main_port(s)
            )),
            State::Starting(pid) => booting.push((c, pid)),
            State::Stopped => to_start.push(c),
            State::Foreign(port, var) => bail!(
                "port {port} ({}) is in use by another process; stop it or set {var}",
                c.name()
            ),
            State::External => {}
        }
    }

    provision_all(layout, &to_start)?;

    let mut pending: Vec<Pending> = booting
        .into_iter()
        .map(|(infra, pid)| Pending {
            infra,
            pid,
            task: Task::start(infra.name(), "waiting for the running process to answer"),
            log_offset: None,
        })
        .collect();

    // PostgreSQL must be ready (with its databases) before the services start.
    if s.external_database_url.is_some() {
        let task = Task::start("postgres", "checking the server DATABASE_URL points to");
        wait_postgres(s, &task, Instant::now() + Duration::from_secs(30))?;
        ensure_databases(s)?;
        task.done("external server reachable, databases present");
    } else if to_start.contains(&Infra::Postgres)
        || pending.iter().any(|p| p.infra == Infra::Postgres)
    {
        let p = match pending.iter().position(|p| p.infra == Infra::Postgres) {
            Some(i) => pending.remove(i),
            None => start(layout, s, Infra::Postgres)?,
        };
        wait_ready(layout, s, p)?;
    }
    if wanted.contains(&Infra::Postgres) || s.external_database_url.is_some() {
        ensure_databases(s)?;
    }

    for c in to_start.iter().copied().filter(|c| *c != Infra::Postgres) {
        pending.push(start(layout, s, c)?);
    }
    // Everything else boots in parallel; waiting in turn costs nothing extra.
    for p in pending {
        wait_ready(layout, s, p)?;
    }
    Ok(())
}

/// Starts `c` again after it died (the supervisor's restart of `cargo xtask chaos`): the same
/// command line as `up`, nothing provisioned or rebuilt; returns once it is ready.
pub fn restart(layout: &Layout, s: &Settings, c: Infra) -> Result<()> {
    let pending = start(layout, s, c)?;
    wait_ready(layout, s, pending)
}

/// Downloads/builds whatever the components about to start still lack, in parallel.
fn start(layout: &Layout, s: &Settings, c: Infra) -> Result<Pending> {
    let task = Task::start(c.name(), "starting");
    let log = layout.log_file(c.name());
    let pid_file = layout.pid_file(c.name());
    let data = layout.data_dir(c.name());
    fs::create_dir_all(&data).with_context(|| format!("creating {}", data.display()))?;
    let log_offset = file_len(&log);
    let result = match c {
        Infra::Postgres => start_postgres(layout, s, &task, &data, &log, &pid_file),
        Infra::Kafka => start_kafka(layout, s, &task, &data, &log, &pid_file),
        Infra::MongoWire => java(&data).and_then(|java| {
            let data_file = data.join("data.mv.db");
            let mut cmd = mongo_wire_command(layout, s.mongo_port, &data_file, java);
            spawn_detached(&mut cmd, &log, &pid_file)
        }),
        Infra::Zipkin => java(&data).and_then(|java| {
            spawn_detached(&mut zipkin_command(layout, s, &data, java), &log, &pid_file)
        }),
        Infra::Mailpit => spawn_detached(&mut mailpit_command(layout, s, &data), &log, &pid_file),
        Infra::OidcStandin => java(&data).and_then(|java| {
            let mut cmd = oidc_standin_command(layout, s.oidc_port, java);
            cmd.current_dir(&data);
            spawn_detached(&mut cmd, &log, &pid_file)
        }),
        Infra::WorkflowEngine => java(&data)
            .and_then(|java| workflow_engine_command(layout, s, java))
            .and_then(|mut cmd| spawn_detached(cmd.current_dir(&data), &log, &pid_file)),
    };
    match result {
        Ok(pid) => {
            task.update(&format!("started (pid {pid}), waiting until ready"));
            Ok(Pending {
                infra: c,
                pid,
                task,
                log_offset: Some(log_offset),
            })
        }
        Err(e) => {
            task.fail();
            Err(e.context(format!("starting {}", c.name())))
        }
    }
}

fn is_ready(layout: &Layout, s: &Settings, p: &Pending) -> bool {
    match p.infra {
        Infra::Postgres => pg_query(s, "postgres", "SELECT 1").is_ok(),
        Infra::Kafka => {
            port_open(s.kafka_port)
                && p.log_offset.is_none_or(|offset| {
                    log_contains_since(&layout.log_file("kafka"), offset, "Kafka Server started")
                })
        }
        Infra::MongoWire => port_open(s.mongo_port),
        Infra::Zipkin => http_status(&format!("{}/health", s.zipkin_url())) == Some(200),
        Infra::Mailpit => {
            http_status(&format!("{}/api/v1/messages", s.mailpit_url())) == Some(200)
                && port_open(s.smtp_port)
        }
        Infra::OidcStandin => http_status(&format!("{}/isalive", s.oidc_url())) == Some(200),
        Infra::WorkflowEngine => {
            http_status(&format!("{}/engine-rest/version", s.workflow_url())) == Some(200)
        }
    }
}

fn wait_ready(layout: &Layout, s: &Settings, p: Pending) -> Result<()> {
    let log = layout.log_file(p.infra.name());
    let deadline = Instant::now() + p.infra.deadline();
    loop {
        if is_ready(layout, s, &p) {
            p.task.done(&format!(
                "ready on port {} (pid {})",
                p.infra.main_port(s),
                p.pid
            ));
            return Ok(());
        }
        if !crate::proc::is_ours_alive(p.pid) {
            p.task.fail();
            print_tail(&log, 25);
            bail!(
                "{} exited during startup; see {}",
                p.infra.name(),
                rel(layout, &log)
            );
        }
        if Instant::now() > deadline {
            p.task.fail();
            print_tail(&log, 25);
            bail!(
                "{} did not become ready within {}s (pid {} still running); see {}",
                p.infra.name(),
                p.infra.deadline().as_secs(),
                p.pid,
                rel(layout, &log)
            );
        }
        thread::sleep(Duration::from_millis(250));
    }
}

/// Stops one component's process group; PostgreSQL gets SIGINT (fast shutdown: disconnect
/// clients, checkpoint) because SIGTERM would wait for every client to leave.
pub fn stop(layout: &Layout, c: Infra) -> Result<Option<u32>> {
    let pid_file = layout.pid_file(c.name());
    let Some(pid) = live_pid(&pid_file) else {
        let _ = fs::remove_file(&pid_file);
        return Ok(None);
    };
    let signal = if c == Infra::Postgres { "INT" } else { "TERM" };
    crate::proc::stop_group(pid, signal, Duration::from_secs(30))?;
    let _ = fs::remove_file(&pid_file);
    Ok(Some(pid))
}

/// Components earlier versions of `up` ran and this one does not: FerretDB 1.24, replaced by
/// the MongoDB-wire server on the same port. Stopped if still running from such a version.
const RETIRED: &[&str] = &["ferretdb"];

/// Stops what an earlier version of `up` left running under a retired name.
pub fn stop_retired(layout: &Layout) -> Result<()> {
    for name in RETIRED {
        let pid_file = layout.pid_file(name);
        if let Some(pid) = live_pid(&pid_file) {
            crate::proc::stop_group(pid, "TERM", Duration::from_secs(30))
                .with_context(|| format!("stopping the retired {name}"))?;
            say(&format!(
                "stopped {name} (pid {pid}), which this version no longer runs"
            ));
        }
        let _ = fs::remove_file(&pid_file);
    }
    Ok(())
}

/// `java` with its temporary directory in `data`/tmp, emptied first: a JVM unpacks native
/// libraries there (Kafka's lz4 and snappy) and Spring Boot its Tomcat work directories, and
/// one stopped with SIGKILL (`cargo xtask chaos`, a stop that times out) leaves them behind.
/// In /tmp they piled up over runs; here they go with the component's data.
pub fn java(data: &std::path::Path) -> Result<std::process::Command> {
    let tmp = data.join("tmp");
    if tmp.exists() {
        fs::remove_dir_all(&tmp).with_context(|| format!("emptying {}", tmp.display()))?;
    }
    fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let mut java = std::process::Command::new("java");
    java.arg(format!("-Djava.io.tmpdir={}", tmp.display()));
    Ok(java)
}

/// Paths a component's files live in, for `logs`.
pub fn log_path(layout: &Layout, name: &str) -> PathBuf {
    layout.log_file(name)
}

/// Provisions the OIDC stand-in into the real tool cache (what `cargo xtask up` does) and
/// starts it the way `up` does, but on a free port with its pid, log and data under a
/// temporary `.local`, so the running shared stack is left alone:
/// `cargo test -p xtask -- --ignored oidc_standin_provisions_and_starts --nocapture`.
#[cfg(test)]
mod oidc_standin_tests {
    use super::*;

    #[test]
    #[ignore = "fetches from Maven Central and starts a JVM"]
    fn oidc_standin_provisions_and_starts() -> Result<()> {
        let detected = Layout::detect()?;
        let scratch = std::env::temp_dir().join(format!("xtask-oidc-{}", std::process::id()));
        let layout = Layout {
            local: scratch.clone(),
            ..detected
        };
        if !provision::oidc_standin_ready(&layout) {
            let mvn = provision::mvn(&layout)?;
            provision::provision_oidc_standin(&layout, &mvn)?;
        }
        assert!(provision::oidc_standin_ready(&layout));
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        drop(listener);
        let mut settings = Settings::from_env()?;
        settings.oidc_port = port;
        for dir in ["data", "run", "logs"] {
            fs::create_dir_all(layout.local.join(dir))?;
        }
        let pending = start(&layout, &settings, Infra::OidcStandin)?;
        let ready = wait_ready(&layout, &settings, pending);
        let discovery = http_status(&format!(
            "{}/.well-known/openid-configuration",
            settings.oidc_google_issuer()
        ));
        let state_now = state(&layout, &settings, Infra::OidcStandin);
        let stopped = stop(&layout, Infra::OidcStandin);
        let _ = fs::remove_dir_all(&scratch);
        ready?;
        assert_eq!(discovery, Some(200));
        assert!(matches!(state_now, State::Running(_)), "{state_now:?}");
        assert!(stopped?.is_some());
        Ok(())
    }
}
