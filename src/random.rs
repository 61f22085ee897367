//! Seeds and cookie keys, from the kernel's random pool.

pub fn u64() -> u64 {
    let mut b = [0u8; 8];
    // Fails only without a kernel random pool, where no scan is safe to run.
    if let Err(e) = crate::sys::random_bytes(&mut b) {
        panic!("getrandom(2) failed: {e}");
    }
    u64::from_ne_bytes(b)
}
