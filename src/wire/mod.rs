//! Bytes on the wire: pure functions from values to frames and back.

pub mod arp;
pub mod checksum;
pub mod connection;
pub mod cookie;
pub mod field;
pub mod ndp;
pub mod reply;
pub mod segment;
pub mod sources;

use std::net::IpAddr;

/// An address's bytes in network order (the first 4 or 16 of the array) and how many there are.
pub fn addr_bytes(ip: IpAddr) -> ([u8; 16], usize) {
    let mut b = [0u8; 16];
    match ip {
        IpAddr::V4(a) => {
            b[..4].copy_from_slice(&a.octets());
            (b, 4)
        }
        IpAddr::V6(a) => (a.octets(), 16),
    }
}
