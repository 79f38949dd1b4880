//! The part of FEEL (DMN's expression language) that decision tables of this kind use:
//! literals, names and arithmetic in input expressions; comparisons, intervals, lists and
//! `not(...)` in input entries. Anything else is refused when the table is parsed, so a table
//! is either evaluated exactly as the engine would or not evaluated here at all.
//!
//! Numbers are exact rationals (FEEL numbers are decimals; the engine computes with 34
//! significant digits). `amount / reviewAmount >= 0.1` must hold for 1,000 / 10,000 exactly as
//! it does in the engine, which binary floating point would not promise at every boundary.

use std::cmp::Ordering;

use serde_json::Value;

/// An exact number: `numerator / denominator`, reduced, denominator positive. Arithmetic that
/// would overflow 128 bits answers `None` (the caller then leaves the evaluation to the
/// engine).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Number {
    numerator: i128,
    denominator: i128,
}

fn gcd(mut a: i128, mut b: i128) -> i128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a.abs()
}

impl Number {
    fn new(numerator: i128, denominator: i128) -> Option<Self> {
        if denominator == 0 {
            return None;
        }
        let divisor = gcd(numerator, denominator).max(1);
        let sign = if denominator < 0 { -1 } else { 1 };
        Some(Self {
            numerator: numerator.checked_div(divisor)?.checked_mul(sign)?,
            denominator: denominator.checked_div(divisor)?.checked_mul(sign)?,
        })
    }

    pub fn integer(value: i64) -> Self {
        Self {
            numerator: i128::from(value),
            denominator: 1,
        }
    }

    /// A decimal literal: `12`, `-3`, `0.25`, `.5`. No exponent (FEEL has none).
    pub fn parse(text: &str) -> Option<Self> {
        let (negative, digits) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
        if whole.is_empty() && fraction.is_empty()
            || !whole
                .bytes()
                .chain(fraction.bytes())
                .all(|b| b.is_ascii_digit())
            || fraction.len() > 30
        {
            return None;
        }
        let mut numerator: i128 = 0;
        for b in whole.bytes().chain(fraction.bytes()) {
            numerator = numerator
                .checked_mul(10)?
                .checked_add(i128::from(b - b'0'))?;
        }
        let denominator = 10_i128.checked_pow(u32::try_from(fraction.len()).ok()?)?;
        Self::new(if negative { -numerator } else { numerator }, denominator)
    }

    /// A JSON number, exactly: integers as they are, others through their decimal text.
    pub fn from_json(number: &serde_json::Number) -> Option<Self> {
        match number.as_i64() {
            Some(i) => Some(Self::integer(i)),
            None => Self::parse(&number.to_string()),
        }
    }

    pub fn add(self, other: Self) -> Option<Self> {
        Self::new(
            self.numerator
                .checked_mul(other.denominator)?
                .checked_add(other.numerator.checked_mul(self.denominator)?)?,
            self.denominator.checked_mul(other.denominator)?,
        )
    }

    pub fn negate(self) -> Option<Self> {
        Self::new(self.numerator.checked_neg()?, self.denominator)
    }

    pub fn multiply(self, other: Self) -> Option<Self> {
        Self::new(
            self.numerator.checked_mul(other.numerator)?,
            self.denominator.checked_mul(other.denominator)?,
        )
    }

    /// `None` for a division by zero as well: FEEL's answer to it is null.
    pub fn divide(self, other: Self) -> Option<Self> {
        Self::new(
            self.numerator.checked_mul(other.denominator)?,
            self.denominator.checked_mul(other.numerator)?,
        )
    }

    pub fn compare(self, other: Self) -> Option<Ordering> {
        let left = self.numerator.checked_mul(other.denominator)?;
        let right = other.numerator.checked_mul(self.denominator)?;
        Some(left.cmp(&right))
    }

    /// As JSON: an integer when it is one and fits, else the nearest double.
    pub fn to_json(self) -> Value {
        if self.denominator == 1
            && let Ok(i) = i64::try_from(self.numerator)
        {
            return Value::from(i);
        }
        // Lossy only for numbers that are no integer; outputs of our tables are literals.
        #[allow(clippy::cast_precision_loss)]
        let approximate = self.numerator as f64 / self.denominator as f64;
        Value::from(approximate)
    }
}

/// A FEEL value of the kinds this subset knows.
#[derive(Debug, Clone, PartialEq)]
pub enum FeelValue {
    Null,
    Number(Number),
    String(String),
    Boolean(bool),
}

impl FeelValue {
    /// A variable's JSON value; `None` for kinds outside the subset (lists, contexts, dates).
    pub fn from_json(value: &Value) -> Option<Self> {
        match value {
            Value::Null => Some(Self::Null),
            Value::Bool(b) => Some(Self::Boolean(*b)),
            Value::Number(n) => Number::from_json(n).map(Self::Number),
            Value::String(s) => Some(Self::String(s.clone())),
            Value::Array(_) | Value::Object(_) => None,
        }
    }

    pub fn to_json(&self) -> Value {
        match self {
            Self::Null => Value::Null,
            Self::Number(n) => n.to_json(),
            Self::String(s) => Value::String(s.clone()),
            Self::Boolean(b) => Value::Bool(*b),
        }
    }

    /// The engine's name of the value's type, as its REST API reports outputs.
    pub fn engine_type(&self) -> &'static str {
        match self {
            Self::Null => "Null",
            Self::Number(n) if n.denominator == 1 => "Long",
            Self::Number(_) => "Double",
            Self::String(_) => "String",
            Self::Boolean(_) => "Boolean",
        }
    }
}

/// Why a text is outside the subset.
pub type Refusal = String;

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Name(String),
    Literal(FeelValue),
    Operator(char),
    Open,
    Close,
}

/// Splits an expression into tokens; names are letters, digits and `_` (FEEL allows more, such
/// as spaces inside names, which this subset refuses rather than guesses).
fn tokens(text: &str) -> Result<Vec<Token>, Refusal> {
    let mut out = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some(&(start, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '"' {
            chars.next();
            out.push(Token::Literal(FeelValue::String(string_body(&mut chars)?)));
        } else if c.is_ascii_digit() || c == '.' {
            let mut end = start;
            while let Some(&(i, d)) = chars.peek() {
                if d.is_ascii_digit() || d == '.' {
                    end = i + d.len_utf8();
                    chars.next();
                } else {
                    break;
                }
            }
            let literal = &text[start..end];
            let number = Number::parse(literal).ok_or_else(|| format!("the number {literal:?}"))?;
            out.push(Token::Literal(FeelValue::Number(number)));
        } else if c.is_alphabetic() || c == '_' {
            let mut end = start;
            while let Some(&(i, d)) = chars.peek() {
                if d.is_alphanumeric() || d == '_' {
                    end = i + d.len_utf8();
                    chars.next();
                } else {
                    break;
                }
            }
            out.push(match &text[start..end] {
                "true" => Token::Literal(FeelValue::Boolean(true)),
                "false" => Token::Literal(FeelValue::Boolean(false)),
                "null" => Token::Literal(FeelValue::Null),
                name => Token::Name(name.to_owned()),
            });
        } else if matches!(c, '+' | '-' | '*' | '/') {
            chars.next();
            out.push(Token::Operator(c));
        } else if c == '(' {
            chars.next();
            out.push(Token::Open);
        } else if c == ')' {
            chars.next();
            out.push(Token::Close);
        } else {
            return Err(format!("the character {c:?}"));
        }
    }
    Ok(out)
}

/// The rest of a string literal after its opening quote; `\"` and `\\` are escapes.
fn string_body(
    chars: &mut std::iter::Peekable<std::str::CharIndices<'_>>,
) -> Result<String, Refusal> {
    let mut body = String::new();
    while let Some((_, c)) = chars.next() {
        match c {
            '"' => return Ok(body),
            '\\' => match chars.next() {
                Some((_, e @ ('"' | '\\'))) => body.push(e),
                _ => return Err("an escape other than \\\" or \\\\".into()),
            },
            c => body.push(c),
        }
    }
    Err("an unterminated string".into())
}

/// An input expression: literals, names, `+ - * /`, unary minus and parentheses.
#[derive(Debug, Clone, PartialEq)]
pub enum Expression {
    Literal(FeelValue),
    Name(String),
    Negate(Box<Expression>),
    Binary(Box<Expression>, char, Box<Expression>),
}

/// Why an evaluation cannot be answered here (the caller asks the engine instead).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unanswerable(pub String);

impl Expression {
    pub fn parse(text: &str) -> Result<Self, Refusal> {
        let tokens = tokens(text)?;
        let mut position = 0;
        let expression = Self::sum(&tokens, &mut position)?;
        if position != tokens.len() {
            return Err(format!("the expression {text:?}"));
        }
        Ok(expression)
    }

    fn sum(tokens: &[Token], position: &mut usize) -> Result<Self, Refusal> {
        let mut left = Self::product(tokens, position)?;
        while let Some(Token::Operator(op @ ('+' | '-'))) = tokens.get(*position) {
            *position += 1;
            let right = Self::product(tokens, position)?;
            left = Self::Binary(Box::new(left), *op, Box::new(right));
        }
        Ok(left)
    }

    fn product(tokens: &[Token], position: &mut usize) -> Result<Self, Refusal> {
        let mut left = Self::unary(tokens, position)?;
        while let Some(Token::Operator(op @ ('*' | '/'))) = tokens.get(*position) {
            *position += 1;
            let right = Self::unary(tokens, position)?;
            left = Self::Binary(Box::new(left), *op, Box::new(right));
        }
        Ok(left)
    }

    fn unary(tokens: &[Token], position: &mut usize) -> Result<Self, Refusal> {
        let token = tokens
            .get(*position)
            .ok_or_else(|| "an incomplete expression".to_owned())?;
        *position += 1;
        match token {
            Token::Operator('-') => Ok(Self::Negate(Box::new(Self::unary(tokens, position)?))),
            Token::Literal(value) => Ok(Self::Literal(value.clone())),
            Token::Name(name) => Ok(Self::Name(name.clone())),
            Token::Open => {
                let inner = Self::sum(tokens, position)?;
                match tokens.get(*position) {
                    Some(Token::Close) => {
                        *position += 1;
                        Ok(inner)
                    }
                    _ => Err("an unclosed parenthesis".into()),
                }
            }
            other => Err(format!("{other:?} where a value belongs")),
        }
    }

    /// The value with `lookup` giving each name's value (`None`: the variable is missing).
    pub fn evaluate(
        &self,
        lookup: &dyn Fn(&str) -> Option<FeelValue>,
    ) -> Result<FeelValue, Unanswerable> {
        match self {
            Self::Literal(value) => Ok(value.clone()),
            Self::Name(name) => lookup(name)
                .ok_or_else(|| Unanswerable(format!("the variable {name:?} is missing"))),
            Self::Negate(inner) => match inner.evaluate(lookup)? {
                FeelValue::Null => Ok(FeelValue::Null),
                FeelValue::Number(n) => n
                    .negate()
                    .map(FeelValue::Number)
                    .ok_or_else(|| Unanswerable("a number out of range".into())),
                other => Err(Unanswerable(format!("minus applied to {other:?}"))),
            },
            Self::Binary(left, op, right) => {
                let (left, right) = (left.evaluate(lookup)?, right.evaluate(lookup)?);
                let (a, b) = match (&left, &right) {
                    (FeelValue::Null, _) | (_, FeelValue::Null) => return Ok(FeelValue::Null),
                    (FeelValue::Number(a), FeelValue::Number(b)) => (*a, *b),
                    _ => {
                        return Err(Unanswerable(format!("{op} between {left:?} and {right:?}")));
                    }
                };
                let result = match op {
                    '+' => a.add(b),
                    '-' => b.negate().and_then(|b| a.add(b)),
                    '*' => a.multiply(b),
                    _ if b == Number::integer(0) => return Ok(FeelValue::Null),
                    _ => a.divide(b),
                };
                result
                    .map(FeelValue::Number)
                    .ok_or_else(|| Unanswerable("a number out of range".into()))
            }
        }
    }
}

/// A literal on its own (an output entry, an endpoint): `"text"`, a number, `true`, `false`,
/// `null`.
pub fn literal(text: &str) -> Result<FeelValue, Refusal> {
    match Expression::parse(text)? {
        Expression::Literal(value) => Ok(value),
        Expression::Negate(inner) => match *inner {
            Expression::Literal(FeelValue::Number(n)) => n
                .negate()
                .map(FeelValue::Number)
                .ok_or_else(|| format!("the number {text:?}")),
            _ => Err(format!("{text:?} is not a literal")),
        },
        _ => Err(format!("{text:?} is not a literal")),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    Less,
    LessOrEqual,
    Greater,
    GreaterOrEqual,
}

#[derive(Debug, Clone, PartialEq)]
pub enum UnaryTest {
    /// A literal the input must equal.
    Equal(FeelValue),
    Compare(Comparison, Number),
    /// Numbers between two ends, each included or not.
    Interval {
        low: Number,
        low_included: bool,
        high: Number,
        high_included: bool,
    },
}

/// An input entry: `-` or empty (anything), a list of tests (any may match), or `not(list)`.
#[derive(Debug, Clone, PartialEq)]
pub enum InputEntry {
    Any,
    OneOf(Vec<UnaryTest>),
    NoneOf(Vec<UnaryTest>),
}

/// Splits at commas outside strings and brackets.
fn top_level_items(text: &str) -> Vec<&str> {
    let (mut items, mut depth, mut in_string, mut escaped, mut start) =
        (Vec::new(), 0, false, false, 0);
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_string => escaped = true,
            '"' => in_string = !in_string,
            '(' | '[' if !in_string => depth += 1,
            ')' | ']' if !in_string => depth -= 1,
            ',' if !in_string && depth == 0 => {
                items.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&text[start..]);
    items
}

fn number_literal(text: &str) -> Result<Number, Refusal> {
    match literal(text.trim())? {
        FeelValue::Number(n) => Ok(n),
        _ => Err(format!("{text:?} is not a number")),
    }
}

fn unary_test(text: &str) -> Result<UnaryTest, Refusal> {
    let text = text.trim();
    for (prefix, comparison) in [
        ("<=", Comparison::LessOrEqual),
        (">=", Comparison::GreaterOrEqual),
        ("<", Comparison::Less),
        (">", Comparison::Greater),
    ] {
        if let Some(rest) = text.strip_prefix(prefix) {
            return Ok(UnaryTest::Compare(comparison, number_literal(rest)?));
        }
    }
    if let Some(opening @ ('[' | '(' | ']')) = text.chars().next() {
        let interval = || format!("the interval {text:?}");
        // Every opening and closing bracket is one byte, so the slice is on char boundaries.
        let closing = text.chars().last().filter(|c| matches!(c, ']' | ')' | '['));
        let (Some(closing), true) = (closing, text.len() >= 2) else {
            return Err(interval());
        };
        let (low, high) = text[1..text.len() - 1]
            .split_once("..")
            .ok_or_else(interval)?;
        return Ok(UnaryTest::Interval {
            low: number_literal(low)?,
            low_included: opening == '[',
            high: number_literal(high)?,
            high_included: closing == ']',
        });
    }
    Ok(UnaryTest::Equal(literal(text)?))
}

impl InputEntry {
    pub fn parse(text: &str) -> Result<Self, Refusal> {
        let text = text.trim();
        if text.is_empty() || text == "-" {
            return Ok(Self::Any);
        }
        let (negated, list) = match text.strip_prefix("not(").and_then(|t| t.strip_suffix(')')) {
            Some(inner) => (true, inner),
            None => (false, text),
        };
        let tests = top_level_items(list)
            .into_iter()
            .map(unary_test)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(if negated {
            Self::NoneOf(tests)
        } else {
            Self::OneOf(tests)
        })
    }

    /// Whether `input` passes. Cases whose FEEL answer would be null or whose types do not
    /// match (a string against a comparison) are unanswerable here: the engine decides them.
    pub fn matches(&self, input: &FeelValue) -> Result<bool, Unanswerable> {
        let any = |tests: &[UnaryTest]| -> Result<bool, Unanswerable> {
            for test in tests {
                if test.matches(input)? {
                    return Ok(true);
                }
            }
            Ok(false)
        };
        match self {
            Self::Any => Ok(true),
            Self::OneOf(tests) => any(tests),
            Self::NoneOf(tests) => any(tests).map(|hit| !hit),
        }
    }
}

impl UnaryTest {
    fn matches(&self, input: &FeelValue) -> Result<bool, Unanswerable> {
        let unanswerable = || Unanswerable(format!("{input:?} against {self:?}"));
        let compare = |a: Number, b: Number| a.compare(b).ok_or_else(unanswerable);
        match (self, input) {
            (Self::Equal(expected), _) => match (expected, input) {
                (FeelValue::Number(a), FeelValue::Number(b)) => {
                    Ok(compare(*b, *a)? == Ordering::Equal)
                }
                (FeelValue::String(a), FeelValue::String(b)) => Ok(a == b),
                (FeelValue::Boolean(a), FeelValue::Boolean(b)) => Ok(a == b),
                (FeelValue::Null, FeelValue::Null) => Ok(true),
                _ => Err(unanswerable()),
            },
            (Self::Compare(comparison, bound), FeelValue::Number(value)) => {
                let order = compare(*value, *bound)?;
                Ok(match comparison {
                    Comparison::Less => order == Ordering::Less,
                    Comparison::LessOrEqual => order != Ordering::Greater,
                    Comparison::Greater => order == Ordering::Greater,
                    Comparison::GreaterOrEqual => order != Ordering::Less,
                })
            }
            (
                Self::Interval {
                    low,
                    low_included,
                    high,
                    high_included,
                },
                FeelValue::Number(value),
            ) => {
                let above = match compare(*value, *low)? {
                    Ordering::Greater => true,
                    Ordering::Equal => *low_included,
                    Ordering::Less => false,
                };
                let below = match compare(*value, *high)? {
                    Ordering::Less => true,
                    Ordering::Equal => *high_included,
                    Ordering::Greater => false,
                };
                Ok(above && below)
            }
            _ => Err(unanswerable()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn number(text: &str) -> Number {
        Number::parse(text).unwrap_or(Number::integer(i64::MIN))
    }

    #[test]
    fn numbers_are_exact_decimals() {
        assert_eq!(number("0.10"), number(".1"));
        assert_eq!(
            number("-2.5").compare(number("-2.50")),
            Some(Ordering::Equal)
        );
        let tenth = Number::integer(1_000).divide(Number::integer(10_000));
        assert_eq!(tenth, Some(number("0.1")));
        let third = Number::integer(1).divide(Number::integer(3));
        assert_eq!(
            third.and_then(|t| t.compare(number("0.3333333333"))),
            Some(Ordering::Greater)
        );
        for refused in ["", "-", "1e5", "1.2.3", "12a", "--1"] {
            assert_eq!(Number::parse(refused), None, "{refused}");
        }
    }

    #[test]
    fn expressions_follow_precedence_and_null_rules() -> Result<(), String> {
        let lookup = |name: &str| match name {
            "amount" => Some(FeelValue::Number(Number::integer(5_000))),
            "reviewAmount" => Some(FeelValue::Number(Number::integer(10_000))),
            "zero" => Some(FeelValue::Number(Number::integer(0))),
            "nothing" => Some(FeelValue::Null),
            "name" => Some(FeelValue::String("x".into())),
            _ => None,
        };
        let eval =
            |text: &str| Expression::parse(text).map(|e| e.evaluate(&lookup).map_err(|e| e.0));
        assert_eq!(
            eval("amount / reviewAmount")?,
            Ok(FeelValue::Number(number("0.5")))
        );
        assert_eq!(
            eval("1 + 2 * -(3 - 1)")?,
            Ok(FeelValue::Number(Number::integer(-3)))
        );
        assert_eq!(eval("amount / zero")?, Ok(FeelValue::Null));
        assert_eq!(eval("nothing + 1")?, Ok(FeelValue::Null));
        assert!(eval("name + 1")?.is_err());
        assert!(eval("unknown")?.is_err());
        for refused in [
            "amount >= 1",
            "date(\"2026-01-01\")",
            "a.b",
            "(1",
            "1 +",
            "[1]",
        ] {
            assert!(Expression::parse(refused).is_err(), "{refused}");
        }
        Ok(())
    }

    #[test]
    fn input_entries_match_as_feel_unary_tests() -> Result<(), String> {
        let n = |i: i64| FeelValue::Number(Number::integer(i));
        let s = |t: &str| FeelValue::String(t.into());
        let matches = |entry: &str, input: &FeelValue| {
            InputEntry::parse(entry).map(|e| e.matches(input).map_err(|e| e.0))
        };
        assert_eq!(matches("", &n(1))?, Ok(true));
        assert_eq!(matches("-", &s("x"))?, Ok(true));
        assert_eq!(matches(">= 5", &n(5))?, Ok(true));
        assert_eq!(matches("> 5", &n(5))?, Ok(false));
        assert_eq!(matches("< -1.5", &n(-2))?, Ok(true));
        assert_eq!(matches("<=0", &n(1))?, Ok(false));
        assert_eq!(matches("[1..10]", &n(10))?, Ok(true));
        assert_eq!(matches("[1..10)", &n(10))?, Ok(false));
        assert_eq!(matches("]1..10]", &n(1))?, Ok(false));
        assert_eq!(matches("(1..10]", &n(2))?, Ok(true));
        assert_eq!(matches("3, 5, >= 9", &n(9))?, Ok(true));
        assert_eq!(matches("3, 5, >= 9", &n(4))?, Ok(false));
        assert_eq!(matches(r#""DE","FR""#, &s("FR"))?, Ok(true));
        assert_eq!(matches(r#"not("DE", "FR")"#, &s("FR"))?, Ok(false));
        assert_eq!(matches(r#"not("DE", "FR")"#, &s("BR"))?, Ok(true));
        assert_eq!(matches(r#""a,b""#, &s("a,b"))?, Ok(true));
        assert_eq!(matches(r#""say \"hi\"""#, &s("say \"hi\""))?, Ok(true));
        assert_eq!(matches("true", &FeelValue::Boolean(true))?, Ok(true));
        // Null inputs and mixed types are the engine's to answer.
        assert!(matches(">= 1", &FeelValue::Null)?.is_err());
        assert!(matches(r#""DE""#, &n(1))?.is_err());
        for refused in [
            "? > 5",
            "date(\"2026-01-01\")",
            "[1..",
            "x",
            "> amount",
            "= 5",
        ] {
            assert!(InputEntry::parse(refused).is_err(), "{refused}");
        }
        Ok(())
    }
}
