//! Builds the web storefront (`web/`): `npm ci` when the lock file changed since the last
//! install, then `npm run build` (type check and Vite) when any input changed since the last
//! build, so a second `cargo xtask up` spends no time here. The gateway serves the result,
//! `web/dist`, at `/` (`GATEWAY_WEB_ROOT`); the browser tests also need `web/node_modules`
//! (playwright-core). npm's cache lives under `$FERROSHOP_CACHE/npm`, never in the clone.
//!
//! "Changed" is a fingerprint of the inputs' paths and contents, kept in `.local/`; a
//! fingerprint that cannot be read only costs a rebuild.

use std::collections::hash_map::DefaultHasher;
use std::fs;
use std::hash::Hasher as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, bail};

use crate::layout::Layout;
use crate::proc::run_logged;
use crate::ui::Task;

/// Files and folders of `web/` the bundle is made from.
const BUILD_INPUTS: [&str; 7] = [
    "package.json",
    "package-lock.json",
    "index.html",
    "vite.config.ts",
    "tsconfig.json",
    "src",
    "public",
];

pub fn web_dir(layout: &Layout) -> PathBuf {
    layout.repo.join("web")
}

/// The built storefront the gateway serves.
pub fn dist_dir(layout: &Layout) -> PathBuf {
    web_dir(layout).join("dist")
}

/// Installs the packages and builds the bundle when their inputs changed; returns `web/dist`.
pub fn build(layout: &Layout) -> Result<PathBuf> {
    let web = web_dir(layout);
    let dist = dist_dir(layout);
    if Command::new("npm").arg("--version").output().is_err() {
        bail!(
            "npm is not installed; the storefront needs Node.js 20 or newer with npm \
             (`apt-get install -y nodejs npm` on Debian)"
        );
    }
    let stamps = layout.local.join("web");
    fs::create_dir_all(&stamps).context("creating .local/web")?;
    let log = layout.provision_log("web");
    let npm_cache = layout.cache.join("npm");

    let lock = fingerprint(&web, &["package.json", "package-lock.json"])?;
    let installed_stamp = stamps.join("npm-ci.fingerprint");
    if !web.join("node_modules").is_dir() || read_stamp(&installed_stamp) != Some(lock) {
        let task = Task::start("storefront", "npm ci");
        let result = run_logged(
            Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(&web)
                .env("npm_config_cache", &npm_cache),
            &log,
            "npm ci",
        );
        if let Err(error) = result {
            task.fail();
            return Err(error);
        }
        write_stamp(&installed_stamp, lock)?;
        task.done("packages installed");
    }

    let inputs = fingerprint(&web, &BUILD_INPUTS)?;
    let built_stamp = stamps.join("build.fingerprint");
    if dist.join("index.html").is_file() && read_stamp(&built_stamp) == Some(inputs) {
        crate::ui::say("✔     storefront bundle up to date (web/dist)");
        return Ok(dist);
    }
    let task = Task::start("storefront", "type check and vite build");
    let result = run_logged(
        Command::new("npm")
            .args(["run", "build"])
            .current_dir(&web)
            .env("npm_config_cache", &npm_cache),
        &log,
        "npm run build",
    );
    if let Err(error) = result {
        task.fail();
        return Err(error);
    }
    write_stamp(&built_stamp, inputs)?;
    task.done("built into web/dist");
    Ok(dist)
}

/// A hash of the paths and contents of `names` under `root` (folders walked in sorted order).
fn fingerprint(root: &Path, names: &[&str]) -> Result<u64> {
    let mut files = Vec::new();
    for name in names {
        collect(&root.join(name), &mut files)?;
    }
    files.sort();
    let mut hasher = DefaultHasher::new();
    for file in files {
        let relative = file.strip_prefix(root).unwrap_or(&file);
        hasher.write(relative.to_string_lossy().as_bytes());
        hasher.write(&fs::read(&file).with_context(|| format!("reading {}", file.display()))?);
    }
    Ok(hasher.finish())
}

fn collect(path: &Path, files: &mut Vec<PathBuf>) -> Result<()> {
    if path.is_file() {
        files.push(path.to_path_buf());
    } else if path.is_dir() {
        for entry in fs::read_dir(path).with_context(|| format!("listing {}", path.display()))? {
            collect(&entry?.path(), files)?;
        }
    }
    Ok(())
}

fn read_stamp(path: &Path) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn write_stamp(path: &Path, value: u64) -> Result<()> {
    fs::write(path, value.to_string()).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch() -> Result<PathBuf> {
        let dir = std::env::temp_dir().join(format!(
            "xtask-web-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_nanos()
        ));
        fs::create_dir_all(dir.join("src/pages"))?;
        fs::write(dir.join("package.json"), "{}")?;
        fs::write(dir.join("src/main.tsx"), "a")?;
        fs::write(dir.join("src/pages/shop.tsx"), "b")?;
        Ok(dir)
    }

    #[test]
    fn the_fingerprint_changes_with_any_input_and_only_then() -> Result<()> {
        let dir = scratch()?;
        let first = fingerprint(&dir, &BUILD_INPUTS)?;
        assert_eq!(fingerprint(&dir, &BUILD_INPUTS)?, first);
        fs::write(dir.join("dist-not-an-input.txt"), "x")?;
        assert_eq!(fingerprint(&dir, &BUILD_INPUTS)?, first);
        fs::write(dir.join("src/pages/shop.tsx"), "c")?;
        let edited = fingerprint(&dir, &BUILD_INPUTS)?;
        assert_ne!(edited, first);
        fs::rename(
            dir.join("src/pages/shop.tsx"),
            dir.join("src/pages/cart.tsx"),
        )?;
        assert_ne!(fingerprint(&dir, &BUILD_INPUTS)?, edited);
        fs::remove_dir_all(&dir)?;
        Ok(())
    }

    #[test]
    fn stamps_round_trip_and_a_missing_one_means_rebuild() -> Result<()> {
        let dir = scratch()?;
        let stamp = dir.join("build.fingerprint");
        assert_eq!(read_stamp(&stamp), None);
        write_stamp(&stamp, 42)?;
        assert_eq!(read_stamp(&stamp), Some(42));
        fs::remove_dir_all(&dir)?;
        Ok(())
    }
}

#[cfg(test)]
mod manual {
    #[test]
    #[ignore = "manual: runs npm ci and the Vite build in web/ (what `cargo xtask up` does)"]
    fn run_storefront_build() {
        let layout = crate::layout::Layout::detect();
        assert!(layout.is_ok());
        if let Ok(layout) = layout {
            let built = super::build(&layout);
            assert!(built.is_ok(), "{built:?}");
            assert!(super::dist_dir(&layout).join("index.html").is_file());
        }
    }
}
