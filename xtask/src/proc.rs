//! Process plumbing: detached spawning, pid files, liveness, signals and network probes.
//!
//! Only std is used on purpose: xtask must build fast on a fresh clone, and everything here
//! is a thin wrapper over `/proc`, `kill(1)` and TCP sockets.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// A `cargo` command for building and testing the workspace from inside `cargo xtask`.
///
/// `cargo run` hands xtask the variables that describe xtask's own package
/// (`CARGO_MANIFEST_DIR`, `CARGO_PKG_*`, ...). Passed on to a nested build they change the
/// fingerprint of build scripts that declare them (ring's does, for `CARGO_MANIFEST_DIR`), and
/// ring's rebuild cascades through rustls, sqlx and every service: a build from xtask, from a
/// shell or from another worktree of the repository then undid the previous one's work
/// (90-120 s of release rebuild after switching between `cargo xtask bench` and
/// `cargo xtask up`). Removing them makes every build of the same packages agree.
pub fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    for (name, _) in std::env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        if is_cargo_run_package_variable(name) {
            cmd.env_remove(name);
        }
    }
    cmd
}

/// Whether `name` is one of the variables `cargo run` sets to describe the package it runs.
fn is_cargo_run_package_variable(name: &str) -> bool {
    name.starts_with("CARGO_PKG_")
        || matches!(
            name,
            "CARGO_MANIFEST_DIR"
                | "CARGO_MANIFEST_PATH"
                | "CARGO_CRATE_NAME"
                | "CARGO_BIN_NAME"
                | "CARGO_PRIMARY_PACKAGE"
        )
}

/// Starts `cmd` detached from this process: its own process group (so Ctrl-C in the terminal
/// and the end of `cargo xtask` do not reach it), stdin closed, stdout and stderr appended to
/// `log`. Records the pid in `pid_file` and returns it.
pub fn spawn_detached(cmd: &mut Command, log: &Path, pid_file: &Path) -> Result<u32> {
    if let Some(dir) = log.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if let Some(dir) = pid_file.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut out = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening log {}", log.display()))?;
    // A marker line makes it easy to find where the latest run begins when reading the log.
    writeln!(
        out,
        "\n===== cargo xtask: starting {:?} =====",
        cmd.get_program()
    )
    .with_context(|| format!("writing {}", log.display()))?;
    let err = out
        .try_clone()
        .with_context(|| format!("duplicating log handle {}", log.display()))?;
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {:?}", cmd.get_program()))?;
    let pid = child.id();
    // The child is deliberately not waited for: it must outlive us. Once we exit, init reaps
    // it. Until then it is kept, so a long-running xtask (chaos) can reap the ones it killed:
    // an unreaped zombie keeps its pid, and PostgreSQL refuses to start while the pid in its
    // lock file exists.
    SPAWNED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(child);
    fs::write(pid_file, format!("{pid}\n"))
        .with_context(|| format!("writing {}", pid_file.display()))?;
    Ok(pid)
}

/// Every child [`spawn_detached`] started in this process.
static SPAWNED: std::sync::Mutex<Vec<std::process::Child>> = std::sync::Mutex::new(Vec::new());

/// Reaps the children of [`spawn_detached`] that have exited (no zombie keeps their pids).
pub fn reap_exited() {
    SPAWNED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .retain_mut(|child| !matches!(child.try_wait(), Ok(Some(_))));
}

/// The pid recorded in `pid_file`, if the file exists and parses.
pub fn read_pid(pid_file: &Path) -> Option<u32> {
    fs::read_to_string(pid_file).ok()?.trim().parse().ok()
}

/// True when `pid` is a live (non-zombie) process that still leads the process group we gave
/// it, which guards against a recycled pid belonging to someone else.
pub fn is_ours_alive(pid: u32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The command name (field 2) may contain spaces and parentheses; fields after the last ')'
    // are plain: state, ppid, pgrp, ...
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return false;
    };
    let mut fields = rest.split_whitespace();
    let state = fields.next().unwrap_or("Z");
    let pgrp = fields.nth(1).and_then(|p| p.parse::<u32>().ok());
    state != "Z" && state != "X" && pgrp == Some(pid)
}

/// The live pid recorded for a component, if any.
pub fn live_pid(pid_file: &Path) -> Option<u32> {
    read_pid(pid_file).filter(|&pid| is_ours_alive(pid))
}

/// Sends `signal` to the whole process group led by `pid`, waits up to `grace` for the leader
/// to exit, then kills the group. Children such as PostgreSQL backends share the group, so
/// nothing is left behind.
pub fn stop_group(pid: u32, signal: &str, grace: Duration) -> Result<()> {
    send_group(pid, signal)?;
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if !is_ours_alive(pid) {
            return Ok(());
        }
        thread::sleep(Duration::from_millis(100));
    }
    send_group(pid, "KILL")?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if !is_ours_alive(pid) {
            return Ok(());
        }
        thread::sleep(Duration::from_millis(100));
    }
    bail!("process group {pid} did not exit after SIGKILL")
}

fn send_group(pid: u32, signal: &str) -> Result<()> {
    // kill(1) rather than libc: keeps the crate free of unsafe code and extra dependencies.
    let status = Command::new("kill")
        .args(["-s", signal, "--", &format!("-{pid}")])
        .stderr(Stdio::null())
        .status()
        .context("running kill(1)")?;
    if !status.success() && is_ours_alive(pid) {
        bail!("could not send SIG{signal} to process group {pid}");
    }
    Ok(())
}

/// True when something accepts TCP connections on 127.0.0.1:`port`.
pub fn port_open(port: u16) -> bool {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_ok()
}

/// Status code of a plain-HTTP GET, or None when the server is unreachable. A hand-rolled
/// HTTP/1.1 request is enough for health probes and saves xtask an HTTP client dependency.
pub fn http_status(url: &str) -> Option<u16> {
    let rest = url.strip_prefix("http://")?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = host.to_socket_addrs().ok()?.next()?;
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    stream
        .set_write_timeout(Some(Duration::from_secs(3)))
        .ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nAccept: */*\r\n\r\n"
    )
    .ok()?;
    let mut head = Vec::new();
    let mut buf = [0u8; 256];
    while !head.contains(&b'\n') && head.len() < 1024 {
        let n = stream.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Current size of a file (0 when absent): lets readiness checks look only at log lines
/// written after a given start.
pub fn file_len(path: &Path) -> u64 {
    fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// True when `path` contains `needle` after byte `offset`.
pub fn log_contains_since(path: &Path, offset: u64, needle: &str) -> bool {
    let Ok(mut file) = File::open(path) else {
        return false;
    };
    if file.seek(SeekFrom::Start(offset)).is_err() {
        return false;
    }
    let mut text = String::new();
    let mut bytes = Vec::new();
    if file.read_to_end(&mut bytes).is_err() {
        return false;
    }
    text.push_str(&String::from_utf8_lossy(&bytes));
    text.contains(needle)
}

/// Last `n` lines of a text file (lossy UTF-8), empty when unreadable.
pub fn tail_lines(path: &Path, n: usize) -> Vec<String> {
    let Ok(bytes) = fs::read(path) else {
        return Vec::new();
    };
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(n);
    lines[start..].iter().map(|l| (*l).to_string()).collect()
}

/// Finds an executable on PATH (plus `extra` fallback directories), like which(1).
pub fn which(name: &str, extra: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(extra.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// True when running as root (uid 0), read from /proc to stay libc-free.
pub fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// uid and gid of an OS user from /etc/passwd.
pub fn lookup_user(name: &str) -> Option<(u32, u32)> {
    let passwd = fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut f = line.split(':');
        if f.next()? != name {
            return None;
        }
        let uid = f.nth(1)?.parse().ok()?;
        let gid = f.next()?.parse().ok()?;
        Some((uid, gid))
    })
}

/// Runs `cmd` to completion with output appended to `log`; on failure the error names the
/// command and the log, and the log's tail is shown so the cause is visible without digging.
pub fn run_logged(cmd: &mut Command, log: &Path, what: &str) -> Result<()> {
    if let Some(dir) = log.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut out = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    writeln!(out, "\n===== {what}: {cmd:?} =====").ok();
    let err = out.try_clone().context("duplicating log handle")?;
    let status = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .status()
        .with_context(|| format!("{what}: could not run {:?}", cmd.get_program()))?;
    if !status.success() {
        print_tail(log, 20);
        bail!("{what} failed ({status}); full output in {}", log.display());
    }
    Ok(())
}

/// Prints the last lines of a log to stderr, indented, as context for an error.
pub fn print_tail(log: &Path, n: usize) {
    let lines = tail_lines(log, n);
    if !lines.is_empty() {
        eprintln!("--- last lines of {} ---", log.display());
        for line in lines {
            eprintln!("    {line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_variables_describing_xtask_s_own_package_are_not_passed_to_nested_builds() {
        for name in [
            "CARGO_MANIFEST_DIR",
            "CARGO_MANIFEST_PATH",
            "CARGO_PKG_NAME",
            "CARGO_PKG_VERSION_MAJOR",
            "CARGO_CRATE_NAME",
            "CARGO_BIN_NAME",
            "CARGO_PRIMARY_PACKAGE",
        ] {
            assert!(is_cargo_run_package_variable(name), "{name}");
        }
        // These configure cargo itself and must reach the nested build.
        for name in [
            "CARGO",
            "CARGO_HOME",
            "CARGO_TARGET_DIR",
            "CARGO_TERM_COLOR",
        ] {
            assert!(!is_cargo_run_package_variable(name), "{name}");
        }
    }
}
