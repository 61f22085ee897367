//! prtip: a stateless TCP SYN scanner.
//!
//! The path of a probe: `target` (what to scan) -> `engine::plan` (in which
//! order) -> `wire::template` (the frame) -> `transport` (out). The path of a
//! reply: `transport` (in) -> `wire::reply` (validated by its cookie) ->
//! `engine::run` (deduplicated) -> `output` on standard output, and the
//! `store` task (journal, SQLite, output files) on a thread of its own.

pub mod cli;
pub mod commands;
pub mod config;
pub mod engine;
pub mod latency;
pub mod net;
pub mod output;
pub mod permute;
pub mod plot;
pub mod progress;
pub mod random;
pub mod result;
pub mod resume;
pub mod scan;
pub mod store;
pub mod target;
pub mod transport;
pub mod wire;
