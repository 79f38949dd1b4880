//! The machine the bench ran on: CPUs, memory, kernel, toolchain, load average, commit and the
//! CPU time the hypervisor took for others during the run, so that a report's figures can be
//! compared with another machine's (or the same virtual machine's on a busier day).

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
    /// The CPU counters when the bench started, for [`Machine::stolen_since_start`].
    pub(super) ticks_at_start: Option<CpuTicks>,
    /// The orders the stack held before the bench's own (`None`: not read).
    pub(super) orders_at_start: Option<u64>,
}

/// From how many orders held a stack counts as aged: after about 73,000 the MongoDB-wire
/// server's collections stalled the checkout, and by 125,000 a fixed 40 orders/s paid half
/// (docs/ARCHITECTURE.md); a fresh stack takes about 12,000 in one bench.
pub(super) const AGED_STACK_ORDERS: u64 = 20_000;

/// The report's line on the orders the stack held when the bench started.
pub(super) fn orders_at_start_text(orders: Option<u64>) -> String {
    match orders {
        None => "unknown".to_owned(),
        Some(n) if n >= AGED_STACK_ORDERS => format!(
            "{n} (an aged stack: its checkout figures are lower than a fresh one's; \
             `cargo xtask down --wipe` starts over)"
        ),
        Some(n) => n.to_string(),
    }
}

/// The machine-wide CPU time counters of `/proc/stat`'s `cpu` line, in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct CpuTicks {
    /// user + nice + system + idle + iowait + irq + softirq + steal (guest time is already
    /// inside user and nice).
    total: u64,
    /// All of it but idle and iowait (steal included: the machine could not run anything else).
    busy: u64,
    /// Time a virtual CPU was ready to run but the hypervisor ran something else.
    steal: u64,
}

impl CpuTicks {
    pub(super) fn now() -> Option<Self> {
        fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|stat| Self::parse(&stat))
    }

    fn parse(stat: &str) -> Option<Self> {
        let line = stat.lines().find(|line| line.starts_with("cpu "))?;
        let values = line
            .split_whitespace()
            .skip(1)
            .take(8)
            .map(str::parse::<u64>)
            .collect::<Result<Vec<_>, _>>()
            .ok()?;
        let total = values.iter().sum::<u64>();
        Some(Self {
            total,
            busy: total - values.get(3)? - values.get(4)?,
            steal: *values.get(7)?,
        })
    }

    /// The share of the CPU time from `earlier` to `self` that was busy; `None` when no time
    /// passed.
    pub(super) fn busy_share_since(&self, earlier: &Self) -> Option<f64> {
        let total = self.total.checked_sub(earlier.total)?;
        let busy = self.busy.checked_sub(earlier.busy)?;
        (total > 0).then(|| busy as f64 / total as f64)
    }

    /// The share of the CPU time from `earlier` to `self` that was stolen; `None` when no time
    /// passed.
    pub(super) fn stolen_share_since(&self, earlier: &Self) -> Option<f64> {
        let total = self.total.checked_sub(earlier.total)?;
        let steal = self.steal.checked_sub(earlier.steal)?;
        (total > 0).then(|| steal as f64 / total as f64)
    }
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
            ticks_at_start: CpuTicks::now(),
            orders_at_start: None,
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

    /// The share of the CPU time since [`Machine::describe`] that the hypervisor gave to other
    /// guests: on a shared virtual machine, the noise under every figure of the run.
    pub(super) fn stolen_since_start(&self) -> Option<f64> {
        self.ticks_at_start
            .and_then(|start| CpuTicks::now()?.stolen_share_since(&start))
    }
}

// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stolen_time_is_the_steal_column_over_all_ticks_between_two_readings() {
        let earlier =
            CpuTicks::parse("cpu  100 0 50 800 10 0 5 35 0 0\ncpu0 50 0 25 400 5 0 2 18 0 0\n");
        let later = CpuTicks::parse("cpu  200 0 100 1500 20 0 10 170 7 0\nintr 1\n");
        assert_eq!(
            earlier,
            Some(CpuTicks {
                total: 1000,
                busy: 190,
                steal: 35
            })
        );
        let (Some(earlier), Some(later)) = (earlier, later) else {
            panic!("both readings parse");
        };
        // 1,000 ticks passed, 135 of them stolen; guest time (7) is not counted twice.
        assert_eq!(later.stolen_share_since(&earlier), Some(0.135));
        // 290 of them busy: everything but idle (700) and iowait (10), steal included.
        assert_eq!(later.busy_share_since(&earlier), Some(0.29));
        assert_eq!(earlier.stolen_share_since(&earlier), None);
        assert_eq!(earlier.stolen_share_since(&later), None);
        assert_eq!(CpuTicks::parse("cpu0 1 2 3\n"), None);
        assert_eq!(CpuTicks::parse("cpu  1 2 3 4 5 6 7\n"), None);
    }

    #[test]
    fn a_stack_holding_many_orders_is_called_aged_in_the_report() {
        assert_eq!(orders_at_start_text(None), "unknown");
        assert_eq!(orders_at_start_text(Some(0)), "0");
        assert_eq!(orders_at_start_text(Some(AGED_STACK_ORDERS - 1)), "19999");
        let aged = orders_at_start_text(Some(125_000));
        assert!(aged.starts_with("125000 (an aged stack"), "{aged}");
        assert!(aged.contains("cargo xtask down --wipe"), "{aged}");
        assert!(orders_at_start_text(Some(AGED_STACK_ORDERS)).contains("aged"));
    }
}
