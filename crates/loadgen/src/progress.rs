//! Progress while a run is going: an indicatif bar on a terminal, a plain line every few
//! seconds otherwise (CI logs, or xtask capturing the output), both fed by shared counters
//! the workers bump.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::task::JoinHandle;

/// Outcomes so far, shared by all workers of a run.
#[derive(Debug, Default)]
pub struct Counters {
    pub ok: AtomicU64,
    pub non_2xx: AtomicU64,
    pub errors: AtomicU64,
}

impl Counters {
    pub fn count_ok(&self) {
        self.ok.fetch_add(1, Ordering::Relaxed);
    }
    pub fn count_non_2xx(&self) {
        self.non_2xx.fetch_add(1, Ordering::Relaxed);
    }
    pub fn count_error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }
    fn snapshot(&self) -> (u64, u64, u64) {
        (
            self.ok.load(Ordering::Relaxed),
            self.non_2xx.load(Ordering::Relaxed),
            self.errors.load(Ordering::Relaxed),
        )
    }
}

/// A running progress display; `finish` removes it.
pub struct Progress {
    bar: ProgressBar,
    ticker: JoinHandle<()>,
}

impl Progress {
    /// Shows `label` with elapsed time out of `total`, counting what `counters` sees as
    /// `unit` (e.g. "req" or "orders").
    pub fn start(
        label: &str,
        unit: &'static str,
        total: Duration,
        counters: Arc<Counters>,
    ) -> Self {
        let terminal = std::io::stderr().is_terminal();
        let bar = ProgressBar::new(total.as_millis() as u64);
        if terminal {
            if let Ok(style) = ProgressStyle::with_template(
                "{prefix:>24.bold} [{bar:30.cyan/blue}] {elapsed}/{duration} {msg}",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
        } else {
            bar.set_draw_target(ProgressDrawTarget::hidden());
        }
        bar.set_prefix(label.to_owned());
        let label = label.to_owned();
        let shown = bar.clone();
        let ticker = tokio::spawn(async move {
            let started = Instant::now();
            let mut last_line = Instant::now();
            let (mut last_ok, mut last_at) = (0, Instant::now());
            let mut rate = 0.0;
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let (ok, non_2xx, errors) = counters.snapshot();
                let now = Instant::now();
                let span = now.duration_since(last_at).as_secs_f64();
                if span >= 1.0 {
                    rate = (ok - last_ok) as f64 / span;
                    (last_ok, last_at) = (ok, now);
                }
                let message = format!(
                    "{ok} {unit} ok, {non_2xx} non-2xx, {errors} errors, {rate:.0} {unit}/s"
                );
                shown.set_position(started.elapsed().as_millis() as u64);
                if terminal {
                    shown.set_message(message);
                } else if last_line.elapsed() >= Duration::from_secs(5) {
                    eprintln!(
                        "{label:>24} {:>5.0}s {message}",
                        started.elapsed().as_secs_f64()
                    );
                    last_line = Instant::now();
                }
            }
        });
        Self { bar, ticker }
    }

    pub fn finish(self) {
        self.ticker.abort();
        self.bar.finish_and_clear();
    }
}
