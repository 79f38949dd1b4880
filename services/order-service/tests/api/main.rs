//! order-service against the real stack: PostgreSQL, Kafka and a real product-service (for the
//! catalog replica and the reservations), each test with its own databases and topics.

mod helpers;
mod live_status;
mod orders;
mod refunds;
mod review;
mod saga;
