//! The providers a worker no longer pools connections to, for a while: one that was caught
//! sending bytes after a response (see `nginx::peer_guard`). Keyed by the peer's address bytes;
//! bounded (the oldest entry is forgotten first); time comes from the caller.

/// How long a provider caught once is not pooled.
pub const UNTRUSTED_MS: u64 = 300_000;

/// Providers remembered at most.
const MAX: usize = 64;

#[derive(Debug, Default)]
pub struct Untrusted {
    /// (address, until when in ms)
    entries: Vec<(Vec<u8>, u64)>,
}

impl Untrusted {
    /// Whether connections to `addr` are not to be kept at `now_ms`.
    pub fn contains(&self, addr: &[u8], now_ms: u64) -> bool {
        self.entries
            .iter()
            .any(|(a, until)| *until > now_ms && a.as_slice() == addr)
    }

    /// Stops pooling connections to `addr` for [`UNTRUSTED_MS`] from `now_ms`; true when this
    /// starts it (it was not already), so the caller logs once.
    pub fn distrust(&mut self, addr: &[u8], now_ms: u64) -> bool {
        let until = now_ms.saturating_add(UNTRUSTED_MS);
        self.entries.retain(|(_, t)| *t > now_ms);
        if let Some(e) = self.entries.iter_mut().find(|(a, _)| a.as_slice() == addr) {
            e.1 = until;
            return false;
        }
        if self.entries.len() >= MAX {
            self.entries.remove(0);
        }
        self.entries.push((addr.to_vec(), until));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_provider_is_distrusted_for_a_while_and_logged_once() {
        let mut u = Untrusted::default();
        assert!(!u.contains(b"a", 0));
        assert!(u.distrust(b"a", 1000));
        assert!(
            !u.distrust(b"a", 2000),
            "already: not logged again, extended"
        );
        assert!(u.contains(b"a", 2000 + UNTRUSTED_MS - 1));
        assert!(!u.contains(b"a", 2000 + UNTRUSTED_MS));
        assert!(!u.contains(b"b", 2000));
        // after it expired, catching it again starts (and logs) anew
        assert!(u.distrust(b"a", 3000 + UNTRUSTED_MS));
    }

    #[test]
    fn the_list_is_bounded() {
        let mut u = Untrusted::default();
        for i in 0..(MAX as u32 + 10) {
            assert!(u.distrust(&i.to_be_bytes(), 0));
        }
        assert_eq!(u.entries.len(), MAX);
        assert!(!u.contains(&0u32.to_be_bytes(), 1), "the oldest went first");
        assert!(u.contains(&(MAX as u32 + 9).to_be_bytes(), 1));
    }
}
