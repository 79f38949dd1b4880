//! Connecting a service to MongoDB: one client per process, whose operations give up on a
//! server that is away within the time a request may take, and a start that waits a bounded
//! while for a server that is slow to answer rather than failing at once.

use std::time::Duration;

use anyhow::Context as _;
use mongodb::bson::doc;
use mongodb::options::ClientOptions;
use mongodb::{Client, Database};

/// How long an operation waits for a usable server: within the 2 s a client may wait for an
/// answer, so a server that is away answers 503 in time.
pub const SERVER_SELECTION_TIMEOUT: Duration = Duration::from_millis(1_500);

/// How long a start keeps trying to reach the server. A busy server (a shared development
/// box, a node restarting under Kubernetes) can miss one selection timeout at start; failing
/// then would make the service crash-loop, while a wrong URL still fails within this bound.
pub const START_PATIENCE: Duration = Duration::from_secs(30);

/// Connects `app_name` to `database` at `url` and checks the server answers a ping, trying
/// again until [`START_PATIENCE`] has passed, so a wrong URL fails at start rather than on the
/// first request.
pub async fn connect(url: &str, database: &str, app_name: &str) -> anyhow::Result<Database> {
    connect_within(url, database, app_name, START_PATIENCE).await
}

/// [`connect`] with its own patience.
pub async fn connect_within(
    url: &str,
    database: &str,
    app_name: &str,
    patience: Duration,
) -> anyhow::Result<Database> {
    connect_with(url, database, app_name, patience, |_| {}).await
}

/// [`connect_within`], letting `adjust` add to the client's options (for example a command
/// monitor) after the shared ones are set.
pub async fn connect_with(
    url: &str,
    database: &str,
    app_name: &str,
    patience: Duration,
    adjust: impl FnOnce(&mut ClientOptions),
) -> anyhow::Result<Database> {
    let mut options = ClientOptions::parse(url)
        .await
        .context("MONGODB_URL is not a MongoDB connection string")?;
    options.app_name = Some(app_name.to_owned());
    options.server_selection_timeout = Some(SERVER_SELECTION_TIMEOUT);
    adjust(&mut options);
    let client = Client::with_options(options).context("creating the MongoDB client")?;
    let db = client.database(database);
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        match ping(&db).await {
            Ok(()) => return Ok(db),
            Err(error) if tokio::time::Instant::now() < deadline => {
                tracing::warn!(%error, "MongoDB does not answer yet; trying again");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(error) => {
                return Err(anyhow::Error::new(error).context(format!(
                    "cannot reach MongoDB (MONGODB_URL) within {} s",
                    patience.as_secs()
                )));
            }
        }
    }
}

/// One round trip to the server (readiness checks use it too).
pub async fn ping(db: &Database) -> mongodb::error::Result<()> {
    db.run_command(doc! {"ping": 1}).await.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Nothing listens on the port: the start gives up after its patience with the variable
    /// named, instead of waiting forever or failing without saying what to fix.
    #[tokio::test]
    async fn an_unreachable_server_fails_the_start_naming_the_variable() {
        let Ok(listener) = std::net::TcpListener::bind("127.0.0.1:0") else {
            panic!("cannot bind a port");
        };
        let Ok(address) = listener.local_addr() else {
            panic!("no local address");
        };
        drop(listener);
        let url = format!("mongodb://{address}/?directConnection=true");
        let result = connect_within(&url, "none", "test", Duration::from_secs(2)).await;
        let Err(error) = result else {
            panic!("connected to nothing");
        };
        assert!(format!("{error:#}").contains("MONGODB_URL"), "{error:#}");
    }

    #[tokio::test]
    async fn a_malformed_url_is_refused_at_once() {
        let result = connect_within("http://nope", "none", "test", START_PATIENCE).await;
        let Err(error) = result else {
            panic!("accepted a malformed URL");
        };
        assert!(
            format!("{error:#}").contains("not a MongoDB connection string"),
            "{error:#}"
        );
    }
}
