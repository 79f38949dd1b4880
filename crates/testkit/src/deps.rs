//! Private instances of the platform's dependencies, for tests that stop them: PostgreSQL,
//! Kafka (KRaft, one node), the local MongoDB-wire server, Mailpit (SMTP) and the workflow
//! engine (Operaton, on a fresh database of a PostgreSQL the caller names), each on free
//! ports with data in a directory of its own, so a test can take one away for half a minute
//! without touching the shared stack other tests run against.
//!
//! [`Dependency::stop`] is a SIGKILL of the process group (what a crashed host or an OOM kill
//! does; PostgreSQL's backends die with the postmaster), [`Dependency::start`] runs the same
//! command line again on the same ports and data, and waits until it answers. Everything is
//! killed when the value is dropped.
//!
//! Where the programs are: `cargo xtask test` sets `POSTGRES_BIN_DIR`, `KAFKA_LIBS`,
//! `MONGO_WIRE_CLASSPATH`, `MAILPIT_BIN` (and may set `WORKFLOW_ENGINE_JAR`) from its tool
//! cache; run directly, the Debian
//! PostgreSQL and the tool cache (`~/.cache/ferroshop/tools`) are looked up.

#![allow(
    clippy::disallowed_methods,
    reason = "the tests' configuration: where cargo xtask test provisioned the dependencies' binaries"
)]

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

/// How to tell a started dependency is ready.
enum Probe {
    /// The port accepts connections.
    Port,
    /// The port accepts connections and the log (since the start) holds this line.
    PortAndLog(&'static str),
}

/// One private dependency process.
pub struct Dependency {
    name: &'static str,
    /// The port clients use.
    pub port: u16,
    dir: PathBuf,
    command: Box<dyn Fn() -> Command + Send + Sync>,
    probe: Probe,
    child: Option<Child>,
}

impl std::fmt::Debug for Dependency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dependency")
            .field("name", &self.name)
            .field("port", &self.port)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Dependency {
    /// Starts the process and waits until it answers (at most `deadline`).
    pub async fn start(&mut self, deadline: Duration) -> anyhow::Result<()> {
        anyhow::ensure!(self.child.is_none(), "{} is already running", self.name);
        let log = self.log();
        let offset = fs::metadata(&log).map(|m| m.len()).unwrap_or_default();
        let out = OpenOptions::new().create(true).append(true).open(&log)?;
        let err = out.try_clone()?;
        let mut command = (self.command)();
        // Its own process group, so a stop takes every process it forked.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting {}", self.name))?;
        self.child = Some(child);
        let started = Instant::now();
        loop {
            if self.answers(&log, offset) {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                self.child = None;
                bail!(
                    "{} exited during start-up ({status}):\n{}",
                    self.name,
                    tail(&log, 20)
                );
            }
            if started.elapsed() > deadline {
                bail!(
                    "{} not ready after {deadline:?}:\n{}",
                    self.name,
                    tail(&log, 20)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGKILL to the whole process group, then waits for the process to be gone.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let status = Command::new("kill")
            .args(["-s", "KILL", "--", &format!("-{}", child.id())])
            .stderr(Stdio::null())
            .status()?;
        if !status.success() {
            child.kill()?;
        }
        child.wait()?;
        Ok(())
    }

    /// The process's output (both streams), for a failure report.
    pub fn log(&self) -> PathBuf {
        self.dir.join(format!("{}.log", self.name))
    }

    fn answers(&self, log: &Path, offset: u64) -> bool {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], self.port));
        let open = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok();
        match self.probe {
            Probe::Port => open,
            Probe::PortAndLog(line) => {
                open && fs::read(log).is_ok_and(|bytes| {
                    let from = usize::try_from(offset).unwrap_or(usize::MAX);
                    bytes
                        .get(from..)
                        .is_some_and(|new| String::from_utf8_lossy(new).contains(line))
                })
            }
        }
    }
}

impl Drop for Dependency {
    fn drop(&mut self) {
        let _ = self.stop();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// A fresh directory for `name`'s data and log.
fn scratch(name: &str) -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "ferroshop-{name}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    ));
    fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// `java` with its temporary directory inside `dir` (created here): a JVM unpacks native
/// libraries there (Kafka's lz4) and Spring Boot its Tomcat work directories, and one killed
/// by a test leaves them behind; inside the dependency's directory they go with it.
fn java_in(dir: &Path) -> anyhow::Result<impl Fn() -> Command + Send + Sync + 'static> {
    let tmp = dir.join("tmp");
    fs::create_dir_all(&tmp)?;
    let option = format!("-Djava.io.tmpdir={}", tmp.display());
    Ok(move || {
        let mut java = Command::new("java");
        java.arg(&option);
        java
    })
}

fn tools_dir() -> PathBuf {
    let cache = std::env::var_os("FERROSHOP_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("ferroshop")))
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache").join("ferroshop"))
        })
        .unwrap_or_else(|| PathBuf::from("/root/.cache/ferroshop"));
    cache.join("tools")
}

/// The newest `<tools>/<prefix>*/<inside>` that exists.
fn newest_tool(prefix: &str, inside: &str) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir(tools_dir())
        .ok()?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
        .map(|e| e.path().join(inside))
        .filter(|p| p.exists())
        .collect();
    found.sort();
    found.pop()
}

fn env_path(var: &str) -> Option<PathBuf> {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// A private PostgreSQL (user `shop`, password `shop`, trust authentication on loopback).
/// Returns the server and the URL of its `postgres` database (the admin URL for
/// [`crate::postgres::fresh_database_on`]).
pub async fn postgres() -> anyhow::Result<(Dependency, String)> {
    let bin = env_path("POSTGRES_BIN_DIR")
        .or_else(newest_postgres_bin)
        .context("no PostgreSQL server binaries (set POSTGRES_BIN_DIR)")?;
    let dir = scratch("postgres")?;
    let cluster = dir.join("cluster");
    // PostgreSQL refuses to run as root: as root, it runs as the `postgres` OS user.
    let ids = if is_root() {
        Some(postgres_ids().context("running as root without a `postgres` user")?)
    } else {
        None
    };
    if let Some((uid, gid)) = ids {
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid))?;
    }
    let as_user = move |command: &mut Command| {
        if let Some((uid, gid)) = ids {
            std::os::unix::process::CommandExt::uid(command, uid);
            std::os::unix::process::CommandExt::gid(command, gid);
        }
    };
    let mut initdb = Command::new(bin.join("initdb"));
    initdb
        .arg("-D")
        .arg(&cluster)
        .args(["-U", "shop", "--auth=trust", "-E", "UTF8", "--no-locale"])
        .current_dir(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    as_user(&mut initdb);
    let status = initdb.status().context("running initdb")?;
    anyhow::ensure!(status.success(), "initdb failed ({status})");
    let port = crate::free_port()?;
    let conf = cluster.join("postgresql.conf");
    let mut text = fs::read_to_string(&conf)?;
    text.push_str(
        "\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = ''\nmax_connections = 200\nfsync = off\n",
    );
    fs::write(&conf, text)?;
    let log_dir = dir.clone();
    let mut server = Dependency {
        name: "postgres",
        port,
        dir,
        command: Box::new(move || {
            let mut command = Command::new(bin.join("postgres"));
            command
                .arg("-D")
                .arg(&cluster)
                .arg("-p")
                .arg(port.to_string())
                .current_dir(&log_dir);
            as_user(&mut command);
            command
        }),
        probe: Probe::PortAndLog("ready to accept connections"),
        child: None,
    };
    // The log is written by us (root), the data by the postgres user.
    File::create(server.log())?;
    server.start(Duration::from_secs(60)).await?;
    Ok((
        server,
        format!("postgres://shop:shop@127.0.0.1:{port}/postgres"),
    ))
}

fn newest_postgres_bin() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let major = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").is_file().then_some((major, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

fn postgres_ids() -> Option<(u32, u32)> {
    let id = |flag: &str| -> Option<u32> {
        let out = Command::new("id").args([flag, "postgres"]).output().ok()?;
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    };
    Some((id("-u")?, id("-g")?))
}

/// A private Kafka broker (KRaft, one node that is also the controller); returns it with its
/// bootstrap address.
pub async fn kafka() -> anyhow::Result<(Dependency, String)> {
    let libs = env_path("KAFKA_LIBS")
        .or_else(|| newest_tool("kafka-", "libs"))
        .context("no Kafka distribution (set KAFKA_LIBS)")?;
    let dir = scratch("kafka")?;
    let port = crate::free_port()?;
    let controller = crate::free_port()?;
    let props = dir.join("server.properties");
    fs::write(
        &props,
        format!(
            "process.roles=broker,controller\nnode.id=1\n\
             controller.quorum.voters=1@127.0.0.1:{controller}\n\
             listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}\n\
             advertised.listeners=PLAINTEXT://127.0.0.1:{port}\n\
             controller.listener.names=CONTROLLER\ninter.broker.listener.name=PLAINTEXT\n\
             listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT\n\
             log.dirs={}\nauto.create.topics.enable=true\nnum.partitions=3\n\
             offsets.topic.replication.factor=1\ntransaction.state.log.replication.factor=1\n\
             transaction.state.log.min.isr=1\n\
             share.coordinator.state.topic.replication.factor=1\n\
             share.coordinator.state.topic.min.isr=1\ngroup.initial.rebalance.delay.ms=0\n",
            dir.join("log-dirs").display()
        ),
    )?;
    // Kafka logs nothing to the console without a configuration; "Kafka Server started" is
    // the line that says it is ready.
    let log4j = dir.join("log4j2.properties");
    fs::write(
        &log4j,
        "status = warn\nappender.console.type = Console\nappender.console.name = STDOUT\n\
         appender.console.layout.type = PatternLayout\n\
         appender.console.layout.pattern = [%d] %p %m (%c)%n\n\
         rootLogger.level = info\nrootLogger.appenderRef.stdout.ref = STDOUT\n",
    )?;
    let log4j_arg = format!("-Dlog4j2.configurationFile={}", log4j.display());
    let classpath = format!("{}/*", libs.display());
    let java = java_in(&dir)?;
    let status = java()
        .arg(&log4j_arg)
        .arg("-cp")
        .arg(&classpath)
        .args(["kafka.tools.StorageTool", "format", "--ignore-formatted"])
        .arg(format!(
            "--cluster-id={}",
            // 22 URL-safe characters, as Kafka's own generator makes them.
            &uuid::Uuid::new_v4().simple().to_string()[..22]
        ))
        .arg("-c")
        .arg(&props)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("formatting the Kafka log directory")?;
    anyhow::ensure!(status.success(), "kafka-storage format failed ({status})");
    let work = dir.clone();
    let mut server = Dependency {
        name: "kafka",
        port,
        dir,
        command: Box::new(move || {
            let mut command = java();
            command
                .args(["-Xms128m", "-Xmx384m", "-XX:+UseSerialGC"])
                .arg(&log4j_arg)
                .arg("-cp")
                .arg(&classpath)
                .arg("kafka.Kafka")
                .arg(&props)
                .current_dir(&work);
            command
        }),
        probe: Probe::PortAndLog("Kafka Server started"),
        child: None,
    };
    server.start(Duration::from_secs(120)).await?;
    Ok((server, format!("127.0.0.1:{port}")))
}

/// A private MongoDB-wire server (the local stand-in for MongoDB); returns it with its URL.
pub async fn mongo_wire() -> anyhow::Result<(Dependency, String)> {
    let classpath = std::env::var("MONGO_WIRE_CLASSPATH")
        .ok()
        .filter(|c| !c.is_empty())
        .context("MONGO_WIRE_CLASSPATH is not set (cargo xtask test sets it)")?;
    let dir = scratch("mongo-wire")?;
    let port = crate::free_port()?;
    let data = dir.join("data.mv.db");
    let java = java_in(&dir)?;
    let mut server = Dependency {
        name: "mongo-wire",
        port,
        dir,
        command: Box::new(move || {
            let mut command = java();
            command
                .args(["-Xmx256m", "-XX:+UseSerialGC", "-cp", &classpath])
                .arg("MongoWireServer")
                .arg("127.0.0.1")
                .arg(port.to_string())
                .arg(&data);
            command
        }),
        probe: Probe::Port,
        child: None,
    };
    server.start(Duration::from_secs(60)).await?;
    Ok((server, format!("mongodb://127.0.0.1:{port}")))
}

/// A private Mailpit: returns it (its `port` is SMTP) with the URL of its HTTP API.
pub async fn mailpit() -> anyhow::Result<(Dependency, String)> {
    let bin = env_path("MAILPIT_BIN")
        .or_else(|| newest_tool("mailpit-", "mailpit"))
        .context("no Mailpit binary (set MAILPIT_BIN)")?;
    let dir = scratch("mailpit")?;
    let smtp = crate::free_port()?;
    let http = crate::free_port()?;
    let database = dir.join("mailpit.db");
    let mut server = Dependency {
        name: "mailpit",
        port: smtp,
        dir,
        command: Box::new(move || {
            let mut command = Command::new(&bin);
            command
                .arg("--smtp")
                .arg(format!("127.0.0.1:{smtp}"))
                .arg("--listen")
                .arg(format!("127.0.0.1:{http}"))
                .arg("--database")
                .arg(&database)
                .args(["--smtp-auth-accept-any", "--smtp-auth-allow-insecure"]);
            command
        }),
        probe: Probe::Port,
        child: None,
    };
    server.start(Duration::from_secs(60)).await?;
    Ok((server, format!("http://127.0.0.1:{http}")))
}

/// A private workflow engine: the launcher jar `cargo xtask up` builds
/// (`WORKFLOW_ENGINE_JAR`, else the tool cache's `workflow-engine/workflow-engine.jar`), with
/// the JVM settings of the shared one, on a fresh database of the PostgreSQL server behind
/// `postgres_admin_url`. Ready when Spring Boot says it started (its REST API answers then).
/// The first start creates the engine's schema: about 38 s on a busy two-core box; a restart
/// on the same database about 11 s. Returns the engine and its base URL (without
/// `/engine-rest`).
///
/// The jar deploys the models it was built with; a test that needs the repository's current
/// models deploys them itself (the running engine may have been built from older ones).
pub async fn workflow_engine(postgres_admin_url: &str) -> anyhow::Result<(Dependency, String)> {
    let jar = env_path("WORKFLOW_ENGINE_JAR")
        .or_else(|| {
            Some(
                tools_dir()
                    .join("workflow-engine")
                    .join("workflow-engine.jar"),
            )
        })
        .filter(|jar| jar.is_file())
        .context(
            "no workflow engine jar (run `cargo xtask up` once, or set WORKFLOW_ENGINE_JAR)",
        )?;
    let database = crate::postgres::fresh_database_on(postgres_admin_url, "workflow").await?;
    let parsed = url::Url::parse(&database).context("the PostgreSQL URL does not parse")?;
    let jdbc = format!(
        "jdbc:postgresql://{}:{}{}",
        parsed.host_str().unwrap_or("127.0.0.1"),
        parsed.port().unwrap_or(5432),
        parsed.path()
    );
    let user = parsed.username().to_owned();
    let password = parsed.password().unwrap_or_default().to_owned();
    let dir = scratch("workflow-engine")?;
    let java = java_in(&dir)?;
    let port = crate::free_port()?;
    let mut engine = Dependency {
        name: "workflow-engine",
        port,
        dir,
        command: Box::new(move || {
            let mut command = java();
            command
                .args([
                    "-Xms64m",
                    "-Xmx512m",
                    "-XX:+UseSerialGC",
                    "-XX:+ExitOnOutOfMemoryError",
                    "-XX:ReservedCodeCacheSize=64m",
                    "-Xss512k",
                    "-jar",
                ])
                .arg(&jar)
                .env("WORKFLOW_ENGINE_PORT", port.to_string())
                .env("WORKFLOW_DATABASE_URL", &jdbc)
                .env("WORKFLOW_DATABASE_USER", &user)
                .env("WORKFLOW_DATABASE_PASSWORD", &password)
                // Few connections: the shared PostgreSQL serves everyone else too.
                .env("WORKFLOW_DATABASE_POOL", "4");
            command
        }),
        probe: Probe::PortAndLog("Started EngineApplication"),
        child: None,
    };
    engine.start(Duration::from_secs(240)).await?;
    Ok((engine, format!("http://127.0.0.1:{port}")))
}

fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
