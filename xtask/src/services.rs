//! The platform's own Rust services: built with cargo and run natively against the local stack.

use std::env;
use std::fs;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::layout::{Layout, Settings, port_env, rel};
use crate::proc::{http_status, is_ours_alive, live_pid, port_open, print_tail, spawn_detached};
use crate::ui::{Task, say};

#[derive(Debug, Clone, Copy)]
pub struct Service {
    pub name: &'static str,
    pub package: &'static str,
    pub binary: &'static str,
    pub default_port: u16,
    /// Variable that moves the port, e.g. USER_SERVICE_PORT.
    pub port_var: &'static str,
    pub ready_path: &'static str,
    /// Its PostgreSQL database, if it owns one.
    pub database: Option<&'static str>,
}

/// Every service of the platform; entries whose crate does not exist yet are skipped, so a new
/// service is wired in by adding one line here.
pub const SERVICES: &[Service] = &[
    Service {
        name: "user-service",
        package: "user-service",
        binary: "user-service",
        default_port: 8081,
        port_var: "USER_SERVICE_PORT",
        ready_path: "/health/ready",
        database: Some("users"),
    },
    Service {
        name: "product-service",
        package: "product-service",
        binary: "product-service",
        default_port: 8082,
        port_var: "PRODUCT_SERVICE_PORT",
        ready_path: "/health/ready",
        database: None,
    },
    Service {
        name: "order-service",
        package: "order-service",
        binary: "order-service",
        default_port: 8083,
        port_var: "ORDER_SERVICE_PORT",
        ready_path: "/health/ready",
        database: Some("orders"),
    },
    Service {
        name: "payment-service",
        package: "payment-service",
        binary: "payment-service",
        default_port: 8084,
        port_var: "PAYMENT_SERVICE_PORT",
        ready_path: "/health/ready",
        database: None,
    },
    Service {
        name: "notification-service",
        package: "notification-service",
        binary: "notification-service",
        default_port: 8085,
        port_var: "NOTIFICATION_SERVICE_PORT",
        ready_path: "/health/ready",
        database: Some("notifications"),
    },
    Service {
        name: "psp-sim",
        package: "psp-sim",
        binary: "psp-sim",
        default_port: 8090,
        port_var: "PSP_SIM_PORT",
        ready_path: "/health/ready",
        database: None,
    },
    Service {
        name: "sms-sim",
        package: "sms-sim",
        binary: "sms-sim",
        default_port: 8091,
        port_var: "SMS_SIM_PORT",
        ready_path: "/health/ready",
        database: None,
    },
    Service {
        name: "gateway",
        package: "gateway",
        binary: "gateway",
        default_port: 8080,
        port_var: "GATEWAY_PORT",
        ready_path: "/health/ready",
        database: None,
    },
];

impl Service {
    pub fn port(&self) -> Result<u16> {
        port_env(self.port_var, self.default_port)
    }
    pub fn base_url(&self) -> Result<String> {
        Ok(format!("http://127.0.0.1:{}", self.port()?))
    }

    /// Whether `up --replicas N` runs N of it. The simulators keep their state in memory and
    /// the gateway is the one entry point, so they always run once.
    pub fn scales_out(&self) -> bool {
        !matches!(self.name, "psp-sim" | "sms-sim" | "gateway")
    }

    /// The processes `up --replicas replicas` runs for this service.
    pub fn instances(&self, replicas: usize) -> Result<Vec<Instance>> {
        let count = if self.scales_out() {
            replicas.max(1)
        } else {
            1
        };
        (1..=count).map(|number| self.instance(number)).collect()
    }

    /// Instance `number` (1-based): the first keeps the service's name and port; replica `k`
    /// is `<name>-k` (its own pid and log file) on the port `REPLICA_PORT_STEP * (k - 1)`
    /// above, so every instance's address is known without any registry.
    pub fn instance(&self, number: usize) -> Result<Instance> {
        let offset = u16::try_from(number.saturating_sub(1))
            .ok()
            .and_then(|k| k.checked_mul(REPLICA_PORT_STEP));
        let port = offset
            .and_then(|offset| self.port().ok()?.checked_add(offset))
            .with_context(|| format!("no port for {} instance {number}", self.name))?;
        Ok(Instance {
            service: *self,
            name: if number <= 1 {
                self.name.to_owned()
            } else {
                format!("{}-{number}", self.name)
            },
            port,
        })
    }

    /// This service's instances that have a pid file (the first always counts), for `status`
    /// and `down`, whatever `--replicas` they were started with.
    pub fn recorded_instances(&self, layout: &Layout) -> Result<Vec<Instance>> {
        let mut numbers = vec![1];
        let run_dir = layout.pid_file(self.name);
        if let Some(dir) = run_dir.parent()
            && let Ok(entries) = fs::read_dir(dir)
        {
            for entry in entries.flatten() {
                let file = entry.file_name();
                let number = file
                    .to_str()
                    .and_then(|f| f.strip_suffix(".pid"))
                    .and_then(|f| f.strip_prefix(self.name))
                    .and_then(|f| f.strip_prefix('-'))
                    .and_then(|n| n.parse::<usize>().ok());
                if let Some(number) = number.filter(|&n| n >= 2) {
                    numbers.push(number);
                }
            }
        }
        numbers.sort_unstable();
        numbers.into_iter().map(|n| self.instance(n)).collect()
    }
}

/// Distance between the ports of a service's replicas (8082, 8182, 8282, ...).
pub const REPLICA_PORT_STEP: u16 = 100;

/// One process of a service.
#[derive(Debug, Clone)]
pub struct Instance {
    pub service: Service,
    /// Its pid and log file name: the service's name, or `<name>-<k>` for replica k.
    pub name: String,
    pub port: u16,
}

impl Instance {
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// Whether `name` is a replica of a known service (`product-service-2`), for `logs`.
pub fn is_replica_name(name: &str) -> bool {
    SERVICES.iter().any(|s| {
        name.strip_prefix(s.name)
            .and_then(|rest| rest.strip_prefix('-'))
            .and_then(|n| n.parse::<usize>().ok())
            .is_some_and(|n| n >= 2)
    })
}

/// Services whose crate exists in this checkout.
pub fn present(layout: &Layout) -> Vec<Service> {
    SERVICES
        .iter()
        .filter(|s| {
            layout
                .repo
                .join("services")
                .join(s.name)
                .join("Cargo.toml")
                .is_file()
        })
        .copied()
        .collect()
}

/// Where user-service answers (other services fetch its JWKS there).
pub fn user_service_url() -> Result<String> {
    SERVICES
        .iter()
        .find(|s| s.name == "user-service")
        .map_or(Ok("http://127.0.0.1:8081".to_owned()), Service::base_url)
}

/// Where the gateway answers (the browser's origin).
pub fn gateway_url() -> Result<String> {
    SERVICES
        .iter()
        .find(|s| s.name == "gateway")
        .map_or(Ok("http://127.0.0.1:8080".to_owned()), Service::base_url)
}

/// Signs in at user-service (`users`, its URL or the gateway's) and returns the access token.
pub fn login(
    client: &reqwest::blocking::Client,
    users: &str,
    email: &str,
    password: &str,
) -> Result<String> {
    let reply = client
        .post(format!("{users}/api/users/login"))
        .json(&serde_json::json!({"email": email, "password": password}))
        .send()
        .with_context(|| format!("signing in at {users} (is `cargo xtask up` running?)"))?;
    if !reply.status().is_success() {
        bail!(
            "signing in as {email} failed: {} {}",
            reply.status(),
            reply.text().unwrap_or_default()
        );
    }
    reply
        .json::<serde_json::Value>()
        .context("reading the login answer")?["access_token"]
        .as_str()
        .map(str::to_owned)
        .context("the login answer has no access_token")
}

pub fn admin_credentials() -> (String, String) {
    let email = env::var("ADMIN_EMAIL").unwrap_or_else(|_| "admin@example.com".into());
    let password = env::var("ADMIN_PASSWORD").unwrap_or_else(|_| "admin-dev-password".into());
    (email, password)
}

/// The workflow engine's admin (Cockpit, Tasklist, Admin): an Operaton user id has no '@', so
/// it is its own setting; the password defaults to the shop admin's local one.
pub fn workflow_admin() -> (String, String) {
    let user = env::var("WORKFLOW_ADMIN_USER").unwrap_or_else(|_| "admin".into());
    let password =
        env::var("WORKFLOW_ADMIN_PASSWORD").unwrap_or_else(|_| "admin-dev-password".into());
    (user, password)
}

/// Builds the release binaries of `services`.
fn build(layout: &Layout, services: &[Service]) -> Result<()> {
    crate::provision::native_build_tools(layout)?;
    let task = Task::start("cargo build", "building services (release)");
    let log = layout.log_file("build");
    let mut build = crate::proc::cargo();
    build.current_dir(&layout.repo).args(["build", "--release"]);
    let mut packages: Vec<&str> = services.iter().map(|svc| svc.package).collect();
    packages.dedup();
    for package in packages {
        build.args(["--package", package]);
    }
    if let Err(e) = crate::proc::run_logged(&mut build, &log, "cargo build --release") {
        task.fail();
        return Err(e);
    }
    task.done("services built");
    Ok(())
}

/// Whether `svc`'s binary is newer than the pid file its running instance wrote at start.
fn rebuilt_since_start(layout: &Layout, svc: &Service, pid_file: &std::path::Path) -> bool {
    let exe = layout.target_dir().join("release").join(svc.binary);
    let modified = |path: &std::path::Path| fs::metadata(path).and_then(|m| m.modified()).ok();
    matches!((modified(&exe), modified(pid_file)), (Some(built), Some(started)) if built > started)
}

/// Builds (release) and starts every present service that is not running, `replicas`
/// instances of each service that scales out, then waits for each readiness URL. The gateway
/// is given every instance's URL (`<NAME>_URL` as a comma-separated list).
pub fn up(layout: &Layout, s: &Settings, replicas: usize) -> Result<()> {
    let present = present(layout);
    // Build first, always (a no-op when nothing changed): an instance running from a binary
    // built before the last change is restarted below, so `up` never leaves old code running
    // (a benchmark would otherwise measure it).
    build(layout, &present)?;
    let mut to_start = Vec::new();
    for svc in &present {
        for instance in svc.instances(replicas)? {
            let port = instance.port;
            let name = &instance.name;
            let pid_file = layout.pid_file(name);
            match live_pid(&pid_file) {
                Some(pid) if port_open(port) && rebuilt_since_start(layout, svc, &pid_file) => {
                    crate::proc::stop_group(pid, "TERM", Duration::from_secs(30))
                        .with_context(|| format!("stopping {name} to restart it"))?;
                    let _ = fs::remove_file(&pid_file);
                    say(&format!(
                        "↻ {name:>14} rebuilt since it started (pid {pid}): restarting"
                    ));
                    to_start.push(instance);
                }
                Some(pid) if port_open(port) => {
                    say(&format!(
                        "✔ {name:>14} already running (pid {pid}, port {port})"
                    ));
                }
                Some(pid) => bail!(
                    "{name} (pid {pid}) is running but not answering on port {port}; `cargo xtask down` and retry"
                ),
                None if port_open(port) => bail!(
                    "port {port} ({name}) is in use by another process; stop it or set {}",
                    svc.port_var
                ),
                None => to_start.push(instance),
            }
        }
    }
    if to_start.is_empty() {
        return Ok(());
    }

    let upstreams = upstreams(&present, replicas)?;
    fs::create_dir_all(layout.secrets()).context("creating .local/secrets")?;
    let mut pending = Vec::new();
    for instance in to_start {
        let svc = instance.service;
        let task = Task::start(&instance.name, "starting");
        let mut cmd = command(layout, s, &instance, &upstreams, "release")?;
        let log = layout.log_file(&instance.name);
        let pid = match spawn_detached(&mut cmd, &log, &layout.pid_file(&instance.name)) {
            Ok(pid) => pid,
            Err(e) => {
                task.fail();
                return Err(e.context(format!("starting {}", instance.name)));
            }
        };
        task.update(&format!(
            "started (pid {pid}), waiting for {}",
            svc.ready_path
        ));
        pending.push((instance, pid, task));
    }
    for (instance, pid, task) in pending {
        wait_ready(layout, &instance, pid, task)?;
    }
    Ok(())
}

/// Waits until `instance` (started as `pid`) answers 200 on its readiness path.
fn wait_ready(layout: &Layout, instance: &Instance, pid: u32, task: Task) -> Result<()> {
    let url = format!("{}{}", instance.base_url(), instance.service.ready_path);
    let log = layout.log_file(&instance.name);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if http_status(&url) == Some(200) {
            task.done(&format!("ready at {}", instance.base_url()));
            return Ok(());
        }
        if !is_ours_alive(pid) {
            task.fail();
            print_tail(&log, 25);
            bail!(
                "{} exited during startup; see {}",
                instance.name,
                rel(layout, &log)
            );
        }
        if Instant::now() > deadline {
            task.fail();
            print_tail(&log, 25);
            bail!(
                "{} did not answer 200 on {url} within 120s; see {}",
                instance.name,
                rel(layout, &log)
            );
        }
        thread::sleep(Duration::from_millis(250));
    }
}

/// Starts `instance` again from its built binary (`profile`: `release` or `debug`) with the
/// same environment as at first start, and waits until it is ready: the supervisor's restart
/// of `cargo xtask chaos`, never a rebuild.
pub fn restart(
    layout: &Layout,
    s: &Settings,
    instance: &Instance,
    upstreams: &[Upstream],
    profile: &str,
) -> Result<()> {
    let task = Task::start(&instance.name, "restarting");
    let mut cmd = command(layout, s, instance, upstreams, profile)?;
    let pid = spawn_detached(
        &mut cmd,
        &layout.log_file(&instance.name),
        &layout.pid_file(&instance.name),
    )
    .with_context(|| format!("restarting {}", instance.name))?;
    wait_ready(layout, instance, pid, task)
}

/// Starts every instance of `services` (`replicas` of each that scales out) from the binaries
/// of `profile` without building them, and waits until each is ready. Used by `cargo xtask
/// chaos` on its private stack; anything already answering on an instance's port is an error
/// (the private stack's ports must be free).
pub fn start_all(
    layout: &Layout,
    s: &Settings,
    services: &[Service],
    replicas: usize,
    profile: &str,
) -> Result<Vec<Upstream>> {
    let upstreams = upstreams(services, replicas)?;
    fs::create_dir_all(layout.secrets()).context("creating the secrets directory")?;
    let mut pending = Vec::new();
    for svc in services {
        for instance in svc.instances(replicas)? {
            if port_open(instance.port) {
                bail!(
                    "port {} ({}) is already in use; the chaos stack needs it free",
                    instance.port,
                    instance.name
                );
            }
            let task = Task::start(&instance.name, "starting");
            let mut cmd = command(layout, s, &instance, &upstreams, profile)?;
            let pid = spawn_detached(
                &mut cmd,
                &layout.log_file(&instance.name),
                &layout.pid_file(&instance.name),
            )
            .with_context(|| format!("starting {}", instance.name))?;
            pending.push((instance, pid, task));
        }
    }
    for (instance, pid, task) in pending {
        wait_ready(layout, &instance, pid, task)?;
    }
    Ok(upstreams)
}

/// One service's addresses as the others are told them: `(variable, first instance, every
/// instance comma-separated)`.
pub type Upstream = (String, String, String);

/// What the gateway and the callers are told: every instance of each present service.
fn upstreams(present: &[Service], replicas: usize) -> Result<Vec<Upstream>> {
    let mut upstreams = Vec::new();
    for other in SERVICES {
        let var = format!("{}_URL", other.name.to_uppercase().replace('-', "_"));
        let urls = if present.iter().any(|p| p.name == other.name) {
            let urls: Vec<String> = other
                .instances(replicas)?
                .iter()
                .map(Instance::base_url)
                .collect();
            urls.join(",")
        } else {
            other.base_url()?
        };
        upstreams.push((var, other.base_url()?, urls));
    }
    Ok(upstreams)
}

/// The command line and environment `instance` runs with, from the binaries of `profile`.
fn command(
    layout: &Layout,
    s: &Settings,
    instance: &Instance,
    upstreams: &[Upstream],
    profile: &str,
) -> Result<Command> {
    let svc = instance.service;
    let (admin_email, admin_password) = admin_credentials();
    let exe = layout.target_dir().join(profile).join(svc.binary);
    let mut cmd = Command::new(&exe);
    cmd.current_dir(&layout.repo)
        .env("APP_PROFILE", "local")
        .env("PORT", instance.port.to_string())
        .env("KAFKA_BROKERS", s.kafka_brokers())
        .env(
            "ZIPKIN_ENDPOINT",
            format!("{}/api/v2/spans", s.zipkin_url()),
        )
        .env("MONGODB_URL", s.mongodb_url())
        .env(
            "JWKS_URL",
            format!("{}/.well-known/jwks.json", user_service_url()?),
        )
        .env("WORKFLOW_ENGINE_URL", s.workflow_url())
        .env("SMTP_HOST", "127.0.0.1")
        .env("SMTP_PORT", s.smtp_port.to_string())
        .env(
            "JWT_PRIVATE_KEY_PATH",
            layout.secrets().join("jwt-ed25519.pem"),
        )
        // "Sign in with Google" against the local stand-in; the provider redirects the
        // browser back through the gateway.
        .env("OIDC_GOOGLE_ISSUER", s.oidc_google_issuer())
        .env(
            "OIDC_GOOGLE_REDIRECT_URI",
            format!("{}/api/users/oidc/google/callback", gateway_url()?),
        )
        .env("ADMIN_EMAIL", &admin_email)
        .env("ADMIN_PASSWORD", &admin_password)
        .env(
            "RUST_LOG",
            env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        );
    // Every service's address, for the callers that need one (the gateway's upstreams,
    // payment-service -> psp-sim, notification-service -> sms-sim). Only the gateway gets
    // lists; a service calling another goes through its first instance.
    for (var, first, all) in upstreams {
        cmd.env(var, if svc.name == "gateway" { all } else { first });
    }
    if svc.name == "gateway" {
        // The storefront `up` built; when none was ever built (services started by
        // `bench` on a fresh clone) the gateway serves the API alone rather than refusing
        // to start.
        let dist = crate::storefront::dist_dir(layout);
        if dist.join("index.html").is_file() {
            cmd.env("GATEWAY_WEB_ROOT", dist);
        }
    }
    if svc.name == "product-service" {
        // The catalog read model commits its index from several threads; with glibc's
        // default of 8 arenas per core its RSS grew 135 MB over 200 commits, with 2 by 7 MB
        // (product-service README, "Memory"). Each commit also allocates and frees ~10 MB of
        // buffers, which raises glibc's dynamic mmap threshold so later ones fragment the
        // heap: a fixed threshold took 1,000 seeded products from 72 to 48 MB.
        cmd.env("MALLOC_ARENA_MAX", "2");
        cmd.env("GLIBC_TUNABLES", PRODUCT_SERVICE_GLIBC_TUNABLES);
    }
    match svc.database {
        Some(db) => cmd.env("DATABASE_URL", s.database_url(db)),
        None => cmd.env_remove("DATABASE_URL"),
    };
    Ok(cmd)
}

/// glibc's malloc tuning for product-service: a fixed mmap threshold of 256 KiB (see above).
pub const PRODUCT_SERVICE_GLIBC_TUNABLES: &str = "glibc.malloc.mmap_threshold=262144";

#[cfg(test)]
mod tests {
    use super::*;

    fn service(name: &str) -> Result<Service> {
        SERVICES
            .iter()
            .find(|s| s.name == name)
            .copied()
            .with_context(|| format!("no service {name}"))
    }

    #[test]
    fn replicas_get_their_own_names_and_ports_and_singletons_stay_single() -> Result<()> {
        let products = service("product-service")?;
        let base = products.port()?;
        let instances = products.instances(3)?;
        let named: Vec<(&str, u16)> = instances
            .iter()
            .map(|i| (i.name.as_str(), i.port))
            .collect();
        assert_eq!(
            named,
            [
                ("product-service", base),
                ("product-service-2", base + 100),
                ("product-service-3", base + 200),
            ]
        );
        assert_eq!(service("gateway")?.instances(3)?.len(), 1);
        assert_eq!(service("psp-sim")?.instances(3)?.len(), 1);
        assert!(is_replica_name("user-service-2"));
        assert!(!is_replica_name("user-service"));
        assert!(!is_replica_name("user-service-x"));
        Ok(())
    }
}
