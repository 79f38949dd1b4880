//! Process variables as the engine's REST API writes them: a map from name to
//! `{value, type}`. The type matters to the engine: a DMN input typed `long` or a gateway's
//! `${approved == true}` compares typed values, so every variable we send states its type.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One typed variable (`type` is the engine's name: String, Long, Integer, Boolean, Json, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Variable {
    pub value: Value,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// A set of typed variables, built with the typed setters and read with the typed getters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Variables(pub BTreeMap<String, Variable>);

impl Variables {
    pub fn new() -> Self {
        Self::default()
    }

    fn with(mut self, name: &str, value: Value, kind: &str) -> Self {
        self.0.insert(
            name.to_owned(),
            Variable {
                value,
                kind: Some(kind.to_owned()),
            },
        );
        self
    }

    pub fn string(self, name: &str, value: impl Into<String>) -> Self {
        self.with(name, Value::String(value.into()), "String")
    }
    /// A 64-bit integer (amounts in minor units).
    pub fn long(self, name: &str, value: i64) -> Self {
        self.with(name, Value::from(value), "Long")
    }
    pub fn integer(self, name: &str, value: i32) -> Self {
        self.with(name, Value::from(value), "Integer")
    }
    pub fn boolean(self, name: &str, value: bool) -> Self {
        self.with(name, Value::Bool(value), "Boolean")
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name).map(|v| &v.value)
    }

    /// A string variable; an error naming the variable when it is missing or not a string.
    pub fn get_str(&self, name: &str) -> anyhow::Result<&str> {
        self.get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow::anyhow!("process variable {name:?} is missing or not a string"))
    }

    /// An integer variable (Long or Integer).
    pub fn get_i64(&self, name: &str) -> anyhow::Result<i64> {
        self.get(name).and_then(Value::as_i64).ok_or_else(|| {
            anyhow::anyhow!("process variable {name:?} is missing or not an integer")
        })
    }

    pub fn get_bool(&self, name: &str) -> anyhow::Result<bool> {
        self.get(name)
            .and_then(Value::as_bool)
            .ok_or_else(|| anyhow::anyhow!("process variable {name:?} is missing or not a boolean"))
    }
}

#[cfg(test)]
mod tests {
    use super::Variables;

    #[test]
    fn serializes_as_the_engine_expects() -> anyhow::Result<()> {
        let vars = Variables::new()
            .string("reason", "damaged")
            .long("amount", 4_200)
            .boolean("approved", true);
        assert_eq!(
            serde_json::to_value(&vars)?,
            serde_json::json!({
                "amount": {"value": 4200, "type": "Long"},
                "approved": {"value": true, "type": "Boolean"},
                "reason": {"value": "damaged", "type": "String"},
            })
        );
        Ok(())
    }

    #[test]
    fn reads_typed_values_and_names_what_is_wrong() -> anyhow::Result<()> {
        let vars: Variables = serde_json::from_value(serde_json::json!({
            "orderId": {"value": "o-1", "type": "String", "valueInfo": {}},
            "amount": {"value": 12, "type": "Long", "valueInfo": {}},
        }))?;
        assert_eq!(vars.get_str("orderId")?, "o-1");
        assert_eq!(vars.get_i64("amount")?, 12);
        let error = vars.get_i64("orderId").err().map(|e| e.to_string());
        assert!(error.is_some_and(|e| e.contains("orderId")));
        assert!(vars.get_bool("missing").is_err());
        Ok(())
    }
}
