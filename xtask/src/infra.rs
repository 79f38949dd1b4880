//! The infrastructure components: how each is classified, provisioned, started and probed.

use std::fs;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::layout::{DATABASES, Layout, PG_PASSWORD, PG_USER, Settings, rel};
use crate::proc::{
    file_len, http_status, is_root, live_pid, log_contains_since, lookup_user, port_open,
    print_tail, run_logged, spawn_detached,
};
use crate::provision;
use crate::ui::{Task, say};

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
fn provision_all(layout: &Layout, to_start: &[Infra]) -> Result<()> {
    let kafka = to_start.contains(&Infra::Kafka) && !provision::kafka_ready(layout);
    let zipkin = to_start.contains(&Infra::Zipkin) && !provision::zipkin_ready(layout);
    let mongo_wire = to_start.contains(&Infra::MongoWire) && !provision::mongo_wire_ready(layout);
    let mailpit = to_start.contains(&Infra::Mailpit) && !provision::mailpit_ready(layout);
    let oidc_standin =
        to_start.contains(&Infra::OidcStandin) && !provision::oidc_standin_ready(layout);
    let engine =
        to_start.contains(&Infra::WorkflowEngine) && !provision::workflow_engine_ready(layout);

    // System prerequisites first and one at a time: apt-get holds a global lock.
    if to_start.contains(&Infra::Postgres) {
        provision::postgres_bin(layout)?;
    }
    if [
        Infra::Kafka,
        Infra::Zipkin,
        Infra::MongoWire,
        Infra::OidcStandin,
        Infra::WorkflowEngine,
    ]
    .iter()
    .any(|c| to_start.contains(c))
    {
        provision::java(layout)?;
    }
    let mvn = if kafka || zipkin || mongo_wire || oidc_standin || engine {
        Some(provision::mvn(layout)?)
    } else {
        None
    };
    // Maven compiles the engine's launcher class, and Debian's JRE has no compiler.
    let javac = if mongo_wire || engine {
        Some(provision::javac(layout)?)
    } else {
        None
    };
    let go = if mailpit {
        Some(provision::go(layout)?)
    } else {
        None
    };

    type Job<'a> = (&'a str, String, Box<dyn FnOnce() -> Result<()> + Send + 'a>);
    let mut jobs: Vec<Job> = Vec::new();
    if let (true, Some(mvn)) = (kafka, &mvn) {
        jobs.push((
            "kafka",
            format!(
                "fetching Apache Kafka {} from Maven Central",
                provision::KAFKA_VERSION
            ),
            Box::new(move || provision::provision_kafka(layout, mvn)),
        ));
    }
    if let (true, Some(mvn)) = (zipkin, &mvn) {
        jobs.push((
            "zipkin",
            format!(
                "fetching Zipkin {} from Maven Central",
                provision::ZIPKIN_VERSION
            ),
            Box::new(move || provision::provision_zipkin(layout, mvn)),
        ));
    }
    if let (true, Some(mvn), Some(javac)) = (mongo_wire, &mvn, &javac) {
        jobs.push((
            "mongo-wire",
            format!(
                "fetching mongo-java-server {} from Maven Central",
                provision::MONGO_JAVA_SERVER_VERSION
            ),
            Box::new(move || provision::provision_mongo_wire(layout, mvn, javac)),
        ));
    }
    if let (true, Some(mvn)) = (oidc_standin, &mvn) {
        jobs.push((
            "oidc-standin",
            format!(
                "fetching mock-oauth2-server {} from Maven Central",
                provision::OIDC_STANDIN_VERSION
            ),
            Box::new(move || provision::provision_oidc_standin(layout, mvn)),
        ));
    }
    if let (true, Some(mvn)) = (engine, &mvn) {
        jobs.push((
            "workflow-engine",
            "building the Operaton launcher (Maven Central, a few minutes once)".into(),
            Box::new(move || provision::provision_workflow_engine(layout, mvn)),
        ));
    }
    if let (true, Some(go)) = (mailpit, &go) {
        jobs.push((
            "mailpit",
            format!(
                "building Mailpit {} (Go, a few minutes once)",
                provision::MAILPIT_VERSION
            ),
            Box::new(move || provision::provision_mailpit(layout, go)),
        ));
    }
    if jobs.is_empty() {
        return Ok(());
    }
    let results: Vec<Result<()>> = thread::scope(|scope| {
        let handles: Vec<_> = jobs
            .into_iter()
            .map(|(name, message, job)| {
                scope.spawn(move || {
                    let task = Task::start(name, &message);
                    match job() {
                        Ok(()) => {
                            task.done("provisioned");
                            Ok(())
                        }
                        Err(e) => {
                            task.fail();
                            Err(e.context(format!("provisioning {name}")))
                        }
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a provisioning thread panicked")))
            })
            .collect()
    });
    results.into_iter().collect()
}

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
        Infra::MongoWire => {
            let mut cmd = mongo_wire_command(layout, s.mongo_port, &data.join("data.mv.db"));
            spawn_detached(&mut cmd, &log, &pid_file)
        }
        Infra::Zipkin => {
            let mut cmd = Command::new("java");
            // In-memory storage: the span cap below must fit the heap. 500,000 spans overflowed
            // 256 MB during a full test run (every service traces every request and hop), so
            // the cap is 150,000 (oldest traces evicted first) in 640 MB.
            cmd.args(["-Xmx640m", "-XX:+ExitOnOutOfMemoryError", "-jar"])
                .arg(provision::zipkin_jar(layout))
                // Bind to loopback only; Armeria otherwise listens on every interface.
                .arg("--armeria.ports[0].ip=127.0.0.1")
                .arg(format!("--armeria.ports[0].port={}", s.zipkin_port))
                .arg("--armeria.ports[0].protocols[0]=http")
                .env("QUERY_PORT", s.zipkin_port.to_string())
                .env("STORAGE_TYPE", "mem")
                .env("MEM_MAX_SPANS", "150000")
                // Zipkin turns on collectors when these are set; a developer's shell may have
                // them for unrelated reasons (KAFKA_BOOTSTRAP_SERVERS especially).
                .env_remove("KAFKA_BOOTSTRAP_SERVERS")
                .env_remove("RABBIT_ADDRESSES")
                .env_remove("RABBIT_URI")
                .env_remove("ACTIVEMQ_URL")
                .env_remove("PULSAR_SERVICE_URL")
                .env_remove("COLLECTOR_SCRIBE_ENABLED")
                .env_remove("SCRIBE_ENABLED")
                .current_dir(&data);
            spawn_detached(&mut cmd, &log, &pid_file)
        }
        Infra::Mailpit => {
            let mut cmd = Command::new(provision::mailpit_bin(layout));
            cmd.arg("--smtp")
                .arg(format!("127.0.0.1:{}", s.smtp_port))
                .arg("--listen")
                .arg(format!("127.0.0.1:{}", s.mailpit_port))
                .arg("--database")
                .arg(data.join("mailpit.db"))
                .args(["--smtp-auth-accept-any", "--smtp-auth-allow-insecure"])
                // Mailpit prunes all but the newest 500 messages by default; a test run sends
                // thousands (one suite bursts 1,000) and reads its own back while others send.
                .args(["--max", "50000"]);
            spawn_detached(&mut cmd, &log, &pid_file)
        }
        Infra::OidcStandin => {
            let mut cmd = oidc_standin_command(layout, s.oidc_port);
            cmd.current_dir(&data);
            spawn_detached(&mut cmd, &log, &pid_file)
        }
        Infra::WorkflowEngine => workflow_engine_command(layout, s)
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

/// The MongoDB-wire server on `port` keeping its data in `data_file` (an H2 MVStore file).
/// A small heap is plenty (the store keeps its own 16 MB page cache), and the serial collector
/// keeps the footprint small on two cores. Netty's pooled allocator reserves arenas of direct
/// memory per core; unpooled buffers and a cap on direct memory cut the RSS after
/// `mongo-bench` from 198 to 140 MB with the same throughput (measured).
pub fn mongo_wire_command(layout: &Layout, port: u16, data_file: &Path) -> Command {
    let mut cmd = Command::new("java");
    cmd.args([
        "-Xms32m",
        "-Xmx384m",
        "-XX:+UseSerialGC",
        "-XX:+ExitOnOutOfMemoryError",
        "-XX:MaxDirectMemorySize=64m",
        "-XX:ReservedCodeCacheSize=48m",
        "-Xss512k",
        "-Dio.netty.allocator.type=unpooled",
        "-cp",
    ])
    .arg(provision::mongo_wire_classpath(layout))
    .arg("MongoWireServer")
    .arg("127.0.0.1")
    .arg(port.to_string())
    .arg(data_file);
    cmd
}

/// The OIDC stand-in for Google on `port`, on loopback, configured from the repository's
/// `deploy/local/oidc-standin/config.json` (issuer `google`: its issuer URL is
/// `http://127.0.0.1:<port>/google`, and its ID tokens carry `email` and `email_verified`).
/// Its signing keys come from the library's bundled test key file: public, fit for a stand-in
/// only (user-service takes them from its JWKS like any provider's).
pub fn oidc_standin_command(layout: &Layout, port: u16) -> Command {
    let mut cmd = Command::new("java");
    cmd.args([
        "-Xms16m",
        "-Xmx128m",
        "-XX:+UseSerialGC",
        "-XX:+ExitOnOutOfMemoryError",
        "-cp",
    ])
    .arg(provision::oidc_standin_classpath(layout))
    .arg(provision::OIDC_STANDIN_MAIN)
    .env("SERVER_HOSTNAME", "127.0.0.1")
    .env("SERVER_PORT", port.to_string())
    .env("JSON_CONFIG_PATH", provision::oidc_standin_config(layout))
    // A JSON_CONFIG in the caller's environment would take precedence over the file.
    .env_remove("JSON_CONFIG")
    .env_remove("PORT");
    cmd
}

/// The workflow engine (Operaton in its Spring Boot launcher) on `s.workflow_port`, on the
/// `workflow` database. Measured: ready in 38 s on a first start (schema creation) on a busy
/// two-core box, about 300 MB RSS idle; 512 MB of heap leave room for Cockpit's queries. The
/// serial collector suits two cores; C2 stays on, since the engine runs for hours.
pub fn workflow_engine_command(layout: &Layout, s: &Settings) -> Result<Command> {
    let jdbc = crate::layout::jdbc_of(&s.database_url("workflow"))?;
    let mut cmd = Command::new("java");
    cmd.args([
        "-Xms64m",
        "-Xmx512m",
        "-XX:+UseSerialGC",
        "-XX:+ExitOnOutOfMemoryError",
        "-XX:ReservedCodeCacheSize=64m",
        "-Xss512k",
        "-jar",
    ])
    .arg(provision::workflow_engine_jar(layout))
    .env("WORKFLOW_ENGINE_PORT", s.workflow_port.to_string())
    .env("WORKFLOW_DATABASE_URL", jdbc.url)
    .env("WORKFLOW_DATABASE_USER", jdbc.user)
    .env("WORKFLOW_DATABASE_PASSWORD", jdbc.password)
    .env("WORKFLOW_ADMIN_USER", crate::services::workflow_admin().0)
    .env(
        "WORKFLOW_ADMIN_PASSWORD",
        crate::services::workflow_admin().1,
    );
    Ok(cmd)
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

// ---------------------------------------------------------------------------------------------
// PostgreSQL

/// uid/gid to run PostgreSQL under: it refuses to run as root, so as root we use the
/// `postgres` OS user (created by Debian's package; created here when missing).
fn pg_os_user(layout: &Layout) -> Result<Option<(u32, u32)>> {
    if !is_root() {
        return Ok(None);
    }
    if let Some(ids) = lookup_user("postgres") {
        return Ok(Some(ids));
    }
    run_logged(
        Command::new("useradd").args([
            "--system",
            "--user-group",
            "--no-create-home",
            "--home-dir",
            "/var/lib/postgresql",
            "--shell",
            "/bin/sh",
            "postgres",
        ]),
        &layout.provision_log("postgres"),
        "useradd postgres",
    )?;
    lookup_user("postgres")
        .map(Some)
        .context("the postgres OS user is still missing after useradd")
}

fn as_user(cmd: &mut Command, ids: Option<(u32, u32)>) -> &mut Command {
    if let Some((uid, gid)) = ids {
        cmd.uid(uid).gid(gid);
    }
    cmd
}

fn chown_tree(path: &Path, uid: u32, gid: u32) -> Result<()> {
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .with_context(|| format!("chown {}", path.display()))?;
    if path.is_dir() {
        for entry in fs::read_dir(path).with_context(|| format!("reading {}", path.display()))? {
            let entry = entry?;
            chown_tree(&entry.path(), uid, gid)?;
        }
    }
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {mode:o} {}", path.display()))
}

/// Where the cluster's files go. Normally `.local/data/postgres`; but when xtask runs as root
/// in a clone the postgres OS user cannot reach (a parent such as /root is 0700), the files go
/// to `/var/lib/ferroshop/<hash of .local>/postgres` instead and `.local/data/postgres` becomes a
/// link to it, so `down --wipe` still finds and deletes them.
fn postgres_data_dir(layout: &Layout, data: &Path, ids: Option<(u32, u32)>) -> Result<PathBuf> {
    let Some((uid, gid)) = ids else {
        return Ok(data.to_path_buf());
    };
    if fs::symlink_metadata(data).is_ok_and(|m| m.file_type().is_symlink()) {
        return fs::read_link(data).with_context(|| format!("reading link {}", data.display()));
    }
    std::os::unix::fs::chown(data, Some(uid), Some(gid))
        .with_context(|| format!("chown {}", data.display()))?;
    if writable_by(data, uid, gid) {
        return Ok(data.to_path_buf());
    }
    let hash = {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        // The state directory, not the clone: `cargo xtask chaos` runs a second stack from
        // the same clone (`.local/chaos`), which must never share the first one's cluster.
        layout.local.hash(&mut hasher);
        hasher.finish()
    };
    let alt = PathBuf::from("/var/lib/ferroshop")
        .join(format!("{hash:016x}"))
        .join("postgres");
    fs::create_dir_all(&alt).with_context(|| format!("creating {}", alt.display()))?;
    std::os::unix::fs::chown(&alt, Some(uid), Some(gid))
        .with_context(|| format!("chown {}", alt.display()))?;
    if !writable_by(&alt, uid, gid) {
        bail!(
            "the postgres OS user can reach neither {} nor {}; clone the repo elsewhere or `chmod o+x` its parent directories",
            data.display(),
            alt.display()
        );
    }
    // `data` is the empty directory the caller made; replace it with a link to `alt`.
    fs::remove_dir(data).with_context(|| format!("replacing {} with a link", data.display()))?;
    std::os::unix::fs::symlink(&alt, data)
        .with_context(|| format!("linking {} to {}", data.display(), alt.display()))?;
    Ok(alt)
}

fn writable_by(dir: &Path, uid: u32, gid: u32) -> bool {
    Command::new("test")
        .arg("-w")
        .arg(dir)
        .uid(uid)
        .gid(gid)
        .status()
        .map(|st| st.success())
        .unwrap_or(false)
}

fn start_postgres(
    layout: &Layout,
    s: &Settings,
    task: &Task,
    data: &Path,
    log: &Path,
    pid_file: &Path,
) -> Result<u32> {
    let bin = provision::postgres_bin(layout)?;
    let ids = pg_os_user(layout)?;
    let data = &postgres_data_dir(layout, data, ids)?;
    // The cluster lives in data/cluster so that the component's data dir can be created by
    // us (root) while the cluster dir itself belongs to the postgres user with mode 0700.
    let cluster = data.join("cluster");
    if !cluster.join("PG_VERSION").is_file() {
        task.update("initdb (first start)");
        init_cluster(&bin, ids, data, &cluster, log)?;
    }
    let mut cmd = Command::new(bin.join("postgres"));
    cmd.arg("-D")
        .arg(&cluster)
        .arg("-p")
        .arg(s.pg_port.to_string())
        .current_dir(data);
    as_user(&mut cmd, ids);
    spawn_detached(&mut cmd, log, pid_file)
}

/// initdb into a scratch directory that is renamed into place only on success, so an
/// interrupted first start never leaves a half-made cluster that later starts would trust.
fn init_cluster(
    bin: &Path,
    ids: Option<(u32, u32)>,
    data: &Path,
    cluster: &Path,
    log: &Path,
) -> Result<()> {
    let scratch = data.join("cluster.partial");
    let _ = fs::remove_dir_all(&scratch);
    let _ = fs::remove_dir_all(cluster);
    let pwfile = data.join("initdb-password");
    fs::write(&pwfile, format!("{PG_PASSWORD}\n")).context("writing the initdb password file")?;
    set_mode(&pwfile, 0o600)?;
    if let Some((uid, gid)) = ids {
        chown_tree(&pwfile, uid, gid)?;
    }
    let result = run_logged(
        as_user(
            Command::new(bin.join("initdb"))
                .arg("-D")
                .arg(&scratch)
                .args([
                    "-U",
                    PG_USER,
                    "--auth=scram-sha-256",
                    "-E",
                    "UTF8",
                    "--no-locale",
                ])
                .arg(format!("--pwfile={}", pwfile.display()))
                .current_dir(data),
            ids,
        ),
        log,
        "initdb",
    );
    let _ = fs::remove_file(&pwfile);
    result?;
    // Defaults except what the brief asks for; TCP on loopback only, no Unix socket (its
    // default directory may not exist or be writable when the Debian service never ran).
    let extra = "\n# cargo xtask (local development)\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = ''\nmax_connections = 500\nshared_buffers = 128MB\n";
    let conf = scratch.join("postgresql.conf");
    let mut text =
        fs::read_to_string(&conf).with_context(|| format!("reading {}", conf.display()))?;
    text.push_str(extra);
    fs::write(&conf, text).with_context(|| format!("writing {}", conf.display()))?;
    fs::rename(&scratch, cluster)
        .with_context(|| format!("moving {} into place", cluster.display()))?;
    Ok(())
}

fn wait_postgres(s: &Settings, task: &Task, deadline: Instant) -> Result<()> {
    loop {
        match pg_query(s, "postgres", "SELECT 1") {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() > deadline => {
                return Err(e.context(format!(
                    "PostgreSQL at {} is not reachable",
                    s.database_url("postgres")
                )));
            }
            Err(_) => {
                task.update("waiting for PostgreSQL");
                thread::sleep(Duration::from_millis(500));
            }
        }
    }
}

/// Runs one SQL statement with psql and returns its unaligned output.
pub fn pg_query(s: &Settings, db: &str, sql: &str) -> Result<String> {
    let pg_bin = provision::postgres_bin_if_present();
    let psql = provision::psql(pg_bin.as_deref())
        .context("psql not found; install it with `apt-get install -y postgresql-client`")?;
    let mut child = Command::new(psql)
        .args(["-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1", "-d"])
        .arg(s.database_url(db))
        .arg("-c")
        .arg(sql)
        .env("PGCONNECT_TIMEOUT", "3")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running psql")?;
    let mut out = String::new();
    let mut err = String::new();
    if let Some(mut o) = child.stdout.take() {
        o.read_to_string(&mut out).context("reading psql output")?;
    }
    if let Some(mut e) = child.stderr.take() {
        e.read_to_string(&mut err).context("reading psql errors")?;
    }
    let status = child.wait().context("waiting for psql")?;
    if !status.success() {
        bail!("psql: {}", err.trim());
    }
    Ok(out)
}

/// Creates the databases the services expect, when missing.
fn ensure_databases(s: &Settings) -> Result<()> {
    let existing = pg_query(s, "postgres", "SELECT datname FROM pg_database")?;
    let existing: Vec<&str> = existing.lines().map(str::trim).collect();
    for db in DATABASES {
        if !existing.contains(db) {
            pg_query(s, "postgres", &format!("CREATE DATABASE \"{db}\""))
                .with_context(|| format!("creating database {db}"))?;
            say(&format!("✔ {:>14} created database {db}", "postgres"));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Kafka

fn start_kafka(
    layout: &Layout,
    s: &Settings,
    task: &Task,
    data: &Path,
    log: &Path,
    pid_file: &Path,
) -> Result<u32> {
    let log_dirs = data.join("log-dirs");
    let props = data.join("server.properties");
    // Rewritten on every start so that port variables take effect without a wipe.
    let config = format!(
        "# generated by cargo xtask; edits are overwritten on the next start\n\
         process.roles=broker,controller\n\
         node.id=1\n\
         controller.quorum.voters=1@127.0.0.1:{ctrl}\n\
         listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{ctrl}\n\
         advertised.listeners=PLAINTEXT://127.0.0.1:{port}\n\
         controller.listener.names=CONTROLLER\n\
         inter.broker.listener.name=PLAINTEXT\n\
         listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT\n\
         log.dirs={dirs}\n\
         auto.create.topics.enable=true\n\
         num.partitions=3\n\
         offsets.topic.replication.factor=1\n\
         transaction.state.log.replication.factor=1\n\
         transaction.state.log.min.isr=1\n\
         share.coordinator.state.topic.replication.factor=1\n\
         share.coordinator.state.topic.min.isr=1\n\
         group.initial.rebalance.delay.ms=0\n",
        port = s.kafka_port,
        ctrl = s.kafka_controller_port,
        dirs = log_dirs.display(),
    );
    fs::write(&props, config).with_context(|| format!("writing {}", props.display()))?;
    let log4j = data.join("log4j2.properties");
    fs::write(
        &log4j,
        "status = warn\n\
         appender.console.type = Console\n\
         appender.console.name = STDOUT\n\
         appender.console.layout.type = PatternLayout\n\
         appender.console.layout.pattern = [%d] %p %m (%c)%n\n\
         rootLogger.level = info\n\
         rootLogger.appenderRef.stdout.ref = STDOUT\n\
         logger.state.name = state.change.logger\n\
         logger.state.level = warn\n\
         logger.config.name = org.apache.kafka.common.config.AbstractConfig\n\
         logger.config.level = warn\n",
    )
    .with_context(|| format!("writing {}", log4j.display()))?;
    let classpath = format!("{}/*", provision::kafka_libs(layout).display());
    let log4j_arg = format!("-Dlog4j2.configurationFile={}", log4j.display());

    if !log_dirs.join("meta.properties").is_file() {
        task.update("formatting the KRaft log directory (first start)");
        let id_file = data.join("cluster.id");
        let cluster_id = match fs::read_to_string(&id_file) {
            Ok(id) if !id.trim().is_empty() => id.trim().to_string(),
            _ => {
                let id = new_cluster_id()?;
                fs::write(&id_file, format!("{id}\n"))
                    .with_context(|| format!("writing {}", id_file.display()))?;
                id
            }
        };
        run_logged(
            Command::new("java")
                .arg(&log4j_arg)
                .arg("-cp")
                .arg(&classpath)
                .args(["kafka.tools.StorageTool", "format", "--ignore-formatted"])
                // One argument with `=`: an id may start with '-', which the tool's argument
                // parser would otherwise take for an option.
                .arg(format!("--cluster-id={cluster_id}"))
                .arg("-c")
                .arg(&props),
            log,
            "kafka-storage format",
        )?;
    }
    let mut cmd = Command::new("java");
    cmd.args([
        "-Xms256m",
        "-Xmx768m",
        "-XX:+ExitOnOutOfMemoryError",
        "-Djava.awt.headless=true",
    ])
    .arg(&log4j_arg)
    .arg("-cp")
    .arg(&classpath)
    .arg("kafka.Kafka")
    .arg(&props)
    .current_dir(data);
    spawn_detached(&mut cmd, log, pid_file)
}

/// A KRaft cluster id: 16 random bytes, URL-safe base64 without padding (what
/// `kafka-storage random-uuid` prints), generated here to save a JVM start.
fn new_cluster_id() -> Result<String> {
    let mut bytes = [0u8; 16];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("reading /dev/urandom")?;
    // Kafka reserves the all-zero id and ids whose first bits collide with its sentinels;
    // forcing a set high bit in the first byte keeps clear of them.
    // Clearing the top bit as well keeps the first character a letter (Q..f), never '-'.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    Ok(out)
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

/// Paths a component's files live in, for `logs`.
pub fn log_path(layout: &Layout, name: &str) -> PathBuf {
    layout.log_file(name)
}

#[cfg(test)]
mod tests {
    use super::new_cluster_id;

    #[test]
    fn cluster_id_is_22_url_safe_chars() -> anyhow::Result<()> {
        for _ in 0..200 {
            let id = new_cluster_id()?;
            assert!(id.starts_with(|c: char| c.is_ascii_alphabetic()), "{id}");
        }
        let id = new_cluster_id()?;
        assert_eq!(id.len(), 22);
        assert!(
            id.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        Ok(())
    }
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
