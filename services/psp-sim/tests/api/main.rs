//! psp-sim over HTTP: idempotent charges (also under concurrency), the test cards, refunds,
//! look-ups, API key and bad input.

mod charges;
mod helpers;
