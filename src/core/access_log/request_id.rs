//! Request ids for the access logs (`$ai_gateway_request_id`): 32 hex digits, a random
//! 64-bit prefix drawn once per worker and a 64-bit counter mixed by a bijection (so ids of a
//! worker never repeat and do not read as a sequence). nginx's `$request_id` draws 16
//! random bytes from OpenSSL per request, which measured as a few percent of a request's
//! CPU: uniqueness is what a log needs, and this gives it for the price of a few multiplies.

/// See the module documentation.
pub struct IdSource {
    prefix: u64,
    key: u64,
    counter: u64,
}

/// splitmix64's finaliser: a bijection on u64.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn hex(n: u64, out: &mut [u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, o) in out.iter_mut().enumerate().take(16) {
        *o = HEX[((n >> (60 - 4 * i)) & 15) as usize];
    }
}

impl IdSource {
    /// `seed`: 16 random bytes (the OS's), drawn when the worker starts.
    pub fn new(seed: [u8; 16]) -> IdSource {
        let mut a = [0u8; 8];
        let mut b = [0u8; 8];
        a.copy_from_slice(&seed[..8]);
        b.copy_from_slice(&seed[8..]);
        IdSource {
            prefix: u64::from_le_bytes(a),
            key: u64::from_le_bytes(b),
            counter: 0,
        }
    }

    pub fn next_id(&mut self) -> [u8; 32] {
        self.counter = self.counter.wrapping_add(1);
        let mut out = [0u8; 32];
        hex(self.prefix, &mut out[..16]);
        hex(mix(self.counter ^ self.key), &mut out[16..]);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_are_hex_unique_and_differ_between_workers() {
        let mut a = IdSource::new([1; 16]);
        let mut b = IdSource::new([2; 16]);
        let mut seen = HashSet::new();
        for _ in 0..200_000 {
            let id = a.next_id();
            assert!(id
                .iter()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
            assert!(seen.insert(id));
            assert!(seen.insert(b.next_id()));
        }
        let (x, y) = (a.next_id(), a.next_id());
        assert_eq!(x[..16], y[..16], "one worker's prefix");
        assert_ne!(x[16..], y[16..]);
        assert_ne!(a.next_id()[..16], b.next_id()[..16]);
    }
}
