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
];

impl Service {
    pub fn port(&self) -> Result<u16> {
        port_env(self.port_var, self.default_port)
    }
    pub fn base_url(&self) -> Result<String> {
        Ok(format!("http://127.0.0.1:{}", self.port()?))
    }
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

pub fn admin_credentials() -> (String, String) {
    let email = env::var("ADMIN_EMAIL").unwrap_or_else(|_| "admin@example.com".into());
    let password = env::var("ADMIN_PASSWORD").unwrap_or_else(|_| "admin-dev-password".into());
    (email, password)
}

/// Builds (release) and starts every present service that is not running, then waits for
/// each readiness URL.
pub fn up(layout: &Layout, s: &Settings) -> Result<()> {
    let mut to_start = Vec::new();
    for svc in present(layout) {
        let port = svc.port()?;
        match live_pid(&layout.pid_file(svc.name)) {
            Some(pid) if port_open(port) => {
                say(&format!(
                    "✔ {:>14} already running (pid {pid}, port {port})",
                    svc.name
                ));
            }
            Some(pid) => bail!(
                "{} (pid {pid}) is running but not answering on port {port}; `cargo xtask down` and retry",
                svc.name
            ),
            None if port_open(port) => bail!(
                "port {port} ({}) is in use by another process; stop it or set {}",
                svc.name,
                svc.port_var
            ),
            None => to_start.push(svc),
        }
    }
    if to_start.is_empty() {
        return Ok(());
    }

    let task = Task::start("cargo build", "building services (release)");
    let log = layout.log_file("build");
    let mut build = Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    build.current_dir(&layout.repo).args(["build", "--release"]);
    for svc in &to_start {
        build.args(["--package", svc.package]);
    }
    if let Err(e) = crate::proc::run_logged(&mut build, &log, "cargo build --release") {
        task.fail();
        return Err(e);
    }
    task.done("services built");

    fs::create_dir_all(layout.secrets()).context("creating .local/secrets")?;
    let (admin_email, admin_password) = admin_credentials();
    let mut pending = Vec::new();
    for svc in to_start {
        let port = svc.port()?;
        let task = Task::start(svc.name, "starting");
        let exe = layout.target_dir().join("release").join(svc.binary);
        let mut cmd = Command::new(&exe);
        cmd.current_dir(&layout.repo)
            .env("APP_PROFILE", "local")
            .env("PORT", port.to_string())
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
            .env("SMTP_HOST", "127.0.0.1")
            .env("SMTP_PORT", s.smtp_port.to_string())
            .env(
                "JWT_PRIVATE_KEY_PATH",
                layout.secrets().join("jwt-ed25519.pem"),
            )
            .env("ADMIN_EMAIL", &admin_email)
            .env("ADMIN_PASSWORD", &admin_password)
            .env(
                "RUST_LOG",
                env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            );
        match svc.database {
            Some(db) => cmd.env("DATABASE_URL", s.database_url(db)),
            None => cmd.env_remove("DATABASE_URL"),
        };
        let log = layout.log_file(svc.name);
        let pid = match spawn_detached(&mut cmd, &log, &layout.pid_file(svc.name)) {
            Ok(pid) => pid,
            Err(e) => {
                task.fail();
                return Err(e.context(format!("starting {}", svc.name)));
            }
        };
        task.update(&format!(
            "started (pid {pid}), waiting for {}",
            svc.ready_path
        ));
        pending.push((svc, pid, task));
    }
    for (svc, pid, task) in pending {
        let url = format!("{}{}", svc.base_url()?, svc.ready_path);
        let log = layout.log_file(svc.name);
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if http_status(&url) == Some(200) {
                task.done(&format!("ready at {}", svc.base_url()?));
                break;
            }
            if !is_ours_alive(pid) {
                task.fail();
                print_tail(&log, 25);
                bail!(
                    "{} exited during startup; see {}",
                    svc.name,
                    rel(layout, &log)
                );
            }
            if Instant::now() > deadline {
                task.fail();
                print_tail(&log, 25);
                bail!(
                    "{} did not answer 200 on {url} within 120s; see {}",
                    svc.name,
                    rel(layout, &log)
                );
            }
            thread::sleep(Duration::from_millis(250));
        }
    }
    Ok(())
}
