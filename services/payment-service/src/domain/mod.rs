//! The rules of payments, free of I/O: card checks, the idempotency key, the order and payment
//! states, the circuit breaker and the throttle of declined cards. Each is unit-tested beside
//! its code.

pub mod breaker;
pub mod card;
pub mod decline_throttle;
pub mod idempotency;
pub mod order_status;
pub mod payment_status;
