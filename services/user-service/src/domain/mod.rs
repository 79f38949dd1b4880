//! Pure rules of the user domain: input validation, password hashing, refresh tokens, the
//! login throttling policy and the checks of an OpenID Connect sign-in. No I/O here beyond the
//! CPU-bound hash, so all of it is unit-tested.

pub mod oidc;
pub mod password;
pub mod throttle;
pub mod tokens;
pub mod validation;
