//! What `cargo xtask bench` measures besides latency: where the CPU goes (per process, per
//! run), what one order costs the infrastructure (PostgreSQL commits, Kafka records, writes
//! and commits on the MongoDB-wire server), and what the infrastructure alone can do on this
//! machine (pgbench's commit rate for a one-insert transaction, Kafka's producer rate with our
//! producer settings): the "limit" line that shows the gap between the platform and its
//! dependencies.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::layout::{Layout, Settings};
use crate::provision;

/// CPU time of a set of processes (utime + stime, in clock ticks).
pub fn ticks(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|pid| fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .filter_map(|stat| {
            // Fields after the command name (which may hold spaces): utime is the 12th.
            let rest = stat.rsplit_once(')')?.1;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let utime: u64 = fields.get(11)?.parse().ok()?;
            let stime: u64 = fields.get(12)?.parse().ok()?;
            Some(utime + stime)
        })
        .sum()
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on every Linux this runs on).
pub fn clock_ticks_per_sec() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse::<f64>().ok())
        .filter(|hz| *hz > 0.0)
        .unwrap_or(100.0)
}

/// Counters that grow with the work the platform does.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    /// Records on the platform's topics (sum of end offsets).
    pub kafka_records: i64,
    /// Committed transactions over every PostgreSQL database.
    pub pg_commits: i64,
    /// Write commands answered, and store commits made, by the MongoDB-wire server.
    pub mongo_writes: i64,
    pub mongo_commits: i64,
    /// The MongoDB-wire server's write commands by namespace (`database.collection`; empty on
    /// a server that does not count them).
    pub mongo_writes_by_namespace: BTreeMap<String, i64>,
    /// Every command the MongoDB-wire server answered, reads included, by name and namespace
    /// (`find payments.orders`; empty on a server that does not count them).
    pub mongo_commands: BTreeMap<String, i64>,
}

/// The topics of the platform (no test prefixes).
const TOPICS: [&str; 5] = [
    "user.events",
    "product.events",
    "inventory.events",
    "order.events",
    "payment.events",
];

fn kafka_classpath(layout: &Layout) -> String {
    format!("{}/*", provision::kafka_dir(layout).join("libs").display())
}

fn psql() -> Result<PathBuf> {
    provision::psql(None).context("psql not found")
}

fn pg_tool(name: &str) -> Result<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir("/usr/lib/postgresql")
        .context("reading /usr/lib/postgresql")?
        .flatten()
        .map(|entry| entry.path().join("bin").join(name))
        .filter(|path| path.is_file())
        .collect();
    found.sort();
    found
        .pop()
        .with_context(|| format!("{name} not found under /usr/lib/postgresql"))
}

/// How many orders order-service's database holds: a stack that has taken many orders gives
/// lower checkout figures (docs/ARCHITECTURE.md, "What it costs as data accumulates"), so the
/// bench reports it. `None` when it cannot be read.
pub fn orders_held(s: &Settings) -> Option<u64> {
    psql_value("SELECT count(*) FROM orders", &s.database_url("orders"))
        .ok()?
        .parse()
        .ok()
}

/// The one value a query answers, as psql prints it unaligned (empty when the query failed).
fn psql_value(sql: &str, url: &str) -> Result<String> {
    let out = Command::new(psql()?)
        .args(["-X", "-A", "-t", "-c", sql, url])
        .output()
        .with_context(|| format!("running psql: {sql}"))?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

pub fn counters(layout: &Layout, s: &Settings, mongo_bench: &Path) -> Result<Counters> {
    let offsets = Command::new("java")
        .args(["-Xmx128m", "-cp", &kafka_classpath(layout)])
        .arg("org.apache.kafka.tools.GetOffsetShell")
        .args(["--bootstrap-server", &s.kafka_brokers()])
        .output()
        .context("running Kafka's GetOffsetShell")?;
    let kafka_records = String::from_utf8_lossy(&offsets.stdout)
        .lines()
        .filter_map(|line| {
            let mut parts = line.rsplitn(3, ':');
            let offset: i64 = parts.next()?.parse().ok()?;
            let _partition = parts.next()?;
            let topic = parts.next()?;
            TOPICS.contains(&topic).then_some(offset)
        })
        .sum();
    let pg_commits = psql_value(
        "SELECT sum(xact_commit) FROM pg_stat_database",
        &s.database_url("postgres"),
    )
    .context("reading pg_stat_database")?
    .parse()
    .unwrap_or(0);
    let mongo = Command::new(mongo_bench)
        .args(["--counters", "--url", &s.mongodb_url()])
        .output()
        .context("reading the MongoDB-wire server's counters")?;
    let mongo: serde_json::Value =
        serde_json::from_slice(&mongo.stdout).unwrap_or(serde_json::Value::Null);
    Ok(Counters {
        kafka_records,
        pg_commits,
        mongo_writes: mongo["write_commands"].as_i64().unwrap_or(-1),
        mongo_commits: mongo["commits"].as_i64().unwrap_or(-1),
        mongo_writes_by_namespace: counts(&mongo["writes_by_namespace"]),
        mongo_commands: counts(&mongo["commands"]),
    })
}

/// A JSON object of counts as a map (empty if it is not one).
fn counts(object: &serde_json::Value) -> BTreeMap<String, i64> {
    object
        .as_object()
        .map(|counts| {
            counts
                .iter()
                .filter_map(|(key, count)| Some((key.clone(), count.as_i64()?)))
                .collect()
        })
        .unwrap_or_default()
}

/// What the infrastructure alone does on this machine.
#[derive(Debug, Clone, Default)]
pub struct Limits {
    /// pgbench, one `INSERT` per transaction, 8 clients, 10 s.
    pub pg_commits_per_sec: f64,
    /// Kafka's producer performance tool, 1 KB records, our producer settings.
    pub kafka_records_per_sec: f64,
}

pub fn limits(layout: &Layout, s: &Settings) -> Result<Limits> {
    Ok(Limits {
        pg_commits_per_sec: pgbench(s)?,
        kafka_records_per_sec: kafka_produce_rate(layout, s)?,
    })
}

fn pgbench(s: &Settings) -> Result<f64> {
    let admin = s.database_url("postgres");
    // Ignored if it exists already.
    let _ = Command::new(psql()?)
        .args(["-X", "-q", "-c", "CREATE DATABASE bench_limit"])
        .arg(&admin)
        .output();
    let url = s.database_url("bench_limit");
    let created = Command::new(psql()?)
        .args([
            "-X",
            "-q",
            "-c",
            "CREATE TABLE IF NOT EXISTS limit_probe (id bigserial PRIMARY KEY, payload text NOT NULL, at timestamptz NOT NULL DEFAULT now())",
        ])
        .arg(&url)
        .status()
        .context("creating the pgbench table")?;
    if !created.success() {
        bail!("creating the pgbench table failed");
    }
    let script = std::env::temp_dir().join(format!("ferroshop-pgbench-{}.sql", std::process::id()));
    fs::write(
        &script,
        "INSERT INTO limit_probe (payload) VALUES ('an order');\n",
    )
    .context("writing the pgbench script")?;
    let out = Command::new(pg_tool("pgbench")?)
        .args(["-n", "-c", "8", "-j", "2", "-T", "10", "-f"])
        .arg(&script)
        .arg(&url)
        .output()
        .context("running pgbench")?;
    let _ = fs::remove_file(&script);
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|line| {
            line.strip_prefix("tps = ")
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|n| n.parse::<f64>().ok())
        })
        .with_context(|| format!("no tps in pgbench's output: {text}"))
}

/// Kafka's producer rate with our producer's settings (acks=all, idempotent, lz4, linger 5 ms)
/// and 1 KB records, about the size of our events.
fn kafka_produce_rate(layout: &Layout, s: &Settings) -> Result<f64> {
    let started = Instant::now();
    let out = Command::new("java")
        .args(["-Xmx256m", "-cp", &kafka_classpath(layout)])
        .arg("org.apache.kafka.tools.ProducerPerformance")
        .args([
            "--topic",
            "bench.limit",
            "--num-records",
            "200000",
            "--record-size",
            "1000",
            "--throughput",
            "-1",
            "--producer-props",
        ])
        .arg(format!("bootstrap.servers={}", s.kafka_brokers()))
        .args([
            "acks=all",
            "enable.idempotence=true",
            "compression.type=lz4",
            "linger.ms=5",
        ])
        .output()
        .context("running Kafka's ProducerPerformance")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let rate = text
        .lines()
        .rev()
        .find_map(|line| {
            let (_, rest) = line.split_once("records sent, ")?;
            rest.split_whitespace().next()?.parse::<f64>().ok()
        })
        .with_context(|| {
            format!(
                "no rate in ProducerPerformance's output after {:.0} s: {text}",
                started.elapsed().as_secs_f64()
            )
        })?;
    Ok(rate)
}
