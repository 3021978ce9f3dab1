//! Garbage input for the bad-input and hostile-client tests (`tests/bad_input.rs`,
//! `tests/hostile_tls.rs`): a small seeded pseudo-random generator, so that a failing input can
//! be made again from its seed.

/// xorshift64*: enough randomness for garbage input, no extra crates.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}
