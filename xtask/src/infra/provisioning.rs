//! Provisioning before a start: the system packages, then every missing component fetched or
//! built at once (Maven Central, Go's module proxy), each on its own thread.

use std::thread;

use anyhow::Result;

use crate::layout::Layout;
use crate::provision;
use crate::ui::Task;

use super::Infra;

pub(super) fn provision_all(layout: &Layout, to_start: &[Infra]) -> Result<()> {
    let kafka = to_start.contains(&Infra::Kafka) && !provision::kafka_ready(layout);
    let zipkin = to_start.contains(&Infra::Zipkin) && !provision::zipkin_ready(layout);
    let mongo_wire = to_start.contains(&Infra::MongoWire) && !provision::mongo_wire_ready(layout);
    let mailpit = to_start.contains(&Infra::Mailpit) && !provision::mailpit_ready(layout);
    let oidc_standin =
        to_start.contains(&Infra::OidcStandin) && !provision::oidc_standin_ready(layout);
    let engine =
        to_start.contains(&Infra::WorkflowEngine) && !provision::workflow_engine_ready(layout);

    // System prerequisites first and one at a time: apt-get holds a global lock.
    if to_start.contains(&Infra::Postgres) {
        provision::postgres_bin(layout)?;
    }
    if [
        Infra::Kafka,
        Infra::Zipkin,
        Infra::MongoWire,
        Infra::OidcStandin,
        Infra::WorkflowEngine,
    ]
    .iter()
    .any(|c| to_start.contains(c))
    {
        provision::java(layout)?;
    }
    let mvn = if kafka || zipkin || mongo_wire || oidc_standin || engine {
        Some(provision::mvn(layout)?)
    } else {
        None
    };
    // Maven compiles the engine's launcher class, and Debian's JRE has no compiler.
    let javac = if mongo_wire || engine {
        Some(provision::javac(layout)?)
    } else {
        None
    };
    let go = if mailpit {
        Some(provision::go(layout)?)
    } else {
        None
    };

    type Job<'a> = (&'a str, String, Box<dyn FnOnce() -> Result<()> + Send + 'a>);
    let mut jobs: Vec<Job> = Vec::new();
    if let (true, Some(mvn)) = (kafka, &mvn) {
        jobs.push((
            "kafka",
            format!(
                "fetching Apache Kafka {} from Maven Central",
                provision::KAFKA_VERSION
            ),
            Box::new(move || provision::provision_kafka(layout, mvn)),
        ));
    }
    if let (true, Some(mvn)) = (zipkin, &mvn) {
        jobs.push((
            "zipkin",
            format!(
                "fetching Zipkin {} from Maven Central",
                provision::ZIPKIN_VERSION
            ),
            Box::new(move || provision::provision_zipkin(layout, mvn)),
        ));
    }
    if let (true, Some(mvn), Some(javac)) = (mongo_wire, &mvn, &javac) {
        jobs.push((
            "mongo-wire",
            format!(
                "fetching mongo-java-server {} from Maven Central",
                provision::MONGO_JAVA_SERVER_VERSION
            ),
            Box::new(move || provision::provision_mongo_wire(layout, mvn, javac)),
        ));
    }
    if let (true, Some(mvn)) = (oidc_standin, &mvn) {
        jobs.push((
            "oidc-standin",
            format!(
                "fetching mock-oauth2-server {} from Maven Central",
                provision::OIDC_STANDIN_VERSION
            ),
            Box::new(move || provision::provision_oidc_standin(layout, mvn)),
        ));
    }
    if let (true, Some(mvn)) = (engine, &mvn) {
        jobs.push((
            "workflow-engine",
            "building the Operaton launcher (Maven Central, a few minutes once)".into(),
            Box::new(move || provision::provision_workflow_engine(layout, mvn)),
        ));
    }
    if let (true, Some(go)) = (mailpit, &go) {
        jobs.push((
            "mailpit",
            format!(
                "building Mailpit {} (Go, a few minutes once)",
                provision::MAILPIT_VERSION
            ),
            Box::new(move || provision::provision_mailpit(layout, go)),
        ));
    }
    if jobs.is_empty() {
        return Ok(());
    }
    let results: Vec<Result<()>> = thread::scope(|scope| {
        let handles: Vec<_> = jobs
            .into_iter()
            .map(|(name, message, job)| {
                scope.spawn(move || {
                    let task = Task::start(name, &message);
                    match job() {
                        Ok(()) => {
                            task.done("provisioned");
                            Ok(())
                        }
                        Err(e) => {
                            task.fail();
                            Err(e.context(format!("provisioning {name}")))
                        }
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a provisioning thread panicked")))
            })
            .collect()
    });
    results.into_iter().collect()
}
