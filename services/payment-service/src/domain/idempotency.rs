//! The client's `Idempotency-Key`: its shape, and the payment id it stands for.
//!
//! A key is scoped to the user who sent it. The payment's id is derived from (user, key), so
//! the insert of a payment document under that `_id` is the idempotency check itself: two
//! requests with one key can create one payment, whatever their timing, because an insert
//! under a unique `_id` is atomic.

use sha2::{Digest as _, Sha256};
use uuid::Uuid;

/// Checks the header value: 1 to 255 visible ASCII characters.
pub fn validate(key: Option<&str>) -> Result<&str, &'static str> {
    let key = key.map(str::trim).unwrap_or_default();
    if key.is_empty() {
        return Err("the Idempotency-Key header is required");
    }
    if key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("the Idempotency-Key must be 1 to 255 visible ASCII characters");
    }
    Ok(key)
}

/// The payment id for `key` sent by `user` (a version 8 UUID built from a SHA-256 digest).
pub fn payment_id(user: Uuid, key: &str) -> Uuid {
    let digest = Sha256::digest(format!("ferroshop-payment/{user}/{key}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked() {
        assert_eq!(validate(Some(" abc-1 ")), Ok("abc-1"));
        assert!(validate(None).is_err());
        assert!(validate(Some("")).is_err());
        assert!(validate(Some("has space")).is_err());
        assert!(validate(Some(&"x".repeat(256))).is_err());
    }

    #[test]
    fn one_key_of_one_user_is_one_payment() {
        let (ada, bob) = (Uuid::now_v7(), Uuid::now_v7());
        assert_eq!(payment_id(ada, "k"), payment_id(ada, "k"));
        assert_ne!(payment_id(ada, "k"), payment_id(bob, "k"));
        assert_ne!(payment_id(ada, "k"), payment_id(ada, "k2"));
        assert_eq!(payment_id(ada, "k").get_version_num(), 8);
    }
}
