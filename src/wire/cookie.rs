//! Keyed sequence-number cookies: the whole of prtip's per-probe state.
//!
//! A SYN's sequence number is SipHash-1-3 of its 4-tuple under a random
//! per-scan key. A reply is ours only if it acknowledges that number plus one
//! (or, in an ICMP error, quotes it), which a sender that never saw the probe
//! can only guess with probability 2^-32.

use siphasher::sip::SipHasher13;
use std::hash::Hasher;
use std::net::Ipv4Addr;

#[derive(Clone, Copy, PartialEq, Eq)]
pub struct CookieKey {
    k0: u64,
    k1: u64,
}

impl std::fmt::Debug for CookieKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key is what makes replies unforgeable; keep it out of logs.
        f.write_str("CookieKey(..)")
    }
}

impl CookieKey {
    pub fn new(k0: u64, k1: u64) -> Self {
        CookieKey { k0, k1 }
    }

    /// The sequence number of the SYN from `src:sport` to `dst:dport`.
    pub fn seq(&self, src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16) -> u32 {
        let mut b = [0u8; 12];
        b[..4].copy_from_slice(&src.octets());
        b[4..8].copy_from_slice(&dst.octets());
        b[8..10].copy_from_slice(&sport.to_be_bytes());
        b[10..].copy_from_slice(&dport.to_be_bytes());
        let mut h = SipHasher13::new_with_keys(self.k0, self.k1);
        h.write(&b);
        h.finish() as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depends_on_every_field_and_the_key() {
        let k = CookieKey::new(1, 2);
        let (a, b) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
        let base = k.seq(a, b, 40000, 80);
        assert_eq!(base, k.seq(a, b, 40000, 80));
        assert_ne!(base, k.seq(b, a, 40000, 80));
        assert_ne!(base, k.seq(a, Ipv4Addr::new(10, 0, 0, 3), 40000, 80));
        assert_ne!(base, k.seq(a, b, 40001, 80));
        assert_ne!(base, k.seq(a, b, 40000, 81));
        assert_ne!(base, CookieKey::new(1, 3).seq(a, b, 40000, 80));
    }
}
