//! The refund approval table of `workflow/models/refund-approval.dmn`, rule by rule, through
//! the engine's evaluate endpoint. The file is deployed under a unique decision key so the
//! test never depends on (or changes) what the engine deployed at start.

use workflow::{EngineClient, Variables};

use crate::helpers::{engine, unique};

const TABLE: &str = include_str!("../../../../workflow/models/refund-approval.dmn");

async fn deploy_table(engine: &EngineClient) -> anyhow::Result<String> {
    let key = unique("refund-approval");
    anyhow::ensure!(TABLE.contains(r#"id="refund-approval""#));
    let table = TABLE.replace(r#"id="refund-approval""#, &format!(r#"id="{key}""#));
    engine
        .deploy(
            &key,
            vec![(format!("{key}.dmn"), table.into_bytes())],
            false,
        )
        .await?;
    Ok(key)
}

async fn outcome(
    engine: &EngineClient,
    key: &str,
    amount: i64,
    recent_refunds: i32,
    reason: &str,
) -> anyhow::Result<String> {
    let results = engine
        .evaluate_decision(
            key,
            Variables::new()
                .long("amount", amount)
                .integer("recentRefunds", recent_refunds)
                .string("reason", reason),
        )
        .await?;
    anyhow::ensure!(
        results.len() == 1,
        "hit policy FIRST gives one result: {results:?}"
    );
    Ok(results[0].get_str("outcome")?.to_owned())
}

#[tokio::test]
async fn refund_approval_rules() -> anyhow::Result<()> {
    let engine = engine()?;
    let key = deploy_table(&engine).await?;
    // (amount, refunds in 90 days, reason) -> outcome
    let cases = [
        (4_200, 0, "damaged", "approve"),
        (20_000, 1, "changed_mind", "approve"), // the limit itself is still automatic
        (20_001, 0, "damaged", "review"),       // above 200.00
        (100, 2, "damaged", "review"),          // two refunds in 90 days
        (100, 7, "other", "review"),
        (100, 0, "not_received", "review"),
        (0, 0, "wrong_item", "approve"),
    ];
    for (amount, recent, reason, expected) in cases {
        assert_eq!(
            outcome(&engine, &key, amount, recent, reason).await?,
            expected,
            "amount {amount}, {recent} recent refunds, reason {reason}"
        );
    }
    Ok(())
}
