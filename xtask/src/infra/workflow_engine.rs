//! The workflow engine (Operaton in its Spring Boot launcher): its command line.

use std::process::Command;

use anyhow::Result;

use crate::layout::{Layout, Settings};
use crate::provision;

/// The workflow engine (Operaton in its Spring Boot launcher) on `s.workflow_port`, on the
/// `workflow` database. Measured: ready in 38 s on a first start (schema creation) on a busy
/// two-core box, about 300 MB RSS idle; 512 MB of heap leave room for Cockpit's queries. The
/// serial collector suits two cores; C2 stays on, since the engine runs for hours. `java` is
/// the JVM's command so far ([`super::java`]).
pub fn workflow_engine_command(layout: &Layout, s: &Settings, java: Command) -> Result<Command> {
    let jdbc = crate::layout::jdbc_of(&s.database_url("workflow"))?;
    let mut cmd = java;
    cmd.args([
        "-Xms64m",
        "-Xmx512m",
        "-XX:+UseSerialGC",
        "-XX:+ExitOnOutOfMemoryError",
        "-XX:ReservedCodeCacheSize=64m",
        "-Xss512k",
        "-jar",
    ])
    .arg(provision::workflow_engine_jar(layout))
    .env("WORKFLOW_ENGINE_PORT", s.workflow_port.to_string())
    .env("WORKFLOW_DATABASE_URL", jdbc.url)
    .env("WORKFLOW_DATABASE_USER", jdbc.user)
    .env("WORKFLOW_DATABASE_PASSWORD", jdbc.password)
    .env("WORKFLOW_ADMIN_USER", crate::services::workflow_admin().0)
    .env(
        "WORKFLOW_ADMIN_PASSWORD",
        crate::services::workflow_admin().1,
    );
    Ok(cmd)
}
