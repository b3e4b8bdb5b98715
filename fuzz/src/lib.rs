//! The code behind each fuzz target (`fuzz_targets/<name>.rs` calls `<name>::run`).
//!
//! One module per target, each documenting its input format. The seed corpora under
//! `corpus/<name>/` are written in these formats by `examples/gen_corpus.rs`. The
//! modules name their helpers as `crate::input` and `crate::conn_util`, so a crate's
//! own test can include a target's module with `#[path]` and replay the seeds through
//! exactly this code (crates/scsi, device and iscsi `tests/fuzz_corpus.rs`).
#![forbid(unsafe_code)]

pub mod cdb_ram;
pub mod conn_util;
pub mod input;
pub mod login_text;
pub mod pdu_header;
pub mod pdu_stream;
pub mod pipeline;
pub mod sense_parse;

pub use conn_util::{Observed, feed_in_chunks, login_pdu, new_connection};
