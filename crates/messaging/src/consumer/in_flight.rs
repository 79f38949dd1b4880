//! Bookkeeping of a consumer that handles several records at once
//! ([`ConsumerSettings::in_flight`](super::ConsumerSettings::in_flight)): which record may
//! start, and how far each partition's offset may advance.
//!
//! Two rules keep what one record at a time guaranteed. A record starts only when no earlier
//! record of its key is running or waiting (each aggregate's events are keyed by its id, so
//! they still apply one after another, in partition order); records of other keys run
//! meanwhile. And a partition's offset advances only over a prefix of records that all
//! finished: a record finished ahead of an earlier one that is still running is remembered,
//! not acknowledged, so a crash replays everything from the oldest unfinished record on (the
//! handlers are idempotent, as at-least-once delivery needs anyway) and nothing is skipped.

use std::collections::{HashMap, VecDeque};

/// Where a record came from: topic and partition.
pub(super) type PartitionId = (String, i32);

/// Records taken from the broker and not finished yet; `R` is the record itself, kept while
/// it waits behind an earlier record of its key.
#[derive(Debug)]
pub(super) struct InFlight<R> {
    /// Per partition, the offsets taken, in the order received, each with whether it finished.
    partitions: HashMap<PartitionId, VecDeque<(i64, bool)>>,
    /// Per key with a record running: the records of that key waiting behind it, in order.
    keys: HashMap<Option<Vec<u8>>, VecDeque<R>>,
    /// Records taken and not finished (running or waiting).
    taken: usize,
}

impl<R> Default for InFlight<R> {
    fn default() -> Self {
        Self {
            partitions: HashMap::new(),
            keys: HashMap::new(),
            taken: 0,
        }
    }
}

impl<R> InFlight<R> {
    /// Records taken and not finished.
    pub(super) fn len(&self) -> usize {
        self.taken
    }

    /// Takes `record` (at `offset` of `partition`, keyed `key`): returns it when it may start
    /// now, or keeps it behind the running record of its key (it comes back from
    /// [`InFlight::finish`] of that record's last predecessor).
    pub(super) fn take(
        &mut self,
        partition: PartitionId,
        offset: i64,
        key: Option<Vec<u8>>,
        record: R,
    ) -> Option<R> {
        self.taken += 1;
        self.partitions
            .entry(partition)
            .or_default()
            .push_back((offset, false));
        match self.keys.get_mut(&key) {
            Some(waiting) => {
                waiting.push_back(record);
                None
            }
            None => {
                self.keys.insert(key, VecDeque::new());
                Some(record)
            }
        }
    }

    /// Marks the record at `offset` of `partition`, keyed `key`, finished (handled or
    /// dead-lettered). Returns the offset the partition may now be acknowledged up to (the
    /// last of the finished prefix, if it grew) and the next record of the key to start.
    pub(super) fn finish(
        &mut self,
        partition: &PartitionId,
        offset: i64,
        key: &Option<Vec<u8>>,
    ) -> (Option<i64>, Option<R>) {
        self.taken = self.taken.saturating_sub(1);
        let mut acknowledged = None;
        if let Some(offsets) = self.partitions.get_mut(partition) {
            if let Some(entry) = offsets
                .iter_mut()
                .find(|(taken, done)| *taken == offset && !*done)
            {
                entry.1 = true;
            }
            while let Some(&(front, true)) = offsets.front() {
                acknowledged = Some(front);
                offsets.pop_front();
            }
            if offsets.is_empty() {
                self.partitions.remove(partition);
            }
        }
        let next = match self.keys.get_mut(key) {
            Some(waiting) => {
                let next = waiting.pop_front();
                if next.is_none() {
                    self.keys.remove(key);
                }
                next
            }
            None => None,
        };
        (acknowledged, next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(partition: i32) -> PartitionId {
        ("t".to_owned(), partition)
    }

    fn key(name: &str) -> Option<Vec<u8>> {
        Some(name.as_bytes().to_vec())
    }

    #[test]
    fn a_keys_records_run_one_after_another_and_other_keys_meanwhile() {
        let mut in_flight = InFlight::default();
        assert_eq!(in_flight.take(p(0), 10, key("a"), "a10"), Some("a10"));
        assert_eq!(in_flight.take(p(0), 11, key("b"), "b11"), Some("b11"));
        assert_eq!(
            in_flight.take(p(0), 12, key("a"), "a12"),
            None,
            "behind a10"
        );
        assert_eq!(
            in_flight.take(p(0), 13, key("a"), "a13"),
            None,
            "behind a12"
        );
        assert_eq!(in_flight.len(), 4);

        assert_eq!(
            in_flight.finish(&p(0), 10, &key("a")),
            (Some(10), Some("a12"))
        );
        assert_eq!(in_flight.finish(&p(0), 12, &key("a")), (None, Some("a13")));
        assert_eq!(in_flight.finish(&p(0), 13, &key("a")), (None, None));
        // b11 still runs, so the offset stays at 10 though 12 and 13 are done.
        assert_eq!(in_flight.finish(&p(0), 11, &key("b")), (Some(13), None));
        assert_eq!(in_flight.len(), 0);
        assert_eq!(
            in_flight.take(p(0), 14, key("a"), "a14"),
            Some("a14"),
            "a is idle"
        );
    }

    #[test]
    fn the_offset_advances_only_over_a_finished_prefix_per_partition() {
        let mut in_flight = InFlight::default();
        for (partition, offset, name) in [(0, 1, "x"), (1, 7, "y"), (0, 2, "z"), (0, 3, "w")] {
            assert!(
                in_flight
                    .take(p(partition), offset, key(name), ())
                    .is_some()
            );
        }
        assert_eq!(in_flight.finish(&p(0), 3, &key("w")).0, None);
        assert_eq!(in_flight.finish(&p(0), 2, &key("z")).0, None);
        assert_eq!(
            in_flight.finish(&p(1), 7, &key("y")).0,
            Some(7),
            "its own partition"
        );
        assert_eq!(in_flight.finish(&p(0), 1, &key("x")).0, Some(3));
    }

    #[test]
    fn records_without_a_key_run_one_at_a_time() {
        let mut in_flight = InFlight::default();
        assert_eq!(in_flight.take(p(0), 1, None, 1), Some(1));
        assert_eq!(in_flight.take(p(0), 2, None, 2), None);
        assert_eq!(in_flight.finish(&p(0), 1, &None), (Some(1), Some(2)));
    }

    #[test]
    fn a_record_delivered_again_waits_behind_its_first_delivery() {
        // A rebalance hands a partition back from its committed offset while the first
        // delivery of a record still runs: the second waits, and each entry finishes once.
        let mut in_flight = InFlight::default();
        assert_eq!(in_flight.take(p(0), 5, key("a"), "first"), Some("first"));
        assert_eq!(in_flight.take(p(0), 5, key("a"), "again"), None);
        assert_eq!(
            in_flight.finish(&p(0), 5, &key("a")),
            (Some(5), Some("again"))
        );
        assert_eq!(in_flight.finish(&p(0), 5, &key("a")), (Some(5), None));
        assert_eq!(in_flight.len(), 0);
    }
}
