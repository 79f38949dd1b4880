//! payment-service against the real stack: MongoDB, Kafka, and psp-sim (in process, over
//! HTTP on its own port). Order events are produced on the test's prefixed `order.events`
//! with the contracts types, as order-service would.

mod claims;
mod helpers;
mod input;
mod measure;
mod orders;
mod payments;
mod refund_requests;
mod refunds;
mod round_trips;
mod tracing;
