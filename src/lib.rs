//! prtip: a stateless scanner: TCP SYN, ICMP echo and UDP probes.
//!
//! The path of a probe: `target` (what to scan) -> `engine::plan` (in which
//! order) -> `probe` (the frame, by the scan type's module) -> `transport`
//! (out). The path of a reply: `transport` (in) -> `wire::reply` (parsed)
//! -> `probe` (validated by its cookie) ->
//! `engine::run` (deduplicated) -> `output` on standard output, and the
//! `store` task (journal, SQLite, output files) on a thread of its own.

// Unsafe code lives in `sys` (and `transport::xdp`), each block with its reason
// (Cargo.toml's [lints] enforce that). Not denied there: the tests use libc too.
#![deny(unsafe_code)]

pub mod banner;
pub mod cli;
pub mod commands;
pub mod config;
pub mod engine;
pub mod latency;
pub mod net;
pub mod open_hosts;
pub mod output;
pub mod permute;
pub mod plot;
pub mod probe;
pub mod progress;
pub mod random;
pub mod result;
pub mod resume;
pub mod scan;
pub mod service_names;
pub mod store;
#[allow(unsafe_code)]
mod sys;
pub mod target;
pub mod transport;
pub mod wire;
