//! Pure order rules, free of I/O: the state machine, the pricing of a basket, how many unpaid
//! orders a customer may hold, who may ask for a refund, and the risk check's reading of its
//! decision table.

pub mod open_orders;
pub mod pricing;
pub mod refund;
pub mod risk;
pub mod status;
