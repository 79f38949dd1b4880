//! Topic set-up against the real broker: the settings a compacted topic gets when it is
//! created, and the ones an existing compacted topic is brought to without losing what an
//! operator set on it.

use std::collections::HashMap;
use std::time::Duration;

use messaging::{COMPACTED_TOPIC_CONFIG, KafkaConfig, TopicSpec};
use rdkafka::ClientConfig;
use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, ConfigSource, NewTopic, ResourceSpecifier,
    TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use uuid::Uuid;

type TestResult = anyhow::Result<()>;

fn admin() -> anyhow::Result<AdminClient<DefaultClientContext>> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", testkit::stack::kafka_brokers())
        .create()?)
}

fn spec(name: &str, compacted: bool) -> TopicSpec {
    TopicSpec {
        name: name.to_owned(),
        partitions: 1,
        compacted,
    }
}

/// The topic's own (topic-level) settings, asked again until the broker describes the topic.
async fn own_settings(name: &str) -> anyhow::Result<HashMap<String, String>> {
    let admin = admin()?;
    let described = testkit::resend_while(
        Duration::from_secs(15),
        || async {
            let described = admin
                .describe_configs([&ResourceSpecifier::Topic(name)], &AdminOptions::new())
                .await?;
            anyhow::Ok(described.into_iter().next())
        },
        |described| !matches!(described, Some(Ok(_))),
    )
    .await?;
    match described {
        Some(Ok(resource)) => Ok(resource
            .entries
            .into_iter()
            .filter(|entry| matches!(entry.source, ConfigSource::DynamicTopic))
            .filter_map(|entry| Some((entry.name, entry.value?)))
            .collect()),
        other => anyhow::bail!("topic {name} not described in time: {other:?}"),
    }
}

fn assert_compacted_settings(settings: &HashMap<String, String>) {
    for (key, value) in COMPACTED_TOPIC_CONFIG {
        assert_eq!(
            settings.get(key).map(String::as_str),
            Some(value),
            "{key} in {settings:?}"
        );
    }
}

#[tokio::test]
async fn a_new_compacted_topic_closes_segments_for_the_cleaner_and_a_plain_one_keeps_defaults()
-> TestResult {
    let compacted = format!("test.compacted.{}", Uuid::new_v4());
    let plain = format!("test.plain.{}", Uuid::new_v4());
    KafkaConfig::new(testkit::stack::kafka_brokers())
        .ensure_topics(&[spec(&compacted, true), spec(&plain, false)])
        .await?;
    assert_compacted_settings(&own_settings(&compacted).await?);
    let plain_settings = own_settings(&plain).await?;
    for (key, _) in COMPACTED_TOPIC_CONFIG {
        assert!(!plain_settings.contains_key(key), "{plain_settings:?}");
    }
    Ok(())
}

#[tokio::test]
async fn an_existing_compacted_topic_gets_the_settings_and_keeps_the_operators() -> TestResult {
    // Created as services did before: only the cleanup policy; then an operator set a
    // retention and a cleaner ratio of their own.
    let name = format!("test.compacted.old.{}", Uuid::new_v4());
    let admin = admin()?;
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in
        admin
            .create_topics(
                [&NewTopic::new(&name, 1, TopicReplication::Fixed(1))
                    .set("cleanup.policy", "compact")],
                &options,
            )
            .await?
    {
        result.map_err(|(topic, code)| anyhow::anyhow!("creating {topic}: {code}"))?;
    }
    assert!(!own_settings(&name).await?.contains_key("segment.ms"));
    for result in admin
        .alter_configs(
            [&AlterConfig::new(ResourceSpecifier::Topic(&name))
                .set("cleanup.policy", "compact")
                .set("retention.ms", "123456789")
                .set("min.cleanable.dirty.ratio", "0.3")],
            &options,
        )
        .await?
    {
        result.map_err(|(topic, code)| anyhow::anyhow!("altering {topic:?}: {code}"))?;
    }

    let kafka = KafkaConfig::new(testkit::stack::kafka_brokers());
    kafka.ensure_topics(&[spec(&name, true)]).await?;
    let settings = own_settings(&name).await?;
    assert_eq!(
        settings.get("segment.ms").map(String::as_str),
        Some("600000")
    );
    assert_eq!(
        settings.get("cleanup.policy").map(String::as_str),
        Some("compact")
    );
    // The operator's own settings stay, the one that overlaps ours included.
    assert_eq!(
        settings.get("retention.ms").map(String::as_str),
        Some("123456789")
    );
    assert_eq!(
        settings
            .get("min.cleanable.dirty.ratio")
            .map(String::as_str),
        Some("0.3")
    );

    // A second start changes nothing more.
    kafka.ensure_topics(&[spec(&name, true)]).await?;
    assert_eq!(own_settings(&name).await?, settings);
    Ok(())
}
