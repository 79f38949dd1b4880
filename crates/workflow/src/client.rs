//! A typed client of the engine's REST API (`/engine-rest`): the calls the services and their
//! workers make, and the few reads operations and tests need. Engine errors keep the engine's
//! own message; transport failures and 502/503/504 are [`EngineError::Unavailable`], which the
//! services answer as 503 (the engine is a dependency that may be restarting).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::variables::Variables;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The engine could not be reached or answered that it cannot serve now.
    #[error("workflow engine unavailable: {0}")]
    Unavailable(String),
    /// The thing named does not exist (a task completed meanwhile, an unknown key).
    #[error("not found in the workflow engine: {0}")]
    NotFound(String),
    /// The engine refused the call (bad variables, a message nobody waits for, a lock held by
    /// another worker); `message` is the engine's.
    #[error("workflow engine refused ({status}): {message}")]
    Refused { status: u16, message: String },
    #[error("unexpected answer from the workflow engine: {0}")]
    Decode(String),
}

impl EngineError {
    /// The same call may succeed if made again: the engine was away, or failed inside (its
    /// 500s include optimistic-locking conflicts between two transactions on one task).
    pub fn is_transient(&self) -> bool {
        match self {
            EngineError::Unavailable(_) => true,
            EngineError::Refused { status, .. } => *status >= 500,
            EngineError::NotFound(_) | EngineError::Decode(_) => false,
        }
    }
}

/// The REST API of one engine. Cheap to clone (one connection pool).
#[derive(Debug, Clone)]
pub struct EngineClient {
    http: reqwest::Client,
    base: String,
}

/// `POST /process-definition/key/{key}/start`.
#[derive(Debug, Clone)]
pub struct StartProcess<'a> {
    pub key: &'a str,
    pub business_key: &'a str,
    pub variables: Variables,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcessInstance {
    pub id: String,
    pub definition_id: Option<String>,
    pub business_key: Option<String>,
    #[serde(default)]
    pub ended: bool,
}

/// One topic of a `fetchAndLock` request.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FetchTopic {
    pub topic_name: String,
    /// Milliseconds.
    pub lock_duration: u64,
    /// Only tasks whose process has these variable values (a deployment's namespace, so that
    /// stacks and tests sharing one engine never take each other's tasks).
    #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
    pub process_variables: serde_json::Map<String, Value>,
}

/// A task the engine locked for us.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LockedTask {
    pub id: String,
    pub topic_name: String,
    pub worker_id: Option<String>,
    /// Retries left as last reported by a worker; `None` until the first failure.
    pub retries: Option<i32>,
    pub process_instance_id: Option<String>,
    pub process_definition_key: Option<String>,
    pub business_key: Option<String>,
    pub activity_id: Option<String>,
    pub error_message: Option<String>,
    #[serde(default)]
    pub variables: Variables,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Deployment {
    pub id: String,
    pub name: Option<String>,
}

/// The XML of a deployed decision definition; `id` names the version (it changes with every
/// deployment that changes the table).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DecisionXml {
    pub id: String,
    pub dmn_xml: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Incident {
    pub id: String,
    pub incident_type: String,
    pub incident_message: Option<String>,
    pub activity_id: Option<String>,
}

/// How long a `fetchAndLock` may be held open by the engine; the HTTP timeout adds a margin.
const LONG_POLL_MARGIN: Duration = Duration::from_secs(10);
/// Every other call.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

impl EngineClient {
    /// `base_url` is the engine's address without `/engine-rest`
    /// (e.g. `http://127.0.0.1:8086`).
    pub fn new(base_url: &str) -> Result<Self, EngineError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            // Below the engine's keep-alive timeout, so a connection the engine is closing is
            // never reused (`web::CLIENT_POOL_IDLE_TIMEOUT` explains the race).
            .pool_idle_timeout(Duration::from_secs(4))
            .build()
            .map_err(|e| EngineError::Unavailable(format!("building the HTTP client: {e}")))?;
        Ok(Self {
            http,
            base: format!("{}/engine-rest", base_url.trim_end_matches('/')),
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        what: &str,
    ) -> Result<reqwest::Response, EngineError> {
        let response = request
            .send()
            .await
            .map_err(|e| EngineError::Unavailable(format!("{what}: {e}")))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let text = response.text().await.unwrap_or_default();
        // The engine's errors are {"type": ..., "message": ...}.
        let message = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or(text);
        let message = format!("{what}: {message}");
        Err(match status.as_u16() {
            404 => EngineError::NotFound(message),
            502..=504 => EngineError::Unavailable(message),
            code => EngineError::Refused {
                status: code,
                message,
            },
        })
    }

    async fn post_json(&self, path: &str, body: &Value, what: &str) -> Result<(), EngineError> {
        self.send(
            self.http
                .post(self.url(path))
                .timeout(CALL_TIMEOUT)
                .json(body),
            what,
        )
        .await
        .map(drop)
    }

    async fn decode<T: serde::de::DeserializeOwned>(
        response: reqwest::Response,
        what: &str,
    ) -> Result<T, EngineError> {
        response
            .json::<T>()
            .await
            .map_err(|e| EngineError::Decode(format!("{what}: {e}")))
    }

    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
        what: &str,
    ) -> Result<T, EngineError> {
        let response = self
            .send(
                self.http
                    .get(self.url(path))
                    .timeout(CALL_TIMEOUT)
                    .query(query),
                what,
            )
            .await?;
        Self::decode(response, what).await
    }

    /// The engine's version; answers only when the engine is up (readiness).
    pub async fn version(&self) -> Result<String, EngineError> {
        let v: Value = self.get("/version", &[], "reading the version").await?;
        Ok(v.get("version")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned())
    }

    /// Starts the latest version of process `key`.
    pub async fn start_process(
        &self,
        start: StartProcess<'_>,
    ) -> Result<ProcessInstance, EngineError> {
        let what = format!("starting process {}", start.key);
        let response = self
            .send(
                self.http
                    .post(self.url(&format!("/process-definition/key/{}/start", start.key)))
                    .timeout(CALL_TIMEOUT)
                    .json(&json!({
                        "businessKey": start.business_key,
                        "variables": start.variables,
                    })),
                &what,
            )
            .await?;
        Self::decode(response, &what).await
    }

    /// Correlates message `name` to the one execution waiting for it in the process with
    /// `business_key`. A message nobody waits for is [`EngineError::Refused`] (400).
    pub async fn correlate_message(
        &self,
        name: &str,
        business_key: &str,
        variables: Variables,
    ) -> Result<(), EngineError> {
        self.post_json(
            "/message",
            &json!({
                "messageName": name,
                "businessKey": business_key,
                "processVariables": variables,
            }),
            &format!("correlating message {name}"),
        )
        .await
    }

    /// Locks up to `max_tasks` tasks of `topics` for `worker_id`, waiting up to `long_poll`
    /// for one to appear (the engine answers as soon as there is one).
    pub async fn fetch_and_lock(
        &self,
        worker_id: &str,
        max_tasks: usize,
        long_poll: Duration,
        topics: &[FetchTopic],
    ) -> Result<Vec<LockedTask>, EngineError> {
        let what = "fetching and locking external tasks";
        let response = self
            .send(
                self.http
                    .post(self.url("/external-task/fetchAndLock"))
                    .timeout(long_poll + LONG_POLL_MARGIN)
                    .json(&json!({
                        "workerId": worker_id,
                        "maxTasks": max_tasks,
                        "usePriority": true,
                        "asyncResponseTimeout": u64::try_from(long_poll.as_millis()).unwrap_or(u64::MAX),
                        "topics": topics,
                    })),
                what,
            )
            .await?;
        Self::decode(response, what).await
    }

    pub async fn complete(
        &self,
        task_id: &str,
        worker_id: &str,
        variables: Variables,
    ) -> Result<(), EngineError> {
        self.post_json(
            &format!("/external-task/{task_id}/complete"),
            &json!({"workerId": worker_id, "variables": variables}),
            &format!("completing task {task_id}"),
        )
        .await
    }

    /// Reports a failure: the task comes back after `retry_timeout` with `retries` left; at
    /// zero the engine raises an incident instead.
    pub async fn handle_failure(
        &self,
        task_id: &str,
        worker_id: &str,
        message: &str,
        details: &str,
        retries: i32,
        retry_timeout: Duration,
    ) -> Result<(), EngineError> {
        self.post_json(
            &format!("/external-task/{task_id}/failure"),
            &json!({
                "workerId": worker_id,
                "errorMessage": message,
                "errorDetails": details,
                "retries": retries.max(0),
                "retryTimeout": u64::try_from(retry_timeout.as_millis()).unwrap_or(u64::MAX),
            }),
            &format!("reporting the failure of task {task_id}"),
        )
        .await
    }

    /// Throws BPMN error `code` at the task; the model's boundary event takes it.
    pub async fn handle_bpmn_error(
        &self,
        task_id: &str,
        worker_id: &str,
        code: &str,
        message: &str,
        variables: Variables,
    ) -> Result<(), EngineError> {
        self.post_json(
            &format!("/external-task/{task_id}/bpmnError"),
            &json!({
                "workerId": worker_id,
                "errorCode": code,
                "errorMessage": message,
                "variables": variables,
            }),
            &format!("throwing BPMN error {code} at task {task_id}"),
        )
        .await
    }

    /// Extends our lock on the task to `duration` from now.
    pub async fn extend_lock(
        &self,
        task_id: &str,
        worker_id: &str,
        duration: Duration,
    ) -> Result<(), EngineError> {
        self.post_json(
            &format!("/external-task/{task_id}/extendLock"),
            &json!({
                "workerId": worker_id,
                "newDuration": u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
            }),
            &format!("extending the lock of task {task_id}"),
        )
        .await
    }

    /// Deploys `files` (name, contents) as one deployment; with `changed_only`, resources
    /// identical to the deployed ones are not deployed again.
    pub async fn deploy(
        &self,
        name: &str,
        files: Vec<(String, Vec<u8>)>,
        changed_only: bool,
    ) -> Result<Deployment, EngineError> {
        let mut form = reqwest::multipart::Form::new()
            .text("deployment-name", name.to_owned())
            .text("enable-duplicate-filtering", changed_only.to_string())
            .text("deploy-changed-only", changed_only.to_string());
        for (file, bytes) in files {
            form = form.part(
                file.clone(),
                reqwest::multipart::Part::bytes(bytes).file_name(file),
            );
        }
        let what = format!("deploying {name}");
        let response = self
            .send(
                self.http
                    .post(self.url("/deployment/create"))
                    .timeout(Duration::from_secs(30))
                    .multipart(form),
                &what,
            )
            .await?;
        Self::decode(response, &what).await
    }

    /// Evaluates the latest decision `key` with `variables`: one map of outputs per matched
    /// rule.
    pub async fn evaluate_decision(
        &self,
        key: &str,
        variables: Variables,
    ) -> Result<Vec<Variables>, EngineError> {
        let what = format!("evaluating decision {key}");
        let response = self
            .send(
                self.http
                    .post(self.url(&format!("/decision-definition/key/{key}/evaluate")))
                    .timeout(CALL_TIMEOUT)
                    .json(&json!({"variables": variables})),
                &what,
            )
            .await?;
        Self::decode(response, &what).await
    }

    /// The XML of the latest version of decision `key` (for [`crate::decision_table`]).
    pub async fn decision_xml(&self, key: &str) -> Result<DecisionXml, EngineError> {
        self.get(
            &format!("/decision-definition/key/{key}/xml"),
            &[],
            &format!("reading the XML of decision {key}"),
        )
        .await
    }

    /// Open incidents of a process instance.
    pub async fn incidents(&self, process_instance_id: &str) -> Result<Vec<Incident>, EngineError> {
        self.get(
            "/incident",
            &[("processInstanceId", process_instance_id)],
            "listing incidents",
        )
        .await
    }

    /// The ids of the instances of process `process_key` with `business_key`, running or
    /// ended (history), oldest first: how a caller that starts a process for a business key
    /// finds the one a previous attempt started before it could record it.
    pub async fn process_instances_by_business_key(
        &self,
        process_key: &str,
        business_key: &str,
    ) -> Result<Vec<String>, EngineError> {
        let found: Vec<Value> = self
            .get(
                "/history/process-instance",
                &[
                    ("processDefinitionKey", process_key),
                    ("processInstanceBusinessKey", business_key),
                    ("sortBy", "startTime"),
                    ("sortOrder", "asc"),
                ],
                "finding process instances by business key",
            )
            .await?;
        Ok(found
            .iter()
            .filter_map(|instance| instance.get("id").and_then(Value::as_str))
            .map(str::to_owned)
            .collect())
    }

    /// The historic state of a process instance: ACTIVE, COMPLETED, EXTERNALLY_TERMINATED, ...
    pub async fn process_state(&self, process_instance_id: &str) -> Result<String, EngineError> {
        let v: Value = self
            .get(
                &format!("/history/process-instance/{process_instance_id}"),
                &[],
                "reading a process instance's history",
            )
            .await?;
        v.get("state")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| EngineError::Decode("historic process instance without state".into()))
    }

    /// The activities a process instance went through, oldest first, as
    /// (activity id, name, finished).
    pub async fn activity_history(
        &self,
        process_instance_id: &str,
    ) -> Result<Vec<ActivityStep>, EngineError> {
        self.get(
            "/history/activity-instance",
            &[
                ("processInstanceId", process_instance_id),
                ("sortBy", "startTime"),
                ("sortOrder", "asc"),
            ],
            "reading a process instance's activities",
        )
        .await
    }

    /// Open user tasks of the latest and earlier versions of process `process_key` offered to
    /// `candidate_group`, whose process has variable `variable` equal to `value`.
    pub async fn user_tasks(
        &self,
        process_key: &str,
        candidate_group: &str,
        variable: &str,
        value: &str,
    ) -> Result<Vec<UserTask>, EngineError> {
        let filter = serde_json::json!({
            "processDefinitionKey": process_key,
            "candidateGroup": candidate_group,
            "processVariables": [{"name": variable, "operator": "eq", "value": value}],
            "sorting": [{"sortBy": "created", "sortOrder": "asc"}],
        });
        let what = "listing user tasks";
        let response = self
            .send(
                self.http
                    .post(self.url("/task"))
                    .timeout(CALL_TIMEOUT)
                    .json(&filter),
                what,
            )
            .await?;
        Self::decode(response, what).await
    }

    /// One open user task ([`EngineError::NotFound`] once it is completed).
    pub async fn user_task(&self, task_id: &str) -> Result<UserTask, EngineError> {
        self.get(&format!("/task/{task_id}"), &[], "reading a user task")
            .await
    }

    /// Completes user task `task_id` with `variables` (set on its process).
    pub async fn complete_user_task(
        &self,
        task_id: &str,
        variables: Variables,
    ) -> Result<(), EngineError> {
        self.post_json(
            &format!("/task/{task_id}/complete"),
            &json!({"variables": variables}),
            &format!("completing user task {task_id}"),
        )
        .await
    }

    /// A variable of a process instance as the history recorded it (also after the end).
    pub async fn historic_variable(
        &self,
        process_instance_id: &str,
        name: &str,
    ) -> Result<Option<Value>, EngineError> {
        let found: Vec<Value> = self
            .get(
                "/history/variable-instance",
                &[
                    ("processInstanceId", process_instance_id),
                    ("variableName", name),
                ],
                "reading a process variable",
            )
            .await?;
        Ok(found
            .into_iter()
            .next()
            .and_then(|mut v| v.get_mut("value").map(Value::take)))
    }
}

/// An open user task.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserTask {
    pub id: String,
    pub name: Option<String>,
    pub task_definition_key: Option<String>,
    pub process_instance_id: Option<String>,
    pub created: Option<String>,
    pub assignee: Option<String>,
}

/// One step of a process instance's history.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ActivityStep {
    pub activity_id: String,
    pub activity_name: Option<String>,
    pub activity_type: String,
    pub start_time: Option<String>,
    pub end_time: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::EngineError;

    #[test]
    fn only_errors_that_may_pass_are_transient() {
        let refused = |status| EngineError::Refused {
            status,
            message: String::new(),
        };
        assert!(EngineError::Unavailable("connection refused".into()).is_transient());
        assert!(
            refused(500).is_transient(),
            "Operaton's optimistic-locking conflict"
        );
        assert!(
            !refused(400).is_transient(),
            "a lock held by another worker"
        );
        assert!(!EngineError::NotFound("task".into()).is_transient());
        assert!(!EngineError::Decode("json".into()).is_transient());
    }
}
