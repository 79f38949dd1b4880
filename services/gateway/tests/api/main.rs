//! Integration tests: real user-service and product-service instances (fresh databases and
//! topics) behind a gateway on port 0, on the local stack.

mod balancing;
mod edge;
mod failures;
mod helpers;
mod limits;
mod routing;
mod storefront;
