//! Message texts from templates (minijinja), one set per language under `templates/<locale>/`.
//!
//! Per notice there are two files: `<name>.txt` with the blocks `subject`, `text` and, where
//! the notice may go by SMS, `sms`; and `<name>.html`, the HTML body, which extends the shared
//! `layout.html`. `.html` templates are auto-escaped (a user's name cannot inject markup);
//! `.txt` ones are not (plain text must not show `&amp;`). The files are compiled into the
//! binary and parsed at start, so a broken template stops the service before it sends anything.

use anyhow::Context as _;
use minijinja::{AutoEscape, Environment};
use serde_json::Value;

use super::locale::Locale;

/// Every template file, by its name in the environment.
const FILES: &[(&str, &str)] = &[
    ("layout.html", include_str!("../../templates/layout.html")),
    (
        "en/welcome.txt",
        include_str!("../../templates/en/welcome.txt"),
    ),
    (
        "en/welcome.html",
        include_str!("../../templates/en/welcome.html"),
    ),
    (
        "en/order_received.txt",
        include_str!("../../templates/en/order_received.txt"),
    ),
    (
        "en/order_received.html",
        include_str!("../../templates/en/order_received.html"),
    ),
    (
        "en/receipt.txt",
        include_str!("../../templates/en/receipt.txt"),
    ),
    (
        "en/receipt.html",
        include_str!("../../templates/en/receipt.html"),
    ),
    (
        "en/payment_failed.txt",
        include_str!("../../templates/en/payment_failed.txt"),
    ),
    (
        "en/payment_failed.html",
        include_str!("../../templates/en/payment_failed.html"),
    ),
    (
        "en/order_rejected.txt",
        include_str!("../../templates/en/order_rejected.txt"),
    ),
    (
        "en/order_rejected.html",
        include_str!("../../templates/en/order_rejected.html"),
    ),
    (
        "en/order_cancelled.txt",
        include_str!("../../templates/en/order_cancelled.txt"),
    ),
    (
        "en/order_cancelled.html",
        include_str!("../../templates/en/order_cancelled.html"),
    ),
    (
        "zh-CN/welcome.txt",
        include_str!("../../templates/zh-CN/welcome.txt"),
    ),
    (
        "zh-CN/welcome.html",
        include_str!("../../templates/zh-CN/welcome.html"),
    ),
    (
        "zh-CN/order_received.txt",
        include_str!("../../templates/zh-CN/order_received.txt"),
    ),
    (
        "zh-CN/order_received.html",
        include_str!("../../templates/zh-CN/order_received.html"),
    ),
    (
        "zh-CN/receipt.txt",
        include_str!("../../templates/zh-CN/receipt.txt"),
    ),
    (
        "zh-CN/receipt.html",
        include_str!("../../templates/zh-CN/receipt.html"),
    ),
    (
        "zh-CN/payment_failed.txt",
        include_str!("../../templates/zh-CN/payment_failed.txt"),
    ),
    (
        "zh-CN/payment_failed.html",
        include_str!("../../templates/zh-CN/payment_failed.html"),
    ),
    (
        "zh-CN/order_rejected.txt",
        include_str!("../../templates/zh-CN/order_rejected.txt"),
    ),
    (
        "zh-CN/order_rejected.html",
        include_str!("../../templates/zh-CN/order_rejected.html"),
    ),
    (
        "zh-CN/order_cancelled.txt",
        include_str!("../../templates/zh-CN/order_cancelled.txt"),
    ),
    (
        "zh-CN/order_cancelled.html",
        include_str!("../../templates/zh-CN/order_cancelled.html"),
    ),
    (
        "en/order_refunded.txt",
        include_str!("../../templates/en/order_refunded.txt"),
    ),
    (
        "en/order_refunded.html",
        include_str!("../../templates/en/order_refunded.html"),
    ),
    (
        "zh-CN/order_refunded.txt",
        include_str!("../../templates/zh-CN/order_refunded.txt"),
    ),
    (
        "zh-CN/order_refunded.html",
        include_str!("../../templates/zh-CN/order_refunded.html"),
    ),
    (
        "en/refund_rejected.txt",
        include_str!("../../templates/en/refund_rejected.txt"),
    ),
    (
        "en/refund_rejected.html",
        include_str!("../../templates/en/refund_rejected.html"),
    ),
    (
        "zh-CN/refund_rejected.txt",
        include_str!("../../templates/zh-CN/refund_rejected.txt"),
    ),
    (
        "zh-CN/refund_rejected.html",
        include_str!("../../templates/zh-CN/refund_rejected.html"),
    ),
    (
        "en/approval_reminder.txt",
        include_str!("../../templates/en/approval_reminder.txt"),
    ),
    (
        "en/approval_reminder.html",
        include_str!("../../templates/en/approval_reminder.html"),
    ),
    (
        "zh-CN/approval_reminder.txt",
        include_str!("../../templates/zh-CN/approval_reminder.txt"),
    ),
    (
        "zh-CN/approval_reminder.html",
        include_str!("../../templates/zh-CN/approval_reminder.html"),
    ),
];

/// The words of one e-mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// The parsed templates.
#[derive(Debug)]
pub struct Templates {
    env: Environment<'static>,
}

impl Templates {
    /// Parses every template; fails on the first broken one.
    pub fn load() -> anyhow::Result<Self> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_auto_escape_callback(|name| {
            if name.ends_with(".html") {
                AutoEscape::Html
            } else {
                AutoEscape::None
            }
        });
        // Undefined variables are bugs in a template, not blanks in a customer's mail.
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        for (name, source) in FILES {
            env.add_template(name, source)
                .with_context(|| format!("parsing template {name}"))?;
        }
        Ok(Self { env })
    }

    /// Renders the blocks of `<locale>/<template>.txt`, in the order asked.
    fn blocks<const N: usize>(
        &self,
        template: &str,
        locale: Locale,
        context: &Value,
        names: [&str; N],
    ) -> anyhow::Result<[String; N]> {
        let name = format!("{}/{template}.txt", locale.tag());
        let mut captured = self
            .env
            .get_template(&name)
            .with_context(|| format!("no template {name}"))?
            .render_captured(context)
            .with_context(|| format!("evaluating {name}"))?;
        let mut rendered = [const { String::new() }; N];
        for (slot, block) in rendered.iter_mut().zip(names) {
            *slot = captured
                .with_state_mut(|state| state.render_block(block))
                .with_context(|| format!("rendering {name} block {block}"))?;
        }
        Ok(rendered)
    }

    /// Subject, plain text and HTML of `template` in `locale`.
    pub fn email(&self, template: &str, locale: Locale, context: &Value) -> anyhow::Result<Email> {
        let [subject, text] = self.blocks(template, locale, context, ["subject", "text"])?;
        let html_name = format!("{}/{template}.html", locale.tag());
        let html = self
            .env
            .get_template(&html_name)
            .with_context(|| format!("no template {html_name}"))?
            .render(context)
            .with_context(|| format!("rendering {html_name}"))?;
        Ok(Email {
            subject: subject.trim().replace('\n', " "),
            text: text.trim().to_owned() + "\n",
            html,
        })
    }

    /// The SMS text of `template` in `locale` (its `sms` block).
    pub fn sms(&self, template: &str, locale: Locale, context: &Value) -> anyhow::Result<String> {
        let [text] = self.blocks(template, locale, context, ["sms"])?;
        Ok(text.trim().replace('\n', " "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn order_context() -> Value {
        json!({
            "name": "Ada <b>Lovelace</b> & co",
            "order_id": "0190c0de-0000-7000-8000-000000000001",
            "order_ref": "0190C0DE",
            "total": "59.97 EUR",
            "amount": "59.97 EUR",
            "payment_ref": "0190BEEF",
            "reason": "some items are out of stock",
            "request_id": "0190c0de-0000-7000-8000-000000000002",
            "items": [{"name": "Kettle", "quantity": 3, "unit_price": "19.99 EUR", "line_total": "59.97 EUR"}],
        })
    }

    #[test]
    fn every_notice_renders_in_every_language() -> TestResult {
        let templates = Templates::load()?;
        for template in [
            "welcome",
            "order_received",
            "receipt",
            "payment_failed",
            "order_rejected",
            "order_cancelled",
            "order_refunded",
            "refund_rejected",
            "approval_reminder",
        ] {
            for locale in [Locale::En, Locale::ZhCn] {
                let email = templates.email(template, locale, &order_context())?;
                assert!(!email.subject.is_empty(), "{template} {locale:?}");
                assert!(email.text.contains("Ada"), "{template} {locale:?}");
                assert!(email.html.contains("<html"), "{template} {locale:?}");
            }
        }
        for template in ["receipt", "order_refunded"] {
            for locale in [Locale::En, Locale::ZhCn] {
                let sms = templates.sms(template, locale, &order_context())?;
                assert!(
                    sms.contains("0190C0DE") && sms.contains("59.97 EUR"),
                    "{template}: {sms}"
                );
            }
        }
        Ok(())
    }

    #[test]
    fn html_escapes_what_the_user_typed_and_plain_text_does_not() -> TestResult {
        let email = Templates::load()?.email("welcome", Locale::En, &order_context())?;
        assert!(
            email
                .html
                .contains("Ada &lt;b&gt;Lovelace&lt;&#x2f;b&gt; &amp; co"),
            "{}",
            email.html
        );
        assert!(
            email.text.contains("Ada <b>Lovelace</b> & co"),
            "{}",
            email.text
        );
        Ok(())
    }

    #[test]
    fn the_order_mail_lists_the_lines_in_the_users_language() -> TestResult {
        let templates = Templates::load()?;
        let en = templates.email("order_received", Locale::En, &order_context())?;
        assert_eq!(en.subject, "We received your order 0190C0DE");
        assert!(en.text.contains("3 x Kettle"), "{}", en.text);
        let zh = templates.email("order_received", Locale::ZhCn, &order_context())?;
        assert_eq!(zh.subject, "我们已收到您的订单 0190C0DE");
        assert!(zh.text.contains("合计：59.97 EUR"), "{}", zh.text);
        Ok(())
    }

    #[test]
    fn a_missing_variable_is_an_error_not_a_blank() -> TestResult {
        let templates = Templates::load()?;
        assert!(
            templates
                .email("receipt", Locale::En, &json!({"name": "Ada"}))
                .is_err()
        );
        Ok(())
    }
}
