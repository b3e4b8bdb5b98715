//! The disk class driver: a block API on a logical unit.
#![forbid(unsafe_code)]
