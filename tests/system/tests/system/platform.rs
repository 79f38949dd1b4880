//! Starts the whole platform from its binaries: fresh databases and topics, every service on
//! a free port (N instances of each stateless service), the gateway in front.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use testkit::{ServiceProcess, free_port};
use uuid::Uuid;

pub const ADMIN_EMAIL: &str = "admin@example.com";
pub const ADMIN_PASSWORD: &str = "admin-dev-password";
/// psp-sim's API key in these tests.
pub const PSP_API_KEY: &str = "sk_test_system";
pub const SMS_TOKEN: &str = "sms-test-token";
/// The gateway's strict bucket (login, register) per client IP in these tests: a burst of 40
/// (every scenario registers and signs in from 127.0.0.1), refilled at 2 per second.
pub const STRICT_BURST: u32 = 40;

const READY: Duration = Duration::from_secs(90);

/// One running instance, with what it was started with (to start it again).
struct Instance {
    name: String,
    log: PathBuf,
    process: Option<ServiceProcess>,
    port: u16,
    env: Vec<(String, String)>,
}

/// The infrastructure a platform runs on: the shared stack by default; the outage tests give
/// private instances they can stop (`testkit::deps`).
#[derive(Debug, Clone, Default)]
pub struct Deps {
    pub kafka_brokers: Option<String>,
    pub mongodb_url: Option<String>,
    /// A PostgreSQL URL with rights to create databases.
    pub postgres_admin_url: Option<String>,
    pub smtp_port: Option<u16>,
    /// The workflow engine's base URL (a private engine the test can stop).
    pub workflow_engine_url: Option<String>,
}

/// How to start a platform beyond the defaults.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Instances of each stateless service (at least 1).
    pub replicas: usize,
    /// The built storefront the gateway serves.
    pub web_root: Option<PathBuf>,
    /// `RUST_LOG` of every process (default `warn`).
    pub rust_log: Option<String>,
    /// The payment provider payment-service calls, instead of the platform's psp-sim (a
    /// test's hostile stand-in in front of it).
    pub psp_for_payments: Option<String>,
    /// The SMS gateway notification-service calls, instead of the platform's sms-sim.
    pub sms_for_notifications: Option<String>,
    /// Extra variables by process name (`gateway`, `payment-service`, ...).
    pub env: Vec<(&'static str, &'static str, String)>,
}

pub struct Platform {
    pub gateway: String,
    pub psp: String,
    pub sms: String,
    pub replicas: usize,
    pub work_dir: PathBuf,
    /// Base URLs of every instance by service name (simulators and the gateway included), for
    /// tests that talk to a service directly: the contract and OWASP tests read each one's own
    /// OpenAPI document, the outage test probes each one's readiness.
    pub urls: HashMap<String, Vec<String>>,
    instances: Vec<Instance>,
    /// Set once a failure report has pointed at the logs: the work directory then stays for
    /// reading; otherwise it goes with the platform.
    keep_work_dir: std::sync::atomic::AtomicBool,
}

/// Where the binaries are: `SYSTEM_TEST_BIN_DIR`, else the profile directory this test
/// binary was built into (`target/debug/deps/..`).
fn bin_dir() -> anyhow::Result<PathBuf> {
    if let Ok(dir) = std::env::var("SYSTEM_TEST_BIN_DIR")
        && !dir.is_empty()
    {
        return Ok(PathBuf::from(dir));
    }
    let exe = std::env::current_exe()?;
    exe.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .ok_or_else(|| anyhow::anyhow!("cannot locate the target directory from {exe:?}"))
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// Creates fresh PostgreSQL databases; returns their URLs by role.
async fn fresh_databases(
    admin_url: &str,
    roles: &[&str],
) -> anyhow::Result<HashMap<String, String>> {
    let mut urls = HashMap::new();
    for role in roles {
        let url = testkit::postgres::fresh_database_on(admin_url, &format!("sys_{role}")).await?;
        urls.insert((*role).to_owned(), url);
    }
    Ok(urls)
}

impl Platform {
    /// Starts everything; `replicas` instances of each stateless service.
    pub async fn start(replicas: usize) -> anyhow::Result<Self> {
        Self::start_with_storefront(replicas, None).await
    }

    /// As [`Platform::start`], the gateway also serving the built storefront in `web_root`.
    pub async fn start_with_storefront(
        replicas: usize,
        web_root: Option<&Path>,
    ) -> anyhow::Result<Self> {
        Self::start_with(Options {
            replicas,
            web_root: web_root.map(Path::to_path_buf),
            ..Options::default()
        })
        .await
    }

    /// As [`Platform::start_with_storefront`], on the infrastructure of `deps`.
    pub async fn start_on(
        replicas: usize,
        web_root: Option<&Path>,
        deps: &Deps,
    ) -> anyhow::Result<Self> {
        let options = Options {
            replicas,
            web_root: web_root.map(Path::to_path_buf),
            ..Options::default()
        };
        Self::start_with_on(options, deps).await
    }

    /// Starts everything as `options` say, on the shared infrastructure.
    pub async fn start_with(options: Options) -> anyhow::Result<Self> {
        Self::start_with_on(options, &Deps::default()).await
    }

    /// Starts everything as `options` say, on the infrastructure of `deps`.
    pub async fn start_with_on(options: Options, deps: &Deps) -> anyhow::Result<Self> {
        let replicas = options.replicas.max(1);
        let web_root = options.web_root.as_deref();
        let bins = bin_dir()?;
        for name in [
            "user-service",
            "product-service",
            "order-service",
            "payment-service",
            "notification-service",
            "psp-sim",
            "sms-sim",
            "gateway",
        ] {
            anyhow::ensure!(
                bins.join(name).is_file(),
                "{} is missing: build the binaries first (`cargo build --workspace --bins`; \
                 `cargo xtask test` does), or set SYSTEM_TEST_BIN_DIR",
                bins.join(name).display()
            );
        }
        let tag = Uuid::new_v4().simple().to_string();
        let tag = &tag[..12];
        let work_dir = std::env::temp_dir().join(format!("ferroshop-system-{tag}"));
        std::fs::create_dir_all(&work_dir)?;
        let admin_url = deps
            .postgres_admin_url
            .clone()
            .unwrap_or_else(testkit::stack::admin_database_url);
        let databases = fresh_databases(&admin_url, &["users", "orders", "notifications"]).await?;
        let now = now_secs();
        let topic_prefix = format!("sys-{tag}.");
        let zipkin = testkit::stack::zipkin_url();
        let mut platform = Platform {
            gateway: String::new(),
            psp: String::new(),
            sms: String::new(),
            replicas,
            work_dir: work_dir.clone(),
            urls: HashMap::new(),
            instances: Vec::new(),
            keep_work_dir: std::sync::atomic::AtomicBool::new(false),
        };

        let common: Vec<(&str, String)> = vec![
            ("APP_PROFILE", "local".into()),
            ("HOST", "127.0.0.1".into()),
            (
                "KAFKA_BROKERS",
                deps.kafka_brokers
                    .clone()
                    .unwrap_or_else(testkit::stack::kafka_brokers),
            ),
            ("KAFKA_TOPIC_PREFIX", topic_prefix.clone()),
            ("ZIPKIN_ENDPOINT", format!("{zipkin}/api/v2/spans")),
            (
                "MONGODB_URL",
                deps.mongodb_url
                    .clone()
                    .unwrap_or_else(testkit::stack::mongodb_url),
            ),
            // The services' workflow namespace follows the topic prefix, so this platform's
            // processes and workers stay apart from any other on the shared engine.
            (
                "WORKFLOW_ENGINE_URL",
                deps.workflow_engine_url
                    .clone()
                    .unwrap_or_else(testkit::stack::workflow_engine_url),
            ),
            (
                "RUST_LOG",
                options.rust_log.clone().unwrap_or_else(|| "warn".into()),
            ),
        ];
        let extra = |name: &str| -> Vec<(&'static str, String)> {
            options
                .env
                .iter()
                .filter(|(process, _, _)| *process == name)
                .map(|(_, key, value)| (*key, value.clone()))
                .collect()
        };

        // The simulators first: they depend on nothing.
        let psp_port = free_port()?;
        platform
            .spawn(
                &bins,
                "psp-sim",
                psp_port,
                &common,
                &[
                    ("PSP_API_KEY", PSP_API_KEY.into()),
                    // The slow test card answers after payment-service's timeout.
                    ("PSP_SLOW_DELAY_MS", "6000".into()),
                ],
            )
            .await?;
        platform.psp = format!("http://127.0.0.1:{psp_port}");
        let sms_port = free_port()?;
        platform
            .spawn(
                &bins,
                "sms-sim",
                sms_port,
                &common,
                &[("SMS_SIM_TOKEN", SMS_TOKEN.into())],
            )
            .await?;
        platform.sms = format!("http://127.0.0.1:{sms_port}");

        // The gateway starts last, but user-service must know its address already: the
        // provider sends the browser back to the gateway's callback.
        let gateway_port = free_port()?;
        let google_issuer = testkit::oidc_standin::google_issuer().await?;
        // user-service creates the signing key on its first start; its replicas then share it.
        let key_path = work_dir.join("jwt-ed25519.pem");
        let user_env = |db: &str| -> Vec<(&'static str, String)> {
            vec![
                ("DATABASE_URL", db.to_owned()),
                ("JWT_PRIVATE_KEY_PATH", key_path.display().to_string()),
                ("ADMIN_EMAIL", ADMIN_EMAIL.into()),
                ("ADMIN_PASSWORD", ADMIN_PASSWORD.into()),
                ("OIDC_GOOGLE_ISSUER", google_issuer.clone()),
                (
                    "OIDC_GOOGLE_REDIRECT_URI",
                    format!("http://127.0.0.1:{gateway_port}/api/users/oidc/google/callback"),
                ),
            ]
        };
        let users_db = databases
            .get("users")
            .cloned()
            .context("no users database")?;
        let mut urls: HashMap<&str, Vec<String>> = HashMap::new();
        let first_user = free_port()?;
        platform
            .spawn(
                &bins,
                "user-service",
                first_user,
                &common,
                &[user_env(&users_db), extra("user-service")].concat(),
            )
            .await?;
        urls.entry("user-service")
            .or_default()
            .push(format!("http://127.0.0.1:{first_user}"));
        let jwks = format!("http://127.0.0.1:{first_user}/.well-known/jwks.json");

        let orders_db = databases.get("orders").cloned().context("no orders db")?;
        let notifications_db = databases
            .get("notifications")
            .cloned()
            .context("no notifications db")?;
        let psp_url = options
            .psp_for_payments
            .clone()
            .unwrap_or_else(|| platform.psp.clone());
        let sms_url = options
            .sms_for_notifications
            .clone()
            .unwrap_or_else(|| platform.sms.clone());
        let catalog_db = format!("test_catalog_{now}_{tag}");
        let payments_db = format!("test_payments_{now}_{tag}");
        let mut pending: Vec<(&'static str, Vec<(&'static str, String)>)> = Vec::new();
        for replica in 0..replicas {
            if replica > 0 {
                pending.push(("user-service", user_env(&users_db)));
            }
            pending.push((
                "product-service",
                vec![
                    ("MONGODB_DATABASE", catalog_db.clone()),
                    ("JWKS_URL", jwks.clone()),
                ],
            ));
            pending.push((
                "order-service",
                vec![
                    ("DATABASE_URL", orders_db.clone()),
                    ("JWKS_URL", jwks.clone()),
                ],
            ));
            pending.push((
                "payment-service",
                vec![
                    ("MONGODB_DATABASE", payments_db.clone()),
                    ("JWKS_URL", jwks.clone()),
                    ("PSP_SIM_URL", psp_url.clone()),
                    ("PSP_API_KEY", PSP_API_KEY.into()),
                ],
            ));
            pending.push((
                "notification-service",
                vec![
                    ("DATABASE_URL", notifications_db.clone()),
                    ("JWKS_URL", jwks.clone()),
                    (
                        "SMTP_HOST",
                        std::env::var("SMTP_HOST").unwrap_or_else(|_| "127.0.0.1".into()),
                    ),
                    (
                        "SMTP_PORT",
                        deps.smtp_port.map_or_else(
                            || std::env::var("SMTP_PORT").unwrap_or_else(|_| "1025".into()),
                            |port| port.to_string(),
                        ),
                    ),
                    ("SMS_SIM_URL", sms_url.clone()),
                    ("SMS_API_URL", sms_url.clone()),
                    ("SMS_API_TOKEN", SMS_TOKEN.into()),
                ],
            ));
        }
        let mut starting = Vec::new();
        for (name, mut env) in pending {
            env.extend(extra(name));
            let port = free_port()?;
            urls.entry(name)
                .or_default()
                .push(format!("http://127.0.0.1:{port}"));
            starting.push(platform.launch(&bins, name, port, &common, &env)?);
        }
        for (index, url) in starting {
            platform
                .ready(index, &format!("{url}/health/ready"))
                .await?;
        }

        let upstream = |name: &str| {
            urls.get(name)
                .map(|list| list.join(","))
                .unwrap_or_default()
        };
        let mut gateway_env = vec![
            ("JWKS_URL", jwks.clone()),
            ("USER_SERVICE_URL", upstream("user-service")),
            ("PRODUCT_SERVICE_URL", upstream("product-service")),
            ("ORDER_SERVICE_URL", upstream("order-service")),
            ("PAYMENT_SERVICE_URL", upstream("payment-service")),
            ("NOTIFICATION_SERVICE_URL", upstream("notification-service")),
            ("GATEWAY_RATE_LIMIT_STRICT", format!("2:{STRICT_BURST}")),
            (
                "GATEWAY_WEB_ROOT",
                web_root.map_or_else(|| "off".into(), |root| root.display().to_string()),
            ),
        ];
        gateway_env.extend(extra("gateway"));
        platform
            .spawn(&bins, "gateway", gateway_port, &common, &gateway_env)
            .await?;
        platform.gateway = format!("http://127.0.0.1:{gateway_port}");
        let mut all: HashMap<String, Vec<String>> = urls
            .into_iter()
            .map(|(name, list)| (name.to_owned(), list))
            .collect();
        all.insert("psp-sim".into(), vec![platform.psp.clone()]);
        all.insert("sms-sim".into(), vec![platform.sms.clone()]);
        all.insert("gateway".into(), vec![platform.gateway.clone()]);
        platform.urls = all;
        Ok(platform)
    }

    /// Starts one instance; returns its index and base URL (not yet ready).
    fn launch(
        &mut self,
        bins: &Path,
        name: &str,
        port: u16,
        common: &[(&str, String)],
        env: &[(&str, String)],
    ) -> anyhow::Result<(usize, String)> {
        let count = self.instances.iter().filter(|i| i.name == name).count();
        let log = self.work_dir.join(format!("{name}-{count}.log"));
        let env: Vec<(String, String)> = common
            .iter()
            .chain(env)
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        let process = spawn_instance(bins, name, port, &env, &log)?;
        self.instances.push(Instance {
            name: name.to_owned(),
            log,
            process: Some(process),
            port,
            env,
        });
        Ok((self.instances.len() - 1, format!("http://127.0.0.1:{port}")))
    }

    /// Kills every instance of `name` (SIGKILL), as a crash would.
    pub fn kill(&mut self, name: &str) {
        for instance in self.instances.iter_mut().filter(|i| i.name == name) {
            // Dropping the process kills and reaps it.
            instance.process = None;
        }
    }

    /// Starts every stopped instance of `name` again on its port, with its environment, and
    /// waits until each is ready.
    pub async fn restart(&mut self, name: &str) -> anyhow::Result<()> {
        let bins = bin_dir()?;
        for index in 0..self.instances.len() {
            let instance = &mut self.instances[index];
            if instance.name != name || instance.process.is_some() {
                continue;
            }
            instance.process = Some(spawn_instance(
                &bins,
                name,
                instance.port,
                &instance.env,
                &instance.log,
            )?);
            let url = format!("http://127.0.0.1:{}/health/ready", instance.port);
            self.ready(index, &url).await?;
        }
        Ok(())
    }

    async fn ready(&mut self, index: usize, url: &str) -> anyhow::Result<()> {
        let instance = &mut self.instances[index];
        let Some(process) = instance.process.as_mut() else {
            anyhow::bail!("{} is not running", instance.name);
        };
        if let Err(error) = process.wait_ready(url, READY).await {
            let tail = tail(&instance.log, 30);
            anyhow::bail!("{} did not become ready: {error:#}\n{tail}", instance.name);
        }
        Ok(())
    }

    async fn spawn(
        &mut self,
        bins: &Path,
        name: &str,
        port: u16,
        common: &[(&str, String)],
        env: &[(&str, String)],
    ) -> anyhow::Result<()> {
        let (index, url) = self.launch(bins, name, port, common, env)?;
        self.ready(index, &format!("{url}/health/ready")).await
    }

    /// Every instance's whole log so far, by instance name (for the log scan).
    pub fn full_logs(&self) -> Vec<(String, String)> {
        self.instances
            .iter()
            .map(|instance| {
                (
                    instance.name.clone(),
                    std::fs::read_to_string(&instance.log).unwrap_or_default(),
                )
            })
            .collect()
    }

    /// The last lines of every instance's log, for a failure report (which keeps the work
    /// directory with the whole logs).
    pub fn logs(&self, lines: usize) -> String {
        self.keep_work_dir
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.instances
            .iter()
            .map(|instance| {
                format!(
                    "----- {} ({}) -----\n{}",
                    instance.name,
                    instance.log.display(),
                    tail(&instance.log, lines)
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Platform {
    fn drop(&mut self) {
        // The processes first (dropping one kills and reaps it), then their files.
        self.instances.clear();
        if !self
            .keep_work_dir
            .load(std::sync::atomic::Ordering::Relaxed)
            && !std::thread::panicking()
        {
            let _ = std::fs::remove_dir_all(&self.work_dir);
        }
    }
}

/// Starts one instance of `name` with exactly `env` (plus `PATH` and its port), its output
/// appended to `log`.
fn spawn_instance(
    bins: &Path,
    name: &str,
    port: u16,
    env: &[(String, String)],
    log: &Path,
) -> anyhow::Result<ServiceProcess> {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    let err = out.try_clone()?;
    let mut command = Command::new(bins.join(name));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("PORT", port.to_string())
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    ServiceProcess::spawn(&mut command).with_context(|| format!("starting {name}"))
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
