//! Pure order rules, free of I/O: the state machine, the pricing of a basket, how many unpaid
//! orders a customer may hold and who may ask for a refund.

pub mod open_orders;
pub mod pricing;
pub mod refund;
pub mod status;
