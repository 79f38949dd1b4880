//! PostgreSQL: the OS user it runs as, its data directory and cluster, its start and the
//! databases the services use.

use std::fs;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::layout::{DATABASES, Layout, PG_PASSWORD, PG_USER, Settings};
use crate::proc::{is_root, lookup_user, run_logged, spawn_detached};
use crate::provision;
use crate::ui::{Task, say};

/// uid/gid to run PostgreSQL under: it refuses to run as root, so as root we use the
/// `postgres` OS user (created by Debian's package; created here when missing).
fn pg_os_user(layout: &Layout) -> Result<Option<(u32, u32)>> {
    if !is_root() {
        return Ok(None);
    }
    if let Some(ids) = lookup_user("postgres") {
        return Ok(Some(ids));
    }
    run_logged(
        Command::new("useradd").args([
            "--system",
            "--user-group",
            "--no-create-home",
            "--home-dir",
            "/var/lib/postgresql",
            "--shell",
            "/bin/sh",
            "postgres",
        ]),
        &layout.provision_log("postgres"),
        "useradd postgres",
    )?;
    lookup_user("postgres")
        .map(Some)
        .context("the postgres OS user is still missing after useradd")
}

fn as_user(cmd: &mut Command, ids: Option<(u32, u32)>) -> &mut Command {
    if let Some((uid, gid)) = ids {
        cmd.uid(uid).gid(gid);
    }
    cmd
}

fn chown_tree(path: &Path, uid: u32, gid: u32) -> Result<()> {
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .with_context(|| format!("chown {}", path.display()))?;
    if path.is_dir() {
        for entry in fs::read_dir(path).with_context(|| format!("reading {}", path.display()))? {
            let entry = entry?;
            chown_tree(&entry.path(), uid, gid)?;
        }
    }
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {mode:o} {}", path.display()))
}

/// Where the cluster's files go. Normally `.local/data/postgres`; but when xtask runs as root
/// in a clone the postgres OS user cannot reach (a parent such as /root is 0700), the files go
/// to `/var/lib/ferroshop/<hash of .local>/postgres` instead and `.local/data/postgres` becomes a
/// link to it, so `down --wipe` still finds and deletes them.
fn postgres_data_dir(layout: &Layout, data: &Path, ids: Option<(u32, u32)>) -> Result<PathBuf> {
    let Some((uid, gid)) = ids else {
        return Ok(data.to_path_buf());
    };
    if fs::symlink_metadata(data).is_ok_and(|m| m.file_type().is_symlink()) {
        return fs::read_link(data).with_context(|| format!("reading link {}", data.display()));
    }
    std::os::unix::fs::chown(data, Some(uid), Some(gid))
        .with_context(|| format!("chown {}", data.display()))?;
    if writable_by(data, uid, gid) {
        return Ok(data.to_path_buf());
    }
    let hash = {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        // The state directory, not the clone: `cargo xtask chaos` runs a second stack from
        // the same clone (`.local/chaos`), which must never share the first one's cluster.
        layout.local.hash(&mut hasher);
        hasher.finish()
    };
    let alt = PathBuf::from("/var/lib/ferroshop")
        .join(format!("{hash:016x}"))
        .join("postgres");
    fs::create_dir_all(&alt).with_context(|| format!("creating {}", alt.display()))?;
    std::os::unix::fs::chown(&alt, Some(uid), Some(gid))
        .with_context(|| format!("chown {}", alt.display()))?;
    if !writable_by(&alt, uid, gid) {
        bail!(
            "the postgres OS user can reach neither {} nor {}; clone the repo elsewhere or `chmod o+x` its parent directories",
            data.display(),
            alt.display()
        );
    }
    // `data` is the empty directory the caller made; replace it with a link to `alt`.
    fs::remove_dir(data).with_context(|| format!("replacing {} with a link", data.display()))?;
    std::os::unix::fs::symlink(&alt, data)
        .with_context(|| format!("linking {} to {}", data.display(), alt.display()))?;
    Ok(alt)
}

fn writable_by(dir: &Path, uid: u32, gid: u32) -> bool {
    Command::new("test")
        .arg("-w")
        .arg(dir)
        .uid(uid)
        .gid(gid)
        .status()
        .map(|st| st.success())
        .unwrap_or(false)
}

pub(super) fn start_postgres(
    layout: &Layout,
    s: &Settings,
    task: &Task,
    data: &Path,
    log: &Path,
    pid_file: &Path,
) -> Result<u32> {
    let bin = provision::postgres_bin(layout)?;
    let ids = pg_os_user(layout)?;
    let data = &postgres_data_dir(layout, data, ids)?;
    // The cluster lives in data/cluster so that the component's data dir can be created by
    // us (root) while the cluster dir itself belongs to the postgres user with mode 0700.
    let cluster = data.join("cluster");
    if !cluster.join("PG_VERSION").is_file() {
        task.update("initdb (first start)");
        init_cluster(&bin, ids, data, &cluster, log)?;
    }
    let mut cmd = Command::new(bin.join("postgres"));
    cmd.arg("-D")
        .arg(&cluster)
        .arg("-p")
        .arg(s.pg_port.to_string())
        .current_dir(data);
    as_user(&mut cmd, ids);
    spawn_detached(&mut cmd, log, pid_file)
}

/// initdb into a scratch directory that is renamed into place only on success, so an
/// interrupted first start never leaves a half-made cluster that later starts would trust.
fn init_cluster(
    bin: &Path,
    ids: Option<(u32, u32)>,
    data: &Path,
    cluster: &Path,
    log: &Path,
) -> Result<()> {
    let scratch = data.join("cluster.partial");
    let _ = fs::remove_dir_all(&scratch);
    let _ = fs::remove_dir_all(cluster);
    let pwfile = data.join("initdb-password");
    fs::write(&pwfile, format!("{PG_PASSWORD}\n")).context("writing the initdb password file")?;
    set_mode(&pwfile, 0o600)?;
    if let Some((uid, gid)) = ids {
        chown_tree(&pwfile, uid, gid)?;
    }
    let result = run_logged(
        as_user(
            Command::new(bin.join("initdb"))
                .arg("-D")
                .arg(&scratch)
                .args([
                    "-U",
                    PG_USER,
                    "--auth=scram-sha-256",
                    "-E",
                    "UTF8",
                    "--no-locale",
                ])
                .arg(format!("--pwfile={}", pwfile.display()))
                .current_dir(data),
            ids,
        ),
        log,
        "initdb",
    );
    let _ = fs::remove_file(&pwfile);
    result?;
    // Defaults except what the brief asks for; TCP on loopback only, no Unix socket (its
    // default directory may not exist or be writable when the Debian service never ran).
    let extra = "\n# cargo xtask (local development)\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = ''\nmax_connections = 500\nshared_buffers = 128MB\n";
    let conf = scratch.join("postgresql.conf");
    let mut text =
        fs::read_to_string(&conf).with_context(|| format!("reading {}", conf.display()))?;
    text.push_str(extra);
    fs::write(&conf, text).with_context(|| format!("writing {}", conf.display()))?;
    fs::rename(&scratch, cluster)
        .with_context(|| format!("moving {} into place", cluster.display()))?;
    Ok(())
}

pub(super) fn wait_postgres(s: &Settings, task: &Task, deadline: Instant) -> Result<()> {
    loop {
        match pg_query(s, "postgres", "SELECT 1") {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() > deadline => {
                return Err(e.context(format!(
                    "PostgreSQL at {} is not reachable",
                    s.database_url("postgres")
                )));
            }
            Err(_) => {
                task.update("waiting for PostgreSQL");
                thread::sleep(Duration::from_millis(500));
            }
        }
    }
}

/// Runs one SQL statement with psql and returns its unaligned output.
pub fn pg_query(s: &Settings, db: &str, sql: &str) -> Result<String> {
    let pg_bin = provision::postgres_bin_if_present();
    let psql = provision::psql(pg_bin.as_deref())
        .context("psql not found; install it with `apt-get install -y postgresql-client`")?;
    let mut child = Command::new(psql)
        .args(["-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1", "-d"])
        .arg(s.database_url(db))
        .arg("-c")
        .arg(sql)
        .env("PGCONNECT_TIMEOUT", "3")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running psql")?;
    let mut out = String::new();
    let mut err = String::new();
    if let Some(mut o) = child.stdout.take() {
        o.read_to_string(&mut out).context("reading psql output")?;
    }
    if let Some(mut e) = child.stderr.take() {
        e.read_to_string(&mut err).context("reading psql errors")?;
    }
    let status = child.wait().context("waiting for psql")?;
    if !status.success() {
        bail!("psql: {}", err.trim());
    }
    Ok(out)
}

/// Creates the databases the services expect, when missing.
pub(super) fn ensure_databases(s: &Settings) -> Result<()> {
    let existing = pg_query(s, "postgres", "SELECT datname FROM pg_database")?;
    let existing: Vec<&str> = existing.lines().map(str::trim).collect();
    for db in DATABASES {
        if !existing.contains(db) {
            pg_query(s, "postgres", &format!("CREATE DATABASE \"{db}\""))
                .with_context(|| format!("creating database {db}"))?;
            say(&format!("✔ {:>14} created database {db}", "postgres"));
        }
    }
    Ok(())
}
