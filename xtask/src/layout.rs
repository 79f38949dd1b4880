//! Where things live and which ports they use.
//!
//! Tools (downloads and builds) are cached outside the clone so every clone and CI run shares
//! them; runtime state (data, pid files, logs) stays inside the clone in the git-ignored
//! `.local/` so two clones never share a database by accident.

use std::env;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

#[derive(Debug, Clone)]
pub struct Layout {
    pub repo: PathBuf,
    pub cache: PathBuf,
    pub local: PathBuf,
}

impl Layout {
    pub fn detect() -> Result<Self> {
        // cargo sets CARGO_MANIFEST_DIR for `cargo run`; the compile-time value is the fallback
        // when the binary is started directly.
        let manifest = env::var_os("CARGO_MANIFEST_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
        let repo = manifest
            .parent()
            .context("xtask must live one level below the workspace root")?
            .to_path_buf();
        let cache = match env::var_os("FERROSHOP_CACHE").filter(|v| !v.is_empty()) {
            Some(dir) => PathBuf::from(dir),
            None => match env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
                Some(dir) => PathBuf::from(dir).join("ferroshop"),
                None => {
                    let home = env::var_os("HOME")
                        .filter(|v| !v.is_empty())
                        .context("neither FERROSHOP_CACHE, XDG_CACHE_HOME nor HOME is set")?;
                    PathBuf::from(home).join(".cache").join("ferroshop")
                }
            },
        };
        // `cargo xtask chaos` runs a private stack beside the development one: its own data,
        // pid files and logs under `.local/chaos` (it sets this variable for itself).
        let local = match env::var_os("FERROSHOP_LOCAL").filter(|v| !v.is_empty()) {
            Some(dir) => PathBuf::from(dir),
            None => repo.join(".local"),
        };
        Ok(Self { repo, cache, local })
    }

    pub fn data_dir(&self, component: &str) -> PathBuf {
        self.local.join("data").join(component)
    }
    pub fn data_root(&self) -> PathBuf {
        self.local.join("data")
    }
    pub fn pid_file(&self, component: &str) -> PathBuf {
        self.local.join("run").join(format!("{component}.pid"))
    }
    pub fn log_file(&self, component: &str) -> PathBuf {
        self.local.join("logs").join(format!("{component}.log"))
    }
    pub fn secrets(&self) -> PathBuf {
        self.local.join("secrets")
    }
    pub fn tools(&self) -> PathBuf {
        self.cache.join("tools")
    }
    /// Output of provisioning commands (mvn, go, apt), kept for diagnosis.
    pub fn provision_log(&self, what: &str) -> PathBuf {
        self.cache
            .join("logs")
            .join(format!("provision-{what}.log"))
    }
    pub fn target_dir(&self) -> PathBuf {
        match env::var_os("CARGO_TARGET_DIR").filter(|v| !v.is_empty()) {
            Some(dir) => {
                let dir = PathBuf::from(dir);
                if dir.is_absolute() {
                    dir
                } else {
                    self.repo.join(dir)
                }
            }
            None => self.repo.join("target"),
        }
    }
}

/// Ports and addresses, each overridable by an environment variable.
#[derive(Debug, Clone)]
pub struct Settings {
    pub pg_port: u16,
    /// Set when DATABASE_URL points at a server we do not manage.
    pub external_database_url: Option<String>,
    pub kafka_port: u16,
    pub kafka_controller_port: u16,
    pub mongo_port: u16,
    pub zipkin_port: u16,
    pub smtp_port: u16,
    pub mailpit_port: u16,
    /// The OIDC stand-in for Google.
    pub oidc_port: u16,
    /// The workflow engine's REST API and web apps (Cockpit, Tasklist).
    pub workflow_port: u16,
}

pub const PG_USER: &str = "shop";
pub const PG_PASSWORD: &str = "shop";
pub const DATABASES: &[&str] = &["users", "orders", "notifications", "workflow"];

impl Settings {
    pub fn from_env() -> Result<Self> {
        Ok(Self {
            pg_port: port_env("PGPORT", 5432)?,
            external_database_url: env::var("DATABASE_URL").ok().filter(|v| !v.is_empty()),
            kafka_port: port_env("KAFKA_PORT", 9092)?,
            kafka_controller_port: port_env("KAFKA_CONTROLLER_PORT", 9093)?,
            mongo_port: port_env("MONGO_PORT", 27017)?,
            zipkin_port: port_env("ZIPKIN_PORT", 9411)?,
            smtp_port: port_env("SMTP_PORT", 1025)?,
            mailpit_port: port_env("MAILPIT_PORT", 8025)?,
            oidc_port: port_env("OIDC_PORT", 8092)?,
            workflow_port: port_env("WORKFLOW_ENGINE_PORT", 8086)?,
        })
    }

    /// URL of database `db` on the server in use (ours, or the one DATABASE_URL names).
    pub fn database_url(&self, db: &str) -> String {
        match &self.external_database_url {
            Some(url) => replace_database(url, db),
            None => format!(
                "postgres://{PG_USER}:{PG_PASSWORD}@127.0.0.1:{}/{db}",
                self.pg_port
            ),
        }
    }

    pub fn kafka_brokers(&self) -> String {
        format!("127.0.0.1:{}", self.kafka_port)
    }
    pub fn zipkin_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.zipkin_port)
    }
    pub fn mongodb_url(&self) -> String {
        format!("mongodb://127.0.0.1:{}", self.mongo_port)
    }
    pub fn mailpit_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.mailpit_port)
    }
    pub fn oidc_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.oidc_port)
    }
    /// The stand-in's issuer that user-service signs in against as "google".
    pub fn oidc_google_issuer(&self) -> String {
        format!("{}/google", self.oidc_url())
    }
    /// The workflow engine's base URL (REST API under `/engine-rest`).
    pub fn workflow_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.workflow_port)
    }
}

/// A JDBC connection of a `postgres://user:password@host:port/db?query` URL: the JDBC URL and
/// the credentials apart (the PostgreSQL JDBC driver takes no user info in the URL). Percent
/// escapes in the credentials are left as they are; ours have none.
#[derive(Debug, PartialEq, Eq)]
pub struct Jdbc {
    pub url: String,
    pub user: String,
    pub password: String,
}

pub fn jdbc_of(url: &str) -> Result<Jdbc> {
    let rest = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
        .with_context(|| format!("{url:?} is not a postgres:// URL"))?;
    let (userinfo, location) = match rest.rsplit_once('@') {
        Some((info, location)) => (Some(info), location),
        None => (None, rest),
    };
    let (user, password) = match userinfo {
        Some(info) => match info.split_once(':') {
            Some((u, p)) => (u.to_owned(), p.to_owned()),
            None => (info.to_owned(), String::new()),
        },
        None => (String::new(), String::new()),
    };
    Ok(Jdbc {
        url: format!("jdbc:postgresql://{location}"),
        user,
        password,
    })
}

/// Reads a port from `var`, falling back to `default`; a malformed value is an error rather
/// than silently ignored, since it would otherwise start things on an unexpected port.
pub fn port_env(var: &str, default: u16) -> Result<u16> {
    match env::var(var) {
        Ok(v) if !v.trim().is_empty() => match v.trim().parse::<u16>() {
            Ok(p) if p > 0 => Ok(p),
            _ => bail!("{var}={v:?} is not a valid TCP port"),
        },
        _ => Ok(default),
    }
}

/// Swaps the database name in a postgres:// URL, keeping credentials, host and query string.
fn replace_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let authority_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let mut out = format!("{}/{db}", &base[..authority_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// Display helper: a path relative to the repo when it is inside it.
pub fn rel<'a>(layout: &Layout, path: &'a Path) -> std::borrow::Cow<'a, str> {
    match path.strip_prefix(&layout.repo) {
        Ok(p) => std::borrow::Cow::Owned(p.display().to_string()),
        Err(_) => path.to_string_lossy(),
    }
}

#[cfg(test)]
mod tests {
    use super::{Jdbc, jdbc_of, replace_database};

    #[test]
    fn turns_postgres_urls_into_jdbc() -> anyhow::Result<()> {
        assert_eq!(
            jdbc_of("postgres://shop:shop@127.0.0.1:5432/workflow")?,
            Jdbc {
                url: "jdbc:postgresql://127.0.0.1:5432/workflow".into(),
                user: "shop".into(),
                password: "shop".into(),
            }
        );
        assert_eq!(
            jdbc_of("postgresql://db.internal/workflow?sslmode=require")?.url,
            "jdbc:postgresql://db.internal/workflow?sslmode=require"
        );
        assert!(jdbc_of("mysql://x/y").is_err());
        Ok(())
    }

    #[test]
    fn replaces_database_name() {
        assert_eq!(
            replace_database("postgres://a:b@h:1/postgres?sslmode=disable", "users"),
            "postgres://a:b@h:1/users?sslmode=disable"
        );
        assert_eq!(
            replace_database("postgres://a:b@h:1", "users"),
            "postgres://a:b@h:1/users"
        );
    }
}
