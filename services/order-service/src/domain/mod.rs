//! Pure order rules, free of I/O: the state machine, the pricing of a basket and who may ask
//! for a refund.

pub mod pricing;
pub mod refund;
pub mod status;
