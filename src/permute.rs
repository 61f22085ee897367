//! A keyed bijection over `[0, n)`: the order in which probes are sent.
//!
//! A balanced Feistel network over the smallest even-bit domain `2^(2h) >= n`
//! is a permutation of that domain whatever its round function; cycle-walking
//! (re-encrypting until the value falls below `n`) restricts it to `[0, n)`.
//! The domain is less than `4n`, so a walk takes fewer than four steps on
//! average. This is masscan's BlackRock idea with a cheaper round function:
//! the order must look random to the network, not resist cryptanalysis.

const ROUNDS: usize = 4;

#[derive(Debug, Clone)]
pub struct Permutation {
    n: u64,
    half_bits: u32,
    half_mask: u64,
    keys: [u64; ROUNDS],
}

impl Permutation {
    pub fn new(n: u64, seed: u64) -> Self {
        let bits = 64 - n.saturating_sub(1).leading_zeros();
        let half_bits = bits.div_ceil(2).max(1);
        let mut state = seed;
        let keys = std::array::from_fn(|_| splitmix64(&mut state));
        Permutation { n, half_bits, half_mask: (1u64 << half_bits) - 1, keys }
    }

    pub fn len(&self) -> u64 {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// The element at position `i` of the permuted order; `i` must be below `len()`.
    pub fn get(&self, i: u64) -> u64 {
        debug_assert!(i < self.n);
        let mut x = self.encrypt(i);
        while x >= self.n {
            x = self.encrypt(x);
        }
        x
    }

    /// Where `v` stands in the permuted order: `get(position_of(v)) == v`.
    /// Cycle-walking backwards undoes cycle-walking forwards: the walk that
    /// led from a position to `v` passed only through values `>= n`.
    pub fn position_of(&self, v: u64) -> u64 {
        debug_assert!(v < self.n);
        let mut x = self.decrypt(v);
        while x >= self.n {
            x = self.decrypt(x);
        }
        x
    }

    fn decrypt(&self, x: u64) -> u64 {
        let mut left = x >> self.half_bits;
        let mut right = x & self.half_mask;
        for key in self.keys.iter().rev() {
            let prev = right ^ (round(left, *key) & self.half_mask);
            right = left;
            left = prev;
        }
        (left << self.half_bits) | right
    }

    fn encrypt(&self, x: u64) -> u64 {
        let mut left = x >> self.half_bits;
        let mut right = x & self.half_mask;
        for key in &self.keys {
            let next = left ^ (round(right, *key) & self.half_mask);
            left = right;
            right = next;
        }
        (left << self.half_bits) | right
    }
}

fn round(x: u64, key: u64) -> u64 {
    let mut z = x ^ key;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    round(*state, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_bijection(n: u64, seed: u64) {
        let p = Permutation::new(n, seed);
        let mut seen = vec![false; n as usize];
        for i in 0..n {
            let v = p.get(i);
            assert!(v < n, "n={n}: {v} out of range");
            assert!(!seen[v as usize], "n={n}: {v} twice");
            seen[v as usize] = true;
            assert_eq!(p.position_of(v), i, "n={n}: the inverse of {i}");
        }
    }

    #[test]
    fn is_a_bijection_for_many_sizes() {
        for n in (0..300).chain([1021, 1024, 1025, 4093, 4096, 65521, 65535, 65536, 65537, 100_003, 131_072]) {
            assert_bijection(n, 0x5eed ^ n);
        }
    }

    #[test]
    fn is_a_bijection_for_many_seeds() {
        for seed in 0..50 {
            assert_bijection(997, seed);
        }
    }

    #[test]
    fn the_seed_changes_the_order_and_fixes_it() {
        let order = |seed| (0..64).map(|i| Permutation::new(64, seed).get(i)).collect::<Vec<_>>();
        assert_eq!(order(1), order(1));
        assert_ne!(order(1), order(2));
        assert_ne!(order(1), (0..64).collect::<Vec<_>>());
    }

    #[test]
    fn huge_domains_stay_in_range() {
        let n = (1u64 << 32) * 65535;
        let p = Permutation::new(n, 7);
        for i in (0..n).step_by((n / 1000) as usize) {
            let v = p.get(i);
            assert!(v < n);
            assert_eq!(p.position_of(v), i);
        }
    }

    #[test]
    fn successive_positions_spread_over_hosts() {
        // 256 hosts x 4 ports, hosts varying fastest in the index: the first 64
        // probes should touch many different hosts, not one host's ports.
        let p = Permutation::new(1024, 42);
        let mut hosts: Vec<u64> = (0..64).map(|i| p.get(i) % 256).collect();
        hosts.sort();
        hosts.dedup();
        assert!(hosts.len() > 48, "only {} distinct hosts", hosts.len());
    }
}
