//! Pure order rules, free of I/O: the state machine, the pricing of a basket, who may ask
//! for a refund, and the risk check's reading of its decision table.

pub mod pricing;
pub mod refund;
pub mod risk;
pub mod status;
