//! Helpers for the services' integration tests: waiting for asynchronous outcomes with a
//! deadline (never a fixed sleep), running a service's real binary to signal it, the OIDC
//! stand-in for Google with a browser's part of a sign-in ([`oidc_standin`]), and private
//! instances of the infrastructure for tests that stop it ([`deps`]). What every service's
//! `tests/api/helpers.rs` needs is here once: the answer wrapper ([`http::Reply`]), access
//! tokens signed like user-service's ([`tokens::TestIssuer`]), the telemetry of a test binary
//! ([`spans`]), fresh PostgreSQL databases ([`postgres`]) and MongoDB names ([`mongo`], feature
//! `mongo`). A new test file should reach for these first.
//! Used only as a dev-dependency.

pub mod deps;
pub mod http;
#[cfg(feature = "mongo")]
pub mod mongo;
pub mod oidc_standin;
pub mod spans;
pub mod tokens;

use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

/// Retries `check` until it passes or `deadline` passes; returns its last error then. The
/// pause between tries grows from 50 ms to 500 ms.
pub async fn eventually<F, Fut>(deadline: Duration, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let started = Instant::now();
    let mut pause = Duration::from_millis(50);
    loop {
        match check().await {
            Ok(()) => return Ok(()),
            Err(error) if started.elapsed() >= deadline => {
                return Err(error.context(format!("still failing after {deadline:?}")));
            }
            Err(_) => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(500));
            }
        }
    }
}

/// Calls `attempt` again, after 100 ms, while `again` says its answer asks to be retried (a
/// documented "try again shortly"), until `deadline` passes; returns the last answer, which the
/// caller then asserts on. [`eventually`] is for a check that must pass; this is for a request
/// whose final answer is the point.
pub async fn resend_while<T, F, Fut>(
    deadline: Duration,
    mut attempt: F,
    again: impl Fn(&T) -> bool,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let started = Instant::now();
    loop {
        let answer = attempt().await?;
        if !again(&answer) || started.elapsed() >= deadline {
            return Ok(answer);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A port that was free a moment ago, for a child process that takes its port from the
/// environment, and that this process has not handed out before.
///
/// The kernel may give the same port to two `bind(0)`s in a row once the first listener is
/// closed, and a platform picks every port before its processes bind them: a CI run once gave
/// two services of one system test the same port, the second failed to listen, its readiness
/// probe was answered by the first, and the gateway sent product requests to order-service.
pub fn free_port() -> anyhow::Result<u16> {
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    for _ in 0..64 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut handed_out = HANDED_OUT
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !handed_out.contains(&port) {
            handed_out.push(port);
            return Ok(port);
        }
    }
    anyhow::bail!("no port this process has not handed out already")
}

/// A local address that refuses every connection for as long as this value lives: a socket
/// bound to a port and never listening, so connecting gets "connection refused" and no other
/// server can bind the port meanwhile. [`free_port`] cannot promise that: its port is free
/// again at once, and a CI run once gave it to the next `bind(0)`, a provider simulator, so a
/// test of an unreachable provider was answered 404.
#[derive(Debug)]
pub struct ClosedPort {
    _socket: tokio::net::TcpSocket,
    port: u16,
}

impl ClosedPort {
    pub fn new() -> anyhow::Result<Self> {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))?;
        let port = socket.local_addr()?.port();
        Ok(Self {
            _socket: socket,
            port,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// A file path in the temporary directory that nothing has created yet, the file removed
/// when dropped, even when the test fails: a signing key a service creates on its first
/// start, which each run of the suites would otherwise leave behind in `/tmp`.
#[derive(Debug)]
pub struct TempPath(std::path::PathBuf);

impl TempPath {
    /// `<temp dir>/ferroshop-<name>-<random>`; `name` may end with an extension.
    pub fn new(name: &str) -> Self {
        let unique = uuid::Uuid::new_v4().simple().to_string();
        let file = match name.rsplit_once('.') {
            Some((stem, extension)) => format!("ferroshop-{stem}-{unique}.{extension}"),
            None => format!("ferroshop-{name}-{unique}"),
        };
        Self(std::env::temp_dir().join(file))
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A service binary running as a child process; killed if the test ends early.
#[derive(Debug)]
pub struct ServiceProcess {
    child: Child,
}

impl ServiceProcess {
    pub fn spawn(command: &mut Command) -> anyhow::Result<Self> {
        Ok(Self {
            child: command.spawn()?,
        })
    }

    /// Waits until `url` answers 200, failing early if the process exits (also when the 200
    /// came after it exited: then another process holds its port).
    pub async fn wait_ready(&mut self, url: &str, deadline: Duration) -> anyhow::Result<()> {
        let client = reqwest::Client::new();
        let started = Instant::now();
        loop {
            let ready = client.get(url).send().await;
            if ready.is_ok_and(|response| response.status() == reqwest::StatusCode::OK) {
                if let Some(status) = self.child.try_wait()? {
                    anyhow::bail!(
                        "the service exited during start-up ({status}) and something else \
                         answered {url}"
                    );
                }
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                anyhow::bail!("the service exited during start-up: {status}");
            }
            anyhow::ensure!(
                started.elapsed() < deadline,
                "{url} not ready after {deadline:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Sends SIGTERM, as an orchestrator does to stop a pod.
    pub fn terminate(&self) -> anyhow::Result<()> {
        let pid = self.child.id().to_string();
        let status = Command::new("kill").args(["-TERM", &pid]).status()?;
        anyhow::ensure!(status.success(), "kill -TERM {pid} failed");
        Ok(())
    }

    /// Waits for the process to exit by itself.
    pub async fn wait_exit(&mut self, deadline: Duration) -> anyhow::Result<ExitStatus> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            anyhow::ensure!(
                started.elapsed() < deadline,
                "still running after {deadline:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_temp_path_is_unique_and_removed_when_dropped() -> anyhow::Result<()> {
        let (key, other) = (TempPath::new("test-key.pem"), TempPath::new("test-key.pem"));
        assert_ne!(key.path(), other.path());
        assert!(key.path().extension().is_some_and(|ext| ext == "pem"));
        std::fs::write(key.path(), "secret")?;
        let path = key.path().to_owned();
        drop(key);
        assert!(!path.exists(), "{} is still there", path.display());
        Ok(())
    }

    #[test]
    fn free_ports_are_never_handed_out_twice() -> anyhow::Result<()> {
        let ports: Vec<u16> = (0..200)
            .map(|_| free_port())
            .collect::<anyhow::Result<_>>()?;
        let mut distinct = ports.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), ports.len());
        Ok(())
    }

    #[tokio::test]
    async fn a_closed_port_refuses_connections_and_cannot_be_taken() -> anyhow::Result<()> {
        let closed = ClosedPort::new()?;
        let refused = tokio::net::TcpStream::connect(("127.0.0.1", closed.port())).await;
        assert!(
            refused
                .as_ref()
                .is_err_and(|error| error.kind() == std::io::ErrorKind::ConnectionRefused),
            "{refused:?}"
        );
        assert!(std::net::TcpListener::bind(("127.0.0.1", closed.port())).is_err());
        assert_eq!(closed.url(), format!("http://127.0.0.1:{}", closed.port()));
        Ok(())
    }

    #[tokio::test]
    async fn resend_while_returns_the_first_answer_not_asking_for_a_retry() -> anyhow::Result<()> {
        let mut calls = 0;
        let answer = resend_while(
            Duration::from_secs(10),
            || {
                calls += 1;
                let answer = calls;
                async move { Ok(answer) }
            },
            |answer: &i32| *answer < 3,
        )
        .await?;
        assert_eq!(answer, 3);
        // Past the deadline the last answer comes back as it is.
        let last = resend_while(Duration::ZERO, || async { Ok(503) }, |_: &i32| true).await?;
        assert_eq!(last, 503);
        Ok(())
    }

    #[tokio::test]
    async fn eventually_returns_the_last_error_after_the_deadline() {
        let result = eventually(Duration::from_millis(120), || async {
            anyhow::bail!("not yet")
        })
        .await;
        let message = format!(
            "{:#}",
            result.err().map(|e| e.to_string()).unwrap_or_default()
        );
        assert!(message.contains("still failing"), "{message}");
    }

    #[tokio::test]
    async fn eventually_passes_once_the_check_does() -> anyhow::Result<()> {
        let mut tries = 0;
        eventually(Duration::from_secs(5), || {
            tries += 1;
            let done = tries >= 3;
            async move {
                if done {
                    Ok(())
                } else {
                    anyhow::bail!("try again")
                }
            }
        })
        .await?;
        assert_eq!(tries, 3);
        Ok(())
    }

    #[tokio::test]
    async fn a_child_is_waited_for_and_its_status_reported() -> anyhow::Result<()> {
        let mut child = ServiceProcess::spawn(Command::new("sleep").arg("30"))?;
        child.terminate()?;
        let status = child.wait_exit(Duration::from_secs(10)).await?;
        assert!(!status.success(), "killed by SIGTERM: {status}");
        Ok(())
    }
}

/// Addresses of the local stack, from the variables `cargo xtask test` sets, with the local
/// defaults of `cargo xtask up` when a test is run directly.
#[allow(
    clippy::disallowed_methods,
    reason = "the tests' configuration: the variables cargo xtask test sets"
)]
pub mod stack {
    /// The variable `name`, or `default` when it is unset or empty.
    pub fn env_or(name: &str, default: &str) -> String {
        optional(name).unwrap_or_else(|| default.to_owned())
    }

    /// The variable `name`, unless it is unset or empty.
    pub fn optional(name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|value| !value.is_empty())
    }

    /// Kafka bootstrap servers.
    pub fn kafka_brokers() -> String {
        env_or("KAFKA_BROKERS", "127.0.0.1:9092")
    }

    /// Zipkin's base URL (its API is under `/api/v2`).
    pub fn zipkin_url() -> String {
        env_or("ZIPKIN_URL", "http://127.0.0.1:9411")
    }

    /// The MongoDB-wire server.
    pub fn mongodb_url() -> String {
        env_or("MONGODB_URL", "mongodb://127.0.0.1:27017")
    }

    /// The workflow engine's base URL (its REST API is under `/engine-rest`).
    pub fn workflow_engine_url() -> String {
        env_or("WORKFLOW_ENGINE_URL", "http://127.0.0.1:8086")
    }

    /// A PostgreSQL URL with rights to create databases.
    pub fn admin_database_url() -> String {
        env_or(
            "TEST_DATABASE_URL",
            "postgres://shop:shop@127.0.0.1:5432/postgres",
        )
    }
}

/// Fresh PostgreSQL databases for tests.
pub mod postgres {
    use std::time::{SystemTime, UNIX_EPOCH};

    use sqlx::{Connection as _, PgConnection};

    /// Creates `test_<tag>_<unix seconds>_<random>` on the server of `TEST_DATABASE_URL` and
    /// returns its URL. The creation time in the name lets each call drop the `test_<tag>_`
    /// databases that earlier runs left behind more than an hour ago.
    pub async fn fresh_database(tag: &str) -> anyhow::Result<String> {
        fresh_database_on(&super::stack::admin_database_url(), tag).await
    }

    /// As [`fresh_database`], on the server of `admin_url` (a private one, see
    /// [`crate::deps::postgres`]).
    pub async fn fresh_database_on(admin_url: &str, tag: &str) -> anyhow::Result<String> {
        let admin_url = admin_url.to_owned();
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
        let random = uuid::Uuid::new_v4().simple().to_string();
        let name = format!("test_{tag}_{now}_{random}");
        let mut admin = PgConnection::connect(&admin_url).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await?;
        drop_stale(&mut admin, tag, now).await;
        let (base, _) = admin_url
            .rsplit_once('/')
            .ok_or_else(|| anyhow::anyhow!("TEST_DATABASE_URL has no database path"))?;
        Ok(format!("{base}/{name}"))
    }

    async fn drop_stale(admin: &mut PgConnection, tag: &str, now: u64) {
        let prefix = format!("test_{tag}_");
        let names: Vec<String> =
            sqlx::query_scalar("SELECT datname FROM pg_database WHERE starts_with(datname, $1)")
                .bind(&prefix)
                .fetch_all(&mut *admin)
                .await
                .unwrap_or_default();
        for name in names {
            let created = name
                .strip_prefix(&prefix)
                .and_then(|rest| rest.split('_').next())
                .and_then(|secs| secs.parse::<u64>().ok());
            if created.is_some_and(|created| now.saturating_sub(created) > 3600) {
                let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut *admin)
                .await;
            }
        }
    }
}

/// Server-Sent Events as a test reads them: `GET /api/orders/{id}/events` and the like.
pub mod sse {
    use std::time::Duration;

    /// An open `text/event-stream` response and what has arrived of it.
    #[derive(Debug)]
    pub struct EventStream {
        response: reqwest::Response,
        buffer: String,
        /// How long to wait for the next event before failing.
        patience: Duration,
    }

    /// One event: its name (`event:`) and its data (the `data:` lines joined).
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Event {
        pub name: String,
        pub data: String,
    }

    impl EventStream {
        /// Takes a response that must be `200 text/event-stream`.
        pub fn new(response: reqwest::Response, patience: Duration) -> anyhow::Result<Self> {
            anyhow::ensure!(
                response.status() == reqwest::StatusCode::OK,
                "the event stream answered {}",
                response.status()
            );
            let content_type = response
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            anyhow::ensure!(
                content_type.starts_with("text/event-stream"),
                "not an event stream: {content_type}"
            );
            Ok(Self {
                response,
                buffer: String::new(),
                patience,
            })
        }

        /// The next event (comments such as keep-alives are skipped), or `None` when the
        /// server ended the stream. Fails if nothing arrives within the patience.
        pub async fn next_event(&mut self) -> anyhow::Result<Option<Event>> {
            loop {
                if let Some(end) = self.buffer.find("\n\n") {
                    let block: String = self.buffer.drain(..end + 2).collect();
                    let mut name = String::from("message");
                    let mut data: Vec<&str> = Vec::new();
                    for line in block.lines() {
                        if let Some(value) = line.strip_prefix("event:") {
                            name = value.trim().to_owned();
                        } else if let Some(value) = line.strip_prefix("data:") {
                            data.push(value.strip_prefix(' ').unwrap_or(value));
                        }
                    }
                    if data.is_empty() {
                        continue;
                    }
                    return Ok(Some(Event {
                        name,
                        data: data.join("\n"),
                    }));
                }
                let chunk = tokio::time::timeout(self.patience, self.response.chunk())
                    .await
                    .map_err(|_| anyhow::anyhow!("no event within {:?}", self.patience))??;
                match chunk {
                    Some(bytes) => self.buffer.push_str(&String::from_utf8_lossy(&bytes)),
                    None => return Ok(None),
                }
            }
        }
    }
}
