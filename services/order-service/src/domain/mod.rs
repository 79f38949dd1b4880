//! Pure order rules, free of I/O: the state machine and the pricing of a basket.

pub mod pricing;
pub mod status;
