//! The life of a running service: one HTTP server and its background work (Kafka consumers,
//! jobs, senders, outbox relays), started together and stopped in the one order that loses
//! nothing.
//!
//! Every service used to spell this out in its `startup.rs`. The order matters and is easy to
//! get wrong: requests in flight finish first (they write outbox rows and enqueue work);
//! then the workers finish the record or job in hand (they too write outbox rows); then the
//! deliveries that workers feed; then the relays publish what all of that committed; only
//! then do pools close. A relay stopped before a worker would leave that worker's last
//! events for the next start; a pool closed early fails the last commits.

use std::future::Future;
use std::pin::Pin;

use anyhow::Context as _;
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send>>;
type Run = Box<dyn FnOnce(CancellationToken) -> BoxFuture + Send>;

/// When a background task is told to stop, relative to the others. Stages stop in this order,
/// each after the one before it has finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum StopStage {
    /// Consumers and periodic jobs: they take work in and commit it.
    Workers,
    /// Work the workers hand on within the process (e.g. notification-service's senders).
    Deliveries,
    /// Outbox relays: they publish what everything before them committed.
    Relays,
}

const STAGES: [StopStage; 3] = [StopStage::Workers, StopStage::Deliveries, StopStage::Relays];

/// A service's listener, router and background work, built by its `startup` and run by
/// [`Lifecycle::run_until_stopped`].
pub struct Lifecycle {
    listener: TcpListener,
    port: u16,
    router: Router,
    limits: crate::ConnectionLimits,
    tasks: Vec<(StopStage, &'static str, Run)>,
    /// One token per stage, in [`STAGES`] order.
    stage_tokens: [CancellationToken; 3],
    stopping: Vec<CancellationToken>,
    closers: Vec<BoxFuture>,
}

impl std::fmt::Debug for Lifecycle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tasks: Vec<_> = self.tasks.iter().map(|(s, n, _)| (s, n)).collect();
        f.debug_struct("Lifecycle")
            .field("port", &self.port)
            .field("tasks", &tasks)
            .finish_non_exhaustive()
    }
}

impl Lifecycle {
    /// Binds `host:port` (port 0 picks a free one, as tests do) for `router`.
    pub async fn bind(host: &str, port: u16, router: Router) -> anyhow::Result<Self> {
        let listener = TcpListener::bind((host, port))
            .await
            .with_context(|| format!("cannot listen on {host}:{port}"))?;
        let port = listener.local_addr()?.port();
        Ok(Self {
            listener,
            port,
            router,
            limits: crate::ConnectionLimits::default(),
            tasks: Vec::new(),
            stage_tokens: Default::default(),
            stopping: Vec::new(),
            closers: Vec::new(),
        })
    }

    /// The port actually bound.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Limits on what a client connection may cost before its request is read, instead of
    /// the defaults.
    pub fn connection_limits(&mut self, limits: crate::ConnectionLimits) -> &mut Self {
        self.limits = limits;
        self
    }

    /// The token cancelled when `stage` is told to stop, for code built before the lifecycle
    /// runs that must notice it too (a handler waiting for room in a queue).
    pub fn stop_token(&self, stage: StopStage) -> CancellationToken {
        self.stage_tokens[stage as usize].clone()
    }

    /// Runs `run` in the background from the start; it is given the token that tells it to
    /// stop at `stage`, and is awaited before the next stage is told.
    pub fn spawn<F, Fut>(&mut self, stage: StopStage, name: &'static str, run: F) -> &mut Self
    where
        F: FnOnce(CancellationToken) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.tasks
            .push((stage, name, Box::new(move |stop| Box::pin(run(stop)))));
        self
    }

    /// A consumer or job, stopped once the HTTP server has drained.
    pub fn worker<F, Fut>(&mut self, name: &'static str, run: F) -> &mut Self
    where
        F: FnOnce(CancellationToken) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.spawn(StopStage::Workers, name, run)
    }

    /// An outbox relay, stopped last, after everything that writes to its outbox.
    pub fn relay<F, Fut>(&mut self, name: &'static str, run: F) -> &mut Self
    where
        F: FnOnce(CancellationToken) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.spawn(StopStage::Relays, name, run)
    }

    /// `token` is cancelled the moment shutdown begins, before the HTTP server drains: for
    /// long-lived responses (event streams) that would otherwise hold the drain open.
    pub fn cancel_on_shutdown(&mut self, token: CancellationToken) -> &mut Self {
        self.stopping.push(token);
        self
    }

    /// `close` runs after every background task has stopped (closing a pool).
    pub fn close_at_end(&mut self, close: impl Future<Output = ()> + Send + 'static) -> &mut Self {
        self.closers.push(Box::pin(close));
        self
    }

    /// Serves until `shutdown` resolves, then stops everything in order (see the module doc)
    /// and returns the HTTP server's result.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let mut running = Vec::new();
        for (stage, name, run) in self.tasks {
            let stop = self.stage_tokens[stage as usize].clone();
            running.push((stage, name, tokio::spawn(run(stop))));
        }
        let stopping = self.stopping;
        let shutdown = async move {
            shutdown.await;
            for token in stopping {
                token.cancel();
            }
        };
        let result = crate::serve_with_limits(self.listener, self.router, self.limits, shutdown)
            .await
            .context("HTTP server failed");
        for stage in STAGES {
            let (now, later): (Vec<_>, Vec<_>) =
                running.into_iter().partition(|(s, ..)| *s == stage);
            running = later;
            self.stage_tokens[stage as usize].cancel();
            for (_, name, task) in now {
                if let Err(error) = task.await {
                    tracing::error!(task = name, %error, "background task failed");
                }
            }
        }
        for close in self.closers {
            close.await;
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Records "<name> stopped" when its token is cancelled.
    fn recorder(
        log: &Arc<Mutex<Vec<String>>>,
        name: &'static str,
    ) -> impl FnOnce(CancellationToken) -> BoxFuture + Send + 'static {
        let log = log.clone();
        move |stop: CancellationToken| -> BoxFuture {
            Box::pin(async move {
                stop.cancelled().await;
                // Yield, so a later stage that was wrongly told at the same time would get
                // its entry in first.
                tokio::task::yield_now().await;
                if let Ok(mut log) = log.lock() {
                    log.push(format!("{name} stopped"));
                }
            })
        }
    }

    #[tokio::test]
    async fn stages_stop_in_order_after_the_server_and_before_the_pools_close() -> anyhow::Result<()>
    {
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut lifecycle = Lifecycle::bind("127.0.0.1", 0, Router::new()).await?;
        // Registered out of order on purpose.
        lifecycle
            .relay("relay", recorder(&log, "relay"))
            .spawn(StopStage::Deliveries, "senders", recorder(&log, "senders"))
            .worker("consumer", recorder(&log, "consumer"))
            .worker("job", recorder(&log, "job"));
        let stream = CancellationToken::new();
        lifecycle.cancel_on_shutdown(stream.clone());
        let closed = log.clone();
        lifecycle.close_at_end(async move {
            if let Ok(mut log) = closed.lock() {
                log.push("pool closed".into());
            }
        });
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let run = tokio::spawn(lifecycle.run_until_stopped(async move {
            let _ = rx.await;
        }));
        assert!(!stream.is_cancelled());
        let _ = tx.send(());
        run.await??;
        assert!(stream.is_cancelled());
        let log = log.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.clone();
        let position = |entry: &str| log.iter().position(|e| e == entry);
        assert_eq!(log.len(), 5, "{log:?}");
        for worker in ["consumer stopped", "job stopped"] {
            assert!(position(worker) < position("senders stopped"), "{log:?}");
        }
        assert!(
            position("senders stopped") < position("relay stopped"),
            "{log:?}"
        );
        assert_eq!(log.last().map(String::as_str), Some("pool closed"));
        Ok(())
    }

    #[tokio::test]
    async fn a_port_in_use_is_an_error_naming_the_address() -> anyhow::Result<()> {
        let taken = TcpListener::bind(("127.0.0.1", 0)).await?;
        let port = taken.local_addr()?.port();
        let error = Lifecycle::bind("127.0.0.1", port, Router::new())
            .await
            .err()
            .map(|e| e.to_string());
        assert_eq!(error, Some(format!("cannot listen on 127.0.0.1:{port}")));
        Ok(())
    }
}
