//! Per-test models and a worker configuration with short timings.

use std::time::Duration;

use workflow::{EngineClient, WorkerConfig};

pub fn engine() -> anyhow::Result<EngineClient> {
    Ok(EngineClient::new(&testkit::stack::workflow_engine_url())?)
}

pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// A process `key`: one external task on `topic`, with an error boundary event for BPMN
/// error `refused` leading to end event `refused`, else to end event `done`.
pub struct TaskModel {
    pub key: String,
    pub topic: String,
}

pub async fn deploy_task_model(engine: &EngineClient) -> anyhow::Result<TaskModel> {
    let key = unique("test-task");
    let topic = unique("topic");
    let bpmn = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<definitions xmlns="http://www.omg.org/spec/BPMN/20100524/MODEL"
             xmlns:operaton="http://operaton.org/schema/1.0/bpmn"
             id="d-{key}" targetNamespace="https://ferroshop.dev/test">
  <error id="refused-error" errorCode="refused"/>
  <process id="{key}" isExecutable="true" operaton:historyTimeToLive="1">
    <startEvent id="start"/>
    <sequenceFlow id="f1" sourceRef="start" targetRef="work"/>
    <serviceTask id="work" operaton:type="external" operaton:topic="{topic}"/>
    <boundaryEvent id="on-refused" attachedToRef="work">
      <errorEventDefinition errorRef="refused-error"/>
    </boundaryEvent>
    <sequenceFlow id="f2" sourceRef="work" targetRef="done"/>
    <endEvent id="done"/>
    <sequenceFlow id="f3" sourceRef="on-refused" targetRef="refused"/>
    <endEvent id="refused"/>
  </process>
</definitions>"#
    );
    engine
        .deploy(
            &key,
            vec![(format!("{key}.bpmn"), bpmn.into_bytes())],
            false,
        )
        .await?;
    Ok(TaskModel { key, topic })
}

/// A process `key` that waits for message `message`, then ends.
pub async fn deploy_message_model(engine: &EngineClient) -> anyhow::Result<(String, String)> {
    let key = unique("test-message");
    let message = unique("message");
    let bpmn = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<definitions xmlns="http://www.omg.org/spec/BPMN/20100524/MODEL"
             xmlns:operaton="http://operaton.org/schema/1.0/bpmn"
             id="d-{key}" targetNamespace="https://ferroshop.dev/test">
  <message id="m" name="{message}"/>
  <process id="{key}" isExecutable="true" operaton:historyTimeToLive="1">
    <startEvent id="start"/>
    <sequenceFlow id="f1" sourceRef="start" targetRef="wait"/>
    <intermediateCatchEvent id="wait"><messageEventDefinition messageRef="m"/></intermediateCatchEvent>
    <sequenceFlow id="f2" sourceRef="wait" targetRef="done"/>
    <endEvent id="done"/>
  </process>
</definitions>"#
    );
    engine
        .deploy(
            &key,
            vec![(format!("{key}.bpmn"), bpmn.into_bytes())],
            false,
        )
        .await?;
    Ok((key, message))
}

/// Short locks, polls and backoffs, so retries and lock expiry happen within seconds.
pub fn fast_config(name: &str) -> WorkerConfig {
    let mut config = WorkerConfig::new(workflow::worker_id(name));
    config.lock_duration = Duration::from_secs(2);
    config.long_poll = Duration::from_secs(1);
    config.retries = 3;
    config.backoff_base = Duration::from_millis(200);
    config.backoff_max = Duration::from_secs(1);
    config
}

pub async fn wait_for_state(
    engine: &EngineClient,
    process_instance: &str,
    state: &str,
) -> anyhow::Result<()> {
    testkit::eventually(Duration::from_secs(30), || async {
        let now = engine.process_state(process_instance).await?;
        anyhow::ensure!(now == state, "process is {now}, waiting for {state}");
        Ok(())
    })
    .await
}

/// The end event a finished process instance reached.
pub async fn end_event(engine: &EngineClient, process_instance: &str) -> anyhow::Result<String> {
    let steps = engine.activity_history(process_instance).await?;
    steps
        .into_iter()
        .rev()
        .find(|s| s.activity_type == "noneEndEvent")
        .map(|s| s.activity_id)
        .ok_or_else(|| anyhow::anyhow!("no end event reached"))
}
