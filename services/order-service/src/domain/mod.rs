//! Pure order rules, free of I/O: the state machine, the pricing of a basket, the checks of a
//! shipping address, how many unpaid orders a customer may hold, who may ask for a refund, and
//! the risk check's reading of its decision table.

pub mod address;
pub mod open_orders;
pub mod pricing;
pub mod refund;
pub mod risk;
pub mod status;
