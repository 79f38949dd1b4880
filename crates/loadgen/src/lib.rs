//! ferroshop's load generator: the library behind `cargo xtask bench` and the `loadgen` CLI.
//!
//! It drives HTTP/1.1 keep-alive connections with hyper in two ways: closed-loop saturation
//! (N connections, each sending as soon as its last answer arrived) and open-loop fixed rate
//! (requests due at fixed times, latency measured from the due time so a stalled server cannot
//! hide its queue: no coordinated omission). Latencies go into HDR histograms and are reported
//! as percentiles, never averages. `checkout` runs the whole checkout saga through the gateway
//! and splits each order's time into the saga's steps; `audit` checks the platform's invariants
//! over every order a run created; `hot` sends a burst of orders at one product with little stock. `hello` is a bare hyper server used as
//! the ceiling the services are compared with. Reports serialise to JSON, which is how xtask
//! reads the results of the release-built CLI (a debug-built load generator would measure
//! itself).

pub mod audit;
pub mod checkout;
pub mod conn;
pub mod hello;
pub mod hot;
pub mod load;
pub mod progress;
pub mod schedule;
pub mod stats;

pub use checkout::{CheckoutConfig, CheckoutPace, CheckoutReport, Popularity, WindowEdge};
pub use conn::{Endpoint, RequestSpec};
pub use hot::{HotConfig, HotReport};
pub use load::{LoadSpec, Pace, RunReport};
pub use stats::{LatencySummary, format_ms};
