//! The CloudEvents 1.0 envelope (structured JSON mode) every record on the bus is wrapped in.

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The CloudEvents specification version this platform speaks.
pub const SPEC_VERSION: &str = "1.0";

/// A payload that may travel on the bus: it knows its CloudEvents `type` and its topic.
pub trait EventData: Serialize + DeserializeOwned {
    /// The CloudEvents `type`, e.g. `user.registered.v1`.
    const TYPE: &'static str;
    /// The logical topic (without any deployment prefix), e.g. `user.events`.
    const TOPIC: &'static str;
}

/// One event as written to Kafka.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CloudEvent<T = serde_json::Value> {
    pub specversion: String,
    /// Unique per event; consumers deduplicate on it.
    pub id: Uuid,
    /// The producing service, as a URI reference such as `/user-service`.
    pub source: String,
    #[serde(rename = "type")]
    pub event_type: String,
    /// The aggregate id; equal to the Kafka key.
    pub subject: String,
    pub time: DateTime<Utc>,
    #[serde(default = "json_content_type")]
    pub datacontenttype: String,
    pub data: T,
}

fn json_content_type() -> String {
    "application/json".to_owned()
}

/// Why a record could not be read as the expected event.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("record is not a CloudEvents JSON envelope: {0}")]
    Malformed(#[source] serde_json::Error),
    #[error("unsupported CloudEvents specversion {0:?}")]
    SpecVersion(String),
    #[error("event type {found:?} is not {expected:?}")]
    WrongType {
        expected: &'static str,
        found: String,
    },
    #[error("data of {event_type} does not match its schema: {source}")]
    Data {
        event_type: String,
        #[source]
        source: serde_json::Error,
    },
}

impl<T: EventData> CloudEvent<T> {
    /// Wraps `data` in a new envelope with a fresh id and the current time.
    pub fn new(source: &str, subject: impl Into<String>, data: T) -> Self {
        Self {
            specversion: SPEC_VERSION.to_owned(),
            id: Uuid::now_v7(),
            source: source.to_owned(),
            event_type: T::TYPE.to_owned(),
            subject: subject.into(),
            time: Utc::now(),
            datacontenttype: json_content_type(),
            data,
        }
    }

    /// The envelope with its data as untyped JSON, for storage in an outbox.
    pub fn into_untyped(self) -> Result<CloudEvent, serde_json::Error> {
        Ok(CloudEvent {
            specversion: self.specversion,
            id: self.id,
            source: self.source,
            event_type: self.event_type,
            subject: self.subject,
            time: self.time,
            datacontenttype: self.datacontenttype,
            data: serde_json::to_value(self.data)?,
        })
    }
}

impl CloudEvent {
    /// Reads an envelope from a record's bytes, checking the spec version.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        let event: CloudEvent = serde_json::from_slice(bytes).map_err(EnvelopeError::Malformed)?;
        if event.specversion != SPEC_VERSION {
            return Err(EnvelopeError::SpecVersion(event.specversion));
        }
        Ok(event)
    }

    /// Decodes the data as `T`, after checking the envelope carries `T`'s type.
    pub fn decode<T: EventData>(&self) -> Result<CloudEvent<T>, EnvelopeError> {
        if self.event_type != T::TYPE {
            return Err(EnvelopeError::WrongType {
                expected: T::TYPE,
                found: self.event_type.clone(),
            });
        }
        let data = T::deserialize(&self.data).map_err(|source| EnvelopeError::Data {
            event_type: self.event_type.clone(),
            source,
        })?;
        Ok(CloudEvent {
            specversion: self.specversion.clone(),
            id: self.id,
            source: self.source.clone(),
            event_type: self.event_type.clone(),
            subject: self.subject.clone(),
            time: self.time,
            datacontenttype: self.datacontenttype.clone(),
            data,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::user::UserRegistered;

    /// Tests return errors instead of unwrapping so a failure names its cause.
    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn registered() -> UserRegistered {
        UserRegistered {
            user_id: Uuid::nil(),
            email: "ada@example.com".into(),
            name: "Ada".into(),
            phone: None,
            locale: "en".into(),
            role: "customer".into(),
            method: crate::user::SignInMethod::Password,
        }
    }

    #[test]
    fn envelope_round_trips_through_json_with_cloudevents_field_names() -> TestResult {
        let event = CloudEvent::new("/user-service", "42", registered());
        let json = serde_json::to_value(event.clone().into_untyped()?)?;
        assert_eq!(json["specversion"], "1.0");
        assert_eq!(json["type"], "user.registered.v1");
        assert_eq!(json["subject"], "42");
        let back =
            CloudEvent::from_slice(&serde_json::to_vec(&json)?)?.decode::<UserRegistered>()?;
        assert_eq!(back, event);
        Ok(())
    }

    #[test]
    fn decoding_as_the_wrong_type_is_an_error_not_a_silent_default() -> TestResult {
        let event = CloudEvent::new("/user-service", "42", registered()).into_untyped()?;
        let err = event.decode::<crate::user::UserLoggedIn>();
        assert!(matches!(err, Err(EnvelopeError::WrongType { .. })));
        Ok(())
    }

    #[test]
    fn other_spec_versions_are_refused() {
        let raw = br#"{"specversion":"0.3","id":"00000000-0000-0000-0000-000000000000","source":"/x","type":"t","subject":"s","time":"2024-01-01T00:00:00Z","data":{}}"#;
        assert!(matches!(
            CloudEvent::from_slice(raw),
            Err(EnvelopeError::SpecVersion(v)) if v == "0.3"
        ));
    }
}
