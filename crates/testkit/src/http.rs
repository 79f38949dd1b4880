//! A service's answer as the tests read it: status, headers and the JSON body, with the
//! questions the tests ask of it (which fields a validation problem names, a header, whether
//! it is a problem document). Every service's `TestApp::send` returns one.

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::Value;

/// One HTTP answer, its body read to the end.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// The JSON body; `null` when the body is empty.
    pub body: Value,
}

impl std::fmt::Debug for Reply {
    /// Status and body, which is what a failed assertion needs to show.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.body)
    }
}

impl Reply {
    /// Reads `response`; a body that is not JSON fails (every API answer is JSON).
    pub async fn read(response: reqwest::Response) -> anyhow::Result<Self> {
        let (status, headers, bytes) = parts(response).await?;
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)?
        };
        Ok(Self {
            status,
            headers,
            body,
        })
    }

    /// Reads `response`, keeping a body that is not JSON as a string (a proxy's answers include
    /// pages and upstreams' own bodies).
    pub async fn read_any(response: reqwest::Response) -> anyhow::Result<Self> {
        let (status, headers, bytes) = parts(response).await?;
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Ok(Self {
            status,
            headers,
            body,
        })
    }

    /// The `field`s of a validation problem, in order.
    pub fn fields(&self) -> Vec<String> {
        self.body["errors"]
            .as_array()
            .map(|errors| {
                errors
                    .iter()
                    .filter_map(|e| e["field"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A header's value, if present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// The `Retry-After` header.
    pub fn retry_after(&self) -> Option<&str> {
        self.header(reqwest::header::RETRY_AFTER.as_str())
    }

    /// An RFC 9457 problem document whose `status` is the answer's.
    pub fn is_problem(&self) -> bool {
        self.header(reqwest::header::CONTENT_TYPE.as_str()) == Some("application/problem+json")
            && self.body["status"] == self.status.as_u16()
    }

    /// The body's `id`, or empty.
    pub fn id(&self) -> String {
        self.body["id"].as_str().unwrap_or_default().to_owned()
    }
}

async fn parts(
    response: reqwest::Response,
) -> anyhow::Result<(StatusCode, HeaderMap, bytes::Bytes)> {
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.bytes().await?;
    Ok((status, headers, bytes))
}

/// Sends `request` and reads the JSON answer ([`Reply::read`]).
pub async fn send(request: reqwest::RequestBuilder) -> anyhow::Result<Reply> {
    Reply::read(request.send().await?).await
}

/// A JSON string's text; fails on anything else.
pub fn string(value: &Value) -> anyhow::Result<String> {
    value
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("not a string: {value}"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn reply(status: StatusCode, content_type: &str, body: Value) -> anyhow::Result<Reply> {
        let mut headers = HeaderMap::new();
        headers.insert(reqwest::header::CONTENT_TYPE, content_type.parse()?);
        headers.insert(reqwest::header::RETRY_AFTER, "5".parse()?);
        Ok(Reply {
            status,
            headers,
            body,
        })
    }

    #[test]
    fn a_validation_problem_names_its_fields() -> anyhow::Result<()> {
        let problem = reply(
            StatusCode::UNPROCESSABLE_ENTITY,
            "application/problem+json",
            json!({"status": 422, "errors": [{"field": "email"}, {"field": "items[0].quantity"}]}),
        )?;
        assert_eq!(problem.fields(), ["email", "items[0].quantity"]);
        assert!(problem.is_problem());
        assert_eq!(problem.retry_after(), Some("5"));
        assert_eq!(format!("{problem:?}").split(' ').next(), Some("422"));
        Ok(())
    }

    #[test]
    fn an_ordinary_answer_has_no_fields_and_is_no_problem() -> anyhow::Result<()> {
        let ok = reply(StatusCode::OK, "application/json", json!({"id": "p-1"}))?;
        assert!(ok.fields().is_empty());
        assert!(!ok.is_problem());
        assert_eq!(ok.id(), "p-1");
        assert_eq!(string(&ok.body["id"])?, "p-1");
        assert!(string(&ok.body["missing"]).is_err());
        Ok(())
    }
}
