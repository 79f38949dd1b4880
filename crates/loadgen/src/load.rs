//! HTTP load runs: closed-loop saturation and open-loop fixed rate over N keep-alive
//! connections, with a warm-up that is run but not recorded.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::conn::{Connection, Endpoint, RequestSpec};
use crate::progress::{Counters, Progress};
use crate::schedule::Schedule;
use crate::stats::{Latencies, LatencySummary};

/// How requests are paced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    /// Closed loop: every connection sends its next request as soon as the answer is in.
    Saturate,
    /// Open loop: this many requests per second in total, due at fixed times.
    Rate(f64),
}

/// One load run.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// Shown in the progress line and the report.
    pub label: String,
    pub endpoint: Endpoint,
    /// Requests sent in rotation (e.g. one GET per product id); at least one.
    pub requests: Vec<RequestSpec>,
    pub connections: usize,
    pub duration: Duration,
    /// Run before the measurement and not recorded: opens connections, fills caches.
    pub warmup: Duration,
    pub pace: Pace,
    /// A request not answered within this counts as an error and its connection is replaced.
    pub timeout: Duration,
    pub show_progress: bool,
}

/// What a run measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    pub label: String,
    /// `saturation` or `fixed-rate`.
    pub mode: String,
    pub connections: usize,
    pub duration_secs: f64,
    /// Requests per second asked for (fixed-rate runs).
    pub target_rate: Option<f64>,
    /// 2xx answers.
    pub ok: u64,
    /// Answers with another status (counted by status in `statuses`).
    pub non_2xx: u64,
    /// No answer: connection failures, resets, timeouts.
    pub errors: u64,
    /// Fixed-rate requests that were due but never sent because the run ended first (the
    /// client fell behind: the server could not keep up with the rate).
    pub missed: u64,
    /// 2xx answers per second of measurement.
    pub ok_per_sec: f64,
    /// Saturation: from sending to the whole answer. Fixed rate: from the time the request
    /// was due when it had to queue behind the connection's previous answer (so a stall is
    /// charged to every request it delayed), else from sending.
    pub latency: LatencySummary,
    /// From sending to the whole answer, in both modes.
    pub service_time: LatencySummary,
    pub statuses: BTreeMap<u16, u64>,
    pub first_error: Option<String>,
}

#[derive(Debug)]
struct WorkerResult {
    latency: Latencies,
    service_time: Latencies,
    ok: u64,
    non_2xx: u64,
    errors: u64,
    missed: u64,
    statuses: BTreeMap<u16, u64>,
    first_error: Option<String>,
}

impl WorkerResult {
    fn new() -> Result<Self> {
        Ok(Self {
            latency: Latencies::new()?,
            service_time: Latencies::new()?,
            ok: 0,
            non_2xx: 0,
            errors: 0,
            missed: 0,
            statuses: BTreeMap::new(),
            first_error: None,
        })
    }

    fn error(&mut self, error: String) {
        self.errors += 1;
        self.first_error.get_or_insert(error);
    }

    fn merge(&mut self, other: WorkerResult) -> Result<()> {
        self.latency.merge(&other.latency)?;
        self.service_time.merge(&other.service_time)?;
        self.ok += other.ok;
        self.non_2xx += other.non_2xx;
        self.errors += other.errors;
        self.missed += other.missed;
        for (status, count) in other.statuses {
            *self.statuses.entry(status).or_default() += count;
        }
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        Ok(())
    }
}

/// Runs `spec` to the end and reports what it measured.
pub async fn run(spec: LoadSpec) -> Result<RunReport> {
    if spec.requests.is_empty() {
        bail!("{}: no request to send", spec.label);
    }
    if spec.connections == 0 {
        bail!("{}: at least one connection is needed", spec.label);
    }
    let spec = Arc::new(spec);
    let counters = Arc::new(Counters::default());
    let progress = spec.show_progress.then(|| {
        Progress::start(
            &spec.label,
            "req",
            spec.warmup + spec.duration,
            counters.clone(),
        )
    });
    let start = Instant::now();
    let mut workers = JoinSet::new();
    for index in 0..spec.connections {
        workers.spawn(worker(index, spec.clone(), start, counters.clone()));
    }
    let mut total = WorkerResult::new()?;
    while let Some(joined) = workers.join_next().await {
        total.merge(joined.context("a load worker panicked")??)?;
    }
    if let Some(progress) = progress {
        progress.finish();
    }
    let secs = spec.duration.as_secs_f64();
    Ok(RunReport {
        label: spec.label.clone(),
        mode: match spec.pace {
            Pace::Saturate => "saturation".into(),
            Pace::Rate(_) => "fixed-rate".into(),
        },
        connections: spec.connections,
        duration_secs: secs,
        target_rate: match spec.pace {
            Pace::Saturate => None,
            Pace::Rate(rate) => Some(rate),
        },
        ok: total.ok,
        non_2xx: total.non_2xx,
        errors: total.errors,
        missed: total.missed,
        ok_per_sec: if secs > 0.0 {
            total.ok as f64 / secs
        } else {
            0.0
        },
        latency: total.latency.summary(),
        service_time: total.service_time.summary(),
        statuses: total.statuses,
        first_error: total.first_error,
    })
}

/// One connection's loop. Requests due (open loop) or started (closed loop) before the end of
/// the warm-up are sent but not recorded.
async fn worker(
    index: usize,
    spec: Arc<LoadSpec>,
    start: Instant,
    counters: Arc<Counters>,
) -> Result<WorkerResult> {
    let mut result = WorkerResult::new()?;
    let measure_from = start + spec.warmup;
    let end = measure_from + spec.duration;
    let schedule = match spec.pace {
        Pace::Saturate => None,
        Pace::Rate(rate) => Some(Schedule::for_connection(rate, spec.connections, index)),
    };
    // Workers start at different points of the rotation so they do not ask for the same
    // resource in lockstep.
    let mut next = index * spec.requests.len() / spec.connections;
    let mut connection: Option<Connection> = None;
    let mut previous_done: Option<Instant> = None;
    let mut n = 0u64;
    loop {
        let due = match schedule {
            None => {
                let now = Instant::now();
                if now >= end {
                    break;
                }
                now
            }
            Some(schedule) => {
                let Some(offset) = schedule.due(n) else {
                    break;
                };
                let due = start + offset;
                if due >= end {
                    break;
                }
                let now = Instant::now();
                if due > now {
                    tokio::time::sleep_until(due).await;
                } else if now >= end {
                    // Behind schedule at the end: what is still due was never sent.
                    result.missed += schedule.count_before(end - start).saturating_sub(n);
                    break;
                }
                due
            }
        };
        n += 1;
        let measured = due >= measure_from;
        let request = &spec.requests[next % spec.requests.len()];
        next += 1;

        if connection.as_ref().is_none_or(Connection::is_closed) {
            match Connection::open(&spec.endpoint).await {
                Ok(opened) => connection = Some(opened),
                Err(e) => {
                    counters.count_error();
                    if measured {
                        result.error(format!("{e:#}"));
                    }
                    // Do not spin on a server that is down.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            }
        }
        let Some(open) = connection.as_mut() else {
            continue;
        };
        let sent = Instant::now();
        // Where the latency is counted from. Saturation: the send. Fixed rate: the due time when
        // the request had to wait for this connection's previous answer (that queueing is the
        // server's doing and is what coordinated omission would hide); when the connection was
        // free at the due time, the send, so the timer's wake-up slack (up to a millisecond in
        // tokio) is not charged to the server.
        let counted_from = match schedule {
            Some(_) if previous_done.is_some_and(|previous| previous > due) => due,
            _ => sent,
        };
        let outcome = tokio::time::timeout(spec.timeout, open.send(request)).await;
        let done = Instant::now();
        previous_done = Some(done);
        match outcome {
            Ok(Ok((status, _body))) => {
                if status.is_success() {
                    counters.count_ok();
                } else {
                    counters.count_non_2xx();
                }
                if measured {
                    if status.is_success() {
                        result.ok += 1;
                    } else {
                        result.non_2xx += 1;
                        *result.statuses.entry(status.as_u16()).or_default() += 1;
                    }
                    result.latency.record(done - counted_from);
                    result.service_time.record(done - sent);
                }
            }
            Ok(Err(e)) => {
                connection = None;
                counters.count_error();
                if measured {
                    result.error(format!("{e:#}"));
                }
            }
            Err(_elapsed) => {
                connection = None;
                counters.count_error();
                if measured {
                    result.error(format!("no answer within {:?}", spec.timeout));
                }
            }
        }
    }
    Ok(result)
}
