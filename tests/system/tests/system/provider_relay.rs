//! Passing a call on to psp-sim, for the payment provider stand-ins of the tests (the OWASP
//! test's hostile provider, the refund test's provider that holds answers): the headers the
//! provider reads go along, the answer comes back as psp-sim gave it.

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

/// psp-sim's answer to a relayed call.
pub struct Relayed {
    pub status: StatusCode,
    pub content_type: String,
    pub body: Bytes,
}

impl IntoResponse for Relayed {
    fn into_response(self) -> Response {
        (
            self.status,
            [(header::CONTENT_TYPE, self.content_type)],
            self.body,
        )
            .into_response()
    }
}

/// Sends the call to `upstream` (psp-sim's base URL); `None` when psp-sim did not answer.
pub async fn relay(
    client: &reqwest::Client,
    upstream: &str,
    method: Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Bytes,
) -> Option<Relayed> {
    let path = uri.path_and_query().map_or("/", |pq| pq.as_str());
    let mut request = client
        .request(method, format!("{upstream}{path}"))
        .body(body);
    for name in [
        header::AUTHORIZATION.as_str(),
        header::CONTENT_TYPE.as_str(),
        "idempotency-key",
        "traceparent",
    ] {
        if let Some(value) = headers.get(name) {
            request = request.header(name, value.as_bytes());
        }
    }
    let answer = request.send().await.ok()?;
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let content_type = answer
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("application/json")
        .to_owned();
    let body = answer.bytes().await.unwrap_or_default();
    Some(Relayed {
        status,
        content_type,
        body,
    })
}
