//! The MongoDB outbox relay of a collection published in a field's order
//! (`OutboxRelay::ordered_by`), against the real MongoDB-wire server and broker: one batch
//! claims and publishes many documents, a key's documents reach its partition in the field's
//! order whatever order the writers named them in, and a document another relay holds keeps
//! the later documents of its key back without holding up other keys. And, for a collection
//! published without an order: events marked replaceable leave with the last event of their
//! document instead of one record each.

use std::time::Duration;

use messaging::KafkaConfig;
use messaging::mongo::outbox::{
    CLAIM_FIELD, CLAIM_TOKEN_FIELD, Outbox, OutboxRelay, PENDING_FLAG, PendingEvent, RelayWake,
    backlog, with_pending_event,
};
use messaging::testing::read_topic;
use mongodb::bson::{self, Document, doc};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

type TestResult = anyhow::Result<()>;

const THINGS: Outbox = Outbox {
    collection: "things",
};

/// A fresh database and topic, and a way to write documents with pending events.
struct Fixture {
    db: mongodb::Database,
    topic: String,
    kafka: KafkaConfig,
}

impl Fixture {
    async fn new() -> anyhow::Result<Self> {
        let name = testkit::mongo::fresh_database("messaging").await?;
        let db =
            messaging::mongo::connect(&testkit::stack::mongodb_url(), &name, "messaging-tests")
                .await?;
        Ok(Self {
            db,
            topic: format!("test-{}.things", Uuid::new_v4().simple()),
            kafka: KafkaConfig::new(testkit::stack::kafka_brokers()),
        })
    }

    fn things(&self) -> mongodb::Collection<Document> {
        self.db.collection(THINGS.collection)
    }

    fn relay(&self, wake: RelayWake) -> anyhow::Result<OutboxRelay> {
        Ok(self.unordered_relay(wake)?.ordered_by("updated_at"))
    }

    /// A relay of the same collection that publishes documents in no particular order, as
    /// product-service's relay of product documents does.
    fn unordered_relay(&self, wake: RelayWake) -> anyhow::Result<OutboxRelay> {
        Ok(
            OutboxRelay::new(&self.db, THINGS, self.kafka.producer()?, wake)
                .with_poll_interval(Duration::from_secs(3600)),
        )
    }

    /// Writes document `id` of `key` as changed at `at` (milliseconds), with one pending event
    /// per name in `events` (the event's id and payload are the name).
    async fn write(&self, id: &str, key: &str, at: i64, events: &[&str]) -> anyhow::Result<()> {
        let events: Vec<(&str, bool)> = events.iter().map(|name| (*name, false)).collect();
        self.write_marked(id, key, at, &events).await
    }

    /// [`Self::write`], each event replaceable by a later one of the document or not.
    async fn write_marked(
        &self,
        id: &str,
        key: &str,
        at: i64,
        events: &[(&str, bool)],
    ) -> anyhow::Result<()> {
        for (name, replaceable) in events {
            let event = PendingEvent {
                id: (*name).to_owned(),
                topic: self.topic.clone(),
                key: key.to_owned(),
                payload: (*name).to_owned(),
                headers: "{}".to_owned(),
                replaceable: *replaceable,
            };
            let update = with_pending_event(
                doc! {"$set": {"updated_at": bson::DateTime::from_millis(at)}},
                event.to_document()?,
            );
            self.things()
                .update_one(doc! {"_id": id}, update)
                .upsert(true)
                .await?;
        }
        Ok(())
    }

    /// The payloads on the topic for `key`, in partition order.
    async fn published(&self, key: &str) -> anyhow::Result<Vec<String>> {
        Ok(read_topic(&self.kafka.brokers, &self.topic)
            .await?
            .into_iter()
            .filter(|record| record.key.as_deref() == Some(key))
            .map(|record| String::from_utf8_lossy(&record.payload).into_owned())
            .collect())
    }

    /// Waits until the collection holds no pending event.
    async fn drained(&self) -> TestResult {
        testkit::eventually(Duration::from_secs(20), || async {
            let pending = backlog(&self.db, &[THINGS]).await?;
            anyhow::ensure!(pending == 0, "{pending} events still pending");
            Ok(())
        })
        .await
    }

    async fn document(&self, id: &str) -> anyhow::Result<Document> {
        self.things()
            .find_one(doc! {"_id": id})
            .await?
            .ok_or_else(|| anyhow::anyhow!("no document {id}"))
    }
}

fn ids(names: &[&str]) -> Vec<bson::Bson> {
    names.iter().map(|name| bson::Bson::from(*name)).collect()
}

/// One claim takes every named document; they go out in `updated_at` order (the order the
/// changes were written), not in the order the writers named them, and one clear empties
/// them all and lowers their flags.
#[tokio::test]
async fn one_ordered_batch_publishes_each_keys_documents_in_field_order() -> TestResult {
    let fixture = Fixture::new().await?;
    fixture.write("k-first", "k", 1_000, &["k1", "k2"]).await?;
    fixture.write("other", "o", 1_500, &["o1"]).await?;
    fixture.write("k-second", "k", 2_000, &["k3"]).await?;
    fixture.write("k-third", "k", 3_000, &["k4"]).await?;
    let relay = fixture.relay(RelayWake::default())?;

    let (claimed, held) = relay
        .claim_in_order(
            &ids(&["k-third", "other", "k-second", "k-first"]),
            "updated_at",
        )
        .await?;
    assert_eq!(claimed.len(), 4);
    assert!(!held, "no other relay holds anything");
    assert_eq!(relay.publish_claimed(claimed).await?, 4);

    assert_eq!(fixture.published("k").await?, ["k1", "k2", "k3", "k4"]);
    assert_eq!(fixture.published("o").await?, ["o1"]);
    for id in ["k-first", "k-second", "k-third", "other"] {
        let document = fixture.document(id).await?;
        assert_eq!(document.get_bool(PENDING_FLAG).ok(), Some(false), "{id}");
        assert!(document.get_array("pending_events")?.is_empty(), "{id}");
        assert!(!document.contains_key(CLAIM_FIELD), "{id}: claim dropped");
        assert!(
            !document.contains_key(CLAIM_TOKEN_FIELD),
            "{id}: claim dropped"
        );
    }
    Ok(())
}

/// While another relay holds a key's earlier document, the batch publishes other keys and
/// releases the key's later documents untouched; once the hold ends they go out behind it.
#[tokio::test]
async fn a_document_another_relay_holds_keeps_its_keys_later_documents_back() -> TestResult {
    let fixture = Fixture::new().await?;
    fixture.write("k-first", "k", 1_000, &["k1"]).await?;
    fixture.write("k-second", "k", 2_000, &["k2"]).await?;
    fixture.write("other", "o", 3_000, &["o1"]).await?;
    let until = bson::DateTime::from_millis(bson::DateTime::now().timestamp_millis() + 60_000);
    fixture
        .things()
        .update_one(
            doc! {"_id": "k-first"},
            doc! {"$set": {CLAIM_FIELD: until, CLAIM_TOKEN_FIELD: bson::oid::ObjectId::new()}},
        )
        .await?;
    let relay = fixture.relay(RelayWake::default())?;

    let (claimed, held) = relay
        .claim_in_order(&ids(&["k-first", "k-second", "other"]), "updated_at")
        .await?;
    assert!(held, "k-second was released");
    assert_eq!(claimed.len(), 1, "only the other key's document");
    assert_eq!(relay.publish_claimed(claimed).await?, 1);
    assert_eq!(fixture.published("o").await?, ["o1"]);
    assert!(fixture.published("k").await?.is_empty());
    let released = fixture.document("k-second").await?;
    assert_eq!(released.get_bool(PENDING_FLAG).ok(), Some(true));
    assert!(!released.contains_key(CLAIM_FIELD), "released at once");

    // The other relay's hold ends without its publish (it died): the key goes out in order.
    fixture
        .things()
        .update_one(
            doc! {"_id": "k-first"},
            doc! {"$unset": {CLAIM_FIELD: "", CLAIM_TOKEN_FIELD: ""}},
        )
        .await?;
    assert_eq!(relay.publish_batch().await?, 2);
    assert_eq!(fixture.published("k").await?, ["k1", "k2"]);
    assert_eq!(relay.publish_batch().await?, 0, "nothing left to publish");
    Ok(())
}

/// The running relay, told of writes in the reverse of their order, publishes every event
/// once and each key's in write order.
#[tokio::test]
async fn a_running_ordered_relay_publishes_named_documents_once_in_write_order() -> TestResult {
    let fixture = Fixture::new().await?;
    let wake = RelayWake::default();
    let stop = CancellationToken::new();
    let task = tokio::spawn(fixture.relay(wake.clone())?.run(stop.clone()));
    let mut expected = Vec::new();
    let mut written = Vec::new();
    for n in 0..30_i64 {
        let (id, name) = (format!("doc-{n}"), format!("e{n}"));
        fixture
            .write(&id, ["a", "b", "c"][(n % 3) as usize], 1_000 + n, &[&name])
            .await?;
        expected.push(name);
        written.push(id);
    }
    for id in written.iter().rev() {
        wake.written(id.as_str());
    }
    fixture.drained().await?;
    stop.cancel();
    task.await?;
    for (index, key) in ["a", "b", "c"].into_iter().enumerate() {
        let want: Vec<&String> = expected.iter().skip(index).step_by(3).collect();
        assert_eq!(
            fixture.published(key).await?.iter().collect::<Vec<_>>(),
            want,
            "{key}"
        );
    }
    Ok(())
}

/// A document holding several replaceable events publishes only the last of them (and any
/// event not marked); the replaced ones leave the document with it, which one clear empties.
#[tokio::test]
async fn replaceable_events_leave_with_the_last_event_of_their_document() -> TestResult {
    let fixture = Fixture::new().await?;
    fixture
        .write_marked("p", "p", 1_000, &[("p1", true), ("p2", true), ("p3", true)])
        .await?;
    fixture
        .write_marked(
            "q",
            "q",
            1_000,
            &[("q1", true), ("admin", false), ("q2", true)],
        )
        .await?;
    let relay = fixture.unordered_relay(RelayWake::default())?;

    let claimed = relay.claim(&ids(&["p", "q"])).await?;
    assert_eq!(relay.publish_claimed(claimed).await?, 2);
    assert_eq!(fixture.published("p").await?, ["p3"]);
    assert_eq!(fixture.published("q").await?, ["admin", "q2"]);
    for id in ["p", "q"] {
        let document = fixture.document(id).await?;
        assert!(document.get_array("pending_events")?.is_empty(), "{id}");
        assert_eq!(document.get_bool(PENDING_FLAG).ok(), Some(false), "{id}");
    }
    assert_eq!(relay.publish_batch().await?, 0, "nothing left to publish");
    Ok(())
}

/// An event written after the claim is not replaced by the claimed ones: it stays, with the
/// flag up, and the next round publishes it.
#[tokio::test]
async fn a_replaceable_event_written_after_the_claim_waits_for_the_next_round() -> TestResult {
    let fixture = Fixture::new().await?;
    fixture
        .write_marked("p", "p", 1_000, &[("p1", true), ("p2", true)])
        .await?;
    let relay = fixture.unordered_relay(RelayWake::default())?;
    let claimed = relay.claim(&ids(&["p"])).await?;
    fixture
        .write_marked("p", "p", 2_000, &[("p3", true)])
        .await?;
    assert_eq!(relay.publish_claimed(claimed).await?, 1);
    assert_eq!(fixture.published("p").await?, ["p2"]);
    let document = fixture.document("p").await?;
    assert_eq!(document.get_array("pending_events")?.len(), 1);
    assert_eq!(document.get_bool(PENDING_FLAG).ok(), Some(true));

    assert_eq!(relay.publish_batch().await?, 1);
    assert_eq!(fixture.published("p").await?, ["p2", "p3"]);
    Ok(())
}

/// The running relay, told of replaceable writes with a hold-back, publishes each document's
/// last event (whatever it coalesced on the way) and leaves nothing pending.
#[tokio::test]
async fn a_running_relay_publishes_the_last_of_held_back_replaceable_writes() -> TestResult {
    let fixture = Fixture::new().await?;
    let wake = RelayWake::default();
    let stop = CancellationToken::new();
    let task = tokio::spawn(fixture.unordered_relay(wake.clone())?.run(stop.clone()));
    for n in 0..20_i64 {
        let name = format!("s{n}");
        fixture
            .write_marked("p", "p", 1_000 + n, &[(name.as_str(), true)])
            .await?;
        wake.written_within("p", Duration::from_millis(50));
    }
    fixture.drained().await?;
    stop.cancel();
    task.await?;
    let published = fixture.published("p").await?;
    assert_eq!(published.last().map(String::as_str), Some("s19"));
    // Whatever went out went out in write order, each at most once.
    let positions: Vec<usize> = published
        .iter()
        .map(|name| name[1..].parse::<usize>())
        .collect::<Result<_, _>>()?;
    assert!(
        positions.windows(2).all(|pair| pair[0] < pair[1]),
        "{published:?}"
    );
    Ok(())
}
