//! Prerequisites (Debian packages) and the tool cache (Kafka, Zipkin, the MongoDB-wire server,
//! the OIDC stand-in for Google, Mailpit, the workflow engine, schemathesis).
//!
//! Everything comes from package registries only: Kafka, Zipkin and mongo-java-server (the
//! local MongoDB-wire server, see [`provision_mongo_wire`]) are artifacts on Maven Central,
//! Mailpit is built from the Go module proxy, schemathesis (the contract fuzzer) is a virtualenv
//! from PyPI, and PostgreSQL, Java, Maven and Go come from
//! Debian (Go then upgraded through the module proxy when Debian's is too old). The workflow
//! engine (Operaton) is the repository's own Maven module `workflow/engine`, built against
//! Maven Central into the tool cache, and rebuilt when its sources or the models change. Each tool is installed into a versioned
//! directory that appears atomically (built under a temporary name, then renamed), so a
//! half-finished provisioning is redone rather than trusted.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use anyhow::{Context, Result, bail};

use crate::layout::Layout;
use crate::proc::{is_root, run_logged, which};
use crate::ui::Task;

pub const KAFKA_VERSION: &str = "4.1.1";
pub const ZIPKIN_VERSION: &str = "3.5.1";
/// mongo-java-server with its H2 (MVStore) backend: the local MongoDB-wire server.
pub const MONGO_JAVA_SERVER_VERSION: &str = "1.47.0";
pub const MAILPIT_VERSION: &str = "v1.27.11";
/// navikt's mock-oauth2-server: the OpenID Connect provider standing in for Google locally and
/// in tests (see [`provision_oidc_standin`]). 6.x runs on Java 17.
pub const OIDC_STANDIN_VERSION: &str = "6.0.2";
/// Its standalone entry point (Kotlin's top-level `main` in StandaloneMockOAuth2Server.kt).
pub const OIDC_STANDIN_MAIN: &str = "no.nav.security.mock.oauth2.StandaloneMockOAuth2ServerKt";
/// slf4j 2 and a log4j2 binding: Kafka logs through slf4j, and without a 2.x API plus a binding
/// the broker would log nothing at all (and readiness is read from its log).
/// cargo-deny checks the dependency graph's licences, bans and sources in `cargo xtask test`
/// (deny.toml); built once from crates.io into the tool cache.
pub const CARGO_DENY_VERSION: &str = "0.20.2";
const SLF4J_VERSION: &str = "2.0.17";
const LOG4J_VERSION: &str = "2.24.3";

/// Schemathesis, the OpenAPI contract fuzzer the contract tests run (`tests/system`,
/// `contract_fuzzing`), from PyPI into a virtualenv of the tool cache.
pub const SCHEMATHESIS_VERSION: &str = "4.32.5";
/// Schemathesis and every package it pulls in, pinned (what `pip freeze` reported for it), so a
/// fresh machine fuzzes with exactly the code CI did; installed with `--no-deps`.
const SCHEMATHESIS_PACKAGES: &[&str] = &[
    "schemathesis==4.32.5",
    "anyio==4.16.0",
    "certifi==2026.10.19.post1",
    "charset-normalizer==3.5.3",
    "click==8.5.1",
    "graphql-core==3.3.2",
    "harfile==0.6.0",
    "hypothesis==6.170.17",
    "hypothesis-graphql==0.13.5",
    "idna==3.20",
    "iniconfig==2.3.1",
    "jsonschema_rs==0.60.3",
    "markdown-it-py==4.3.0",
    "MarkupSafe==3.0.4",
    "mdurl==0.1.2",
    "packaging==26.4",
    "pluggy==1.7.0",
    "Pygments==2.21.0",
    "pyrate-limiter==4.5.1",
    "pytest==9.2.0",
    "PyYAML==6.0.4",
    "requests==2.34.2",
    "rich==15.0.0",
    "sortedcontainers==2.4.0",
    "typing_extensions==4.16.0",
    "urllib3==2.8.0",
    "Werkzeug==3.1.9",
];

/// Go is not taken from Debian (too old for these modules); these are the usual install spots.
const GO_FALLBACK_DIRS: &[&str] = &["/usr/local/go/bin", "/usr/lib/go/bin"];

pub fn kafka_dir(layout: &Layout) -> PathBuf {
    layout.tools().join(format!("kafka-{KAFKA_VERSION}"))
}
pub fn kafka_libs(layout: &Layout) -> PathBuf {
    kafka_dir(layout).join("libs")
}
pub fn zipkin_jar(layout: &Layout) -> PathBuf {
    layout
        .tools()
        .join(format!("zipkin-{ZIPKIN_VERSION}"))
        .join("zipkin.jar")
}
pub fn mongo_wire_dir(layout: &Layout) -> PathBuf {
    layout
        .tools()
        .join(format!("mongo-wire-{MONGO_JAVA_SERVER_VERSION}"))
}
/// The launcher's source in the repository (compiled into the tool cache).
pub fn mongo_wire_source(layout: &Layout) -> PathBuf {
    layout
        .repo
        .join("deploy/local/mongo-wire/MongoWireServer.java")
}
/// The class path of the MongoDB-wire server: its jars and the compiled launcher.
pub fn mongo_wire_classpath(layout: &Layout) -> String {
    let dir = mongo_wire_dir(layout);
    format!(
        "{}:{}",
        dir.join("libs").join("*").display(),
        dir.join("classes").display()
    )
}
pub fn oidc_standin_dir(layout: &Layout) -> PathBuf {
    layout
        .tools()
        .join(format!("oidc-standin-{OIDC_STANDIN_VERSION}"))
}
/// The class path of the OIDC stand-in (what `cargo xtask test` hands the tests).
pub fn oidc_standin_classpath(layout: &Layout) -> String {
    format!(
        "{}",
        oidc_standin_dir(layout).join("libs").join("*").display()
    )
}
/// Its configuration in the repository: the issuer `google` and the claims its ID tokens carry.
pub fn oidc_standin_config(layout: &Layout) -> PathBuf {
    layout.repo.join("deploy/local/oidc-standin/config.json")
}
/// Where the workflow engine's jar is built, outside the clone.
pub fn workflow_engine_dir(layout: &Layout) -> PathBuf {
    layout.tools().join("workflow-engine")
}
pub fn workflow_engine_jar(layout: &Layout) -> PathBuf {
    workflow_engine_dir(layout).join("workflow-engine.jar")
}
/// The launcher module and the models it packages, in the repository.
fn workflow_sources(layout: &Layout) -> [PathBuf; 2] {
    let workflow = layout.repo.join("workflow");
    [workflow.join("engine"), workflow.join("models")]
}
/// The virtualenv holding schemathesis; `.complete` inside marks it usable.
pub fn schemathesis_dir(layout: &Layout) -> PathBuf {
    layout
        .tools()
        .join(format!("schemathesis-{SCHEMATHESIS_VERSION}"))
}
/// Its command line entry point (what `cargo xtask test` hands the contract tests).
pub fn schemathesis_bin(layout: &Layout) -> PathBuf {
    schemathesis_dir(layout).join("bin").join("st")
}
pub fn mailpit_bin(layout: &Layout) -> PathBuf {
    layout
        .tools()
        .join(format!("mailpit-{MAILPIT_VERSION}"))
        .join("mailpit")
}

/// cargo-deny, built with `cargo install --locked` from crates.io the first time (a few
/// minutes) into its own directory of the tool cache, so every later run finds it at once.
pub fn cargo_deny(layout: &Layout) -> Result<PathBuf> {
    let dir = layout
        .tools()
        .join(format!("cargo-deny-{CARGO_DENY_VERSION}"));
    let bin = dir.join("bin").join("cargo-deny");
    if bin.is_file() {
        return Ok(bin);
    }
    let partial = layout
        .tools()
        .join(format!("cargo-deny-{CARGO_DENY_VERSION}.partial"));
    // A half-finished earlier attempt is redone, not trusted.
    if partial.exists() {
        fs::remove_dir_all(&partial).with_context(|| format!("removing {}", partial.display()))?;
    }
    let task = Task::start(
        "cargo-deny",
        &format!("building cargo-deny {CARGO_DENY_VERSION} from crates.io (once)"),
    );
    let result = run_logged(
        crate::proc::cargo()
            .args(["install", "--locked", "--quiet", "cargo-deny", "--version"])
            .arg(CARGO_DENY_VERSION)
            .arg("--root")
            .arg(&partial)
            // Its own build directory, removed afterwards: not the workspace's target dir.
            .arg("--target-dir")
            .arg(layout.tools().join("cargo-deny-build"))
            .env_remove("CARGO_TARGET_DIR"),
        &layout.log_file("cargo-deny-install"),
        "cargo install cargo-deny",
    )
    .and_then(|()| fs::rename(&partial, &dir).with_context(|| format!("moving {}", dir.display())));
    let _ = fs::remove_dir_all(layout.tools().join("cargo-deny-build"));
    match result {
        Ok(()) => {
            task.done(&format!("cargo-deny {CARGO_DENY_VERSION} built"));
            Ok(bin)
        }
        Err(error) => {
            task.fail();
            Err(error)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// System prerequisites

/// apt-get is run at most once per xtask invocation for `update`, and never concurrently.
static APT: Mutex<bool> = Mutex::new(false);

/// Installs Debian packages, or explains how to when we are not allowed to.
pub fn apt_install(layout: &Layout, packages: &[&str], what: &str) -> Result<()> {
    let list = packages.join(" ");
    if !is_root() || which("apt-get", &[]).is_none() {
        bail!(
            "{what} is not installed; install it with `sudo apt-get install -y {list}` and retry"
        );
    }
    let mut updated = APT
        .lock()
        .map_err(|_| anyhow::anyhow!("apt lock poisoned"))?;
    let log = layout.provision_log("apt");
    let task = Task::start("apt-get", &format!("installing {list}"));
    // Without this, the postgresql package would create and start a cluster of its own on
    // 5432 (the port we want); policy-rc.d is the Debian way to keep packages from starting
    // services during installation.
    let policy = Path::new("/usr/sbin/policy-rc.d");
    let placed_policy = !policy.exists()
        && fs::write(policy, "#!/bin/sh\nexit 101\n").is_ok()
        && set_mode(policy, 0o755).is_ok();
    let result = (|| {
        if !*updated {
            apt_update(&log)?;
            *updated = true;
        }
        run_logged(
            Command::new("apt-get")
                .args(["install", "-y", "-q", "--no-install-recommends"])
                .args(packages)
                .env("DEBIAN_FRONTEND", "noninteractive"),
            &log,
            &format!("apt-get install {list}"),
        )
    })();
    if placed_policy {
        let _ = fs::remove_file(policy);
    }
    match result {
        Ok(()) => {
            task.done(&format!("installed {list}"));
            Ok(())
        }
        Err(e) => {
            task.fail();
            Err(e.context(format!("could not install {what}")))
        }
    }
}

fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

/// Newest PostgreSQL server binaries from Debian's layout (/usr/lib/postgresql/<major>/bin).
pub fn postgres_bin(layout: &Layout) -> Result<PathBuf> {
    if let Some(dir) = find_postgres_bin() {
        return Ok(dir);
    }
    apt_install(layout, &["postgresql"], "the PostgreSQL server")?;
    find_postgres_bin()
        .context("PostgreSQL was installed but no /usr/lib/postgresql/*/bin/postgres was found")
}

/// The server binaries if installed, without installing anything.
pub fn postgres_bin_if_present() -> Option<PathBuf> {
    find_postgres_bin()
}

fn find_postgres_bin() -> Option<PathBuf> {
    let mut best: Option<(u32, PathBuf)> = None;
    for entry in fs::read_dir("/usr/lib/postgresql").ok()?.flatten() {
        let Ok(major) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let bin = entry.path().join("bin");
        if bin.join("postgres").is_file()
            && bin.join("initdb").is_file()
            && best.as_ref().is_none_or(|(m, _)| major > *m)
        {
            best = Some((major, bin));
        }
    }
    best.map(|(_, bin)| bin)
}

/// psql: the server's own bin dir first, then PATH (postgresql-client).
pub fn psql(pg_bin: Option<&Path>) -> Option<PathBuf> {
    pg_bin
        .map(|b| b.join("psql"))
        .filter(|p| p.is_file())
        .or_else(|| which("psql", &[]))
}

pub fn java(layout: &Layout) -> Result<PathBuf> {
    if let Some(java) = which("java", &[]) {
        return Ok(java);
    }
    apt_install(
        layout,
        &["openjdk-17-jre-headless"],
        "Java 17+ (needed by Kafka and Zipkin)",
    )?;
    which("java", &[]).context("java is still not on PATH after installing openjdk-17-jre-headless")
}

pub fn mvn(layout: &Layout) -> Result<PathBuf> {
    if let Some(mvn) = which("mvn", &[]) {
        return Ok(mvn);
    }
    apt_install(
        layout,
        &["maven"],
        "Maven (fetches Kafka and Zipkin from Maven Central)",
    )?;
    which("mvn", &[]).context("mvn is still not on PATH after installing maven")
}

/// cmake and a C++ compiler: the services' Kafka client (rdkafka) builds librdkafka from its
/// bundled source.
pub fn native_build_tools(layout: &Layout) -> Result<()> {
    let mut missing = Vec::new();
    if which("cmake", &[]).is_none() {
        missing.push("cmake");
    }
    if which("c++", &[]).is_none() {
        missing.push("g++");
    }
    if missing.is_empty() {
        return Ok(());
    }
    apt_install(
        layout,
        &missing,
        "cmake and a C++ compiler (librdkafka is built from source)",
    )
}

/// javac compiles the MongoDB-wire server's launcher; Debian's JRE package has none.
pub fn javac(layout: &Layout) -> Result<PathBuf> {
    if let Some(javac) = which("javac", &[]) {
        return Ok(javac);
    }
    apt_install(
        layout,
        &["openjdk-17-jdk-headless"],
        "a Java compiler (javac, for the MongoDB-wire server's launcher)",
    )?;
    which("javac", &[])
        .context("javac is still not on PATH after installing openjdk-17-jdk-headless")
}

/// The oldest Go that builds the Go tools (Mailpit 1.27 asks for 1.24.3, helm 3.19 for 1.24).
const GO_MINIMUM: (u32, u32, u32) = (1, 24, 3);
/// The toolchain fetched through the Go module proxy when the installed Go is older.
const GO_TOOLCHAIN: &str = "go1.25.5";
/// The oldest Go that can fetch a toolchain through the module proxy (`GOTOOLCHAIN`).
const GO_SWITCHING: (u32, u32, u32) = (1, 21, 0);

/// A Go command new enough for the Go tools: the installed one, else Debian's (from the
/// release's backports, which carry Go 1.21+; the release itself may have an older one),
/// which then fetches [`GO_TOOLCHAIN`] from the module proxy (`golang.org/toolchain` is a
/// module like any other) into the module cache.
pub fn go(layout: &Layout) -> Result<PathBuf> {
    let installed = match which("go", GO_FALLBACK_DIRS) {
        Some(go) => go,
        None => install_debian_go(layout)?,
    };
    match go_version(&installed) {
        Some(version) if version >= GO_MINIMUM => Ok(installed),
        Some(version) if version >= GO_SWITCHING => toolchain_go(layout, &installed),
        version => bail!(
            "{} is Go {version:?}, too old to fetch a newer toolchain; install Go {}.{} or newer \
             (Debian: golang-1.23-go from bookworm-backports)",
            installed.display(),
            GO_SWITCHING.0,
            GO_SWITCHING.1
        ),
    }
}

/// `(major, minor, patch)` of `go version`.
fn go_version(go: &Path) -> Option<(u32, u32, u32)> {
    let out = Command::new(go).arg("version").output().ok()?;
    parse_go_version(&String::from_utf8_lossy(&out.stdout))
}

fn parse_go_version(text: &str) -> Option<(u32, u32, u32)> {
    let word = text.split_whitespace().find(|w| w.starts_with("go1."))?;
    let mut numbers = word.trim_start_matches("go").split('.').map(|part| {
        part.chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse::<u32>()
            .ok()
    });
    let major = numbers.next()??;
    let minor = numbers.next()??;
    let patch = numbers.next().flatten().unwrap_or(0);
    Some((major, minor, patch))
}

/// Packages of Go 1.21 or newer, newest first, as Debian names them.
const DEBIAN_GO: &[&str] = &[
    "golang-1.24-go",
    "golang-1.23-go",
    "golang-1.22-go",
    "golang-1.21-go",
];

fn install_debian_go(layout: &Layout) -> Result<PathBuf> {
    let mut package = DEBIAN_GO.iter().copied().find(|name| apt_has(name));
    if package.is_none() && add_backports()? {
        refresh_apt(layout)?;
        package = DEBIAN_GO.iter().copied().find(|name| apt_has(name));
    }
    let package = package.unwrap_or("golang-go");
    apt_install(layout, &[package], "Go (builds Mailpit and helm)")?;
    let versioned = package
        .strip_prefix("golang-")
        .and_then(|rest| rest.strip_suffix("-go"))
        .map(|version| format!("/usr/lib/go-{version}/bin"));
    let mut dirs: Vec<&str> = GO_FALLBACK_DIRS.to_vec();
    if let Some(dir) = versioned.as_deref() {
        dirs.insert(0, dir);
    }
    which("go", &dirs).with_context(|| format!("go is still missing after installing {package}"))
}

/// Whether apt knows a candidate version of `package`.
fn apt_has(package: &str) -> bool {
    Command::new("apt-cache")
        .args(["policy", package])
        .output()
        .is_ok_and(|out| {
            let text = String::from_utf8_lossy(&out.stdout);
            text.lines()
                .any(|l| l.trim_start().starts_with("Candidate:") && !l.contains("(none)"))
        })
}

/// Adds the Debian release's backports suite (same mirror as the release) to apt's sources;
/// `false` where this is no Debian release with a codename, or apt is not ours to change.
fn add_backports() -> Result<bool> {
    let release = fs::read_to_string("/etc/os-release").unwrap_or_default();
    let field = |key: &str| {
        release.lines().find_map(|line| {
            line.strip_prefix(key)
                .map(|v| v.trim_matches('"').to_owned())
        })
    };
    let (Some("debian"), Some(codename)) = (field("ID=").as_deref(), field("VERSION_CODENAME="))
    else {
        return Ok(false);
    };
    if !is_root() {
        return Ok(false);
    }
    let sources = Path::new("/etc/apt/sources.list.d/ferroshop-backports.sources");
    if sources.exists() {
        return Ok(true);
    }
    let text = format!(
        "# Added by ferroshop's `cargo xtask up` for a newer Go (golang-1.2x-go).\nTypes: deb\nURIs: http://deb.debian.org/debian\nSuites: {codename}-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
    );
    fs::write(sources, text).with_context(|| format!("writing {}", sources.display()))?;
    Ok(true)
}

/// `apt-get update`, again (a source was added after the first).
fn refresh_apt(layout: &Layout) -> Result<()> {
    let mut updated = APT
        .lock()
        .map_err(|_| anyhow::anyhow!("apt lock poisoned"))?;
    apt_update(&layout.provision_log("apt"))?;
    *updated = true;
    Ok(())
}

fn apt_update(log: &Path) -> Result<()> {
    run_logged(
        Command::new("apt-get").args(["update", "-q"]),
        log,
        "apt-get update",
    )
}

/// [`GO_TOOLCHAIN`] through `installed` (Go 1.21 or newer switches toolchains itself).
fn toolchain_go(layout: &Layout, installed: &Path) -> Result<PathBuf> {
    let bin = layout.tools().join(GO_TOOLCHAIN).join("bin");
    let go = bin.join("go");
    if go.is_file() {
        return Ok(go);
    }
    let log = layout.provision_log("go");
    let gocache = layout.cache.join("go");
    let out = Command::new(installed)
        .args(["env", "GOROOT"])
        .env("GOTOOLCHAIN", GO_TOOLCHAIN)
        .env("GOMODCACHE", gocache.join("mod"))
        .env("GOPATH", gocache.join("path"))
        .output()
        .context("running go env GOROOT")?;
    let root = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if !out.status.success() || root.is_empty() {
        fs::write(&log, &out.stderr).ok();
        bail!(
            "{} is older than Go {}.{}.{} and could not fetch {GO_TOOLCHAIN} through the module proxy; see {}",
            installed.display(),
            GO_MINIMUM.0,
            GO_MINIMUM.1,
            GO_MINIMUM.2,
            log.display()
        );
    }
    // The toolchain lives read-only in the module cache; link its bin dir into the tools.
    fs::create_dir_all(layout.tools()).context("creating the tool cache")?;
    // Two provisioning threads may get here at once; the loser finds the link in place.
    if let Err(error) =
        std::os::unix::fs::symlink(Path::new(&root), layout.tools().join(GO_TOOLCHAIN))
        && !go.is_file()
    {
        return Err(
            anyhow::Error::new(error).context(format!("linking {root} into the tool cache"))
        );
    }
    Ok(go)
}

// ---------------------------------------------------------------------------------------------
// Tool cache

pub fn kafka_ready(layout: &Layout) -> bool {
    kafka_libs(layout)
        .join(format!("kafka_2.13-{KAFKA_VERSION}.jar"))
        .is_file()
}
pub fn zipkin_ready(layout: &Layout) -> bool {
    zipkin_jar(layout).is_file()
}
/// The jars are in place and the launcher compiled from the repository's current source.
pub fn mongo_wire_ready(layout: &Layout) -> bool {
    let classes = mongo_wire_dir(layout).join("classes");
    classes.join("MongoWireServer.class").is_file()
        && fs::read(classes.join("MongoWireServer.java")).ok()
            == fs::read(mongo_wire_source(layout)).ok()
}
pub fn oidc_standin_ready(layout: &Layout) -> bool {
    oidc_standin_dir(layout)
        .join("libs")
        .join(format!("mock-oauth2-server-{OIDC_STANDIN_VERSION}.jar"))
        .is_file()
}
pub fn mailpit_ready(layout: &Layout) -> bool {
    mailpit_bin(layout).is_file()
}
/// The jar is in place and was built from the repository's current launcher and models.
pub fn workflow_engine_ready(layout: &Layout) -> bool {
    let stamp = workflow_engine_dir(layout).join("sources.hash");
    workflow_engine_jar(layout).is_file()
        && fs::read_to_string(stamp).ok() == workflow_sources_hash(layout).ok()
}

/// A fingerprint of the launcher's and the models' files (names and contents; Maven's own
/// `target/` excluded), so that a change to either rebuilds the jar and nothing else does.
fn workflow_sources_hash(layout: &Layout) -> Result<String> {
    let mut files = Vec::new();
    for root in workflow_sources(layout) {
        collect_files(&root, &mut files)?;
    }
    files.sort();
    let mut hash = Fnv1a::default();
    for file in files {
        let name = file.strip_prefix(&layout.repo).unwrap_or(&file);
        hash.write(name.to_string_lossy().as_bytes());
        hash.write(&[0]);
        hash.write(&fs::read(&file).with_context(|| format!("reading {}", file.display()))?);
        hash.write(&[0]);
    }
    Ok(format!("{:016x}\n", hash.0))
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(anyhow::Error::new(e).context(format!("reading {}", dir.display()))),
    };
    for entry in entries {
        let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            if entry.file_name() != "target" {
                collect_files(&path, out)?;
            }
        } else {
            out.push(path);
        }
    }
    Ok(())
}

/// 64-bit FNV-1a: stable across Rust versions (std's hasher is not), and a fingerprint of a
/// few dozen kilobytes needs nothing stronger.
struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv1a {
    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

fn maven_repo(layout: &Layout) -> String {
    format!("-Dmaven.repo.local={}", layout.cache.join("m2").display())
}

/// One Maven dependency, as a pom line.
fn dependency(group: &str, artifact: &str, version: &str) -> String {
    format!(
        "    <dependency><groupId>{group}</groupId><artifactId>{artifact}</artifactId><version>{version}</version></dependency>\n"
    )
}

/// Resolves `dependencies` (pom lines) with their runtime dependencies into `dir/libs`,
/// through a generated pom; the folder appears whole or not at all.
fn maven_libs(
    layout: &Layout,
    mvn: &Path,
    dir: &Path,
    name: &str,
    dependencies: &str,
) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let pom = dir.join("pom.xml");
    let text = format!(
        "<project xmlns=\"http://maven.apache.org/POM/4.0.0\">\n  <modelVersion>4.0.0</modelVersion>\n  <groupId>local.ferroshop</groupId>\n  <artifactId>{name}-runtime</artifactId>\n  <version>1</version>\n  <packaging>pom</packaging>\n  <dependencies>\n{dependencies}  </dependencies>\n</project>\n"
    );
    fs::write(&pom, text).with_context(|| format!("writing {}", pom.display()))?;
    let tmp = dir.join("libs.partial");
    let _ = fs::remove_dir_all(&tmp);
    run_logged(
        Command::new(mvn)
            .args(["-B", "-q", &maven_repo(layout), "-f"])
            .arg(&pom)
            .arg("dependency:copy-dependencies")
            .arg(format!("-DoutputDirectory={}", tmp.display()))
            .arg("-DincludeScope=runtime"),
        &layout.provision_log(name),
        &format!("mvn dependency:copy-dependencies ({name})"),
    )?;
    let libs = dir.join("libs");
    let _ = fs::remove_dir_all(&libs);
    fs::rename(&tmp, &libs).with_context(|| format!("moving {} into place", libs.display()))?;
    Ok(())
}

/// Schemathesis into a virtualenv of the tool cache, unless one is complete already. A
/// virtualenv cannot be moved (its scripts name their interpreter by absolute path), so it is
/// built in place and marked complete last; an unmarked one is rebuilt from scratch.
pub fn provision_schemathesis(layout: &Layout) -> Result<()> {
    if schemathesis_dir(layout).join(".complete").is_file() && schemathesis_bin(layout).is_file() {
        return Ok(());
    }
    python_tool(
        layout,
        &schemathesis_dir(layout),
        SCHEMATHESIS_PACKAGES,
        &format!("schemathesis {SCHEMATHESIS_VERSION}"),
    )
}

/// A virtualenv in `dir` with `packages` from PyPI (pinned, `--no-deps`: every dependency is
/// listed, so nothing floats), for Python tools the build runs; `what` names them in the
/// progress line and the log. `.complete` in `dir` marks it usable, so a run interrupted
/// half-way is redone rather than trusted. Python 3 and its venv module come from Debian's
/// packages when missing.
pub fn python_tool(layout: &Layout, dir: &Path, packages: &[&str], what: &str) -> Result<()> {
    let task = Task::start("pypi", &format!("installing {what}"));
    let log = layout.provision_log(&format!("pypi-{}", file_stem(dir)));
    let result = (|| {
        let python = match which("python3", &[]) {
            Some(python) => python,
            None => {
                apt_install(layout, &["python3", "python3-venv"], "Python 3")?;
                which("python3", &[]).context("python3 is still not on PATH")?
            }
        };
        let _ = fs::remove_dir_all(dir);
        let venv = || {
            run_logged(
                Command::new(&python).args(["-m", "venv"]).arg(dir),
                &log,
                &format!("python3 -m venv ({what})"),
            )
        };
        if venv().is_err() {
            // Debian's python3 ships without ensurepip; python3-venv adds it.
            let _ = fs::remove_dir_all(dir);
            apt_install(layout, &["python3-venv"], "Python's venv module")?;
            venv()?;
        }
        run_logged(
            Command::new(dir.join("bin").join("pip"))
                .args([
                    "install",
                    "--quiet",
                    "--no-deps",
                    "--disable-pip-version-check",
                ])
                .args(packages)
                .env("PIP_CACHE_DIR", layout.cache.join("pip")),
            &log,
            &format!("pip install ({what})"),
        )?;
        fs::write(dir.join(".complete"), packages.join("\n"))
            .with_context(|| format!("marking the {what} virtualenv complete"))
    })();
    match result {
        Ok(()) => {
            task.done(&format!("{what} installed"));
            Ok(())
        }
        Err(e) => {
            task.fail();
            Err(e)
        }
    }
}

/// The last component of `dir`, for a log file's name.
fn file_stem(dir: &Path) -> String {
    dir.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| "tool".to_owned())
}

/// Kafka's broker, storage formatter and CLI tools with their runtime dependencies.
pub fn provision_kafka(layout: &Layout, mvn: &Path) -> Result<()> {
    // kafka_2.13 holds kafka.Kafka and kafka.tools.StorageTool; kafka-tools adds the admin and
    // console clients (TopicCommand, ConsoleProducer) that are handy for poking at the broker.
    let deps = [
        dependency("org.apache.kafka", "kafka_2.13", KAFKA_VERSION),
        dependency("org.apache.kafka", "kafka-storage", KAFKA_VERSION),
        dependency("org.apache.kafka", "kafka-tools", KAFKA_VERSION),
        dependency("org.slf4j", "slf4j-api", SLF4J_VERSION),
        dependency(
            "org.apache.logging.log4j",
            "log4j-slf4j2-impl",
            LOG4J_VERSION,
        ),
    ]
    .concat();
    maven_libs(layout, mvn, &kafka_dir(layout), "kafka", &deps)
}

/// The local MongoDB-wire server: mongo-java-server and its H2 backend from Maven Central,
/// plus the repository's launcher (`deploy/local/mongo-wire`) compiled next to them. Chosen
/// over FerretDB (see docs/ARCHITECTURE.md, "The local MongoDB-wire server"): it applies a
/// conditional update atomically and sorts in memory, and provisions in seconds.
pub fn provision_mongo_wire(layout: &Layout, mvn: &Path, javac: &Path) -> Result<()> {
    let dir = mongo_wire_dir(layout);
    if !dir.join("libs").is_dir() {
        let deps = [
            dependency(
                "de.bwaldvogel",
                "mongo-java-server-h2-backend",
                MONGO_JAVA_SERVER_VERSION,
            ),
            dependency("org.slf4j", "slf4j-simple", SLF4J_VERSION),
        ]
        .concat();
        maven_libs(layout, mvn, &dir, "mongo-wire", &deps)?;
    }
    let source = mongo_wire_source(layout);
    let tmp = dir.join("classes.partial");
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    run_logged(
        Command::new(javac)
            .arg("-d")
            .arg(&tmp)
            .arg("-cp")
            .arg(dir.join("libs").join("*"))
            .arg(&source),
        &layout.provision_log("mongo-wire"),
        "javac MongoWireServer.java",
    )?;
    // The source beside its classes tells a later `up` whether they are current.
    fs::copy(&source, tmp.join("MongoWireServer.java"))
        .with_context(|| format!("copying {}", source.display()))?;
    let classes = dir.join("classes");
    let _ = fs::remove_dir_all(&classes);
    fs::rename(&tmp, &classes).with_context(|| format!("moving {} into place", classes.display()))
}

/// The OIDC stand-in for Google: mock-oauth2-server with its runtime dependencies from Maven
/// Central, plus slf4j-simple (the library logs through slf4j and ships no binding, so it would
/// otherwise log nothing). A real OpenID Connect server: discovery, JWKS, an interactive login
/// page, authorization codes that work once and are bound to their PKCE challenge, RS256-signed
/// ID tokens carrying the request's nonce.
pub fn provision_oidc_standin(layout: &Layout, mvn: &Path) -> Result<()> {
    let deps = [
        dependency(
            "no.nav.security",
            "mock-oauth2-server",
            OIDC_STANDIN_VERSION,
        ),
        dependency("org.slf4j", "slf4j-simple", SLF4J_VERSION),
    ]
    .concat();
    maven_libs(
        layout,
        mvn,
        &oidc_standin_dir(layout),
        "oidc-standin",
        &deps,
    )
}

/// The Zipkin server's executable jar.
pub fn provision_zipkin(layout: &Layout, mvn: &Path) -> Result<()> {
    let jar = zipkin_jar(layout);
    let dir = jar.parent().context("zipkin jar has no parent dir")?;
    let tmp = dir.join("download.partial");
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    run_logged(
        Command::new(mvn)
            .current_dir(&tmp)
            .args(["-B", "-q", &maven_repo(layout), "dependency:copy"])
            .arg(format!(
                "-Dartifact=io.zipkin:zipkin-server:{ZIPKIN_VERSION}:jar:exec"
            ))
            .arg(format!("-DoutputDirectory={}", tmp.display())),
        &layout.provision_log("zipkin"),
        "mvn dependency:copy (Zipkin)",
    )?;
    let downloaded = tmp.join(format!("zipkin-server-{ZIPKIN_VERSION}-exec.jar"));
    fs::rename(&downloaded, &jar)
        .with_context(|| format!("moving {} to {}", downloaded.display(), jar.display()))?;
    let _ = fs::remove_dir_all(&tmp);
    Ok(())
}

/// The workflow engine: `mvn package` of the repository's `workflow/engine` module (Operaton's
/// Spring Boot starters from Maven Central, the models of `workflow/models` packaged inside),
/// built outside the clone; the jar and the fingerprint of its sources appear together.
pub fn provision_workflow_engine(layout: &Layout, mvn: &Path) -> Result<()> {
    let dir = workflow_engine_dir(layout);
    let build = dir.join("build");
    let _ = fs::remove_dir_all(&build);
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    // Taken before the build: an edit during it then makes the next `up` build again.
    let hash = workflow_sources_hash(layout)?;
    let pom = layout.repo.join("workflow").join("engine").join("pom.xml");
    run_logged(
        Command::new(mvn)
            .args(["-B", "-q", &maven_repo(layout), "-f"])
            .arg(&pom)
            .arg(format!("-Dworkflow.build.directory={}", build.display()))
            .args(["-DskipTests", "package"]),
        &layout.provision_log("workflow-engine"),
        "mvn package (workflow engine)",
    )?;
    let built = build.join("workflow-engine.jar");
    let jar = workflow_engine_jar(layout);
    fs::rename(&built, &jar)
        .with_context(|| format!("moving {} to {}", built.display(), jar.display()))?;
    fs::write(dir.join("sources.hash"), hash).context("recording the workflow sources' hash")?;
    let _ = fs::remove_dir_all(&build);
    Ok(())
}

/// A `go` command with every cache pointed into the tool cache and toolchain downloads off
/// (only the module proxy is reachable, and the installed Go is new enough).
pub fn go_cmd(layout: &Layout, go: &Path, dir: &Path) -> Command {
    let gocache = layout.cache.join("go");
    let mut cmd = Command::new(go);
    cmd.current_dir(dir)
        .env("GOPATH", gocache.join("path"))
        .env("GOMODCACHE", gocache.join("mod"))
        .env("GOCACHE", gocache.join("build"))
        .env("GOFLAGS", "-modcacherw")
        .env("GOTOOLCHAIN", "local")
        .env("CGO_ENABLED", "0");
    cmd
}

/// A throwaway module that records the tool's version with `go get -tool`, the way the Go
/// module proxy serves a program whose module has no `latest`.
pub fn tool_module(
    layout: &Layout,
    go: &Path,
    name: &str,
    tool: &str,
    log: &Path,
) -> Result<PathBuf> {
    let work = layout.cache.join("go").join("work").join(name);
    fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    if !work.join("go.mod").is_file() {
        run_logged(
            go_cmd(layout, go, &work).args([
                "mod",
                "init",
                &format!("ferroshop.local/tools/{name}"),
            ]),
            log,
            "go mod init",
        )?;
    }
    run_logged(
        go_cmd(layout, go, &work).args(["get", "-tool", tool]),
        log,
        &format!("go get -tool {tool}"),
    )?;
    Ok(work)
}

/// Mailpit from the Go module proxy. The module carries the web inbox's sources but not its
/// compiled bundle (server/ui/dist is produced by Mailpit's release build), so a binary from a
/// plain `go install` serves the API and an empty page. When npm is available, the module is
/// copied out of the read-only module cache, the bundle is built from the npm registry with the
/// module's own package-lock.json, and the copy is compiled; without npm the API-only binary
/// from `go install` is used and a warning says so.
pub fn provision_mailpit(layout: &Layout, go: &Path) -> Result<()> {
    let log = layout.provision_log("mailpit");
    let module = "github.com/axllent/mailpit";
    let work = tool_module(
        layout,
        go,
        "mailpit",
        &format!("{module}@{MAILPIT_VERSION}"),
        &log,
    )?;
    let bin = mailpit_bin(layout);
    let dir = bin.parent().context("mailpit binary has no parent dir")?;
    let tmp_dir = layout
        .tools()
        .join(format!("mailpit-{MAILPIT_VERSION}.partial"));
    let _ = fs::remove_dir_all(&tmp_dir);
    fs::create_dir_all(&tmp_dir).with_context(|| format!("creating {}", tmp_dir.display()))?;
    match which("npm", &[]) {
        Some(npm) => build_mailpit_with_ui(layout, go, &npm, &work, &tmp_dir, &log)?,
        None => {
            crate::ui::say(
                "! mailpit: npm not found, building without the web inbox UI (the HTTP API works); install nodejs/npm and delete the cached mailpit tool to get the UI",
            );
            run_logged(
                go_cmd(layout, go, &work)
                    .env("GOBIN", &tmp_dir)
                    .args(["install", module]),
                &log,
                "go install mailpit",
            )?;
        }
    }
    let _ = fs::remove_dir_all(dir);
    fs::rename(&tmp_dir, dir).with_context(|| format!("moving {} into place", dir.display()))?;
    Ok(())
}

fn build_mailpit_with_ui(
    layout: &Layout,
    go: &Path,
    npm: &Path,
    work: &Path,
    out_dir: &Path,
    log: &Path,
) -> Result<()> {
    let module = "github.com/axllent/mailpit";
    let module_dir = module_dir(layout, go, work, module)?;
    let src = layout
        .cache
        .join("go")
        .join("src")
        .join(format!("mailpit-{MAILPIT_VERSION}"));
    copy_writable(&module_dir, &src, log)?;
    let npm_cache = layout.cache.join("npm");
    run_logged(
        Command::new(npm)
            .current_dir(&src)
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .env("npm_config_cache", &npm_cache),
        log,
        "npm ci (Mailpit web UI)",
    )?;
    run_logged(
        Command::new(npm)
            .current_dir(&src)
            .args(["run", "package"])
            .env("npm_config_cache", &npm_cache),
        log,
        "npm run package (Mailpit web UI)",
    )?;
    run_logged(
        go_cmd(layout, go, &src)
            .args(["build", "-trimpath", "-ldflags"])
            .arg(format!(
                "-s -w -X {module}/config.Version={MAILPIT_VERSION}"
            ))
            .arg("-o")
            .arg(out_dir.join("mailpit"))
            .arg("."),
        log,
        "go build Mailpit",
    )?;
    let _ = fs::remove_dir_all(&src);
    Ok(())
}

/// Where the module cache holds `module` (as required by the tool module in `work`).
fn module_dir(layout: &Layout, go: &Path, work: &Path, module: &str) -> Result<PathBuf> {
    let out = go_cmd(layout, go, work)
        .args(["list", "-m", "-f", "{{.Dir}}", module])
        .output()
        .context("running go list")?;
    if !out.status.success() {
        bail!(
            "go list -m {module} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// A writable copy of a module from the (read-only) module cache, replacing any older copy.
fn copy_writable(from: &Path, to: &Path, log: &Path) -> Result<()> {
    let _ = fs::remove_dir_all(to);
    if let Some(parent) = to.parent() {
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    run_logged(
        Command::new("cp").arg("-R").arg(from).arg(to),
        log,
        "copying the module source",
    )?;
    run_logged(
        Command::new("chmod").args(["-R", "u+w"]).arg(to),
        log,
        "making the copy writable",
    )
}

#[cfg(test)]
mod tests {
    use super::{Fnv1a, parse_go_version};

    #[test]
    fn fnv1a_matches_the_reference_values() {
        let mut empty = Fnv1a::default();
        empty.write(b"");
        assert_eq!(empty.0, 0xcbf2_9ce4_8422_2325);
        let mut a = Fnv1a::default();
        a.write(b"a");
        assert_eq!(a.0, 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn reads_go_versions() {
        assert_eq!(
            parse_go_version("go version go1.26.8 linux/amd64"),
            Some((1, 26, 8))
        );
        assert_eq!(
            parse_go_version("go version go1.19.8 linux/amd64"),
            Some((1, 19, 8))
        );
        assert_eq!(
            parse_go_version("go version go1.24rc1 linux/amd64"),
            Some((1, 24, 0))
        );
        assert_eq!(
            parse_go_version("go version go1.23 linux/amd64"),
            Some((1, 23, 0))
        );
        assert_eq!(parse_go_version("nothing"), None);
    }
}
