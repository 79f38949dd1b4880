//! Pure rules of the user domain: input validation, password hashing, refresh tokens and the
//! login throttling policy. No I/O here beyond the CPU-bound hash, so all of it is unit-tested.

pub mod password;
pub mod throttle;
pub mod tokens;
pub mod validation;
