//! Seeds and cookie keys, from the kernel's random pool.

pub fn u64() -> u64 {
    let mut b = [0u8; 8];
    // SAFETY: b is valid for writing 8 bytes. getrandom(2) without flags blocks
    // only before the pool is initialised at boot and cannot return short for 8 bytes.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    assert_eq!(n, 8, "getrandom(2) failed: {}", std::io::Error::last_os_error());
    u64::from_ne_bytes(b)
}
