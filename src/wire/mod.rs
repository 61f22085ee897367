//! Bytes on the wire: pure functions from values to frames and back.

pub mod arp;
pub mod checksum;
pub mod cookie;
pub mod ndp;
pub mod reply;
pub mod template;
