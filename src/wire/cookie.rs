//! Keyed sequence-number cookies: the whole of prtip's per-probe state.
//!
//! A SYN's sequence number carries two things back to us, since a SYN-ACK
//! acknowledges it, an RST acknowledges it and an ICMP error quotes it:
//!
//! - the high 16 bits: the send time in 16 us ticks (it wraps every 1.048576 s),
//!   shifted by a keyed per-scan offset;
//! - the low 16 bits: SipHash-1-3 of the 4-tuple and that tick under a
//!   random per-scan key.
//!
//! So every reply type brings its own send time, and a sender that never saw
//! the probe cannot forge a reply, or move its send time, except by guessing
//! the 16-bit MAC. The SYN's TCP timestamp (TSval) carries the same send time
//! to the microsecond, shifted by a keyed offset: a SYN-ACK echoes it in
//! TSecr, and an echo that disagrees with the tick in the sequence number is
//! a forgery (another 16 bits to guess).

use siphasher::sip::SipHasher13;
use std::hash::Hasher;
use std::net::IpAddr;

/// Send times in the sequence number count ticks of 2^4 us.
const TICK_SHIFT: u32 = 4;
const TICK_BITS: u32 = 16;
/// How far apart two send ticks may be before they look the same: 2^20 us.
pub const TICK_WRAP_US: u64 = 1 << (TICK_SHIFT + TICK_BITS);

#[derive(Clone, Copy, PartialEq, Eq)]
pub struct CookieKey {
    k0: u64,
    k1: u64,
    /// Added to every TSval, so that a TSecr cannot be made up from the clock alone.
    ts_offset: u32,
    /// Added to the tick on the wire. Every scan's clock starts at zero, so
    /// without it two scans would send nearly the same sequence numbers, and
    /// a target still holding a half-open connection from the first (killed
    /// before it sent its RSTs, or an RST lost) would find the second's SYN
    /// in its window and answer it with an RST: an open port reported closed.
    tick_offset: u16,
}

impl std::fmt::Debug for CookieKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key is what makes replies unforgeable; keep it out of logs.
        f.write_str("CookieKey(..)")
    }
}

/// The send time a valid reply brought back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendTick(u16);

impl SendTick {
    pub fn of(send_us: u64) -> Self {
        SendTick((send_us >> TICK_SHIFT) as u16)
    }

    /// The round trip to `now_us` (microseconds on the clock the send time
    /// came from), modulo `TICK_WRAP_US`. The middle of the tick is the best
    /// guess for a send time known only to 16 us.
    pub fn rtt_us(self, now_us: u64) -> u64 {
        let since_tick = now_us.wrapping_sub(u64::from(self.0) << TICK_SHIFT) % TICK_WRAP_US;
        since_tick.saturating_sub(1 << (TICK_SHIFT - 1)).max(1)
    }

    /// Whether this tick is one a probe stamped from `from_us` to `to_us`
    /// may carry. Any is, over a span the tick cannot tell apart (or one
    /// that runs backwards: the wall clock was set back).
    pub fn within(self, from_us: u64, to_us: u64) -> bool {
        if to_us < from_us || to_us - from_us >= TICK_WRAP_US {
            return true;
        }
        let from = Self::of(from_us).0;
        self.0.wrapping_sub(from) <= Self::of(to_us).0.wrapping_sub(from)
    }
}

/// Whether a send time echoed to the microsecond (modulo 2^32, as TSecr
/// brings it back) falls from `from_us` to `to_us`; see `SendTick::within`.
pub fn echo_within(send_us: u32, from_us: u64, to_us: u64) -> bool {
    if to_us < from_us || to_us - from_us > u64::from(u32::MAX) {
        return true;
    }
    send_us.wrapping_sub(from_us as u32) <= (to_us - from_us) as u32
}

/// A round trip the tick measured modulo `TICK_WRAP_US`, for a probe about
/// `age_us` old (known to well within half a wrap): the one of the tick's
/// values nearest that age. A reply that took 1.1 s is not read as 52 ms.
pub fn unwrap_rtt_us(tick_rtt_us: u64, age_us: u64) -> u64 {
    let turns = (age_us.saturating_sub(tick_rtt_us) + TICK_WRAP_US / 2) / TICK_WRAP_US;
    tick_rtt_us + turns * TICK_WRAP_US
}

impl CookieKey {
    pub fn new(k0: u64, k1: u64) -> Self {
        let mut key = CookieKey { k0, k1, ts_offset: 0, tick_offset: 0 };
        let offsets = key.mac(&[0xff; 14]);
        key.ts_offset = offsets as u32;
        key.tick_offset = (offsets >> 32) as u16;
        key
    }

    fn mac(&self, bytes: &[u8]) -> u64 {
        let mut h = SipHasher13::new_with_keys(self.k0, self.k1);
        h.write(bytes);
        h.finish()
    }

    fn tagged(&self, src: IpAddr, dst: IpAddr, sport: u16, dport: u16, tick: SendTick) -> u32 {
        // Addresses, ports, tick: 14 bytes for IPv4, 38 for IPv6.
        let mut b = [0u8; 38];
        let mut n = 0;
        let mut put = |bytes: &[u8]| {
            b[n..n + bytes.len()].copy_from_slice(bytes);
            n += bytes.len();
        };
        for ip in [src, dst] {
            let (bytes, len) = super::addr_bytes(ip);
            put(&bytes[..len]);
        }
        put(&sport.to_be_bytes());
        put(&dport.to_be_bytes());
        put(&tick.0.to_be_bytes());
        (u32::from(tick.0.wrapping_add(self.tick_offset)) << 16) | (self.mac(&b[..n]) as u32 & 0xffff)
    }

    /// A keyed tag of the 4-tuple alone, for probes whose replies echo an
    /// identifier but no time (a UDP payload's DNS ID, RPC XID, ...).
    pub fn tag(&self, src: IpAddr, dst: IpAddr, sport: u16, dport: u16) -> u64 {
        // A leading byte no other MAC input starts with keeps these tags apart from the cookies.
        let mut b = [0u8; 37];
        b[0] = b'u';
        let mut n = 1;
        for ip in [src, dst] {
            let (bytes, len) = super::addr_bytes(ip);
            b[n..n + len].copy_from_slice(&bytes[..len]);
            n += len;
        }
        b[n..n + 2].copy_from_slice(&sport.to_be_bytes());
        b[n + 2..n + 4].copy_from_slice(&dport.to_be_bytes());
        self.mac(&b[..n + 4])
    }

    /// The sequence number of the SYN from `src:sport` to `dst:dport` sent at `send_us`.
    pub fn seq(&self, src: IpAddr, dst: IpAddr, sport: u16, dport: u16, send_us: u64) -> u32 {
        self.tagged(src, dst, sport, dport, SendTick::of(send_us))
    }

    /// The send tick in `seq`, if `seq` is one of ours for this 4-tuple.
    pub fn check(&self, src: IpAddr, dst: IpAddr, sport: u16, dport: u16, seq: u32) -> Option<SendTick> {
        let tick = SendTick(((seq >> 16) as u16).wrapping_sub(self.tick_offset));
        (self.tagged(src, dst, sport, dport, tick) == seq).then_some(tick)
    }

    /// The TSval of a SYN sent at `send_us`.
    pub fn tsval(&self, send_us: u64) -> u32 {
        (send_us as u32).wrapping_add(self.ts_offset)
    }

    /// The send time (microseconds, modulo 2^32) a TSecr echoes, if it agrees
    /// with the tick the same reply's acknowledgement number carried.
    pub fn echoed_send_us(&self, tsecr: u32, tick: SendTick) -> Option<u32> {
        let send_us = tsecr.wrapping_sub(self.ts_offset);
        (SendTick::of(u64::from(send_us)) == tick).then_some(send_us)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::net::{Ipv4Addr, Ipv6Addr};

    const A: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn depends_on_every_field_the_time_and_the_key() {
        let k = CookieKey::new(1, 2);
        let base = k.seq(A, B, 40000, 80, 5_000_000);
        assert_eq!(base, k.seq(A, B, 40000, 80, 5_000_000));
        // Within one tick the sequence number is the same.
        assert_eq!(base, k.seq(A, B, 40000, 80, 5_000_015));
        assert_ne!(base, k.seq(A, B, 40000, 80, 5_000_016));
        assert_ne!(base, k.seq(B, A, 40000, 80, 5_000_000));
        assert_ne!(base, k.seq(A, Ipv4Addr::new(10, 0, 0, 3).into(), 40000, 80, 5_000_000));
        assert_ne!(base, k.seq(A, B, 40001, 80, 5_000_000));
        assert_ne!(base, k.seq(A, B, 40000, 81, 5_000_000));
        assert_ne!(base, CookieKey::new(1, 3).seq(A, B, 40000, 80, 5_000_000));
        // Another scan's numbers for the same probe at the same time are far
        // apart: not within a target's receive window of each other.
        for (k0, k1) in [(1, 3), (9, 9), (123, 456)] {
            let other = CookieKey::new(k0, k1).seq(A, B, 40000, 80, 5_000_000);
            assert!(base.wrapping_sub(other).min(other.wrapping_sub(base)) > 1 << 20, "{base:#x} {other:#x}");
        }
    }

    #[test]
    fn a_send_time_must_fall_when_its_probe_was_stamped() {
        let t = SendTick::of(5_000_000);
        assert!(t.within(4_990_000, 5_010_000));
        assert!(t.within(5_000_000, 5_000_015), "the tick's own 16 us");
        assert!(!t.within(5_000_016, 5_010_000));
        assert!(!t.within(4_000_000, 4_999_983));
        // Across the tick's wrap: a window of 10 ms around 2^20 us.
        assert!(SendTick::of(TICK_WRAP_US + 3).within(TICK_WRAP_US - 5_000, TICK_WRAP_US + 5_000));
        assert!(!SendTick::of(TICK_WRAP_US + 6_000).within(TICK_WRAP_US - 5_000, TICK_WRAP_US + 5_000));
        // A window the tick cannot tell apart, or a clock set back: no constraint.
        assert!(t.within(0, TICK_WRAP_US) && t.within(9_000_000, 8_000_000));
        // The microsecond echo, modulo 2^32.
        assert!(echo_within(5_000_000, 4_990_000, 5_010_000));
        assert!(!echo_within(5_000_000, 5_000_001, 5_010_000));
        let wrap = 1u64 << 32;
        assert!(echo_within(3, wrap - 10, wrap + 10) && !echo_within(11, wrap - 10, wrap + 10));
    }

    #[test]
    fn ipv6_cookies_cover_every_address_byte() {
        let k = CookieKey::new(1, 2);
        let a: IpAddr = "fd00:200::1".parse().unwrap();
        let b: Ipv6Addr = "fd00:201::7".parse().unwrap();
        let seq = k.seq(a, b.into(), 40000, 80, 5_000_000);
        assert_eq!(k.check(a, b.into(), 40000, 80, seq), Some(SendTick::of(5_000_000)));
        for byte in 0..16 {
            let mut other = b.octets();
            other[byte] ^= 1;
            assert_eq!(k.check(a, Ipv6Addr::from(other).into(), 40000, 80, seq), None, "byte {byte}");
        }
        // The IPv4 address with the same low bytes is another target.
        assert_ne!(
            seq,
            k.seq(Ipv4Addr::new(0, 0, 0, 1).into(), Ipv4Addr::new(0, 0, 0, 7).into(), 40000, 80, 5_000_000)
        );
    }

    #[test]
    fn tags_depend_on_every_field_and_the_key_but_not_the_time() {
        let k = CookieKey::new(1, 2);
        let base = k.tag(A, B, 40000, 53);
        assert_eq!(base, k.tag(A, B, 40000, 53));
        for other in [k.tag(B, A, 40000, 53), k.tag(A, B, 40001, 53), k.tag(A, B, 40000, 54)] {
            assert_ne!(base, other);
        }
        assert_ne!(base, CookieKey::new(1, 3).tag(A, B, 40000, 53));
    }

    #[test]
    fn check_returns_the_tick_of_our_own_numbers_only() {
        let k = CookieKey::new(1, 2);
        let seq = k.seq(A, B, 40000, 80, 123_456);
        assert_eq!(k.check(A, B, 40000, 80, seq), Some(SendTick::of(123_456)));
        assert_eq!(k.check(A, B, 40001, 80, seq), None);
        // Moving the send time (the high half) breaks the MAC.
        assert_eq!(k.check(A, B, 40000, 80, seq.wrapping_add(1 << 16)), None);
        assert_eq!(k.check(A, B, 40000, 80, seq ^ 1), None);
        // Of all 2^16 numbers with this tick, exactly one is ours.
        let hi = seq & 0xffff_0000;
        let ours = (0..=0xffffu32).filter(|lo| k.check(A, B, 40000, 80, hi | lo).is_some()).count();
        assert_eq!(ours, 1);
    }

    #[test]
    fn round_trips_from_ticks_are_within_half_a_tick_and_wrap() {
        let sent = 7_000_003u64;
        for rtt in [1u64, 20, 1000, 20_000, 999_999] {
            let got = SendTick::of(sent).rtt_us(sent + rtt);
            assert!(got.abs_diff(rtt) <= 8, "{rtt} measured as {got}");
        }
        // Past the wrap the time is ambiguous: 1.2 s reads as 0.15 s.
        let got = SendTick::of(sent).rtt_us(sent + 1_200_000);
        assert!(got.abs_diff(1_200_000 - TICK_WRAP_US) <= 8);
        // Known to be about 1.2 s old (to 10 ms, say), the probe's round trip is read whole.
        for age in [1_190_000, 1_200_000, 1_210_000] {
            assert_eq!(unwrap_rtt_us(got, age), got + TICK_WRAP_US);
        }
        assert_eq!(unwrap_rtt_us(50_000, 40_000), 50_000, "an age a little short of the tick's");
        assert_eq!(unwrap_rtt_us(50_000, 60_000), 50_000);
        assert_eq!(unwrap_rtt_us(50_000, 3 * TICK_WRAP_US + 45_000), 50_000 + 3 * TICK_WRAP_US);
    }

    #[test]
    fn a_tsecr_must_agree_with_the_tick() {
        let k = CookieKey::new(1, 2);
        let send_us = 4_000_123u64;
        let tick = SendTick::of(send_us);
        assert_eq!(k.echoed_send_us(k.tsval(send_us), tick), Some(send_us as u32));
        // The plain clock value, or a shifted one, is not an echo of ours.
        assert_eq!(k.echoed_send_us(send_us as u32, tick), None);
        assert_eq!(k.echoed_send_us(k.tsval(send_us - 1000), tick), None);
        assert_eq!(k.echoed_send_us(k.tsval(send_us + 1000), tick), None);
    }
}
