//! End-to-end tests of the ferroshop platform. The crate has no code of its own: its tests in
//! `tests/system/` start every service's real binary (N instances of each stateless one),
//! on fresh databases and topics, behind the gateway, and drive the checkout through the
//! gateway's HTTP API only, checking the results in the services' answers, the simulators'
//! records, the SMTP inbox and Zipkin.
