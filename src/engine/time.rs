//! Where a scan's time comes from: the system's clocks, or a test's. The
//! engine reads the time and waits only through `Time`, so its tests run
//! on a clock that passes as fast as the scan waits, not on the wall clock.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub trait Time: Sync {
    /// Nanoseconds on a clock that never goes back.
    fn monotonic_ns(&self) -> u64;
    /// Nanoseconds since the Unix epoch (the kernel's receive timestamps'
    /// clock, which may be set back or forth).
    fn wall_ns(&self) -> u64;
    /// Lets `d` pass.
    fn sleep(&self, d: Duration);
    /// The calling thread waits on this time no more: a test's clock, which
    /// passes only while every thread of the scan waits, stops counting it.
    fn leave(&self) {}
}

/// The system's clocks.
#[derive(Debug, Clone, Copy)]
pub struct SystemClocks {
    origin: Instant,
}

impl SystemClocks {
    pub fn new() -> Self {
        SystemClocks { origin: Instant::now() }
    }
}

impl Default for SystemClocks {
    fn default() -> Self {
        Self::new()
    }
}

impl Time for SystemClocks {
    fn monotonic_ns(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }

    fn wall_ns(&self) -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos() as u64
    }

    /// Sleeps for long waits and spins for short ones: a sleep wakes tens of
    /// microseconds late, which at a million packets per second is a burst.
    fn sleep(&self, d: Duration) {
        if d > Duration::from_micros(200) {
            std::thread::sleep(d - Duration::from_micros(100));
        } else {
            let end = Instant::now() + d;
            while Instant::now() < end {
                std::hint::spin_loop();
            }
        }
    }
}
