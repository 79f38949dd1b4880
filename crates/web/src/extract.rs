//! Extractors whose rejections are problem documents that name what is wrong, instead of
//! axum's plain-text defaults.

use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::problem::{FieldError, Problem};

/// The largest body any handler accepts, enforced before deserialising.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A JSON body (in) or a JSON response (out).
///
/// Rejections: wrong or missing `Content-Type` -> 415, body too large -> 413, not JSON -> 400,
/// JSON of the wrong shape -> 422 with the offending field's path.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !has_json_content_type(&req) {
            return Err(Problem::unsupported_media_type(
                "expected a body with Content-Type: application/json",
            ));
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(body_rejection)?;
        parse_json(&bytes).map(Json)
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

fn has_json_content_type(req: &Request) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .map(|mime| {
            let mime = mime.trim().to_ascii_lowercase();
            mime == "application/json"
                || (mime.starts_with("application/") && mime.ends_with("+json"))
        })
        .unwrap_or(false)
}

fn body_rejection(rejection: BytesRejection) -> Problem {
    match rejection {
        BytesRejection::FailedToBufferBody(_)
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE =>
        {
            Problem::payload_too_large(MAX_BODY_BYTES)
        }
        other => Problem::bad_request(format!(
            "cannot read the request body: {}",
            other.body_text()
        )),
    }
}

/// For an `Option` field of a partial update, with `#[serde(default, deserialize_with =
/// "web::extract::non_null")]`: absent is `None`, a value is `Some`, and `null` is refused (422
/// naming the field). A `null` would otherwise read as "absent" and change nothing, while the
/// API document (`nullable = false`) says it is not a value.
pub fn non_null<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    match <Option<T> as serde::Deserialize>::deserialize(deserializer)? {
        Some(value) => Ok(Some(value)),
        None => Err(serde::de::Error::custom(
            "must not be null; leave the field out to keep its value",
        )),
    }
}

/// Deserialises `bytes`, turning serde's error into a problem that names the field.
///
/// A number with a zero fraction (`2.0`) is read as the integer it is: JSON Schema's `integer`
/// (what the API documents say) includes it, and several JSON encoders write integers so,
/// while serde refuses a float for an integer field.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    let mut value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|error| Problem::bad_request(format!("the body is not valid JSON: {error}")))?;
    integral_floats_as_integers(&mut value);
    serde_path_to_error::deserialize(value).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => {
                let message = inner.to_string();
                let field = missing_field(&message).unwrap_or(path);
                let message = strip_position(&message);
                Problem::validation(vec![FieldError::new(field, message)])
            }
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                Problem::bad_request(format!("the body is not valid JSON: {inner}"))
            }
            serde_json::error::Category::Io => Problem::bad_request("the body could not be read"),
        }
    })
}

/// Rewrites every float with a zero fraction that fits an `i64` as that integer.
fn integral_floats_as_integers(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Number(number) if number.is_f64() => {
            if let Some(float) = number.as_f64()
                && float.fract() == 0.0
                // Exclusive at both ends: `-9223372036854775809` also reads as the float
                // -2^63 and must stay out of range.
                && float > i64::MIN as f64
                && float < i64::MAX as f64
            {
                *value = serde_json::Value::from(float as i64);
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(integral_floats_as_integers),
        serde_json::Value::Object(map) => map.values_mut().for_each(integral_floats_as_integers),
        _ => {}
    }
}

/// serde reports a missing field at the parent's path; name the field itself.
fn missing_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("missing field `")?;
    Some(rest.split('`').next()?.to_owned())
}

fn strip_position(message: &str) -> String {
    match message.find(" at line ") {
        Some(index) => message[..index].to_owned(),
        None => message.to_owned(),
    }
}

/// Path parameters; a value that does not parse (a malformed id) is 404, since no resource
/// can live at that path.
#[derive(Debug, Clone, Copy)]
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Path(value)),
            Err(PathRejection::FailedToDeserializePathParams(error)) => Err(Problem::not_found(
                format!("no resource at this path: {}", error.body_text()),
            )),
            Err(other) => Err(Problem::bad_request(other.body_text())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Register {
        email: String,
        age: u32,
        address: Address,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Address {
        city: String,
    }

    fn field_of(problem: &Problem) -> &str {
        problem
            .errors
            .first()
            .map(|e| e.field.as_str())
            .unwrap_or("")
    }

    #[test]
    fn wrong_type_names_the_nested_field() {
        let Err(problem) =
            parse_json::<Register>(br#"{"email":"a@b.c","age":1,"address":{"city":5}}"#)
        else {
            panic!("expected a rejection");
        };
        assert_eq!(problem.status, 422);
        assert_eq!(field_of(&problem), "address.city");
    }

    #[test]
    fn missing_field_is_named() {
        let Err(problem) = parse_json::<Register>(br#"{"email":"a@b.c","address":{"city":"x"}}"#)
        else {
            panic!("expected a rejection");
        };
        assert_eq!(field_of(&problem), "age");
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Patch {
        #[serde(default, deserialize_with = "non_null")]
        name: Option<String>,
        #[serde(default, deserialize_with = "non_null")]
        specs: Option<serde_json::Value>,
    }

    #[test]
    fn null_in_a_partial_update_is_refused_and_absent_is_not() {
        let Err(problem) = parse_json::<Patch>(br#"{"name": null}"#) else {
            panic!("expected a rejection");
        };
        assert_eq!((problem.status, field_of(&problem)), (422, "name"));
        let Err(problem) = parse_json::<Patch>(br#"{"specs": null}"#) else {
            panic!("expected a rejection");
        };
        assert_eq!(field_of(&problem), "specs");
        let Ok(patch) = parse_json::<Patch>(br#"{"specs": {"a": 1}}"#) else {
            panic!("expected a patch");
        };
        assert!(patch.name.is_none() && patch.specs.is_some());
    }

    #[test]
    fn an_integral_float_is_an_integer_and_a_fraction_is_not() {
        let body = br#"{"email":"a@b.c","age":30.0,"address":{"city":"x"}}"#;
        let Ok(register) = parse_json::<Register>(body) else {
            panic!("30.0 is an integer");
        };
        assert_eq!(register.age, 30);
        let Err(problem) =
            parse_json::<Register>(br#"{"email":"a@b.c","age":30.5,"address":{"city":"x"}}"#)
        else {
            panic!("expected a rejection");
        };
        assert_eq!((problem.status, field_of(&problem)), (422, "age"));
    }

    #[test]
    fn syntax_error_is_bad_request() {
        let Err(problem) = parse_json::<Register>(b"{not json") else {
            panic!("expected a rejection");
        };
        assert_eq!(problem.status, 400);
    }
}
