//! The web storefront in a real browser: the platform started from its binaries, the gateway
//! serving the built SPA (`web/dist`), and the Playwright scenarios of `web/tests/browser`
//! (playwright-core driving Debian's Chromium) run against the gateway by Node's test runner.
//! The test fails with the runner's exit code and prints its report; screenshots of each
//! scenario's final page go to `web/test-output/` (git-ignored).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, ensure};

use crate::platform::{ADMIN_EMAIL, ADMIN_PASSWORD, Platform};

/// The whole browser suite; a hang is a failure, not a stuck CI.
const SUITE_DEADLINE: Duration = Duration::from_secs(600);

fn web_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../web")
}

fn chromium() -> PathBuf {
    std::env::var_os("CHROMIUM_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// What the suite needs besides the platform; `cargo xtask test` (like `cargo xtask up`)
/// builds the bundle and installs the packages, `.ci/run` installs Chromium.
fn check_prerequisites(web: &Path) -> anyhow::Result<()> {
    ensure!(
        web.join("dist/index.html").is_file(),
        "{} is missing: build the storefront first (`cargo xtask up` or `cargo xtask test` \
         does: npm ci and vite build in web/)",
        web.join("dist/index.html").display()
    );
    ensure!(
        web.join("node_modules/playwright-core").is_dir(),
        "web/node_modules is missing: run `npm ci` in web/ (`cargo xtask up` does)"
    );
    ensure!(
        chromium().is_file(),
        "{} is missing: install Debian's chromium (`.ci/run` does), or set CHROMIUM_PATH",
        chromium().display()
    );
    Ok(())
}

pub async fn run_storefront_suite(platform: &Platform) -> anyhow::Result<()> {
    let web = web_dir();
    let output = web.join("test-output");
    std::fs::create_dir_all(&output).with_context(|| format!("creating {}", output.display()))?;
    // One spec file instead of all while working on it, e.g. `tests/browser/admin.test.mjs`.
    let specs = std::env::var("STOREFRONT_BROWSER_TESTS")
        .ok()
        .filter(|specs| !specs.is_empty())
        .unwrap_or_else(|| "tests/browser/".into());
    let mut command = tokio::process::Command::new("node");
    command
        .args([
            "--test",
            "--test-concurrency=1",
            "--test-reporter=spec",
            specs.as_str(),
        ])
        .current_dir(&web)
        .env("STOREFRONT_URL", &platform.gateway)
        .env("CHROMIUM_PATH", chromium())
        .env("BROWSER_TEST_OUTPUT", &output)
        .env("ADMIN_EMAIL", ADMIN_EMAIL)
        .env("ADMIN_PASSWORD", ADMIN_PASSWORD)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let run = tokio::time::timeout(SUITE_DEADLINE, command.output())
        .await
        .context("the browser suite did not finish within its deadline")?
        .context("starting node (is Node.js installed?)")?;
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    ensure!(
        run.status.success(),
        "the browser suite failed ({}):\n{report}",
        run.status
    );
    // The runner's summary and diagnostics (`ℹ tests 15`, `ℹ pass 15`, the measured load
    // times) stay in the log; the full report only on failure.
    for line in report
        .lines()
        .filter(|line| line.trim_start().starts_with('ℹ'))
    {
        eprintln!("browser suite {}", line.trim());
    }
    Ok(())
}

pub fn prerequisites() -> anyhow::Result<PathBuf> {
    let web = web_dir();
    check_prerequisites(&web)?;
    Ok(web.join("dist"))
}
