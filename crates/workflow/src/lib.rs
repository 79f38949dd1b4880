//! The Rust side of the workflow engine (Operaton, the Apache-2.0 successor of Camunda 7): a
//! typed client of its REST API ([`EngineClient`]) and an external-task worker ([`Worker`]).
//!
//! The engine owns the state of every business process (refund requests, reviews); services
//! start processes, correlate messages and work the process's service tasks by topic. A
//! worker takes tasks with `fetchAndLock` (long polling, so an idle worker costs one open
//! request), runs each under a lock that it keeps extending while the handler works, and
//! reports the outcome: complete, a BPMN error the model handles, or a failure whose retry
//! count lives in the engine (a retry waits out the backoff there; at zero retries the engine
//! raises an incident that operations see in Cockpit). A worker killed mid-task leaves the
//! lock to expire and another worker takes the task again, so every handler must be
//! idempotent: the effect happens once however often the task runs.

mod client;
pub mod decision_table;
#[cfg(feature = "test-support")]
pub mod test_support;
mod variables;
mod worker;

pub use client::{
    ActivityStep, DecisionXml, Deployment, EngineClient, EngineError, FetchTopic, Incident,
    LockedTask, ProcessInstance, StartProcess, UserTask,
};
pub use variables::{Variable, Variables};
pub use worker::{Handler, TaskFailure, Worker, WorkerConfig, worker_id};

/// The process variable that carries a deployment's namespace: every process a deployment
/// starts has it, and its workers take only tasks of processes with their own value, so that
/// stacks and tests sharing one engine never take each other's tasks.
pub const NAMESPACE_VARIABLE: &str = "shop";

/// The namespace of a deployment: its Kafka topic prefix (each test and system run has its
/// own), else `ferroshop`.
pub fn default_namespace(topic_prefix: &str) -> String {
    if topic_prefix.is_empty() {
        "ferroshop".into()
    } else {
        topic_prefix.to_owned()
    }
}

/// A worker configuration for `service` that takes only the tasks of `namespace`.
pub fn namespaced_config(service: &str, namespace: &str) -> WorkerConfig {
    let mut config = WorkerConfig::new(worker_id(service));
    config.process_variables.insert(
        NAMESPACE_VARIABLE.into(),
        serde_json::Value::String(namespace.to_owned()),
    );
    config
}
