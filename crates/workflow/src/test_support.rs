//! For the services' tests (feature `test-support`): a process made of one external task, so
//! a test can run a service's step on the real engine without the business model around it.

use crate::client::{EngineClient, EngineError};

/// Deploys a process `<prefix>-<random>` whose only step is the external task `activity` on
/// `topic` (the same activity id the business model gives the step); returns its key.
pub async fn deploy_one_task_process(
    engine: &EngineClient,
    prefix: &str,
    activity: &str,
    topic: &str,
) -> Result<String, EngineError> {
    let key = format!("{prefix}-{}", uuid::Uuid::new_v4().simple());
    let bpmn = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<definitions xmlns="http://www.omg.org/spec/BPMN/20100524/MODEL"
             xmlns:operaton="http://operaton.org/schema/1.0/bpmn"
             id="d-{key}" targetNamespace="https://ferroshop.dev/test">
  <process id="{key}" isExecutable="true" operaton:historyTimeToLive="1">
    <startEvent id="start"/>
    <sequenceFlow id="f1" sourceRef="start" targetRef="{activity}"/>
    <serviceTask id="{activity}" operaton:type="external" operaton:topic="{topic}"/>
    <sequenceFlow id="f2" sourceRef="{activity}" targetRef="done"/>
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
    Ok(key)
}
