//! The languages messages are written in, chosen from the user's BCP 47 `locale`.

use serde::Serialize;

/// A language with its own templates. Anything unknown falls back to English.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Locale {
    En,
    ZhCn,
}

impl Locale {
    /// `zh`, `zh-CN`, `zh-Hans`, `zh_CN` (any case) are Simplified Chinese; the rest English.
    pub fn from_tag(tag: &str) -> Self {
        let tag = tag.trim().to_ascii_lowercase().replace('_', "-");
        let mut parts = tag.split('-');
        match (parts.next(), parts.next()) {
            // Traditional-script variants are not Simplified Chinese; English is the safer
            // fallback than the wrong script.
            (Some("zh"), Some("tw" | "hk" | "mo" | "hant")) => Locale::En,
            (Some("zh"), _) => Locale::ZhCn,
            _ => Locale::En,
        }
    }

    /// The templates folder and the tag stored with each message.
    pub fn tag(self) -> &'static str {
        match self {
            Locale::En => "en",
            Locale::ZhCn => "zh-CN",
        }
    }

    /// A reason code from an event (`card_declined`, `payment_timeout`, ...) in words.
    pub fn reason(self, code: &str) -> String {
        let known = match (self, code) {
            (Locale::En, "card_declined") => "your card was declined",
            (Locale::En, "insufficient_funds") => "the card has insufficient funds",
            (Locale::En, "provider_unavailable") => "the payment provider was unavailable",
            (Locale::En, "out_of_stock") => "some items are out of stock",
            (Locale::En, "payment_timeout") => "the payment did not arrive in time",
            (Locale::En, "customer_request") => "you cancelled it",
            // Refund request reasons (order-service's domain::refund::REASONS).
            (Locale::En, "damaged") => "the goods arrived damaged",
            (Locale::En, "not_as_described") => "the goods are not as described",
            (Locale::En, "wrong_item") => "a wrong item was delivered",
            (Locale::En, "not_received") => "the goods did not arrive",
            (Locale::En, "changed_mind") => "you changed your mind",
            (Locale::En, "other") => "another reason",
            (Locale::En, "approval_timeout") => "we could not decide on it in time",
            // Risk review outcomes of order-service (order.rejected after REVIEW).
            (Locale::En, "review_rejected") => "we could not accept it after reviewing it",
            (Locale::En, "review_timeout") => "we could not review it in time",
            (Locale::ZhCn, "card_declined") => "银行卡被拒绝",
            (Locale::ZhCn, "insufficient_funds") => "银行卡余额不足",
            (Locale::ZhCn, "provider_unavailable") => "支付服务暂时不可用",
            (Locale::ZhCn, "out_of_stock") => "部分商品库存不足",
            (Locale::ZhCn, "payment_timeout") => "未在规定时间内完成付款",
            (Locale::ZhCn, "customer_request") => "您已取消该订单",
            (Locale::ZhCn, "damaged") => "商品到货时已损坏",
            (Locale::ZhCn, "not_as_described") => "商品与描述不符",
            (Locale::ZhCn, "wrong_item") => "发错了商品",
            (Locale::ZhCn, "not_received") => "未收到商品",
            (Locale::ZhCn, "changed_mind") => "您改变了主意",
            (Locale::ZhCn, "other") => "其他原因",
            (Locale::ZhCn, "approval_timeout") => "我们未能在规定时间内完成审核",
            (Locale::ZhCn, "review_rejected") => "经审核，我们无法接受该订单",
            (Locale::ZhCn, "review_timeout") => "我们未能在规定时间内完成订单审核",
            _ => return code.replace('_', " "),
        };
        known.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chinese_tags_map_to_simplified_chinese_and_the_rest_to_english() {
        for tag in ["zh-CN", "zh", "zh-Hans", "ZH_cn", "zh-Hans-CN"] {
            assert_eq!(Locale::from_tag(tag), Locale::ZhCn, "{tag}");
        }
        for tag in ["en", "en-GB", "de", "", "zh-TW", "zh-Hant"] {
            assert_eq!(Locale::from_tag(tag), Locale::En, "{tag}");
        }
    }

    #[test]
    fn reasons_are_words_in_the_language_and_unknown_codes_stay_readable() {
        assert_eq!(Locale::En.reason("card_declined"), "your card was declined");
        assert_eq!(Locale::ZhCn.reason("out_of_stock"), "部分商品库存不足");
        assert_eq!(Locale::En.reason("fraud_suspected"), "fraud suspected");
        assert_eq!(
            Locale::En.reason("review_timeout"),
            "we could not review it in time"
        );
        assert_eq!(
            Locale::ZhCn.reason("review_rejected"),
            "经审核，我们无法接受该订单"
        );
    }
}
