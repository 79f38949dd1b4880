//! A DMN decision table evaluated in the calling process, from the same XML the engine runs.
//!
//! Why: a decision on a hot path (the risk check of every new order) cost an HTTP round trip
//! to the engine's JVM, 11-21 ms at the median and 70-90 ms at p99 on a loaded two-core box,
//! and the engine's CPU with it. The rules stay where operations edit and see them, in the
//! engine: the caller fetches the deployed XML ([`crate::EngineClient::decision_xml`]) and
//! evaluates it here in microseconds.
//!
//! The evaluator knows a subset of DMN ([`feel`] lists the FEEL it reads): one decision table
//! with hit policy FIRST, UNIQUE, ANY, RULE ORDER or COLLECT without aggregation, literal
//! outputs. A table outside the subset is refused when parsed ([`TableError::Unsupported`]),
//! and an evaluation whose FEEL answer the subset cannot be sure of (a null input against a
//! comparison, mixed types, a missing variable) is refused when evaluated
//! ([`Unanswerable`]): in both cases the caller asks the engine, so a decision is never
//! answered differently from the engine. The engine's own tests compare both answers
//! (crates/workflow/tests/engine/decisions.rs).

mod feel;

pub use feel::Unanswerable;
use feel::{Expression, FeelValue, InputEntry};

use crate::{Variable, Variables};

/// Why a table cannot be evaluated here.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("the decision XML does not parse: {0}")]
    Xml(#[from] roxmltree::Error),
    #[error("no decision table with id {0:?} in the XML")]
    NotFound(String),
    #[error("{0}")]
    Malformed(String),
    /// Valid DMN that this evaluator does not know; the engine evaluates it.
    #[error("outside the in-process subset at {place}: {what}")]
    Unsupported { place: String, what: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HitPolicy {
    First,
    Unique,
    Any,
    /// RULE ORDER and COLLECT without aggregation: every match, in rule order.
    All,
}

#[derive(Debug, Clone)]
struct Rule {
    id: String,
    inputs: Vec<InputEntry>,
    outputs: Vec<FeelValue>,
}

/// A parsed decision table.
#[derive(Debug, Clone)]
pub struct DecisionTable {
    decision_id: String,
    hit_policy: HitPolicy,
    inputs: Vec<Expression>,
    output_names: Vec<String>,
    rules: Vec<Rule>,
}

/// FEEL's namespace URIs (DMN 1.1 to 1.5) and the engine's short name: any other expression
/// language (JUEL, JavaScript) is the engine's.
fn is_feel(language: &str) -> bool {
    let lower = language.to_ascii_lowercase();
    lower == "feel" || lower.contains("/feel")
}

fn unsupported(place: &str, what: impl Into<String>) -> TableError {
    TableError::Unsupported {
        place: place.to_owned(),
        what: what.into(),
    }
}

fn children<'a, 'input>(
    node: roxmltree::Node<'a, 'input>,
    name: &'static str,
) -> impl Iterator<Item = roxmltree::Node<'a, 'input>> {
    node.children()
        .filter(move |c| c.is_element() && c.tag_name().name() == name)
}

/// The text of `node`'s `<text>` child ("" when there is none).
fn text_of(node: roxmltree::Node<'_, '_>) -> String {
    children(node, "text")
        .next()
        .and_then(|t| t.text())
        .unwrap_or_default()
        .to_owned()
}

impl DecisionTable {
    /// The table of decision `decision_id` in a DMN document.
    pub fn parse(xml: &str, decision_id: &str) -> Result<Self, TableError> {
        let document = roxmltree::Document::parse(xml)?;
        if let Some(node) = document.descendants().find(|n| {
            n.attribute("expressionLanguage")
                .is_some_and(|language| !is_feel(language))
        }) {
            return Err(unsupported(
                node.attribute("id").unwrap_or(node.tag_name().name()),
                format!(
                    "expression language {:?}",
                    node.attribute("expressionLanguage").unwrap_or_default()
                ),
            ));
        }
        let decision = document
            .descendants()
            .find(|n| n.tag_name().name() == "decision" && n.attribute("id") == Some(decision_id))
            .ok_or_else(|| TableError::NotFound(decision_id.to_owned()))?;
        if children(decision, "informationRequirement")
            .next()
            .is_some()
        {
            return Err(unsupported(
                decision_id,
                "a decision that requires other decisions or inputs",
            ));
        }
        let table = children(decision, "decisionTable")
            .next()
            .ok_or_else(|| unsupported(decision_id, "a decision that is not a decision table"))?;
        let hit_policy = match (
            table.attribute("hitPolicy").unwrap_or("UNIQUE"),
            table.attribute("aggregation"),
        ) {
            ("FIRST", None) => HitPolicy::First,
            ("UNIQUE", None) => HitPolicy::Unique,
            ("ANY", None) => HitPolicy::Any,
            ("RULE ORDER" | "COLLECT", None) => HitPolicy::All,
            (policy, aggregation) => {
                return Err(unsupported(
                    decision_id,
                    format!("hit policy {policy} {}", aggregation.unwrap_or_default()),
                ));
            }
        };
        let inputs = children(table, "input")
            .map(|input| {
                let place = input.attribute("id").unwrap_or("an input");
                let expression = children(input, "inputExpression")
                    .next()
                    .ok_or_else(|| TableError::Malformed(format!("{place} has no expression")))?;
                Expression::parse(&text_of(expression)).map_err(|what| unsupported(place, what))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let output_names = children(table, "output")
            .map(|output| {
                output.attribute("name").map(str::to_owned).ok_or_else(|| {
                    unsupported(
                        output.attribute("id").unwrap_or("an output"),
                        "an output without a name",
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let rules = children(table, "rule")
            .enumerate()
            .map(|(index, rule)| {
                let id = rule
                    .attribute("id")
                    .map_or_else(|| format!("rule {}", index + 1), str::to_owned);
                let inputs = children(rule, "inputEntry")
                    .map(|entry| {
                        InputEntry::parse(&text_of(entry)).map_err(|what| unsupported(&id, what))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let outputs = children(rule, "outputEntry")
                    .map(|entry| {
                        let text = text_of(entry);
                        if text.trim().is_empty() {
                            Ok(FeelValue::Null)
                        } else {
                            feel::literal(&text).map_err(|what| unsupported(&id, what))
                        }
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Rule {
                    id,
                    inputs,
                    outputs,
                })
            })
            .collect::<Result<Vec<_>, TableError>>()?;
        let table = Self {
            decision_id: decision_id.to_owned(),
            hit_policy,
            inputs,
            output_names,
            rules,
        };
        table.check_shape()?;
        Ok(table)
    }

    fn check_shape(&self) -> Result<(), TableError> {
        if self.output_names.is_empty() {
            return Err(TableError::Malformed(format!(
                "{} has no output",
                self.decision_id
            )));
        }
        for rule in &self.rules {
            if rule.inputs.len() != self.inputs.len()
                || rule.outputs.len() != self.output_names.len()
            {
                return Err(TableError::Malformed(format!(
                    "{} has {} input and {} output entries; the table has {} inputs and {} outputs",
                    rule.id,
                    rule.inputs.len(),
                    rule.outputs.len(),
                    self.inputs.len(),
                    self.output_names.len()
                )));
            }
        }
        Ok(())
    }

    pub fn decision_id(&self) -> &str {
        &self.decision_id
    }

    /// The outputs of the matching rules, shaped as the engine's evaluate endpoint answers
    /// (one map per matched rule; none when nothing matched).
    pub fn evaluate(&self, variables: &Variables) -> Result<Vec<Variables>, Unanswerable> {
        let lookup = |name: &str| variables.get(name).and_then(FeelValue::from_json);
        let values = self
            .inputs
            .iter()
            .map(|input| input.evaluate(&lookup))
            .collect::<Result<Vec<_>, _>>()?;
        let mut matched = Vec::new();
        for rule in &self.rules {
            let mut hit = true;
            for (entry, value) in rule.inputs.iter().zip(&values) {
                if !entry.matches(value)? {
                    hit = false;
                    break;
                }
            }
            if hit {
                matched.push(rule);
                if self.hit_policy == HitPolicy::First {
                    break;
                }
            }
        }
        match self.hit_policy {
            HitPolicy::Unique if matched.len() > 1 => {
                return Err(Unanswerable(format!(
                    "hit policy UNIQUE, but {} rules match",
                    matched.len()
                )));
            }
            HitPolicy::Any => {
                if matched
                    .windows(2)
                    .any(|pair| pair[0].outputs != pair[1].outputs)
                {
                    return Err(Unanswerable(
                        "hit policy ANY, but the matches disagree".into(),
                    ));
                }
                matched.truncate(1);
            }
            _ => {}
        }
        Ok(matched
            .into_iter()
            .map(|rule| self.outputs_of(rule))
            .collect())
    }

    fn outputs_of(&self, rule: &Rule) -> Variables {
        Variables(
            self.output_names
                .iter()
                .zip(&rule.outputs)
                .map(|(name, value)| {
                    let variable = Variable {
                        value: value.to_json(),
                        kind: Some(value.engine_type().to_owned()),
                    };
                    (name.clone(), variable)
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORDER_RISK: &str = include_str!("../../../../workflow/models/order-risk.dmn");
    const REFUND_APPROVAL: &str = include_str!("../../../../workflow/models/refund-approval.dmn");

    fn risk(
        table: &DecisionTable,
        amount: i64,
        age: i32,
        velocity: i32,
        country: &str,
    ) -> Result<(String, String), Unanswerable> {
        let results = table.evaluate(
            &Variables::new()
                .long("amount", amount)
                .long("reviewAmount", 10_000)
                .integer("accountAgeDays", age)
                .integer("ordersLastHour", velocity)
                .string("shippingCountry", country),
        )?;
        let first = results.first();
        let text = |name| {
            first
                .and_then(|r| r.get(name))
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_owned()
        };
        Ok((text("outcome"), text("reason")))
    }

    #[test]
    fn the_order_risk_table_of_the_repository_evaluates_rule_by_rule() -> anyhow::Result<()> {
        let table = DecisionTable::parse(ORDER_RISK, "order-risk")?;
        let cases = [
            (10_000, 400, 0, "DE", "review", "large_amount"),
            (9_999, 400, 0, "DE", "accept", "low_risk"),
            (5_000, 0, 0, "DE", "review", "new_account"),
            (4_999, 0, 0, "DE", "accept", "low_risk"),
            (1_000, 30, 5, "FR", "review", "order_velocity"),
            (999, 30, 9, "FR", "accept", "low_risk"),
            (2_500, 30, 0, "BR", "review", "shipping_country"),
            (2_499, 30, 0, "BR", "accept", "low_risk"),
            (0, 0, 0, "ZZ", "accept", "low_risk"),
        ];
        for (amount, age, velocity, country, outcome, reason) in cases {
            assert_eq!(
                risk(&table, amount, age, velocity, country)?,
                (outcome.to_owned(), reason.to_owned()),
                "{amount} {age} {velocity} {country}"
            );
        }
        Ok(())
    }

    #[test]
    fn the_refund_approval_table_parses_and_answers_with_typed_outputs() -> anyhow::Result<()> {
        let table = DecisionTable::parse(REFUND_APPROVAL, "refund-approval")?;
        let results = table.evaluate(
            &Variables::new()
                .long("amount", 20_001)
                .integer("recentRefunds", 0)
                .string("reason", "damaged"),
        )?;
        assert_eq!(results.len(), 1);
        assert_eq!(results[0].get_str("outcome")?, "review");
        assert_eq!(
            results[0].0.get("outcome").and_then(|v| v.kind.as_deref()),
            Some("String")
        );
        Ok(())
    }

    #[test]
    fn answers_the_engine_must_give_are_left_to_it() -> anyhow::Result<()> {
        let table = DecisionTable::parse(ORDER_RISK, "order-risk")?;
        // No shipping country: a missing variable.
        let missing = table.evaluate(&Variables::new().long("amount", 1).long("reviewAmount", 2));
        assert!(missing.is_err());
        // A number where the table compares strings (only reached when earlier rules miss).
        let mixed = table.evaluate(
            &Variables::new()
                .long("amount", 1)
                .long("reviewAmount", 10_000)
                .integer("accountAgeDays", 9)
                .integer("ordersLastHour", 0)
                .long("shippingCountry", 49),
        );
        assert!(
            mixed.is_ok(),
            "the country rule is not reached below a quarter: {mixed:?}"
        );
        let mixed = table.evaluate(
            &Variables::new()
                .long("amount", 5_000)
                .long("reviewAmount", 10_000)
                .integer("accountAgeDays", 9)
                .integer("ordersLastHour", 0)
                .long("shippingCountry", 49),
        );
        assert!(mixed.is_err());
        Ok(())
    }

    fn table_with(hit_policy: &str, entries: &[(&str, &str)]) -> String {
        let rules: String = entries
            .iter()
            .enumerate()
            .map(|(i, (input, output))| {
                format!(
                    r#"<rule id="r{i}"><inputEntry><text>{input}</text></inputEntry><outputEntry><text>{output}</text></outputEntry></rule>"#
                )
            })
            .collect();
        format!(
            r#"<definitions xmlns="https://www.omg.org/spec/DMN/20191111/MODEL/"><decision id="d"><decisionTable {hit_policy}>
            <input id="i"><inputExpression typeRef="integer"><text>x</text></inputExpression></input>
            <output id="o" name="y"/>{rules}</decisionTable></decision></definitions>"#
        )
    }

    fn answers(table: &DecisionTable, x: i64) -> Result<Vec<serde_json::Value>, Unanswerable> {
        Ok(table
            .evaluate(&Variables::new().long("x", x))?
            .iter()
            .filter_map(|r| r.get("y").cloned())
            .collect())
    }

    #[test]
    fn hit_policies_pick_matches_as_dmn_defines() -> anyhow::Result<()> {
        let rules = [("&lt; 10", "1"), ("&lt; 5", "2"), ("", "3")];
        let first = DecisionTable::parse(&table_with(r#"hitPolicy="FIRST""#, &rules), "d")?;
        assert_eq!(answers(&first, 3)?, vec![serde_json::json!(1)]);
        let all = DecisionTable::parse(&table_with(r#"hitPolicy="RULE ORDER""#, &rules), "d")?;
        assert_eq!(
            answers(&all, 3)?,
            vec![
                serde_json::json!(1),
                serde_json::json!(2),
                serde_json::json!(3)
            ]
        );
        let unique = DecisionTable::parse(&table_with("", &rules), "d")?;
        assert!(answers(&unique, 3).is_err());
        let any = DecisionTable::parse(
            &table_with(
                r#"hitPolicy="ANY""#,
                &[("&lt; 10", "\"a\""), ("&lt; 5", "\"a\"")],
            ),
            "d",
        )?;
        assert_eq!(answers(&any, 3)?, vec![serde_json::json!("a")]);
        let none = DecisionTable::parse(
            &table_with(r#"hitPolicy="FIRST""#, &[("&gt; 10", "1")]),
            "d",
        )?;
        assert_eq!(answers(&none, 3)?, Vec::<serde_json::Value>::new());
        Ok(())
    }

    #[test]
    fn tables_outside_the_subset_are_refused_with_the_place() {
        let cases = [
            table_with(r#"hitPolicy="COLLECT" aggregation="SUM""#, &[("", "1")]),
            table_with(r#"hitPolicy="PRIORITY""#, &[("", "1")]),
            table_with(r#"hitPolicy="FIRST""#, &[("date(\"2026-01-01\")", "1")]),
            table_with(r#"hitPolicy="FIRST""#, &[("", "x + 1")]),
            table_with(r#"hitPolicy="FIRST""#, &[("", "1")]).replace(
                "<inputExpression ",
                r#"<inputExpression expressionLanguage="juel" "#,
            ),
        ];
        for xml in cases {
            let parsed = DecisionTable::parse(&xml, "d");
            assert!(
                matches!(parsed, Err(TableError::Unsupported { .. })),
                "{parsed:?} for {xml}"
            );
        }
        assert!(matches!(
            DecisionTable::parse(&table_with("", &[]), "other"),
            Err(TableError::NotFound(_))
        ));
        assert!(matches!(
            DecisionTable::parse("<definitions", "d"),
            Err(TableError::Xml(_))
        ));
    }
}
