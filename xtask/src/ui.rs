//! Progress display: indicatif spinners on a terminal, plain lines in CI logs.

use std::io::IsTerminal;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

fn multi() -> &'static MultiProgress {
    static MULTI: OnceLock<MultiProgress> = OnceLock::new();
    MULTI.get_or_init(|| {
        // Spinners redrawn in a CI log would only add noise, so they are hidden there and each
        // step prints one line when it starts and one when it ends instead.
        if std::io::stderr().is_terminal() {
            MultiProgress::new()
        } else {
            MultiProgress::with_draw_target(ProgressDrawTarget::hidden())
        }
    })
}

fn fancy() -> bool {
    !multi().is_hidden()
}

/// Prints a line without tearing any spinner that is currently drawn.
pub fn say(line: &str) {
    if fancy() {
        // A failed redraw is cosmetic; fall back to a plain line.
        if multi().println(line).is_err() {
            eprintln!("{line}");
        }
    } else {
        eprintln!("{line}");
    }
}

/// One step with a spinner and a timer.
pub struct Task {
    bar: ProgressBar,
    name: String,
    started: Instant,
}

impl Task {
    pub fn start(name: &str, message: &str) -> Self {
        let bar = multi().add(ProgressBar::new_spinner());
        if let Ok(style) =
            ProgressStyle::with_template("{spinner:.cyan} {prefix:>14.bold} {msg} {elapsed:.dim}")
        {
            bar.set_style(style);
        }
        bar.set_prefix(name.to_string());
        bar.set_message(message.to_string());
        bar.enable_steady_tick(Duration::from_millis(120));
        if !fancy() {
            eprintln!("{name:>14} {message} ...");
        }
        Self {
            bar,
            name: name.to_string(),
            started: Instant::now(),
        }
    }

    pub fn update(&self, message: &str) {
        self.bar.set_message(message.to_string());
        if !fancy() {
            eprintln!("{:>14} {message} ...", self.name);
        }
    }

    /// Ends the step with a check mark, the message and the time it took.
    pub fn done(self, message: &str) {
        let secs = self.started.elapsed().as_secs_f64();
        self.bar.finish_and_clear();
        say(&format!("✔ {:>14} {message} ({secs:.1}s)", self.name));
    }

    /// Ends the step quietly (its caller reports the error).
    pub fn fail(self) {
        let secs = self.started.elapsed().as_secs_f64();
        self.bar.finish_and_clear();
        say(&format!("✘ {:>14} failed after {secs:.1}s", self.name));
    }
}
