//! Each trigger produces the right mail (and the receipt the right SMS), in the user's
//! language, and nothing is sent where it should not be.

use std::time::Duration;

use contracts::order::{OrderCancelled, OrderCreated, OrderItem, OrderPaid, OrderRejected};
use contracts::payment::PaymentFailed;
use uuid::Uuid;

use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(30);

fn text(mail: &serde_json::Value) -> String {
    mail["Text"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn every_trigger_sends_its_mail_and_the_receipt_also_an_sms() -> TestResult {
    let app = spawn_app().await;
    let mailpit = Mailpit::default();
    let phone = unique_phone();
    let user = app.register("en", Some(phone.clone())).await?;
    app.opt_in_to_sms(&user).await?;
    let (created, paid, failed, rejected, cancelled) = (
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
    );
    app.publish(
        created,
        OrderCreated {
            order_id: created,
            user_id: user.id,
            items: vec![
                OrderItem {
                    product_id: Uuid::now_v7(),
                    name: "Steel kettle".into(),
                    quantity: 2,
                    unit_price: eur(2999),
                },
                OrderItem {
                    product_id: Uuid::now_v7(),
                    name: "Tea cup".into(),
                    quantity: 1,
                    unit_price: eur(500),
                },
            ],
            total: eur(6498),
        },
    )
    .await?;
    app.publish(
        paid,
        OrderPaid {
            order_id: paid,
            user_id: user.id,
            total: eur(4200),
            payment_id: Uuid::now_v7(),
        },
    )
    .await?;
    app.publish(
        failed,
        PaymentFailed {
            payment_id: Uuid::now_v7(),
            order_id: failed,
            user_id: user.id,
            amount: eur(1999),
            reason: "card_declined".into(),
        },
    )
    .await?;
    app.publish(
        rejected,
        OrderRejected {
            order_id: rejected,
            user_id: user.id,
            reason: "out_of_stock".into(),
        },
    )
    .await?;
    app.publish(
        cancelled,
        OrderCancelled {
            order_id: cancelled,
            user_id: user.id,
            reason: "payment_timeout".into(),
        },
    )
    .await?;

    let mails = mailpit.wait_for(&user.email, 6, WAIT).await?;
    assert_eq!(mails.len(), 6, "{mails:?}");
    let reference = |id: Uuid| id.simple().to_string()[..8].to_uppercase();

    let welcome = mailpit
        .the_mail(&user.email, &format!("Welcome to ferroshop, {}", user.name))
        .await?;
    assert!(text(&welcome).contains("Your account is ready."));
    assert_eq!(welcome["To"][0]["Address"], user.email.as_str());

    let received = mailpit
        .the_mail(
            &user.email,
            &format!("We received your order {}", reference(created)),
        )
        .await?;
    assert!(
        text(&received).contains("2 x Steel kettle at 29.99 EUR = 59.98 EUR"),
        "{}",
        text(&received)
    );
    assert!(text(&received).contains("Total: 64.98 EUR"));
    assert!(
        received["HTML"]
            .as_str()
            .unwrap_or_default()
            .contains("<td>Tea cup</td>")
    );

    let receipt = mailpit
        .the_mail(
            &user.email,
            &format!("Receipt for your order {}", reference(paid)),
        )
        .await?;
    assert!(text(&receipt).contains("we received your payment of 42.00 EUR"));

    let payment_failed = mailpit
        .the_mail(
            &user.email,
            &format!("Payment for order {} failed", reference(failed)),
        )
        .await?;
    assert!(text(&payment_failed).contains("did not go through: your card was declined."));

    let order_rejected = mailpit
        .the_mail(
            &user.email,
            &format!("We could not accept your order {}", reference(rejected)),
        )
        .await?;
    assert!(text(&order_rejected).contains("because some items are out of stock."));

    let order_cancelled = mailpit
        .the_mail(
            &user.email,
            &format!("Your order {} was cancelled", reference(cancelled)),
        )
        .await?;
    assert!(text(&order_cancelled).contains("was cancelled: the payment did not arrive in time."));

    // Only the receipt goes by SMS.
    app.wait_for_status(&user, "sms", "receipt", "sent", WAIT)
        .await?;
    let (sms, requests) = app.sms_to(&phone).await?;
    assert_eq!(sms.len(), 1, "{sms:?}");
    assert_eq!(requests, 1);
    assert_eq!(
        sms[0]["text"],
        format!(
            "ferroshop: payment of 42.00 EUR for order {} received. Thank you!",
            reference(paid)
        )
    );
    let channels: Vec<String> = app
        .messages_of(&user)
        .await?
        .into_iter()
        .map(|(channel, template, _, _)| format!("{channel}:{template}"))
        .collect();
    assert_eq!(
        channels.iter().filter(|c| c.starts_with("sms:")).count(),
        1,
        "{channels:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_chinese_speaking_user_gets_mail_and_sms_in_simplified_chinese() -> TestResult {
    let app = spawn_app().await;
    let mailpit = Mailpit::default();
    let phone = unique_phone();
    let user = app.register("zh-CN", Some(phone.clone())).await?;
    app.opt_in_to_sms(&user).await?;
    let rejected = Uuid::now_v7();
    app.publish(
        rejected,
        OrderRejected {
            order_id: rejected,
            user_id: user.id,
            reason: "out_of_stock".into(),
        },
    )
    .await?;
    let paid = Uuid::now_v7();
    app.publish(
        paid,
        OrderPaid {
            order_id: paid,
            user_id: user.id,
            total: eur(1250),
            payment_id: Uuid::now_v7(),
        },
    )
    .await?;
    mailpit.wait_for(&user.email, 3, WAIT).await?;
    let welcome = mailpit
        .the_mail(&user.email, &format!("欢迎加入 ferroshop，{}", user.name))
        .await?;
    assert!(text(&welcome).contains("您的账户已经创建成功"));
    assert!(
        welcome["HTML"]
            .as_str()
            .unwrap_or_default()
            .contains("lang=\"zh-CN\"")
    );
    let order_ref = rejected.simple().to_string()[..8].to_uppercase();
    let notice = mailpit
        .the_mail(
            &user.email,
            &format!("很抱歉，您的订单 {order_ref} 未能受理"),
        )
        .await?;
    assert!(
        text(&notice).contains("原因：部分商品库存不足"),
        "{}",
        text(&notice)
    );

    app.wait_for_status(&user, "sms", "receipt", "sent", WAIT)
        .await?;
    let (sms, _) = app.sms_to(&phone).await?;
    let paid_ref = paid.simple().to_string()[..8].to_uppercase();
    assert_eq!(
        sms.first().map(|m| m["text"].clone()),
        Some(format!("【ferroshop】订单 {paid_ref} 已付款 12.50 EUR，感谢您的购买！").into())
    );
    Ok(())
}

#[tokio::test]
async fn a_user_who_did_not_opt_in_gets_the_receipt_by_mail_but_no_sms() -> TestResult {
    let app = spawn_app().await;
    let phone = unique_phone();
    let user = app.register("en", Some(phone.clone())).await?;
    let paid = Uuid::now_v7();
    app.publish(
        paid,
        OrderPaid {
            order_id: paid,
            user_id: user.id,
            total: eur(999),
            payment_id: Uuid::now_v7(),
        },
    )
    .await?;
    app.wait_for_status(&user, "email", "receipt", "sent", WAIT)
        .await?;
    Mailpit::default()
        .the_mail(&user.email, "Receipt for your order")
        .await?;
    let rows = app.messages_of(&user).await?;
    assert!(
        rows.iter().all(|(channel, ..)| channel == "email"),
        "{rows:?}"
    );
    assert_eq!(app.sms_to(&phone).await?, (Vec::new(), 0));
    Ok(())
}

#[tokio::test]
async fn an_order_event_before_the_users_contact_waits_for_it() -> TestResult {
    let app = spawn_app().await;
    let mailpit = Mailpit::default();
    let (user, registered) = app.new_user("en", None)?;
    let order = Uuid::now_v7();
    app.publish(
        order,
        OrderCancelled {
            order_id: order,
            user_id: user.id,
            reason: "customer_request".into(),
        },
    )
    .await?;
    // Parked, not failed and not dead-lettered.
    eventually(WAIT, || async {
        let parked: i64 =
            sqlx::query_scalar("SELECT count(*) FROM waiting_events WHERE user_id = $1")
                .bind(user.id)
                .fetch_one(&app.pool)
                .await?;
        anyhow::ensure!(parked == 1, "{parked} parked");
        Ok(())
    })
    .await?;
    app.publish(user.id, registered).await?;
    let mails = mailpit.wait_for(&user.email, 2, WAIT).await?;
    assert_eq!(mails.len(), 2);
    let templates: Vec<String> = app
        .messages_of(&user)
        .await?
        .into_iter()
        .map(|(_, template, ..)| template)
        .collect();
    // The welcome is queued first, then the notice that waited.
    assert_eq!(templates, ["welcome", "order_cancelled"]);
    Ok(())
}
