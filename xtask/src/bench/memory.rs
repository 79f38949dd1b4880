//! Memory and CPU of every process of the stack, sampled while the load runs: process trees
//! from `/proc`, RSS per component and phase, and each process's share of the CPU.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;

use super::machine::CpuTicks;
use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Phase {
    Idle,
    Reads,
    Checkout,
    /// The large-catalog run: its own section reports product-service's memory.
    LargeCatalog,
}

/// One component of the stack and the process (group) that is it.
pub(super) struct Component {
    pub(super) name: String,
    pub(super) pid: u32,
    /// Ours (a Rust service), held to the 50 MB target.
    pub(super) ours: bool,
}

/// Memory of one component: VmRSS when it is one process; the sum of PSS (shared pages
/// divided among the sharers) when it is several (PostgreSQL's backends share its buffers, so
/// adding up their RSS would count the same pages many times).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Memory {
    pub(super) kib: u64,
    pub(super) processes: usize,
}

pub(super) struct MemoryLog {
    pub(super) components: Vec<Component>,
    pub(super) phase: Phase,
    /// Per component: idle figure and the peak seen in each load phase.
    pub(super) figures: BTreeMap<(usize, Phase), Memory>,
    /// Per load run: its label and where the CPU went.
    pub(super) cpu: Vec<(String, CpuShare)>,
    /// When process trees are measured ([`MemoryLog::sample_load`]).
    pub(super) trees: TreeSampling,
}

/// Which load samples measure process trees, and which components were trees at the last one.
#[derive(Debug, Default)]
pub(super) struct TreeSampling {
    /// Load samples taken so far.
    samples: u64,
    /// The pids of components that led more than one process at the last sample that measured
    /// trees: the others are single processes, measured on every sample without a walk over
    /// `/proc` to find their members.
    roots: BTreeSet<u32>,
}

/// A process tree's memory (PSS of every member) is read on one load sample in this many: a
/// PSS read walks the process's page tables, and PostgreSQL's 67 backends under the checkout
/// cost 33 ms of CPU per sample (measured), 13% of a core at four samples a second, taken
/// from the runs being measured (and holding each backend's memory-map lock meanwhile). One
/// process's VmRSS is a counter and is still read on every sample. Every 8th is every 2 s.
const TREE_SAMPLE_EVERY: u64 = 8;

/// CPU of one load run: cores used on average by each component (in `components`' order)
/// and by the whole machine.
#[derive(Debug, Clone, Default)]
pub(super) struct CpuShare {
    pub(super) cores: Vec<f64>,
    pub(super) machine_cores: f64,
    /// The share of the run's CPU time the hypervisor gave to other guests (`None`: not read):
    /// a run whose processes all spent more per request than the runs beside it had less of
    /// the machine than its busy share says.
    pub(super) stolen: Option<f64>,
}

/// CPU counters at the start of a run.
pub(super) struct CpuSnapshot {
    pub(super) at: std::time::Instant,
    pub(super) ticks: Vec<u64>,
    /// The machine's counters (`None`: `/proc/stat` could not be read).
    pub(super) machine: Option<CpuTicks>,
}

impl MemoryLog {
    /// Every live process xtask recorded in `.local/run` (infrastructure, services and any
    /// replicas), plus the hello server.
    pub(super) fn new(layout: &Layout, hello: &HelloServer) -> Self {
        let mut recorded: Vec<(bool, String, u32)> = Vec::new();
        if let Ok(entries) = fs::read_dir(layout.local.join("run")) {
            for entry in entries.flatten() {
                let path = entry.path();
                if path.extension().is_none_or(|e| e != "pid") {
                    continue;
                }
                let Some(name) = path.file_stem().and_then(|n| n.to_str()) else {
                    continue;
                };
                if let Some(pid) = live_pid(&path) {
                    let ours = Infra::from_name(name).is_none();
                    recorded.push((ours, name.to_owned(), pid));
                }
            }
        }
        // Infrastructure first, in start order, then the services by name.
        recorded.sort_by_key(|(ours, name, _)| {
            let rank = ALL
                .iter()
                .position(|c| c.name() == name)
                .unwrap_or(ALL.len());
            (*ours, rank, name.clone())
        });
        let mut components: Vec<Component> = recorded
            .into_iter()
            .map(|(ours, name, pid)| Component { name, pid, ours })
            .collect();
        components.push(Component {
            name: "hello-server (ceiling)".to_owned(),
            pid: hello.pid(),
            ours: false,
        });
        Self {
            components,
            phase: Phase::Idle,
            figures: BTreeMap::new(),
            cpu: Vec::new(),
            trees: TreeSampling::default(),
        }
    }

    /// Follows a component that was restarted (a new process under the same name): its CPU
    /// and memory are read from the new process from now on.
    pub(super) fn follow_restart(&mut self, layout: &Layout, name: &str) {
        let Some(pid) = live_pid(&layout.pid_file(name)) else {
            return;
        };
        for component in &mut self.components {
            if component.name == name {
                component.pid = pid;
            }
        }
    }

    pub(super) fn component_ticks(&self) -> Vec<u64> {
        let groups = process_trees();
        self.components
            .iter()
            .map(|component| {
                let members = groups
                    .get(&component.pid)
                    .cloned()
                    .unwrap_or_else(|| vec![component.pid]);
                capacity::ticks(&members)
            })
            .collect()
    }

    pub(super) fn cpu_snapshot(&self) -> CpuSnapshot {
        CpuSnapshot {
            at: std::time::Instant::now(),
            ticks: self.component_ticks(),
            machine: CpuTicks::now(),
        }
    }

    pub(super) fn record_cpu(&mut self, label: &str, before: CpuSnapshot) {
        let secs = before.at.elapsed().as_secs_f64().max(0.001);
        let hz = capacity::clock_ticks_per_sec();
        let cores = self
            .component_ticks()
            .iter()
            .zip(&before.ticks)
            .map(|(after, before)| after.saturating_sub(*before) as f64 / hz / secs)
            .collect();
        // One reading of the machine's counters for both its busy and its stolen share.
        let machine = before.machine.zip(CpuTicks::now());
        let machine_share = machine
            .and_then(|(start, end)| end.busy_share_since(&start))
            .unwrap_or(0.0);
        let machine_cores =
            machine_share * std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        self.cpu.push((
            label.to_owned(),
            CpuShare {
                cores,
                machine_cores,
                stolen: machine.and_then(|(start, end)| end.stolen_share_since(&start)),
            },
        ));
    }

    pub(super) fn cpu_of(&self, label: &str) -> Option<&CpuShare> {
        self.cpu
            .iter()
            .find(|(run, _)| run == label)
            .map(|(_, share)| share)
    }

    pub(super) fn sample_idle(&mut self) {
        let phase = self.phase;
        self.phase = Phase::Idle;
        self.sample(true);
        self.phase = phase;
    }

    /// One sample while a run loads the stack: every single process, and process trees on
    /// every [`TREE_SAMPLE_EVERY`]th call.
    pub(super) fn sample_load(&mut self) {
        let trees = self.trees.samples.is_multiple_of(TREE_SAMPLE_EVERY);
        self.trees.samples += 1;
        self.sample(trees);
    }

    /// Records each component's memory where it is above the phase's peak so far; process
    /// trees only with `trees` (the others are the single processes found at the last such
    /// sample, so `/proc` is walked only then).
    fn sample(&mut self, trees: bool) {
        let groups = if trees {
            let groups = process_trees();
            self.trees.roots = self
                .components
                .iter()
                .map(|component| component.pid)
                .filter(|pid| groups.get(pid).is_some_and(|members| members.len() > 1))
                .collect();
            groups
        } else {
            BTreeMap::new()
        };
        for (index, component) in self.components.iter().enumerate() {
            if !trees && self.trees.roots.contains(&component.pid) {
                continue;
            }
            let members = groups
                .get(&component.pid)
                .cloned()
                .unwrap_or_else(|| vec![component.pid]);
            let Some(now) = measure(&members) else {
                continue;
            };
            let entry = self.figures.entry((index, self.phase)).or_default();
            if now.kib > entry.kib {
                *entry = now;
            }
        }
    }

    pub(super) fn get(&self, index: usize, phase: Phase) -> Option<Memory> {
        self.figures.get(&(index, phase)).copied()
    }
}

/// Every process with its descendants: pid -> [pid, children, grandchildren, ...]. A
/// component is its process tree: PostgreSQL's backends are children of the postmaster but
/// each runs in a session (and process group) of its own.
pub(super) fn process_trees() -> BTreeMap<u32, Vec<u32>> {
    let mut children: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    let mut pids = Vec::new();
    let Ok(entries) = fs::read_dir("/proc") else {
        return BTreeMap::new();
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Fields after the command name (which may hold spaces): state, ppid, ...
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if let Some(ppid) = ppid {
            children.entry(ppid).or_default().push(pid);
        }
        pids.push(pid);
    }
    pids.into_iter()
        .map(|pid| {
            let mut members = vec![pid];
            let mut next = 0;
            while let Some(member) = members.get(next).copied() {
                if let Some(kids) = children.get(&member) {
                    members.extend(kids);
                }
                next += 1;
            }
            (pid, members)
        })
        .collect()
}

/// `field:` of a /proc file in kB.
pub(super) fn proc_kib(path: &str, field: &str) -> Option<u64> {
    let text = fs::read_to_string(path).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

pub(super) fn measure(pids: &[u32]) -> Option<Memory> {
    match pids {
        [pid] => Some(Memory {
            kib: proc_kib(&format!("/proc/{pid}/status"), "VmRSS:")?,
            processes: 1,
        }),
        _ => {
            let sizes: Vec<u64> = pids
                .iter()
                .filter_map(|pid| proc_kib(&format!("/proc/{pid}/smaps_rollup"), "Pss:"))
                .collect();
            (!sizes.is_empty()).then(|| Memory {
                kib: sizes.iter().sum(),
                processes: sizes.len(),
            })
        }
    }
}

pub(super) fn product_service_rss_kib(layout: &Layout) -> Option<u64> {
    let pid = crate::proc::live_pid(&layout.pid_file("product-service"))?;
    proc_kib(&format!("/proc/{pid}/status"), "VmRSS:")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_found_in_its_tree_and_measured() {
        let me = std::process::id();
        let groups = process_trees();
        assert!(groups.get(&me).is_some_and(|members| members.contains(&me)));
        let memory = measure(&[me]).unwrap_or_default();
        assert_eq!(memory.processes, 1);
        assert!(memory.kib > 0);
    }

    /// A process tree (this test with a child of its own) is measured on the first load
    /// sample and then only every `TREE_SAMPLE_EVERY`th; idle samples always measure it.
    #[test]
    fn process_trees_are_sampled_on_every_eighth_load_sample() -> Result<()> {
        let mut child = Command::new("sleep").arg("30").spawn()?;
        let mut log = MemoryLog {
            components: vec![Component {
                name: "tree".into(),
                pid: std::process::id(),
                ours: false,
            }],
            phase: Phase::Checkout,
            figures: BTreeMap::new(),
            cpu: Vec::new(),
            trees: TreeSampling::default(),
        };
        let mut measured = Vec::new();
        for _ in 0..=TREE_SAMPLE_EVERY {
            log.figures.clear();
            log.sample_load();
            measured.push(log.get(0, Phase::Checkout).is_some());
        }
        log.figures.clear();
        log.sample_idle();
        let idle = log.get(0, Phase::Idle);
        child.kill()?;
        child.wait()?;
        let mut expected = vec![false; measured.len()];
        expected[0] = true;
        expected[TREE_SAMPLE_EVERY as usize] = true;
        assert_eq!(measured, expected);
        assert!(idle.is_some_and(|memory| memory.processes >= 2));
        Ok(())
    }
}
