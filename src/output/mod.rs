//! Result formats for standard output.

pub mod ndjson;
pub mod text;
pub mod time;

use crate::result::ScanResult;
use std::io;

/// A sink for results, fed as they arrive and finished once at the end.
pub trait ResultWriter {
    fn write(&mut self, result: &ScanResult) -> io::Result<()>;
    fn finish(&mut self) -> io::Result<()>;
}
