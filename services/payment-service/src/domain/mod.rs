//! The rules of payments, free of I/O: card checks, the idempotency key, the order and payment
//! states, and the circuit breaker. Each is unit-tested beside its code.

pub mod breaker;
pub mod card;
pub mod idempotency;
pub mod order_status;
pub mod payment_status;
