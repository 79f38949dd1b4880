//! Pure rules of the catalog: input validation (money, SKUs, specs, limits), listing sort
//! orders and their opaque keyset cursors, search-term escaping, stock arithmetic and the lines
//! an order reserves. No I/O,
//! so all of it is unit-tested.

pub mod listing;
pub mod reservation;
pub mod search;
pub mod stock;
pub mod validation;
