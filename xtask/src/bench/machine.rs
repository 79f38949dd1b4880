//! The machine the bench ran on: CPUs, memory, kernel, toolchain, load average and commit,
//! so that a report's figures can be compared with another machine's.

use std::fs;
use std::process::Command;
use std::thread;

use super::*;

pub(super) struct Machine {
    pub(super) cores: usize,
    pub(super) memory: String,
    pub(super) cpu: String,
    pub(super) kernel: String,
    pub(super) rustc: String,
    pub(super) date: String,
    pub(super) load: String,
    pub(super) commit: String,
}

impl Machine {
    pub(super) fn describe(layout: &Layout) -> Self {
        let command = |program: &str, args: &[&str]| {
            Command::new(program)
                .args(args)
                .current_dir(&layout.repo)
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
                .unwrap_or_else(|| "unknown".into())
        };
        let cpu = fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|t| {
                t.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".into());
        let memory = proc_kib("/proc/meminfo", "MemTotal:").map_or_else(
            || "unknown".into(),
            |kib| format!("{:.1} GiB", kib as f64 / 1_048_576.0),
        );
        let dirty = !command("git", &["status", "--porcelain"]).is_empty();
        Self {
            cores: thread::available_parallelism().map_or(0, usize::from),
            memory,
            cpu,
            kernel: fs::read_to_string("/proc/sys/kernel/osrelease")
                .map_or_else(|_| "unknown".into(), |k| k.trim().to_owned()),
            rustc: command("rustc", &["--version"]),
            date: command("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
            load: fs::read_to_string("/proc/loadavg")
                .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
                .unwrap_or_else(|_| "unknown".into()),
            commit: format!(
                "{}{}",
                command("git", &["rev-parse", "--short", "HEAD"]),
                if dirty {
                    " (with uncommitted changes)"
                } else {
                    ""
                }
            ),
        }
    }
}

// ---------------------------------------------------------------------------------------------
