//! The contract between ferroshop's code and its MongoDB server. The crate has no code of its
//! own: its tests in `tests/conformance/` exercise, against whatever `MONGODB_URL` points at,
//! every MongoDB behaviour that product-service, payment-service and `messaging::mongo` rely
//! on, and each test names the code that relies on it. The suite passes on real MongoDB
//! (it is the contract of the code, not of a stand-in) and on the local server that
//! `cargo xtask up` runs; FerretDB 1.24, the earlier local server, fails it (guarded updates
//! are not atomic there). See docs/ARCHITECTURE.md, "The local MongoDB-wire server".
