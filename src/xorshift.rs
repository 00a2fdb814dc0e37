//! A tiny deterministic generator (xorshift64): the same seed gives the same
//! sequence on every board, without a random-number dependency. For the test
//! scene's precomputed noise and for tests' emulated networks and corrupted
//! inputs; never for anything secret.

#[derive(Debug, Clone)]
pub struct XorShift(pub u64);

impl XorShift {
    /// The next value. The seed must not be 0 (the sequence would stay 0).
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A value in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_gives_the_same_sequence_and_below_stays_below() {
        let (mut a, mut b) = (XorShift(7), XorShift(7));
        let first: Vec<u64> = (0..4).map(|_| a.next_u64()).collect();
        assert_eq!(first, (0..4).map(|_| b.next_u64()).collect::<Vec<_>>());
        assert_ne!(first[0], first[1]);
        assert!((0..1000).all(|_| a.below(10) < 10));
        assert_eq!(a.below(0), 0);
    }
}
