//! Pure rules: which event becomes which message on which channel, in which language, with
//! which words. No I/O here; everything is unit tested.

pub mod locale;
pub mod money;
pub mod notice;
pub mod reminder;
pub mod templates;
