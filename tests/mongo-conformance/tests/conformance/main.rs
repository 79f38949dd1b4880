//! The MongoDB conformance suite: one test per behaviour the code relies on, each against a
//! database of its own on the server of `MONGODB_URL`, so the tests run in parallel.

mod atomicity;
mod durability;
mod helpers;
mod operators;
mod queries;
