//! The one reader of the process environment: typed values (numbers, durations, on/off
//! switches, secrets, lists, "a URL or `off`") with their defaults, each failing in one line
//! that names the variable and the value it refused, so a typo stops a service at start
//! (`web::run_binary` prints it as `<service>: invalid configuration: ...`) instead of
//! surfacing later as odd behaviour.
//!
//! Each service's `config` module composes its `Config` from these readers and from the shared
//! pieces built on them (`web::ServerConfig`, `auth::JwtConfig`, `messaging::KafkaConfig`).
//! [`Env::process`] is the only place the process environment is read; clippy.toml disallows
//! it outside configuration modules, which is how configuration stays findable. Tests build an
//! [`Env`] from pairs instead, so every parser is checked without touching the process.
//!
//! A leaf crate (anyhow and secrecy only), so that `web`, `auth` and `messaging` can each add
//! their own piece without depending on one another.

use std::collections::HashMap;
use std::fmt::Display;
use std::ops::RangeInclusive;
use std::str::FromStr;
use std::time::Duration;

use anyhow::bail;
use secrecy::SecretString;

/// Variables by name. An unset variable and an empty one are the same: absent, so the default
/// applies (compose files and Helm charts often set `NAME=` to mean "not set").
pub struct Env {
    lookup: Lookup,
}

/// Where values come from: the process environment, or a test's pairs.
type Lookup = Box<dyn Fn(&str) -> Option<String> + Send + Sync>;

impl std::fmt::Debug for Env {
    /// Values may be secrets; never print them.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Env { .. }")
    }
}

impl Env {
    /// The process environment.
    #[allow(
        clippy::disallowed_methods,
        reason = "the one reader of the process environment; callers are configuration modules"
    )]
    pub fn process() -> Self {
        Self::from_fn(|name| std::env::var(name).ok())
    }

    /// Variables from `lookup` (e.g. a map in a test).
    pub fn from_fn(lookup: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> Self {
        Self {
            lookup: Box::new(lookup),
        }
    }

    /// Exactly these variables, for tests: `Env::from_pairs([("PORT", "8088")])`.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let vars: HashMap<String, String> = pairs
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect();
        Self::from_fn(move |name| vars.get(name).cloned())
    }

    /// The variable's value, unless it is unset or empty.
    pub fn get(&self, name: &str) -> Option<String> {
        (self.lookup)(name).filter(|value| !value.is_empty())
    }

    /// The variable's value, or `default`.
    pub fn string_or(&self, name: &str, default: &str) -> String {
        self.get(name).unwrap_or_else(|| default.to_owned())
    }

    /// A secret (a password, a key, a URL with credentials): wrapped so it never prints.
    pub fn secret(&self, name: &str) -> Option<SecretString> {
        self.get(name).map(SecretString::from)
    }

    /// [`Env::secret`], or `default`.
    pub fn secret_or(&self, name: &str, default: &str) -> SecretString {
        SecretString::from(self.string_or(name, default))
    }

    /// The value, or `default` when it is unset; `None` when it is `off` (an endpoint, a
    /// directory or a dependency that can be switched off).
    pub fn unless_off(&self, name: &str, default: &str) -> Option<String> {
        Some(self.string_or(name, default)).filter(|value| value != "off")
    }

    /// A comma-separated list (`a, b,c`), blanks dropped; `None` when the variable is unset.
    pub fn list(&self, name: &str) -> Option<Vec<String>> {
        self.get(name).map(|value| split_list(&value))
    }

    /// The value parsed as `T`, or `default` when it is unset. `what` completes the error
    /// "`<name>` must be `<what>`, not `<value>`".
    pub fn parsed<T: FromStr>(&self, name: &str, default: T, what: &str) -> anyhow::Result<T> {
        match self.get(name) {
            None => Ok(default),
            Some(value) => match value.parse() {
                Ok(parsed) => Ok(parsed),
                Err(_) => bail!("{name} must be {what}, not {value:?}"),
            },
        }
    }

    /// A whole number of type `T` (its range included: `u32` refuses 5000000000).
    pub fn number<T: FromStr>(&self, name: &str, default: T) -> anyhow::Result<T> {
        self.parsed(name, default, "a whole number")
    }

    /// A number within `range`, both ends included.
    pub fn number_in<T>(
        &self,
        name: &str,
        default: T,
        range: RangeInclusive<T>,
    ) -> anyhow::Result<T>
    where
        T: FromStr + PartialOrd + Display,
    {
        let what = format!("a number from {} to {}", range.start(), range.end());
        let value = self.parsed(name, default, &what)?;
        if !range.contains(&value) {
            bail!("{name} must be {what}, not {value}");
        }
        Ok(value)
    }

    /// A TCP port.
    pub fn port(&self, name: &str, default: u16) -> anyhow::Result<u16> {
        self.parsed(name, default, "a port number")
    }

    /// Whole seconds (`<NAME>_SECS`).
    pub fn seconds(&self, name: &str, default: u64) -> anyhow::Result<Duration> {
        self.parsed(name, default, "seconds")
            .map(Duration::from_secs)
    }

    /// Whole milliseconds (`<NAME>_MS`).
    pub fn millis(&self, name: &str, default: u64) -> anyhow::Result<Duration> {
        self.parsed(name, default, "milliseconds")
            .map(Duration::from_millis)
    }

    /// [`Env::seconds`] that must not be zero (a timeout or an interval of nothing).
    pub fn positive_seconds(&self, name: &str, default: u64) -> anyhow::Result<Duration> {
        positive(name, self.seconds(name, default)?)
    }

    /// [`Env::millis`] that must not be zero.
    pub fn positive_millis(&self, name: &str, default: u64) -> anyhow::Result<Duration> {
        positive(name, self.millis(name, default)?)
    }

    /// A switch: `on` or `off` (`true`/`false` and `1`/`0` are taken too), `default` when unset.
    pub fn switch(&self, name: &str, default: bool) -> anyhow::Result<bool> {
        match self.get(name).as_deref() {
            None => Ok(default),
            Some("on" | "true" | "1") => Ok(true),
            Some("off" | "false" | "0") => Ok(false),
            Some(other) => bail!("{name} must be on or off, not {other:?}"),
        }
    }
}

fn positive(name: &str, duration: Duration) -> anyhow::Result<Duration> {
    if duration.is_zero() {
        bail!("{name} must be at least 1");
    }
    Ok(duration)
}

/// `a, b,c` as `["a", "b", "c"]`, blanks dropped.
pub fn split_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret as _;

    use super::*;

    fn error<T: std::fmt::Debug>(result: anyhow::Result<T>) -> String {
        match result {
            Ok(value) => panic!("accepted: {value:?}"),
            Err(error) => format!("{error:#}"),
        }
    }

    /// The refusal is one line that names the variable and the value.
    fn assert_one_line_naming(message: &str, name: &str, value: &str) {
        assert!(!message.contains('\n'), "{message}");
        assert!(message.starts_with(name), "{message}");
        assert!(message.contains(value), "{message}");
    }

    #[test]
    fn unset_and_empty_are_absent() {
        let env = Env::from_pairs([("EMPTY", ""), ("SET", "x")]);
        assert_eq!(env.get("EMPTY"), None);
        assert_eq!(env.get("UNSET"), None);
        assert_eq!(env.get("SET").as_deref(), Some("x"));
        assert_eq!(env.string_or("EMPTY", "default"), "default");
        assert_eq!(env.string_or("SET", "default"), "x");
    }

    #[test]
    fn numbers_parse_default_and_refuse_in_one_line() -> anyhow::Result<()> {
        let env = Env::from_pairs([("N", "42"), ("BAD", "4x2"), ("HUGE", "5000000000")]);
        assert_eq!(env.number::<u32>("N", 1)?, 42);
        assert_eq!(env.number::<u32>("MISSING", 7)?, 7);
        assert_one_line_naming(&error(env.number::<u32>("BAD", 1)), "BAD", "4x2");
        assert_one_line_naming(&error(env.number::<u32>("HUGE", 1)), "HUGE", "5000000000");
        Ok(())
    }

    #[test]
    fn a_number_in_a_range_names_the_range() -> anyhow::Result<()> {
        let env = Env::from_pairs([("IN", "16"), ("OUT", "17"), ("BAD", "many")]);
        assert_eq!(env.number_in("IN", 3usize, 1..=16)?, 16);
        assert_eq!(env.number_in("MISSING", 3usize, 1..=16)?, 3);
        let out = error(env.number_in("OUT", 3usize, 1..=16));
        assert_one_line_naming(&out, "OUT", "17");
        assert!(out.contains("from 1 to 16"), "{out}");
        assert_one_line_naming(&error(env.number_in("BAD", 3usize, 1..=16)), "BAD", "many");
        Ok(())
    }

    #[test]
    fn fractions_parse_through_parsed() -> anyhow::Result<()> {
        let env = Env::from_pairs([("RATE", "0.25"), ("BAD", "a quarter")]);
        assert_eq!(env.parsed("RATE", 0.0, "a number from 0 to 1")?, 0.25);
        assert_eq!(env.parsed("MISSING", 0.5, "a number")?, 0.5);
        let bad = error(env.parsed("BAD", 0.0, "a number from 0 to 1"));
        assert_one_line_naming(&bad, "BAD", "a quarter");
        assert!(bad.contains("a number from 0 to 1"), "{bad}");
        Ok(())
    }

    #[test]
    fn ports_are_u16() -> anyhow::Result<()> {
        let env = Env::from_pairs([("PORT", "8088"), ("BIG", "70000"), ("BAD", "http")]);
        assert_eq!(env.port("PORT", 1)?, 8088);
        assert_eq!(env.port("MISSING", 8081)?, 8081);
        let big = error(env.port("BIG", 1));
        assert_one_line_naming(&big, "BIG", "70000");
        assert!(big.contains("port number"), "{big}");
        assert_one_line_naming(&error(env.port("BAD", 1)), "BAD", "http");
        Ok(())
    }

    #[test]
    fn durations_in_seconds_and_milliseconds() -> anyhow::Result<()> {
        let env = Env::from_pairs([("S", "3"), ("MS", "250"), ("ZERO", "0"), ("BAD", "1s")]);
        assert_eq!(env.seconds("S", 1)?, Duration::from_secs(3));
        assert_eq!(env.seconds("MISSING", 10)?, Duration::from_secs(10));
        assert_eq!(env.millis("MS", 1)?, Duration::from_millis(250));
        assert_eq!(env.millis("MISSING", 1_000)?, Duration::from_secs(1));
        assert_eq!(env.seconds("ZERO", 1)?, Duration::ZERO);
        let seconds = error(env.seconds("BAD", 1));
        assert_one_line_naming(&seconds, "BAD", "1s");
        assert!(seconds.contains("seconds"), "{seconds}");
        let millis = error(env.millis("BAD", 1));
        assert!(millis.contains("milliseconds"), "{millis}");
        Ok(())
    }

    #[test]
    fn positive_durations_refuse_zero() -> anyhow::Result<()> {
        let env = Env::from_pairs([("ZERO", "0"), ("ONE", "1"), ("BAD", "-1")]);
        assert_eq!(env.positive_millis("ONE", 5)?, Duration::from_millis(1));
        assert_eq!(env.positive_seconds("MISSING", 5)?, Duration::from_secs(5));
        let zero = error(env.positive_seconds("ZERO", 5));
        assert!(zero.starts_with("ZERO must be at least 1"), "{zero}");
        assert!(env.positive_millis("ZERO", 5).is_err());
        assert_one_line_naming(&error(env.positive_millis("BAD", 5)), "BAD", "-1");
        Ok(())
    }

    #[test]
    fn switches_are_on_or_off() -> anyhow::Result<()> {
        let env = Env::from_pairs([
            ("ON", "on"),
            ("OFF", "off"),
            ("TRUE", "true"),
            ("BAD", "yes"),
        ]);
        assert!(env.switch("ON", false)?);
        assert!(!env.switch("OFF", true)?);
        assert!(env.switch("TRUE", false)?);
        assert!(env.switch("MISSING", true)?);
        assert!(!env.switch("MISSING", false)?);
        let bad = error(env.switch("BAD", true));
        assert_one_line_naming(&bad, "BAD", "yes");
        assert!(bad.contains("on or off"), "{bad}");
        Ok(())
    }

    #[test]
    fn secrets_never_print() {
        let env = Env::from_pairs([("KEY", "hunter2")]);
        let key = env.secret("KEY");
        assert_eq!(key.as_ref().map(|k| k.expose_secret()), Some("hunter2"));
        assert!(!format!("{key:?}").contains("hunter2"));
        assert!(env.secret("MISSING").is_none());
        assert_eq!(env.secret_or("MISSING", "local").expose_secret(), "local");
        assert!(!format!("{env:?}").contains("hunter2"));
    }

    #[test]
    fn lists_split_on_commas() {
        let env = Env::from_pairs([("LIST", "a, b,,c ")]);
        assert_eq!(
            env.list("LIST"),
            Some(vec!["a".into(), "b".into(), "c".into()])
        );
        assert_eq!(env.list("MISSING"), None);
    }

    #[test]
    fn off_switches_an_endpoint_off() {
        let env = Env::from_pairs([("OFF", "off"), ("SET", "http://z:9411")]);
        assert_eq!(env.unless_off("OFF", "http://default"), None);
        assert_eq!(
            env.unless_off("SET", "http://default").as_deref(),
            Some("http://z:9411")
        );
        assert_eq!(
            env.unless_off("MISSING", "http://default").as_deref(),
            Some("http://default")
        );
    }
}
