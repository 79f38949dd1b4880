//! The repository's house rules, checked by `cargo test` (and so by `cargo xtask test`): every
//! Rust source file opens with a `//!` paragraph; every member takes its edition, rust-version,
//! licence and every dependency from the workspace, so a version or feature is chosen in one
//! place; and no module is called `utils`, `helpers` or `common` outside tests, because such a
//! name says where code was put rather than what it is.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// The folders that hold Rust code (the storefront and the Java launchers have their own rules).
const RUST_ROOTS: &[&str] = &["crates", "services", "tests", "xtask"];

/// Module names that say nothing about what the module is.
const VAGUE_MODULE_NAMES: &[&str] = &["utils", "util", "helpers", "common", "misc"];

/// Package fields every member must inherit from `[workspace.package]`.
const INHERITED_PACKAGE_FIELDS: &[&str] = &["edition", "rust-version", "license", "publish"];

/// Every `.rs` file under the Rust roots of `repo`, build outputs excluded.
pub fn rust_sources(repo: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut pending: Vec<PathBuf> = RUST_ROOTS.iter().map(|root| repo.join(root)).collect();
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
            let path = entry?.path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            if path.is_dir() {
                if !matches!(name, "target" | "node_modules") && !name.starts_with('.') {
                    pending.push(path);
                }
            } else if name.ends_with(".rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Whether a source file opens with an inner doc comment (`//!`).
pub fn opens_with_inner_doc(source: &str) -> bool {
    source.trim_start().starts_with("//!")
}

/// Whether `path` (relative to the repository) is test code: an integration-test folder
/// (`tests/` below a package) or the system and conformance suites.
pub fn is_test_code(relative: &Path) -> bool {
    let parts: Vec<&str> = relative.iter().filter_map(|p| p.to_str()).collect();
    parts.first() == Some(&"tests") || parts.iter().skip(1).any(|part| *part == "tests")
}

/// Whether `path` is a module named like [`VAGUE_MODULE_NAMES`] (`utils.rs` or `utils/mod.rs`).
pub fn has_vague_module_name(relative: &Path) -> bool {
    let stem = relative
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default();
    let folder = relative
        .parent()
        .and_then(|p| p.file_name())
        .and_then(|s| s.to_str())
        .unwrap_or_default();
    VAGUE_MODULE_NAMES.contains(&stem) || (stem == "mod" && VAGUE_MODULE_NAMES.contains(&folder))
}

/// The manifests of the workspace's members, from the root manifest's `members` (entries are
/// folders or `folder/*`).
pub fn member_manifests(repo: &Path) -> Result<Vec<PathBuf>> {
    let root: toml::Table = fs::read_to_string(repo.join("Cargo.toml"))?
        .parse()
        .context("parsing the root Cargo.toml")?;
    let members = root
        .get("workspace")
        .and_then(|w| w.get("members"))
        .and_then(toml::Value::as_array)
        .context("the root Cargo.toml has no workspace.members")?;
    let mut manifests = Vec::new();
    for member in members.iter().filter_map(toml::Value::as_str) {
        match member.strip_suffix("/*") {
            Some(parent) => {
                for entry in fs::read_dir(repo.join(parent))? {
                    let manifest = entry?.path().join("Cargo.toml");
                    if manifest.is_file() {
                        manifests.push(manifest);
                    }
                }
            }
            None => manifests.push(repo.join(member).join("Cargo.toml")),
        }
    }
    manifests.sort();
    Ok(manifests)
}

/// What a member manifest does against the rules: package fields not inherited, dependencies
/// not taken from `[workspace.dependencies]`.
pub fn manifest_problems(manifest: &str) -> Result<Vec<String>> {
    let table: toml::Table = manifest.parse().context("parsing the manifest")?;
    let mut problems = Vec::new();
    let package = table.get("package").and_then(toml::Value::as_table);
    for field in INHERITED_PACKAGE_FIELDS {
        if !package
            .and_then(|p| p.get(*field))
            .is_some_and(is_inherited)
        {
            problems.push(format!("package.{field} is not `{field}.workspace = true`"));
        }
    }
    let mut sections: Vec<(String, &toml::Table)> = Vec::new();
    for kind in ["dependencies", "dev-dependencies", "build-dependencies"] {
        if let Some(deps) = table.get(kind).and_then(toml::Value::as_table) {
            sections.push((kind.to_owned(), deps));
        }
    }
    if let Some(targets) = table.get("target").and_then(toml::Value::as_table) {
        for (cfg, target) in targets {
            for kind in ["dependencies", "dev-dependencies", "build-dependencies"] {
                if let Some(deps) = target.get(kind).and_then(toml::Value::as_table) {
                    sections.push((format!("target.{cfg}.{kind}"), deps));
                }
            }
        }
    }
    for (section, deps) in sections {
        for (name, spec) in deps {
            if !is_inherited(spec) {
                problems.push(format!(
                    "[{section}] {name} is not taken from [workspace.dependencies]"
                ));
            }
        }
    }
    Ok(problems)
}

/// `{ workspace = true, ... }` (a member may add features or make it optional).
fn is_inherited(value: &toml::Value) -> bool {
    value
        .as_table()
        .and_then(|t| t.get("workspace"))
        .and_then(toml::Value::as_bool)
        == Some(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
    }

    fn relative(path: &Path) -> PathBuf {
        path.strip_prefix(repo()).unwrap_or(path).to_path_buf()
    }

    #[test]
    fn every_rust_source_file_opens_with_a_doc_paragraph() -> Result<()> {
        let mut undocumented = Vec::new();
        for file in rust_sources(&repo())? {
            if !opens_with_inner_doc(&fs::read_to_string(&file)?) {
                undocumented.push(relative(&file));
            }
        }
        assert!(
            undocumented.is_empty(),
            "open these with a `//!` paragraph saying what they are for: {undocumented:?}"
        );
        Ok(())
    }

    #[test]
    fn no_module_outside_tests_is_named_utils_helpers_or_common() -> Result<()> {
        let vague: Vec<PathBuf> = rust_sources(&repo())?
            .iter()
            .map(|file| relative(file))
            .filter(|file| !is_test_code(file) && has_vague_module_name(file))
            .collect();
        assert!(vague.is_empty(), "name these by what they are: {vague:?}");
        Ok(())
    }

    #[test]
    fn every_member_inherits_its_package_fields_and_dependencies_from_the_workspace() -> Result<()>
    {
        let manifests = member_manifests(&repo())?;
        assert!(manifests.len() > 10, "members found: {manifests:?}");
        let mut problems = Vec::new();
        for manifest in manifests {
            for problem in manifest_problems(&fs::read_to_string(&manifest)?)? {
                problems.push(format!("{}: {problem}", relative(&manifest).display()));
            }
        }
        assert!(problems.is_empty(), "{problems:#?}");
        Ok(())
    }

    #[test]
    fn a_dependency_with_its_own_version_or_path_is_reported() -> Result<()> {
        let manifest = r#"
            [package]
            name = "x"
            edition.workspace = true
            rust-version.workspace = true
            license = "MIT"
            publish.workspace = true

            [dependencies]
            serde.workspace = true
            tokio = { workspace = true, features = ["fs"] }
            bytes = "1"
            auth = { path = "../auth" }

            [target.'cfg(unix)'.dev-dependencies]
            libc = { version = "0.2" }
        "#;
        let problems = manifest_problems(manifest)?;
        assert_eq!(
            problems,
            [
                "package.license is not `license.workspace = true`",
                "[dependencies] auth is not taken from [workspace.dependencies]",
                "[dependencies] bytes is not taken from [workspace.dependencies]",
                "[target.cfg(unix).dev-dependencies] libc is not taken from [workspace.dependencies]",
            ]
        );
        Ok(())
    }

    #[test]
    fn doc_paragraphs_and_module_names_are_recognised() {
        assert!(opens_with_inner_doc("\n//! What this is.\nuse x;"));
        assert!(!opens_with_inner_doc("/// Outer doc.\nfn f() {}"));
        assert!(!opens_with_inner_doc("use x;\n//! late"));
        assert!(has_vague_module_name(Path::new("services/a/src/utils.rs")));
        assert!(has_vague_module_name(Path::new(
            "crates/b/src/common/mod.rs"
        )));
        assert!(!has_vague_module_name(Path::new(
            "crates/b/src/common/money.rs"
        )));
        assert!(!has_vague_module_name(Path::new("crates/b/src/pricing.rs")));
        assert!(is_test_code(Path::new("services/a/tests/api/helpers.rs")));
        assert!(is_test_code(Path::new("tests/system/src/lib.rs")));
        assert!(!is_test_code(Path::new("services/a/src/helpers.rs")));
    }
}
