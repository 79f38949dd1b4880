//! Which MongoDB commands this process sends, by command and collection, counted from the
//! driver's command monitoring.
//!
//! Issue 12 found the MongoDB-wire server to be the checkout's bottleneck, its cost set by the
//! number of write commands per order; so the count is observable (`mongodb_commands_total`
//! with `command` and `collection`, for the bench) and held per process ([`CommandCounts`], so
//! a test can assert how many writes one payment costs, which is deterministic, unlike its
//! time).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use mongodb::event::EventHandler;
use mongodb::event::command::CommandEvent;

/// The commands that change data (and cost the server a store commit when they match).
const WRITES: [&str; 4] = ["insert", "update", "delete", "findAndModify"];

/// Commands sent by one client, by `(command, collection)`. Cheap to clone (shared counts).
#[derive(Debug, Clone, Default)]
pub struct CommandCounts {
    counts: Arc<Mutex<Tally>>,
}

/// A copy of the counts at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// `(command, collection)` -> how many were sent.
    pub by_command: BTreeMap<(String, String), u64>,
}

impl Tally {
    /// Write commands (`insert`, `update`, `delete`, `findAndModify`), over all collections.
    pub fn writes(&self) -> u64 {
        self.sum(|command| WRITES.contains(&command))
    }

    /// Every other command (reads, cursors, pings, index creation).
    pub fn others(&self) -> u64 {
        self.sum(|command| !WRITES.contains(&command))
    }

    fn sum(&self, counted: impl Fn(&str) -> bool) -> u64 {
        self.by_command
            .iter()
            .filter(|((command, _), _)| counted(command))
            .map(|(_, count)| count)
            .sum()
    }

    /// What was sent since `earlier` (a tally of the same counts taken before).
    pub fn since(&self, earlier: &Tally) -> Tally {
        let by_command = self
            .by_command
            .iter()
            .filter_map(|(key, count)| {
                let delta = count.saturating_sub(earlier.by_command.get(key).copied().unwrap_or(0));
                (delta > 0).then(|| (key.clone(), delta))
            })
            .collect();
        Tally { by_command }
    }
}

impl std::fmt::Display for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for ((command, collection), count) in &self.by_command {
            writeln!(f, "{count:>4} {command} {collection}")?;
        }
        Ok(())
    }
}

impl CommandCounts {
    /// The counts so far.
    pub fn tally(&self) -> Tally {
        self.counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The driver's command-monitoring handler that feeds these counts and the metric.
    pub fn handler(&self) -> EventHandler<CommandEvent> {
        let counts = self.counts.clone();
        EventHandler::callback(move |event| {
            let CommandEvent::Started(started) = event else {
                return;
            };
            // A command's first field names it, and its value is the collection it works on
            // (a number for database commands such as `ping`).
            let collection = started
                .command
                .get_str(&started.command_name)
                .unwrap_or("")
                .to_owned();
            metrics::counter!(
                "mongodb_commands_total",
                "command" => started.command_name.clone(),
                "collection" => collection.clone()
            )
            .increment(1);
            *counts
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .by_command
                .entry((started.command_name, collection))
                .or_default() += 1;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(entries: &[(&str, &str, u64)]) -> Tally {
        Tally {
            by_command: entries
                .iter()
                .map(|(command, collection, count)| {
                    (((*command).to_owned(), (*collection).to_owned()), *count)
                })
                .collect(),
        }
    }

    #[test]
    fn writes_and_other_commands_are_told_apart() {
        let counts = tally(&[
            ("insert", "payments", 2),
            ("findAndModify", "payments", 1),
            ("update", "orders", 3),
            ("delete", "payment_claims", 1),
            ("find", "payments", 4),
            ("ping", "", 1),
        ]);
        assert_eq!((counts.writes(), counts.others()), (7, 5));
    }

    #[test]
    fn since_keeps_only_what_was_sent_in_between() {
        let before = tally(&[("insert", "payments", 2), ("find", "orders", 1)]);
        let after = tally(&[
            ("insert", "payments", 3),
            ("find", "orders", 1),
            ("update", "payments", 1),
        ]);
        assert_eq!(
            after.since(&before),
            tally(&[("insert", "payments", 1), ("update", "payments", 1)])
        );
    }
}
