//! The external-task worker: takes the tasks of its topics from the engine and runs their
//! handlers, at most `max_concurrent` at a time.
//!
//! Locks: each task is locked for `lock_duration` and the lock is extended every half of it
//! while the handler runs, so slow work keeps its task and a dead worker's task returns to
//! the pool within one lock duration. Retries: a handler's [`TaskFailure::Retry`] is reported
//! to the engine with the task's own retry count lowered by one and a growing retry timeout;
//! the engine holds the task back until then, and at zero retries it raises an incident
//! instead (visible in Cockpit, retried by an operator). A panicking handler counts as a
//! failure. An outcome the engine could not record (away, or its 500) is sent again up to
//! three times, so a transient error does not cost an attempt. Shutdown: fetching stops at once
//! (an open long poll is dropped; anything the engine locked for it returns after the lock
//! expires) and the handlers in flight finish and report.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::client::{EngineClient, EngineError, FetchTopic, LockedTask};
use crate::variables::Variables;

/// Why a handler did not finish its task.
#[derive(Debug)]
pub enum TaskFailure {
    /// Something that may work later (a provider or a database down): retried through the
    /// task's retry count, then an incident.
    Retry(anyhow::Error),
    /// A business outcome the model handles with an error boundary event.
    Bpmn { code: String, message: String },
}

impl From<anyhow::Error> for TaskFailure {
    fn from(error: anyhow::Error) -> Self {
        TaskFailure::Retry(error)
    }
}

/// A topic's handler: the task in, the variables to complete it with out.
pub type Handler =
    Arc<dyn Fn(LockedTask) -> BoxFuture<'static, Result<Variables, TaskFailure>> + Send + Sync>;

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Unique per process ([`worker_id`]): the engine lets only the lock's holder report.
    pub worker_id: String,
    pub max_concurrent: usize,
    pub lock_duration: Duration,
    /// How long one `fetchAndLock` waits for a task to appear.
    pub long_poll: Duration,
    /// Attempts in all before the incident (the first failure leaves `retries - 1`).
    pub retries: i32,
    /// Retry timeout after the first failure; doubled after each further one, up to
    /// `backoff_max`.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Takes only tasks of processes with these variable values (see
    /// [`FetchTopic::process_variables`]); empty takes every task of the topics.
    pub process_variables: serde_json::Map<String, serde_json::Value>,
}

impl WorkerConfig {
    pub fn new(worker_id: String) -> Self {
        Self {
            worker_id,
            max_concurrent: 8,
            lock_duration: Duration::from_secs(30),
            long_poll: Duration::from_secs(20),
            retries: 5,
            backoff_base: Duration::from_secs(2),
            backoff_max: Duration::from_secs(300),
            process_variables: serde_json::Map::new(),
        }
    }
}

/// A worker id that is unique per process: `<service>-<host>-<pid>-<random>`.
#[allow(
    clippy::disallowed_methods,
    reason = "the host name identifies this process in the engine; it is not configuration"
)]
pub fn worker_id(service: &str) -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into());
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("{service}-{host}-{}-{}", std::process::id(), &random[..8])
}

/// The retry timeout after failed attempt number `attempt` (1 = the first failure).
pub(crate) fn retry_timeout(attempt: i32, base: Duration, max: Duration) -> Duration {
    let doublings = u32::try_from(attempt.saturating_sub(1))
        .unwrap_or(0)
        .min(20);
    base.saturating_mul(1 << doublings).min(max)
}

/// How often one outcome is sent when the engine's answer says it may work next time (the
/// engine away, or its 500: an `OptimisticLockingException` when a fetch touched the task in
/// the same instant, seen on CI). Not sent, the outcome is lost: the lock expires and the task
/// is delivered again with the retries it had, one attempt more than configured.
const REPORT_ATTEMPTS: u32 = 3;
/// The pause before the second sending; doubled before each further one.
const REPORT_PAUSE: Duration = Duration::from_millis(100);

/// A handler's outcome as the engine is told it.
enum Report {
    Complete(Variables),
    BpmnError {
        code: String,
        message: String,
    },
    Failure {
        message: String,
        details: String,
        retries_left: i32,
        retry_timeout: Duration,
    },
}

pub struct Worker {
    client: EngineClient,
    config: WorkerConfig,
    handlers: HashMap<String, Handler>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("config", &self.config)
            .field("topics", &self.handlers.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Worker {
    pub fn new(client: EngineClient, config: WorkerConfig) -> Self {
        Self {
            client,
            config,
            handlers: HashMap::new(),
        }
    }

    /// Works topic `name` with `handler`.
    pub fn topic<F, Fut>(mut self, name: &str, handler: F) -> Self
    where
        F: Fn(LockedTask) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Variables, TaskFailure>> + Send + 'static,
    {
        let handler: Handler = Arc::new(move |task| Box::pin(handler(task)));
        self.handlers.insert(name.to_owned(), handler);
        self
    }

    pub fn worker_id(&self) -> &str {
        &self.config.worker_id
    }

    /// Works tasks until `shutdown` is cancelled, then lets the handlers in flight finish.
    pub async fn run(self, shutdown: CancellationToken) {
        let this = Arc::new(self);
        let topics: Vec<FetchTopic> = this
            .handlers
            .keys()
            .map(|name| FetchTopic {
                topic_name: name.clone(),
                lock_duration: millis(this.config.lock_duration),
                process_variables: this.config.process_variables.clone(),
            })
            .collect();
        let permits = Arc::new(Semaphore::new(this.config.max_concurrent.max(1)));
        let mut running = JoinSet::new();
        let mut pause = Duration::from_millis(200);
        loop {
            while running.try_join_next().is_some() {}
            let first = tokio::select! {
                () = shutdown.cancelled() => break,
                permit = permits.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break,
                },
            };
            let mut free = vec![first];
            while let Ok(permit) = permits.clone().try_acquire_owned() {
                free.push(permit);
            }
            let fetched = tokio::select! {
                () = shutdown.cancelled() => break,
                fetched = this.client.fetch_and_lock(
                    &this.config.worker_id, free.len(), this.config.long_poll, &topics,
                ) => fetched,
            };
            match fetched {
                Ok(tasks) => {
                    pause = Duration::from_millis(200);
                    for task in tasks {
                        let Some(permit) = free.pop() else {
                            // The engine never returns more than maxTasks; if it did, the
                            // extra task's lock expires and it comes back.
                            break;
                        };
                        let worker = this.clone();
                        running.spawn(async move { worker.work(task, permit).await });
                    }
                }
                Err(error) => {
                    tracing::warn!(error = %error, worker_id = %this.config.worker_id, "fetching external tasks failed; retrying");
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(pause) => {}
                    }
                    pause = (pause * 2).min(Duration::from_secs(10));
                }
            }
        }
        while running.join_next().await.is_some() {}
    }

    /// Runs one task's handler under an extended lock and reports the outcome.
    async fn work(self: Arc<Self>, task: LockedTask, _permit: OwnedSemaphorePermit) {
        let span = tracing::info_span!(
            "external_task",
            topic = %task.topic_name,
            task_id = %task.id,
            business_key = task.business_key.as_deref().unwrap_or(""),
        );
        async move {
            let Some(handler) = self.handlers.get(&task.topic_name).cloned() else {
                return;
            };
            let outcome = {
                let job = tokio::spawn(handler(task.clone()));
                let keep_locked = self.keep_locked(&task.id);
                tokio::pin!(keep_locked);
                tokio::select! {
                    joined = job => match joined {
                        Ok(outcome) => outcome,
                        Err(panic) => Err(TaskFailure::Retry(anyhow::anyhow!("the handler panicked: {panic}"))),
                    },
                    () = &mut keep_locked => Err(TaskFailure::Retry(anyhow::anyhow!("lost the lock"))),
                }
            };
            let topic = task.topic_name.clone();
            let report = match outcome {
                Ok(variables) => {
                    metrics::counter!("workflow_tasks_total", "topic" => topic, "outcome" => "completed").increment(1);
                    Report::Complete(variables)
                }
                Err(TaskFailure::Bpmn { code, message }) => {
                    metrics::counter!("workflow_tasks_total", "topic" => topic, "outcome" => "bpmn_error").increment(1);
                    tracing::info!(code = %code, "task ended with a BPMN error");
                    Report::BpmnError { code, message }
                }
                Err(TaskFailure::Retry(error)) => {
                    metrics::counter!("workflow_tasks_total", "topic" => topic, "outcome" => "failed").increment(1);
                    let left = task.retries.unwrap_or(self.config.retries).saturating_sub(1).max(0);
                    let attempt = self.config.retries.saturating_sub(left).max(1);
                    let timeout = retry_timeout(attempt, self.config.backoff_base, self.config.backoff_max);
                    if left == 0 {
                        tracing::error!(error = format!("{error:#}"), "task failed with no retries left; the engine raises an incident");
                    } else {
                        tracing::warn!(error = format!("{error:#}"), retries_left = left, retry_in_ms = millis(timeout), "task failed; retrying");
                    }
                    Report::Failure {
                        message: error.to_string().chars().take(500).collect(),
                        details: format!("{error:?}"),
                        retries_left: left,
                        retry_timeout: timeout,
                    }
                }
            };
            let mut sent = 1;
            let reported = loop {
                match self.send(&task.id, &report).await {
                    Err(error) if error.is_transient() && sent < REPORT_ATTEMPTS => {
                        tracing::warn!(error = %error, attempt = sent, "reporting the task's outcome failed; sending it again");
                        tokio::time::sleep(REPORT_PAUSE.saturating_mul(1 << (sent - 1))).await;
                        sent += 1;
                    }
                    result => break result,
                }
            };
            match reported {
                Ok(()) => {}
                // Completed meanwhile by a worker that took it after our lock expired, or its
                // process was cancelled: nothing left to report.
                Err(EngineError::NotFound(message)) => tracing::warn!(%message, "task gone before we reported"),
                // The lock expires and the task comes again; the handler is idempotent.
                Err(error) => tracing::error!(error = %error, "could not report the task's outcome"),
            }
        }
        .instrument(span)
        .await;
    }

    /// Sends one outcome to the engine. Sending it again is safe: a completion that did land
    /// answers 404 (handled as "task gone"), a failure report sets the same retries again.
    async fn send(&self, task_id: &str, report: &Report) -> Result<(), EngineError> {
        let worker_id = &self.config.worker_id;
        match report {
            Report::Complete(variables) => {
                self.client
                    .complete(task_id, worker_id, variables.clone())
                    .await
            }
            Report::BpmnError { code, message } => {
                self.client
                    .handle_bpmn_error(task_id, worker_id, code, message, Variables::new())
                    .await
            }
            Report::Failure {
                message,
                details,
                retries_left,
                retry_timeout,
            } => {
                self.client
                    .handle_failure(
                        task_id,
                        worker_id,
                        message,
                        details,
                        *retries_left,
                        *retry_timeout,
                    )
                    .await
            }
        }
    }

    /// Extends the lock every half lock duration; returns only when the lock is lost (the
    /// task is gone or held by another worker), never while extending works or the engine is
    /// briefly unreachable.
    async fn keep_locked(&self, task_id: &str) {
        let every = self.config.lock_duration / 2;
        loop {
            tokio::time::sleep(every).await;
            match self
                .client
                .extend_lock(task_id, &self.config.worker_id, self.config.lock_duration)
                .await
            {
                Ok(()) => {}
                // A 500 (an optimistic-locking conflict with a fetch) is tried again like the
                // engine being away; only a definite "gone" or "held by another" ends the lock.
                Err(error) if !error.is_transient() => {
                    tracing::warn!(error = %error, "could not extend the lock");
                    // The handler still runs to its end: its effect is idempotent, and the
                    // worker now holding the task will find it done.
                    std::future::pending::<()>().await;
                }
                Err(error) => {
                    tracing::warn!(error = %error, "extending the lock failed; trying again")
                }
            }
        }
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use axum::Json;
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    use axum::routing::post;
    use serde_json::json;
    use tokio_util::sync::CancellationToken;

    use super::{TaskFailure, Worker, WorkerConfig, retry_timeout, worker_id};
    use crate::client::EngineClient;

    /// A stand-in engine: the real one cannot be made to fail one call on demand. It hands
    /// out one task of topic `charge` (then empty long polls) and answers the first call to
    /// `flaky` (a path under `/engine-rest`) with the 500 a CI run got from Operaton, an
    /// optimistic-locking conflict, and later ones with 204.
    async fn stand_in_engine(flaky: &str) -> anyhow::Result<StandIn> {
        let fetches = Arc::new(AtomicUsize::new(0));
        let calls = Arc::new(AtomicUsize::new(0));
        let fetched = fetches.clone();
        let engine = axum::Router::new()
            .route(
                "/engine-rest/external-task/fetchAndLock",
                post(move || async move {
                    if fetches.fetch_add(1, Ordering::SeqCst) == 0 {
                        Json(json!([{"id": "task-1", "topicName": "charge", "retries": null}]))
                    } else {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Json(json!([]))
                    }
                }),
            )
            .route(
                &format!("/engine-rest{flaky}"),
                post({
                    let calls = calls.clone();
                    move || async move {
                        if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                            let conflict = json!({
                                "type": "OptimisticLockingException",
                                "message": "ENGINE-03005 Entity was updated by another transaction concurrently."
                            });
                            (StatusCode::INTERNAL_SERVER_ERROR, Json(conflict)).into_response()
                        } else {
                            StatusCode::NO_CONTENT.into_response()
                        }
                    }
                }),
            )
            // Every other report is accepted.
            .fallback(|| async { StatusCode::NO_CONTENT });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, engine).await;
        });
        Ok(StandIn {
            base,
            calls,
            fetches: fetched,
            server,
        })
    }

    /// The stand-in's address, the calls to its `flaky` path and to `fetchAndLock`.
    struct StandIn {
        base: String,
        calls: Arc<AtomicUsize>,
        fetches: Arc<AtomicUsize>,
        server: tokio::task::JoinHandle<()>,
    }

    /// Runs a worker on the stand-in until `flaky` was called `wanted` times (or 10 s passed);
    /// returns how often the handler ran and the wait's outcome.
    async fn run_until_called(
        engine: &StandIn,
        config: WorkerConfig,
        handler_takes: Duration,
        wanted: usize,
    ) -> anyhow::Result<(usize, anyhow::Result<()>)> {
        let runs = Arc::new(AtomicUsize::new(0));
        let counted = runs.clone();
        let worker =
            Worker::new(EngineClient::new(&engine.base)?, config).topic("charge", move |_task| {
                counted.fetch_add(1, Ordering::SeqCst);
                async move {
                    tokio::time::sleep(handler_takes).await;
                    Err(TaskFailure::Retry(anyhow::anyhow!("the provider is down")))
                }
            });
        let shutdown = CancellationToken::new();
        let running = tokio::spawn(worker.run(shutdown.clone()));
        // The counts of fetches and handler runs say, when it fails, whether the worker never
        // got the task or its calls did not arrive (a CI run once saw 0 calls in 10 s).
        let reached = testkit::eventually(Duration::from_secs(10), || async {
            let made = engine.calls.load(Ordering::SeqCst);
            anyhow::ensure!(
                made >= wanted,
                "{made} calls, waiting for {wanted}; {} fetches, the handler ran {} times",
                engine.fetches.load(Ordering::SeqCst),
                runs.load(Ordering::SeqCst)
            );
            Ok(())
        })
        .await;
        shutdown.cancel();
        running.await?;
        Ok((runs.load(Ordering::SeqCst), reached))
    }

    #[tokio::test]
    async fn a_report_the_engine_failed_to_record_is_sent_again() -> anyhow::Result<()> {
        let engine = stand_in_engine("/external-task/task-1/failure").await?;
        let config = WorkerConfig::new(worker_id("report"));
        let (runs, reached) = run_until_called(&engine, config, Duration::ZERO, 2).await?;
        engine.server.abort();
        reached?;
        // Not sent again, the outcome would be lost: the task back after its lock, with the
        // retries it had.
        assert_eq!(
            engine.calls.load(Ordering::SeqCst),
            2,
            "sent again once, then accepted"
        );
        assert_eq!(runs, 1);
        Ok(())
    }

    #[tokio::test]
    async fn a_lock_extension_the_engine_failed_is_tried_again() -> anyhow::Result<()> {
        let engine = stand_in_engine("/external-task/task-1/extendLock").await?;
        let mut config = WorkerConfig::new(worker_id("extend"));
        config.lock_duration = Duration::from_millis(200);
        // The handler outlasts several lock durations: extended every 100 ms.
        let (runs, reached) = run_until_called(&engine, config, Duration::from_secs(2), 3).await?;
        engine.server.abort();
        // Taken for a lost lock, the first 500 would have ended the extensions: the task
        // free for another worker while its handler still ran.
        reached?;
        assert_eq!(runs, 1);
        Ok(())
    }

    #[test]
    fn retry_timeouts_double_up_to_the_cap() {
        let base = Duration::from_secs(2);
        let max = Duration::from_secs(60);
        let timeouts: Vec<u64> = (1..=7)
            .map(|attempt| retry_timeout(attempt, base, max).as_secs())
            .collect();
        assert_eq!(timeouts, [2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(retry_timeout(0, base, max), base);
        assert_eq!(retry_timeout(i32::MAX, base, max), max);
    }

    #[test]
    fn worker_ids_are_unique_per_call_and_name_the_service() {
        let a = worker_id("payment-service");
        let b = worker_id("payment-service");
        assert!(a.starts_with("payment-service-"));
        assert_ne!(a, b);
    }
}
