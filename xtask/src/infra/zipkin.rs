//! Zipkin, the trace store: its command line.

use std::path::Path;
use std::process::Command;

use crate::layout::{Layout, Settings};
use crate::provision;

/// Zipkin on `s.zipkin_port`, on loopback, keeping spans in memory, working in `data`; `java`
/// is the JVM's command so far ([`super::java`]).
pub(super) fn zipkin_command(layout: &Layout, s: &Settings, data: &Path, java: Command) -> Command {
    let mut cmd = java;
    // In-memory storage: the span cap below must fit the heap. 500,000 spans overflowed
    // 256 MB during a full test run (every service traces every request and hop), so
    // the cap is 150,000 (oldest traces evicted first) in 640 MB.
    cmd.args(["-Xmx640m", "-XX:+ExitOnOutOfMemoryError", "-jar"])
        .arg(provision::zipkin_jar(layout))
        // Bind to loopback only; Armeria otherwise listens on every interface.
        .arg("--armeria.ports[0].ip=127.0.0.1")
        .arg(format!("--armeria.ports[0].port={}", s.zipkin_port))
        .arg("--armeria.ports[0].protocols[0]=http")
        .env("QUERY_PORT", s.zipkin_port.to_string())
        .env("STORAGE_TYPE", "mem")
        .env("MEM_MAX_SPANS", "150000")
        // Zipkin turns on collectors when these are set; a developer's shell may have
        // them for unrelated reasons (KAFKA_BOOTSTRAP_SERVERS especially).
        .env_remove("KAFKA_BOOTSTRAP_SERVERS")
        .env_remove("RABBIT_ADDRESSES")
        .env_remove("RABBIT_URI")
        .env_remove("ACTIVEMQ_URL")
        .env_remove("PULSAR_SERVICE_URL")
        .env_remove("COLLECTOR_SCRIBE_ENABLED")
        .env_remove("SCRIBE_ENABLED")
        .current_dir(data);
    cmd
}
