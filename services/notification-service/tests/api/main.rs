//! notification-service against the real local stack: Kafka in, PostgreSQL state, mail read
//! back from Mailpit's HTTP API, SMS from the test's own sms-sim.

mod api;
mod burst;
mod delivery;
mod helpers;
mod reminders;
mod shutdown;
mod traces;
mod triggers;
