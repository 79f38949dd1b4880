//! Pure rules of the catalog: input validation (money, SKUs, specs, limits), listing sort
//! orders and their opaque keyset cursors, search text bounds, facet counting, the answer's
//! language, stock arithmetic and the lines an order reserves. No I/O, so all of it is
//! unit-tested.

pub mod facets;
pub mod language;
pub mod listing;
pub mod reservation;
pub mod search;
pub mod stock;
pub mod validation;
